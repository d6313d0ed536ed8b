// What a trace diagram draws: the window of a run (one transaction, a time
// window, or the first few transactions), repeated messages folded, and the
// element cap, each with the caption line that says what was left out. Also
// the few facts about events that the drawing needs (which transaction an
// event belongs to, each node's downtimes) and the time formats both share.
// Pure: no I/O, no clock.

import type { TraceEvent } from '../sim/commit-world.ts';

export interface TraceRenderOptions {
  /** First line of the picture (the command that produced the run, say). */
  title: string;
  /** Start of a time window, in virtual ms. */
  from?: number;
  /** End of a time window, in virtual ms. */
  to?: number;
  /** Draw only this transaction's events (or those of several: `t3,t7`), plus crashes and restarts during their life. */
  focusTxn?: string;
  /** Width of the picture in pixels (default 1000). */
  widthPx?: number;
  /** Without focusTxn, from or to: how many transactions the default window holds (default 5). */
  maxTxns?: number;
  /** At most this many events are drawn (default 600); the caption says what was cut. */
  maxEvents?: number;
}

/** The defaults of TraceRenderOptions. */
export const traceDefaults = { widthPx: 1000, maxTxns: 5, maxEvents: 600 } as const;

export type SendEvent = Extract<TraceEvent, { kind: 'send' }>;
export type PersistEvent = Extract<TraceEvent, { kind: 'persist' }>;
export type LockEvent = Extract<TraceEvent, { kind: 'lock' }>;

/** The lane of the workload's client, which has no node name of its own in outcome events. */
export const clientLane = 'client';

export function tokens(s: string): string[] {
  return s.split(/\s+/).filter((x) => x !== '');
}

/** The transaction an event belongs to, if any (messages and records name it second: `PREPARE t3`). */
export function txnOf(e: TraceEvent): string | undefined {
  switch (e.kind) {
    case 'send':
      return tokens(e.msg)[1];
    case 'persist':
      return tokens(e.record)[1];
    case 'lock':
    case 'rm':
    case 'outcome':
    case 'read':
      return e.txn;
    default:
      return undefined;
  }
}

function mentions(e: TraceEvent, txns: string): boolean {
  return txns.split(',').some((txn) => mentionsOne(e, txn));
}

function mentionsOne(e: TraceEvent, txn: string): boolean {
  switch (e.kind) {
    case 'send':
      return tokens(e.msg).includes(txn);
    case 'persist':
      return tokens(e.record).includes(txn);
    case 'lock':
    case 'rm':
    case 'outcome':
    case 'read':
      return e.txn === txn;
    default:
      return false;
  }
}

function startOf(e: TraceEvent): number {
  return e.kind === 'lock' ? e.heldFrom : e.t;
}

function endOf(e: TraceEvent): number {
  return e.kind === 'send' && e.arrive !== null ? Math.max(e.t, e.arrive) : e.t;
}

function inWindow(e: TraceEvent, lo: number, hi: number): boolean {
  return e.kind === 'lock' ? e.heldFrom <= hi && e.t >= lo : e.t >= lo && e.t <= hi;
}

/** Each node's down intervals [crash, restart) over the whole trace (restart Infinity if it never came). */
export function downtimes(trace: readonly TraceEvent[]): Map<string, Array<[number, number]>> {
  const out = new Map<string, Array<[number, number]>>();
  for (const e of trace) {
    if (e.kind === 'crash') {
      let list = out.get(e.node);
      if (list === undefined) out.set(e.node, (list = []));
      list.push([e.t, Number.POSITIVE_INFINITY]);
    } else if (e.kind === 'restart') {
      const last = out.get(e.node)?.at(-1);
      if (last !== undefined && last[1] === Number.POSITIVE_INFINITY) last[1] = e.t;
    }
  }
  return out;
}

export interface Fold {
  msg: string;
  froms: Set<string>;
  tos: Set<string>;
  count: number;
  lost: number;
  firstT: number;
  lastT: number;
  period: number;
}

