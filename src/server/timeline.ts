// One transaction's timeline for the dashboard: its log records and the
// branch calls this process made, as events of the simulator's trace format,
// drawn by the simulator's own space-time renderer (src/render/trace.ts), so
// that a real transaction reads like a simulated one. Lanes: `dtx serve` (the
// coordinator, where every record is written) and one per branch.
//
// What is real and what is not: a record is drawn at the time the store
// wrote it; a call leaves at the time it was sent and its answer arrives at
// the time it came back. The server does not know when the branch received
// the request, so request and answer meet on the branch's lane half-way
// through the round trip. A call still out is drawn up to `nowMs`.
//
// Pure: no I/O, no clock (the caller passes `nowMs`).

import { renderTraceSvg } from '../render/trace.ts';
import type { TraceEvent } from '../sim/commit-world.ts';
import type { CallSeen } from './calls.ts';

/** The coordinator's lane. */
export const serverLane = 'dtx serve';
const labelCharsMax = 72;

export interface TimelineInput {
  id: string;
  records: readonly { at: string | null; record: unknown }[];
  calls: readonly CallSeen[];
  /** Calls forgotten in the middle (the journal keeps the first and the latest). */
  callsDropped: number;
}

function short(text: string): string {
  const one = text.replace(/\s+/g, ' ').trim();
  return one.length <= labelCharsMax ? one : `${one.slice(0, labelCharsMax - 1)}…`;
}

/** A record's label on the lane: its type and what it names. */
export function recordLabel(record: unknown, txn: string): string {
  const r = (typeof record === 'object' && record !== null ? record : {}) as Record<string, unknown>;
  const str = (k: string) => (typeof r[k] === 'string' ? (r[k] as string) : '');
  const type = str('type') || 'record';
  switch (type) {
    case 'start':
      return `start ${str('branch')} ${str('op')}`;
    case 'result':
      return short(
        `result ${str('branch')} ${str('op')}: ${str('result')}${str('result') === 'failure' ? ` (${str('reason')})` : ''}`,
      );
    case 'rollback':
    case 'stuck':
      return short(`${type}: ${str('reason')}`);
    case 'end': {
      const op = r.operator as { action?: string; reason?: string } | undefined;
      const outcome = str('outcome');
      return short(
        op?.action === undefined ? `end: ${outcome}` : `end: ${op.action} by an operator (${outcome})`,
      );
    }
    case 'decide':
      return `decide: ${str('decision')}`;
    case 'branch':
      return `register ${String((r.branch as { branch?: unknown } | undefined)?.branch ?? '')}`;
    // A 2PC coordinator's decision records: named with the transaction, as the renderer looks for.
    case 'commit':
    case 'abort':
      return `${type} ${txn}`;
    case 'tpc-commit':
      return `commit ${txn} (${(Array.isArray(r.branches) ? r.branches : []).join(', ')})`;
    case 'tpc-abort':
      return `abort ${txn}: ${str('reason')}`.slice(0, labelCharsMax);
    case 'tpc-begin':
      return 'begin';
    case 'tpc-branch':
      return `register ${str('branch')}`;
    case 'tpc-end':
      return `end: ${str('outcome')}`;
    default:
      return short(type);
  }
}

function answerLabel(c: CallSeen): string {
  if (c.result === 'success') return 'success';
  if (c.result === 'failure') return short(`refused: ${c.detail}`);
  return short(`retry: ${c.detail}`);
}

/** The transaction's records and calls as trace events, in ms since its first record (or call). */
export function timelineEvents(input: TimelineInput, nowMs: number): { events: TraceEvent[]; t0Ms: number } {
  const times = [
    ...input.records.map((r) => (r.at === null ? Number.NaN : Date.parse(r.at))),
    ...input.calls.map((c) => c.sentAtMs),
  ].filter(Number.isFinite);
  const t0Ms = times.length > 0 ? Math.min(...times) : nowMs;
  const rel = (ms: number) => Math.max(0, ms - t0Ms);
  const events: TraceEvent[] = [];
  let last = 0;
  for (const { at, record } of input.records) {
    // A store that keeps no times: the record goes where the previous one was.
    const t = at === null ? last : rel(Date.parse(at));
    last = t;
    // Every record of the saga and server logs is forced; of the 2PC log, all but the abort and the end,
    // unless an operator wrote them (then forced, with the reason).
    const { type, operator } = (record ?? {}) as { type?: unknown; operator?: unknown };
    events.push({
      t,
      kind: 'persist',
      node: serverLane,
      record: recordLabel(record, input.id),
      force: (type !== 'tpc-abort' && type !== 'tpc-end') || operator !== undefined,
      ok: true,
    });
  }
  for (const c of input.calls) {
    const sent = rel(c.sentAtMs);
    const back = rel(c.answeredAtMs ?? nowMs);
    const mid = (sent + back) / 2;
    const out = c.answeredAtMs === null;
    events.push({
      t: sent,
      kind: 'send',
      from: serverLane,
      to: c.branch,
      msg: `CALL ${c.op}${out ? ' (no answer yet)' : ''}`,
      arrive: out ? back : mid,
      dup: false,
    });
    if (!out) {
      events.push({
        t: mid,
        kind: 'send',
        from: c.branch,
        to: serverLane,
        msg: answerLabel(c),
        arrive: back,
        dup: false,
      });
    }
  }
  events.sort((a, b) => a.t - b.t);
  return { events, t0Ms };
}

/** The SVG picture of one transaction (the simulator's renderer, unchanged). */
export function timelineSvg(input: TimelineInput, nowMs: number): string {
  const { events, t0Ms } = timelineEvents(input, nowMs);
  const dropped =
    input.callsDropped > 0 ? `, ${input.callsDropped} calls in the middle not kept by this process` : '';
  return renderTraceSvg(events, {
    title: `${input.id}: records and branch calls, ms since ${new Date(t0Ms).toISOString()}${dropped}`,
    from: 0,
    widthPx: 900,
  });
}