export interface Selection {
  events: TraceEvent[];
  folds: Fold[];
  caption: string[];
  /** Nothing matched the focus transaction. */
  empty: boolean;
}

/** Sendings of one message (same sender, receiver and text) from which on the middle ones are folded. */
const foldMin = 6;

/** The events to draw for `options` (a transaction, a time window or the first few transactions), repeats folded, capped; and a caption saying what was left out. */
export function select(
  trace: readonly TraceEvent[],
  options: TraceRenderOptions,
  isLost: (s: SendEvent) => boolean,
): Selection {
  const total = trace.length;
  const caption: string[] = [];
  let events: TraceEvent[];
  const userLo = options.from ?? Number.NEGATIVE_INFINITY;
  const userHi = options.to ?? Number.POSITIVE_INFINITY;
  const timeWindow = options.from !== undefined || options.to !== undefined;
  if (options.focusTxn !== undefined) {
    const txn = options.focusTxn;
    const own = trace.filter((e) => mentions(e, txn) && inWindow(e, userLo, userHi));
    if (own.length === 0) {
      caption.push(`No event of transaction ${txn} in this trace (${count(total, 'event')}).`);
      return { events: [], folds: [], caption, empty: true };
    }
    let lo = Number.POSITIVE_INFINITY;
    let hi = Number.NEGATIVE_INFINITY;
    for (const e of own) {
      lo = Math.min(lo, startOf(e));
      hi = Math.max(hi, endOf(e));
    }
    lo = Math.max(lo, userLo);
    hi = Math.min(hi, userHi);
    events = trace.filter(
      (e) =>
        (mentions(e, txn) && inWindow(e, lo, hi)) ||
        ((e.kind === 'crash' || e.kind === 'restart') && e.t >= lo && e.t <= hi),
    );
    caption.push(
      `Transaction ${txn} only: the messages naming it, its records, lock holds and state changes, and ` +
        `crashes and restarts from ${fmtTime(lo)} to ${fmtTime(hi)} ms: ${events.length.toLocaleString('en-US')} of ` +
        `${count(total, 'event')}. Other transactions are not drawn.`,
    );
  } else if (timeWindow) {
    events = trace.filter((e) => inWindow(e, userLo, userHi));
    const shownLo = Number.isFinite(userLo) ? `${fmtTime(userLo)} ms` : 'the start';
    const shownHi = Number.isFinite(userHi) ? `${fmtTime(userHi)} ms` : 'the end';
    caption.push(
      `Time window ${shownLo} to ${shownHi}: ${events.length.toLocaleString('en-US')} of ${count(total, 'event')}.`,
    );
  } else {
    const maxTxns = Math.max(1, options.maxTxns ?? traceDefaults.maxTxns);
    const order: string[] = [];
    const seen = new Set<string>();
    for (const e of trace) {
      const x = txnOf(e);
      if (x !== undefined && !seen.has(x)) {
        seen.add(x);
        order.push(x);
      }
    }
    if (order.length <= maxTxns) {
      events = [...trace];
      caption.push(`The whole run: ${count(order.length, 'transaction')}, ${count(total, 'event')}.`);
    } else {
      const chosen = new Set(order.slice(0, maxTxns));
      let hi = Number.NEGATIVE_INFINITY;
      for (const e of trace) {
        const x = txnOf(e);
        if (x !== undefined && chosen.has(x)) hi = Math.max(hi, endOf(e));
      }
      events = trace.filter((e) => inWindow(e, Number.NEGATIVE_INFINITY, hi));
      caption.push(
        `The first ${maxTxns} of ${order.length} transactions (up to ${fmtTime(hi)} ms): ` +
          `${events.length.toLocaleString('en-US')} of ${count(total, 'event')}; the later ones are left out ` +
          '(choose a transaction with focusTxn or a from/to window).',
      );
    }
  }

  const { kept, folds, hidden } = foldRepeats(events, isLost);
  if (hidden > 0)
    caption.push(
      `${count(hidden, 'repeated message')} not drawn: each message sent ${foldMin} times or more is drawn ` +
        'for its first two and last two sendings (see the dashed notes).',
    );
  events = kept;

  const maxEvents = Math.max(1, options.maxEvents ?? traceDefaults.maxEvents);
  let cutFolds = folds;
  if (events.length > maxEvents) {
    const n = events.length;
    events = events.slice(0, maxEvents);
    const cutT = events[events.length - 1]!.t;
    cutFolds = folds.filter((f) => f.firstT <= cutT);
    caption.push(
      `Element cap: only the first ${maxEvents} of these ${n.toLocaleString('en-US')} events are drawn (up to ` +
        `${fmtTime(cutT)} ms); ${count(n - maxEvents, 'later event')} left out.`,
    );
  }
  if (hidden > 0 || events.length < kept.length) caption.push(`Drawn: ${count(events.length, 'event')}.`);
  return { events, folds: cutFolds, caption, empty: false };
}

function foldRepeats(
  events: TraceEvent[],
  isLost: (s: SendEvent) => boolean,
): { kept: TraceEvent[]; folds: Fold[]; hidden: number } {
  const groups = new Map<string, SendEvent[]>();
  for (const e of events) {
    if (e.kind !== 'send') continue;
    const key = `${e.from}\u0000${e.to}\u0000${e.msg}`;
    let list = groups.get(key);
    if (list === undefined) groups.set(key, (list = []));
    list.push(e);
  }
  const drop = new Set<TraceEvent>();
  const raw: Fold[] = [];
  let hidden = 0;
  for (const sends of groups.values()) {
    const times: number[] = [];
    for (const s of sends) if (times.at(-1) !== s.t) times.push(s.t);
    if (times.length < foldMin) continue;
    const lo = times[2]!;
    const hi = times[times.length - 3]!;
    let n = 0;
    let lost = 0;
    for (const s of sends) {
      if (s.t < lo || s.t > hi) continue;
      drop.add(s);
      if (s.dup) continue;
      n++;
      if (isLost(s)) lost++;
    }
    hidden += n;
    const diffs = times.slice(1).map((t, i) => t - times[i]!);
    const first = sends[0]!;
    raw.push({
      msg: first.msg,
      froms: new Set([first.from]),
      tos: new Set([first.to]),
      count: n,
      lost,
      firstT: lo,
      lastT: hi,
      period: median(diffs),
    });
  }
  raw.sort((a, b) => a.firstT - b.firstT);
  const folds: Fold[] = [];
  for (const f of raw) {
    const into = folds.find((g) => g.msg === f.msg && f.firstT <= g.lastT && g.firstT <= f.lastT);
    if (into === undefined) {
      folds.push(f);
      continue;
    }
    for (const x of f.froms) into.froms.add(x);
    for (const x of f.tos) into.tos.add(x);
    into.count += f.count;
    into.lost += f.lost;
    into.lastT = Math.max(into.lastT, f.lastT);
    into.period = Math.max(into.period, f.period);
  }
  return { kept: drop.size === 0 ? events : events.filter((e) => !drop.has(e)), folds, hidden };
}

// ------------------------------------------------------------------ formats

/** The middle value (the upper one of an even count); 0 for none. */
export function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** `1 event`, `2,000 events`. */
export function count(n: number, what: string): string {
  return `${n.toLocaleString('en-US')} ${what}${n === 1 ? '' : 's'}`;
}

/** A virtual time in ms, with as many decimals as are useful at its size. */
export function fmtTime(t: number): string {
  const a = Math.abs(t);
  return a < 10 ? t.toFixed(2) : a < 1000 ? t.toFixed(1) : t.toFixed(0);
}

/** A duration at a useful precision: `0.52 ms`, `4.9 ms`, `112 ms`, `5.05 s`, `1.5 min`. */
export function fmtDuration(ms: number): string {
  if (ms < 0.995) return `${ms.toFixed(2)} ms`;
  if (ms < 9.95) return `${ms.toFixed(1)} ms`;
  if (ms < 999.5) return `${ms.toFixed(0)} ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(ms < 9_995 ? 2 : 1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}
