// Space-time diagrams of a simulated run: `dtx sim ... --trace FILE.svg` (or
// `.html`). One vertical lane per node, time flowing downward; messages are
// arrows from send to arrival, persisted records small squares on the lane,
// lock holds bars beside a participant's lane, participant state changes
// coloured dots, crashes a red ✕ with the downtime shaded, and each
// transaction's decision point ringed.
//
// A run has thousands of events spread over seconds, while a message takes
// half a millisecond, so the picture is made readable in three ways:
//
// - a window: one transaction (`focusTxn`), a [from, to] time window, or by
//   default the first few transactions; and a cap on the number of events
//   drawn, so that the document stays small;
// - a broken time axis: the scale is linear (fitted to the typical message
//   time) while something happens, and every idle gap longer than a few
//   message times is squeezed into a band that says how long it was;
// - folding: a message sent over and over (a retransmission, an inquiry
//   repeated every 50 ms during a long blocking) is drawn for its first two
//   and last two sendings only, with a note saying how many were left out.
//
// The caption at the top of the picture says what was left out. Every piece
// of text placed in the document is escaped. Pure: no I/O, no clock.

import type { TraceEvent } from '../sim/world.ts';
import { esc } from './svg.ts';

export interface TraceRenderOptions {
  /** First line of the picture (the command that produced the run, say). */
  title: string;
  /** Start of a time window, in virtual ms. */
  from?: number;
  /** End of a time window, in virtual ms. */
  to?: number;
  /** Draw only this transaction's events, plus crashes and restarts during its life. */
  focusTxn?: string;
  /** Width of the picture in pixels (default 1000). */
  widthPx?: number;
  /** Without focusTxn, from or to: how many transactions the default window holds (default 5). */
  maxTxns?: number;
  /** At most this many events are drawn (default 600); the caption says what was cut. */
  maxEvents?: number;
}

export const traceDefaults = { widthPx: 1000, maxTxns: 5, maxEvents: 600 } as const;

/** A `--trace` file name whose extension names no picture format this module writes. */
export class TraceFileError extends Error {
  override name = 'TraceFileError';
  readonly code = 'DTX_TRACE_FILE';
  readonly path: string;

  constructor(path: string) {
    super(
      `cannot tell which picture to write to "${path}": the trace file name must end in .svg ` +
        '(a standalone SVG document) or .html (the SVG in a page with a legend)',
    );
    this.path = path;
  }
}

/** The picture format a `--trace` file name asks for, by its extension. */
export function traceFileFor(path: string): 'svg' | 'html' {
  const base = path.slice(Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\')) + 1);
  const dot = base.lastIndexOf('.');
  const ext = dot > 0 ? base.slice(dot + 1).toLowerCase() : '';
  if (ext === 'svg') return 'svg';
  if (ext === 'html' || ext === 'htm') return 'html';
  throw new TraceFileError(path);
}

/** A standalone SVG document (with a compact legend) drawing `trace`. */
export function renderTraceSvg(trace: readonly TraceEvent[], options: TraceRenderOptions): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${draw(trace, options)}\n`;
}

/** A self-contained HTML page: the SVG picture and a legend that explains it. No external resources. */
export function renderTraceHtml(trace: readonly TraceEvent[], options: TraceRenderOptions): string {
  const rows = legendItems
    .map(
      (item) =>
        `<tr><td><svg width="30" height="16" viewBox="-4 -8 30 16">${item.glyph}</svg></td>` +
        `<th>${esc(item.label)}</th><td>${esc(item.explain)}</td></tr>`,
    )
    .join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${esc(options.title)}</title>
<style>
body{font-family:system-ui,-apple-system,'Segoe UI','DejaVu Sans',Arial,sans-serif;margin:16px;color:#1e293b}
h1{font-size:16px;margin:0 0 8px}
table.legend{border-collapse:collapse;font-size:13px;margin:0 0 12px}
table.legend td,table.legend th{padding:2px 8px;text-align:left;vertical-align:middle}
table.legend th{white-space:nowrap;font-weight:600}
figure{margin:0}
</style>
</head>
<body>
<h1>${esc(options.title)}</h1>
<table class="legend">
${rows}
</table>
<figure>
${draw(trace, options)}
</figure>
</body>
</html>
`;
}

// ------------------------------------------------------------------ model

type SendEvent = Extract<TraceEvent, { kind: 'send' }>;
type PersistEvent = Extract<TraceEvent, { kind: 'persist' }>;
type LockEvent = Extract<TraceEvent, { kind: 'lock' }>;

const clientLane = 'client';

function tokens(s: string): string[] {
  return s.split(/\s+/).filter((x) => x !== '');
}

/** The transaction an event belongs to, if any (messages and records name it second: `PREPARE t3`). */
function txnOf(e: TraceEvent): string | undefined {
  switch (e.kind) {
    case 'send':
      return tokens(e.msg)[1];
    case 'persist':
      return tokens(e.record)[1];
    case 'lock':
    case 'rm':
    case 'outcome':
      return e.txn;
    default:
      return undefined;
  }
}

function mentions(e: TraceEvent, txn: string): boolean {
  switch (e.kind) {
    case 'send':
      return tokens(e.msg).includes(txn);
    case 'persist':
      return tokens(e.record).includes(txn);
    case 'lock':
    case 'rm':
    case 'outcome':
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
function downtimes(trace: readonly TraceEvent[]): Map<string, Array<[number, number]>> {
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

interface Fold {
  msg: string;
  froms: Set<string>;
  tos: Set<string>;
  count: number;
  lost: number;
  firstT: number;
  lastT: number;
  period: number;
}

interface Selection {
  events: TraceEvent[];
  folds: Fold[];
  caption: string[];
  /** Nothing matched the focus transaction. */
  empty: boolean;
}

/** Sendings of one message (same sender, receiver and text) from which on the middle ones are folded. */
const foldMin = 6;

function select(
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

// ----------------------------------------------------------------- layout

const font = "'DejaVu Sans',Verdana,'Helvetica Neue',Arial,sans-serif";
const axisW = 92;
const rightPad = 118;
/** Vertical pixels the typical (median) message takes. */
const messagePx = 46;
/** Gaps longer than this many typical message times are squeezed into a band. */
const linearMaxMessages = 2.5;
const bandPx = 42;
const notePx = 20;
const maxLinearTotalPx = 24_000;

const colors = {
  proto: '#1d4ed8',
  app: '#94a3b8',
  appText: '#64748b',
  commit: '#15803d',
  abort: '#b91c1c',
  lost: '#dc2626',
  record: '#334155',
  failed: '#dc2626',
  lock: '#64748b',
  working: '#94a3b8',
  prepared: '#f59e0b',
  committed: '#16a34a',
  aborted: '#dc2626',
  left: '#94a3b8',
  decision: '#7c3aed',
  restart: '#16a34a',
  band: '#f1f5f9',
  lane: '#94a3b8',
} as const;

type MsgClass = 'proto' | 'app' | 'commit' | 'abort';

function msgClass(msg: string): MsgClass {
  const type = tokens(msg)[0] ?? '';
  if (type === 'COMMIT') return 'commit';
  if (type === 'ABORT') return 'abort';
  return /^[A-Z]/.test(type) ? 'proto' : 'app';
}

interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  /** The arrow a line box belongs to: that arrow's own label may sit on it. */
  owner?: number;
  /** How much overlapping this box costs per pixel (text 1, a line less). */
  weight?: number;
}

/**
 * Greedy label placement: each label takes the candidate position that
 * overlaps least with what is already placed (text, glyphs, other arrows),
 * earlier candidates winning ties.
 */
class Placer {
  private readonly buckets = new Map<number, Box[]>();
  private static readonly cell = 40;

  add(b: Box): void {
    for (let k = Math.floor(b.y1 / Placer.cell); k <= Math.floor(b.y2 / Placer.cell); k++) {
      let list = this.buckets.get(k);
      if (list === undefined) this.buckets.set(k, (list = []));
      list.push(b);
    }
  }

  /** Thin boxes along a line, so that labels avoid sitting on other arrows. */
  addLine(x1: number, y1: number, x2: number, y2: number, owner: number): void {
    const steps = Math.max(1, Math.ceil(Math.hypot(x2 - x1, y2 - y1) / 8));
    for (let i = 0; i <= steps; i++) {
      const x = x1 + ((x2 - x1) * i) / steps;
      const y = y1 + ((y2 - y1) * i) / steps;
      this.add({ x1: x - 4, y1: y - 1.5, x2: x + 4, y2: y + 1.5, owner, weight: 0.3 });
    }
  }

  /** Weighted overlap of `b` with what is placed, and the part of it that is text or glyphs. */
  overlap(b: Box, owner: number): { score: number; solid: number } {
    let area = 0;
    let solid = 0;
    const seen = new Set<Box>();
    for (let k = Math.floor(b.y1 / Placer.cell); k <= Math.floor(b.y2 / Placer.cell); k++) {
      for (const o of this.buckets.get(k) ?? []) {
        if (seen.has(o) || (o.owner !== undefined && o.owner === owner)) continue;
        seen.add(o);
        const w = Math.min(b.x2, o.x2) - Math.max(b.x1, o.x1);
        const h = Math.min(b.y2, o.y2) - Math.max(b.y1, o.y1);
        if (w <= 0 || h <= 0) continue;
        area += w * h * (o.weight ?? 1);
        if (o.weight === undefined) solid += w * h;
      }
    }
    return { score: area, solid };
  }

  /**
   * Picks one of `candidates` and records its box. An `optional` label that
   * would cover too much other text anyway is given up: -1.
   */
  place(candidates: Box[], owner = -1, optional = false): number {
    let best = 0;
    let bestScore = Number.POSITIVE_INFINITY;
    let bestSolid = 0;
    for (let i = 0; i < candidates.length; i++) {
      const { score, solid } = this.overlap(candidates[i]!, owner);
      if (score + 3 * i < bestScore) {
        best = i;
        bestScore = score + 3 * i;
        bestSolid = solid;
      }
      if (score === 0) break;
    }
    const b = candidates[best]!;
    if (optional && bestSolid > 0.12 * (b.x2 - b.x1) * (b.y2 - b.y1)) return -1;
    this.add(b);
    return best;
  }
}

type Anchor = 'start' | 'middle' | 'end';

interface TextCandidate {
  x: number;
  y: number;
  anchor: Anchor;
}

function textWidth(s: string, size: number): number {
  let w = 0;
  for (const ch of s) {
    if (ch === ' ') w += 0.32;
    else if (/[A-Z]/.test(ch)) w += 0.7;
    else if (/[a-z0-9]/.test(ch)) w += 0.6;
    else if (/[.,:;'|!il]/.test(ch)) w += 0.34;
    else w += 0.82;
  }
  return w * size;
}

function textBox(c: TextCandidate, text: string, size: number): Box {
  const w = textWidth(text, size) + 4;
  const x1 = c.anchor === 'start' ? c.x - 2 : c.anchor === 'middle' ? c.x - w / 2 : c.x - w + 2;
  return { x1, y1: c.y - size * 0.82, x2: x1 + w, y2: c.y + size * 0.26 };
}

/** Piecewise-linear time → y: linear while things happen, a fixed-height band over each idle gap. */
class TimeAxis {
  readonly points: number[];
  readonly ys: number[];
  readonly banded: boolean[];

  constructor(points: number[], ys: number[], banded: boolean[]) {
    this.points = points;
    this.ys = ys;
    this.banded = banded;
  }

  y(t: number): number {
    const p = this.points;
    if (p.length === 0) return 0;
    if (t <= p[0]!) return this.ys[0]!;
    if (t >= p[p.length - 1]!) return this.ys[p.length - 1]!;
    let lo = 0;
    let hi = p.length - 1;
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (p[mid]! <= t) lo = mid;
      else hi = mid;
    }
    const span = p[hi]! - p[lo]!;
    const f = span === 0 ? 0 : (t - p[lo]!) / span;
    return this.ys[lo]! + f * (this.ys[hi]! - this.ys[lo]!);
  }
}

// ------------------------------------------------------------------- draw

function draw(trace: readonly TraceEvent[], options: TraceRenderOptions): string {
  const down = downtimes(trace);
  // A message arriving at the very instant of a crash was delivered: its step is the one that crashed.
  const isDownAt = (node: string, t: number) =>
    (down.get(node) ?? []).some(([from, until]) => t > from && t < until);
  const isLost = (s: SendEvent) => s.arrive === null || isDownAt(s.to, s.arrive);
  const sel = select(trace, options, isLost);
  const events = sel.events;

  // Lanes: the client, then the other non-participant nodes in order of appearance, then participants.
  const participants = new Set<string>();
  for (const e of trace) if (e.kind === 'rm' || e.kind === 'lock') participants.add(e.node);
  const seen: string[] = [];
  const see = (n: string) => {
    if (!seen.includes(n)) seen.push(n);
  };
  for (const e of events) {
    if (e.kind === 'send') {
      see(e.from);
      see(e.to);
    } else if (e.kind === 'outcome') see(clientLane);
    else see(e.node);
  }
  for (const f of sel.folds) for (const n of [...f.froms, ...f.tos]) see(n);
  const lanes = [
    ...seen.filter((n) => n === clientLane),
    ...seen.filter((n) => n !== clientLane && !participants.has(n)),
    ...seen.filter((n) => participants.has(n)).sort((a, b) => a.localeCompare(b, 'en', { numeric: true })),
  ];

  const width = Math.max(options.widthPx ?? traceDefaults.widthPx, axisW + rightPad + lanes.length * 90);
  const laneGap = lanes.length === 0 ? 0 : (width - axisW - rightPad) / lanes.length;
  const laneX = new Map<string, number>();
  lanes.forEach((n, i) => {
    laneX.set(n, axisW + laneGap * (i + 0.5));
  });
  const xOf = (n: string) => laneX.get(n) ?? axisW;

  // Header: title, caption, legend.
  const head: string[] = [];
  let y = 24;
  wrap(options.title, width - 24, 15).forEach((line, i) => {
    if (i > 0) y += 19;
    head.push(`<text x="12" y="${y}" class="title">${esc(line)}</text>`);
  });
  y += 8;
  for (const para of sel.caption) {
    for (const line of wrap(para, width - 24, 11.5)) {
      y += 16;
      head.push(`<text x="12" y="${y}" class="cap">${esc(line)}</text>`);
    }
  }
  y += 14;
  const legend = drawLegend(12, y, width - 24);
  head.push(legend.svg);
  y = legend.bottom + 10;

  const laneTop = y;
  const headerH = 24;
  const plotTop = laneTop + headerH + 18;

  // Time scale.
  const durations: number[] = [];
  for (const e of events)
    if (e.kind === 'send' && e.arrive !== null && e.arrive > e.t) durations.push(e.arrive - e.t);
  const typical = durations.length > 0 ? median(durations) : 0.5;
  let pxPerMs = Math.min(Math.max(messagePx / typical, 1e-4), 1e4);
  const linearMax = linearMaxMessages * typical;

  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  const pointSet = new Set<number>();
  const addPoint = (t: number) => {
    pointSet.add(t);
    lo = Math.min(lo, t);
    hi = Math.max(hi, t);
  };
  for (const e of events) {
    if (e.kind !== 'lock') addPoint(e.t);
    if (e.kind === 'send' && e.arrive !== null) addPoint(e.arrive);
  }
  // Lock bars are clipped to the window of the other events.
  const hasOthers = events.some((e) => e.kind !== 'lock');
  for (const e of events) {
    if (e.kind !== 'lock') continue;
    if (hasOthers) {
      if (e.t <= hi) addPoint(e.t);
      if (e.heldFrom >= lo) addPoint(e.heldFrom);
    } else {
      addPoint(e.t);
      addPoint(e.heldFrom);
    }
  }
  let points = [...pointSet].sort((a, b) => a - b);

  // Fold notes sit in the band that holds their first folded sending, or on a row of their own.
  const bandNotes = new Map<number, Fold[]>();
  const rowNotes = new Map<number, Fold[]>();
  const gapIndex = (t: number): number => {
    let i = 0;
    while (i + 1 < points.length && points[i + 1]! <= t) i++;
    return i;
  };
  for (const f of sel.folds) {
    const i = gapIndex(f.firstT);
    const a = points[i];
    const b = points[i + 1];
    if (a !== undefined && b !== undefined && b - a > linearMax) {
      const list = bandNotes.get(a) ?? [];
      list.push(f);
      bandNotes.set(a, list);
    } else {
      const list = rowNotes.get(f.firstT) ?? [];
      list.push(f);
      rowNotes.set(f.firstT, list);
    }
  }
  if (rowNotes.size > 0) {
    for (const t of rowNotes.keys()) pointSet.add(t);
    points = [...pointSet].sort((a, b) => a - b);
  }

  let linearTotal = 0;
  for (let i = 0; i + 1 < points.length; i++) {
    const g = points[i + 1]! - points[i]!;
    if (g <= linearMax) linearTotal += g * pxPerMs;
  }
  if (linearTotal > maxLinearTotalPx) pxPerMs *= maxLinearTotalPx / linearTotal;

  const ys: number[] = [];
  const banded: boolean[] = [];
  let yy = plotTop;
  for (let i = 0; i < points.length; i++) {
    ys.push(yy);
    const next = points[i + 1];
    if (next === undefined) break;
    const t = points[i]!;
    const g = next - t;
    const band = g > linearMax;
    banded.push(band);
    let h = band ? bandPx + notePx * (bandNotes.get(t)?.length ?? 0) : g * pxPerMs;
    const rows = rowNotes.get(t)?.length ?? 0;
    if (rows > 0) h = Math.max(h, notePx * rows + 6);
    yy += h;
  }
  const axis = new TimeAxis(points, ys, banded);
  const plotBottom = (ys.at(-1) ?? plotTop) + 30;
  const height = Math.ceil(plotBottom + headerH + 28);

  // Layers, back to front.
  const grid: string[] = [];
  const bands: string[] = [];
  const laneSvg: string[] = [];
  const shade: string[] = [];
  const bars: string[] = [];
  const arrows: string[] = [];
  const glyphs: string[] = [];
  const labels: string[] = [];
  const placer = new Placer();
  let labelsDropped = 0;
  const plotLeft = axisW - 8;
  const plotRight = width - 12;

  const label = (
    text: string,
    candidates: TextCandidate[],
    cls: string,
    size: number,
    owner = -1,
    optional = false,
  ): void => {
    const i = placer.place(
      candidates.map((c) => textBox(c, text, size)),
      owner,
      optional,
    );
    if (i < 0) {
      if (owner >= 0) labelsDropped++;
      return;
    }
    const c = candidates[i]!;
    labels.push(
      `<text x="${n1(c.x)}" y="${n1(c.y)}"${c.anchor === 'start' ? '' : ` text-anchor="${c.anchor}"`} ` +
        `class="${cls}">${esc(text)}</text>`,
    );
  };

  // Time axis: ticks in linear stretches, a band with the gap's length over each squeezed one.
  const tickStep = niceStep(56 / pxPerMs);
  const decimals = Math.max(0, -Math.floor(Math.log10(tickStep) + 1e-9));
  grid.push(`<text x="${axisW - 14}" y="${plotTop - 14}" text-anchor="end" class="axis">time (ms)</text>`);
  let runStart = 0;
  const lastLabelY = { y: Number.NEGATIVE_INFINITY };
  const tickLabel = (t: number, yv: number, exact: boolean) => {
    if (yv - lastLabelY.y < 14) return;
    lastLabelY.y = yv;
    const text = exact ? fmtTime(t) : t.toFixed(decimals);
    grid.push(
      `<text x="${axisW - 14}" y="${n1(yv + 3.5)}" text-anchor="end" class="axis">${esc(text)}</text>`,
      `<line x1="${axisW - 10}" y1="${n1(yv)}" x2="${plotRight}" y2="${n1(yv)}" class="grid"/>`,
    );
  };
  const flushRun = (endIdx: number) => {
    const a = points[runStart];
    const b = points[endIdx];
    if (a === undefined || b === undefined) return;
    const ya = axis.y(a);
    const first = Math.ceil(a / tickStep - 1e-9) * tickStep;
    if (axis.y(first) - ya >= 14 || b - a < tickStep) tickLabel(a, ya, true);
    for (let t = first; t <= b + 1e-9; t += tickStep) tickLabel(t, axis.y(t), false);
  };
  for (let i = 0; i < banded.length; i++) {
    if (!banded[i]) continue;
    flushRun(i);
    runStart = i + 1;
    const ya = ys[i]!;
    const yb = ys[i + 1]!;
    const gap = points[i + 1]! - points[i]!;
    const mid = (ya + yb) / 2;
    bands.push(
      `<rect x="${plotLeft}" y="${n1(ya + 5)}" width="${n1(plotRight - plotLeft)}" height="${n1(yb - ya - 10)}" class="band"/>`,
      `<text x="${axisW - 14}" y="${n1(mid + 4)}" text-anchor="end" class="gap">+${esc(fmtDuration(gap))}</text>`,
      `<path d="M${axisW - 10} ${n1(mid - 2)}l8 -5M${axisW - 10} ${n1(mid + 4)}l8 -5" class="brk"/>`,
    );
    for (const n of lanes) {
      const x = xOf(n);
      bands.push(
        `<path d="M${n1(x - 6)} ${n1(mid - 1)}l12 -6M${n1(x - 6)} ${n1(mid + 5)}l12 -6" class="brk"/>`,
      );
    }
    const notes = bandNotes.get(points[i]!) ?? [];
    notes.forEach((f, k) => {
      const ny =
        ya + 21 + notePx * (k - (notes.length - 1) / 2) + (yb - ya - bandPx - notePx * notes.length) / 2;
      drawNote(f, ny + notePx / 2 - 10);
    });
  }
  flushRun(points.length - 1);
  for (const [t, notes] of rowNotes) {
    const yv = axis.y(t);
    notes.forEach((f, k) => {
      drawNote(f, yv + 3 + notePx * k);
    });
  }

  function drawNote(f: Fold, top: number): void {
    const xs = [...f.froms, ...f.tos].map(xOf);
    const cx = (Math.min(...xs) + Math.max(...xs)) / 2;
    const text = noteText(f);
    const w = textWidth(text, 10.5) + 14;
    const x = Math.min(Math.max(cx - w / 2, plotLeft + 2), plotRight - w - 2);
    bands.push(
      `<rect x="${n1(x)}" y="${n1(top)}" width="${n1(w)}" height="17" rx="4" class="note"/>`,
      `<text x="${n1(x + 7)}" y="${n1(top + 12.5)}" class="notet">${esc(text)}</text>`,
    );
    placer.add({ x1: x, y1: top, x2: x + w, y2: top + 17 });
  }

  // Lanes: a header box at the top and the bottom, a line between.
  const laneEnd = plotBottom - 6;
  for (const n of lanes) {
    const x = xOf(n);
    const w = Math.max(46, textWidth(n, 12) + 16);
    laneSvg.push(
      `<line x1="${n1(x)}" y1="${laneTop + headerH}" x2="${n1(x)}" y2="${n1(laneEnd)}" class="lane"/>`,
    );
    for (const top of [laneTop, laneEnd]) {
      laneSvg.push(
        `<rect x="${n1(x - w / 2)}" y="${n1(top)}" width="${n1(w)}" height="${headerH}" rx="4" class="hdr"/>`,
        `<text x="${n1(x)}" y="${n1(top + 16.5)}" text-anchor="middle" class="hdrt">${esc(n)}</text>`,
      );
    }
  }

  // Downtime shading (from the whole trace, clipped to the window).
  const shownLo = points[0] ?? 0;
  const shownHi = points.at(-1) ?? 0;
  for (const n of lanes) {
    for (const [from, until] of down.get(n) ?? []) {
      if (until < shownLo || from > shownHi) continue;
      const y1 = axis.y(Math.max(from, shownLo));
      const y2 = Number.isFinite(until) && until <= shownHi ? axis.y(until) : laneEnd;
      const x = xOf(n);
      shade.push(
        `<rect x="${n1(x - 9)}" y="${n1(y1)}" width="18" height="${n1(Math.max(y2 - y1, 1))}" class="down">` +
          `<title>${esc(`${n} down ${fmtTime(from)} → ${Number.isFinite(until) ? `${fmtTime(until)} ms` : 'the end'}`)}</title></rect>`,
        `<line x1="${n1(x)}" y1="${n1(y1)}" x2="${n1(x)}" y2="${n1(y2)}" class="downl"/>`,
      );
    }
  }

  // Lock bars, stacked in columns when a participant holds several transactions' locks at once.
  const locks = events.filter((e): e is LockEvent => e.kind === 'lock');
  const columnsOf = new Map<string, number>();
  const lockCol = new Map<LockEvent, number>();
  {
    const ends = new Map<string, number[]>();
    for (const e of [...locks].sort((a, b) => a.heldFrom - b.heldFrom)) {
      const cols = ends.get(e.node) ?? [];
      let c = cols.findIndex((end) => end <= e.heldFrom + 1e-6);
      if (c < 0) c = cols.length;
      cols[c] = e.t;
      ends.set(e.node, cols);
      lockCol.set(e, c);
      columnsOf.set(e.node, Math.max(columnsOf.get(e.node) ?? 0, c + 1));
    }
  }
  const recordDx = (n: string) => 10 + 7 * (columnsOf.get(n) ?? 0);
  for (const e of locks) {
    const x = xOf(e.node) + 5 + 7 * (lockCol.get(e) ?? 0);
    const y1 = axis.y(e.heldFrom);
    const y2 = axis.y(e.t);
    bars.push(
      `<rect x="${n1(x)}" y="${n1(y1)}" width="5" height="${n1(Math.max(y2 - y1, 1.5))}" class="lock">` +
        `<title>${esc(`${e.node} holds ${e.txn}'s locks ${fmtTime(e.heldFrom)} → ${fmtTime(e.t)} ms (${fmtDuration(e.t - e.heldFrom)})`)}</title></rect>`,
    );
    placer.add({ x1: x, y1, x2: x + 5, y2: Math.max(y2, y1 + 1.5) });
  }

  // Glyphs first (they are obstacles for labels), labels after.
  type Pending = () => void;
  const labelJobs: Pending[] = [];
  const lateJobs: Pending[] = [];

  // Decision points: a coordinator's forced commit/abort record, else the first COMMIT/ABORT message.
  const decisions = new Map<string, { t: number; node: string; what: string; record: PersistEvent | null }>();
  for (const e of events) {
    let cand: { t: number; node: string; what: string; record: PersistEvent | null } | null = null;
    if (e.kind === 'persist' && e.force && e.ok && !participants.has(e.node)) {
      const [type, txn] = tokens(e.record);
      if ((type === 'commit' || type === 'abort') && txn !== undefined)
        cand = { t: e.t, node: e.node, what: type, record: e };
    } else if (e.kind === 'send') {
      const [type, txn] = tokens(e.msg);
      if ((type === 'COMMIT' || type === 'ABORT') && txn !== undefined)
        cand = { t: e.t, node: e.from, what: type.toLowerCase(), record: null };
    }
    if (cand === null) continue;
    const txn = txnOf(e)!;
    const had = decisions.get(txn);
    if (
      had === undefined ||
      cand.t < had.t ||
      (cand.t === had.t && cand.record !== null && had.record === null)
    )
      decisions.set(txn, cand);
  }
  for (const [txn, d] of decisions) {
    const x = xOf(d.node);
    const yv = axis.y(d.t);
    glyphs.push(
      `<line x1="${plotLeft}" y1="${n1(yv)}" x2="${plotRight}" y2="${n1(yv)}" class="decl"/>`,
      `<circle cx="${n1(x)}" cy="${n1(yv)}" r="10" class="dec"><title>${esc(`decision for ${txn}: ${d.what} at ${fmtTime(d.t)} ms`)}</title></circle>`,
    );
    placer.add({ x1: x - 11, y1: yv - 11, x2: x + 11, y2: yv + 11 });
    lateJobs.unshift(() => {
      const text = `${txn} decided: ${d.what}`;
      label(
        text,
        [
          { x: x - 14, y: yv - 6, anchor: 'end' },
          { x: x - 14, y: yv + 14, anchor: 'end' },
          { x: x + 14, y: yv - 8, anchor: 'start' },
          { x: x - 14, y: yv - 18, anchor: 'end' },
          { x: x + 14, y: yv + 16, anchor: 'start' },
        ],
        'dect h',
        11,
      );
    });
  }

  let arrowSeq = 0;
  /** The state dots already drawn on each lane, so that simultaneous ones sit side by side. */
  const dotsAt = new Map<string, number[]>();
  for (const e of events) {
    switch (e.kind) {
      case 'send': {
        const x1 = xOf(e.from);
        const x2 = xOf(e.to);
        const y1 = axis.y(e.t);
        const cls = msgClass(e.msg);
        const dropped = e.arrive === null;
        const lostAtNode = !dropped && isDownAt(e.to, e.arrive!);
        let ex: number;
        let ey: number;
        if (dropped) {
          ex = x1 + (x2 - x1) * 0.45;
          ey = y1 + messagePx * 0.45;
        } else {
          ex = x2;
          ey = axis.y(e.arrive!);
        }
        if (x1 === x2) ex = x1 + 30;
        const dir = Math.sign(ex - x1) || 1;
        const tip = dropped || lostAtNode ? 0 : 1.5;
        const tipX = ex - dir * tip;
        const tail = `${e.from} → ${e.to}: ${e.msg}, sent ${fmtTime(e.t)} ms, ${
          dropped
            ? 'lost in the network'
            : `arrived ${fmtTime(e.arrive!)} ms${lostAtNode ? ` while ${e.to} was down` : ''}`
        }${e.dup ? ' (duplicate)' : ''}`;
        const marker = dropped || lostAtNode ? '' : ` marker-end="url(#h-${cls})"`;
        const owner = ++arrowSeq;
        placer.addLine(x1, y1, ex, ey, owner);
        arrows.push(
          `<line x1="${n1(x1)}" y1="${n1(y1)}" x2="${n1(tipX)}" y2="${n1(ey)}" class="m m-${cls}${e.dup ? ' dup' : ''}"${marker}>` +
            `<title>${esc(tail)}</title></line>`,
        );
        if (dropped || lostAtNode) {
          glyphs.push(cross(ex, ey, 4.5, 'lost'));
          placer.add({ x1: ex - 5, y1: ey - 5, x2: ex + 5, y2: ey + 5 });
        }
        labelJobs.push(() => {
          const text = dropped || lostAtNode ? `${e.msg} (lost)` : e.dup ? `${e.msg} (dup)` : e.msg;
          const size = cls === 'app' ? 10 : 11;
          const fr = dropped ? [0.55, 0.35, 0.75, 0.2] : [0.5, 0.36, 0.64, 0.24, 0.76, 0.14, 0.86];
          const cands: TextCandidate[] = [];
          // Just above the arrow, just below it, then a little further off.
          for (const dy of [-4, size + 1, -4 - size, 2 * size + 2]) {
            for (const f of fr) {
              const px = x1 + (ex - x1) * f;
              const py = y1 + (ey - y1) * f;
              cands.push({ x: px, y: py + dy, anchor: 'middle' });
            }
          }
          label(text, cands, `ml-${cls}${dropped || lostAtNode ? ' mlost' : ''} h`, size, owner, true);
        });
        break;
      }
      case 'persist': {
        const x = xOf(e.node);
        const yv = axis.y(e.t);
        const cls = !e.ok ? 'rec-fail' : e.force ? 'rec-force' : 'rec-lazy';
        glyphs.push(
          `<rect x="${n1(x - 4)}" y="${n1(yv - 4)}" width="8" height="8" class="${cls}">` +
            `<title>${esc(`${e.node} ${e.force ? 'forced' : 'lazy'} write "${e.record}" ${e.ok ? 'durable' : 'FAILED'} at ${fmtTime(e.t)} ms`)}</title></rect>`,
        );
        placer.add({ x1: x - 5, y1: yv - 5, x2: x + 5, y2: yv + 5 });
        const dx = recordDx(e.node);
        labelJobs.unshift(() => {
          const text = e.ok ? e.record : `${e.record}: write failed`;
          label(
            text,
            [
              { x: x + dx, y: yv + 3.5, anchor: 'start' },
              { x: x + dx, y: yv + 14, anchor: 'start' },
              { x: x + dx, y: yv - 7, anchor: 'start' },
              { x: x - 15, y: yv + 3.5, anchor: 'end' },
              { x: x - 15, y: yv + 14, anchor: 'end' },
              { x: x - 15, y: yv - 7, anchor: 'end' },
              { x: x + dx, y: yv + 25, anchor: 'start' },
            ],
            e.ok ? 'rl h' : 'rl rlf h',
            10,
          );
        });
        break;
      }
      case 'rm': {
        const yv = axis.y(e.t);
        const taken = dotsAt.get(e.node) ?? [];
        const slot = taken.filter((y0) => Math.abs(y0 - yv) < 8).length;
        taken.push(yv);
        dotsAt.set(e.node, taken);
        const x = xOf(e.node) - 12 - 10 * slot;
        const st = (['working', 'prepared', 'committed', 'aborted', 'left'] as const).find(
          (s) => s === e.state,
        );
        glyphs.push(
          `<circle cx="${n1(x)}" cy="${n1(yv)}" r="${st === 'working' || st === 'left' ? 3.5 : 4.5}" class="rm-${st ?? 'other'}">` +
            `<title>${esc(`${e.node}: ${e.txn} ${e.state} at ${fmtTime(e.t)} ms`)}</title></circle>`,
        );
        placer.add({ x1: x - 5, y1: yv - 5, x2: x + 5, y2: yv + 5 });
        break;
      }
      case 'crash': {
        const x = xOf(e.node);
        const yv = axis.y(e.t);
        glyphs.push(cross(x, yv, 7, 'crash'));
        placer.add({ x1: x - 8, y1: yv - 8, x2: x + 8, y2: yv + 8 });
        const span = (down.get(e.node) ?? []).find(([from]) => from === e.t);
        const text =
          span !== undefined && Number.isFinite(span[1])
            ? `${e.node} crashes (down ${fmtDuration(span[1] - span[0])})`
            : `${e.node} crashes`;
        lateJobs.push(() =>
          label(
            text,
            [
              { x: x + 12, y: yv + 4, anchor: 'start' },
              { x: x - 12, y: yv + 4, anchor: 'end' },
              { x: x + 12, y: yv + 16, anchor: 'start' },
              { x: x - 12, y: yv + 16, anchor: 'end' },
            ],
            'crasht h',
            11,
          ),
        );
        break;
      }
      case 'restart': {
        const x = xOf(e.node);
        const yv = axis.y(e.t);
        glyphs.push(`<rect x="${n1(x - 9)}" y="${n1(yv - 2)}" width="18" height="4" class="restart"/>`);
        placer.add({ x1: x - 9, y1: yv - 3, x2: x + 9, y2: yv + 3 });
        lateJobs.push(() =>
          label(
            `${e.node} restarts`,
            [
              { x: x + 12, y: yv + 4, anchor: 'start' },
              { x: x - 12, y: yv + 4, anchor: 'end' },
              { x: x + 12, y: yv + 16, anchor: 'start' },
            ],
            'restartt h',
            11,
          ),
        );
        break;
      }
      case 'outcome': {
        const x = xOf(clientLane);
        const yv = axis.y(e.t);
        const cls = e.outcome === 'committed' ? 'committed' : e.outcome === 'aborted' ? 'aborted' : 'partial';
        glyphs.push(
          `<circle cx="${n1(x)}" cy="${n1(yv)}" r="5" class="out-${cls}"><title>${esc(`client told: ${e.txn} ${e.outcome}`)}</title></circle>`,
        );
        placer.add({ x1: x - 6, y1: yv - 6, x2: x + 6, y2: yv + 6 });
        lateJobs.push(() =>
          label(
            `${e.txn}: ${e.outcome}`,
            [
              { x: x + 10, y: yv + 4, anchor: 'start' },
              { x: x + 10, y: yv + 16, anchor: 'start' },
              { x: x - 10, y: yv + 4, anchor: 'end' },
              { x: x + 10, y: yv - 8, anchor: 'start' },
            ],
            `outt-${cls} h`,
            11,
          ),
        );
        break;
      }
      case 'lock':
        break;
    }
  }
  for (const job of lateJobs) job();
  for (const job of labelJobs) job();

  // Lock bar labels go last, where room is left.
  for (const e of locks) {
    const x = xOf(e.node) + 5 + 7 * (lockCol.get(e) ?? 0);
    const y1 = axis.y(e.heldFrom);
    const y2 = axis.y(e.t);
    if (y2 - y1 < 14) continue;
    // A bar that crosses a squeezed gap looks shorter than it is: say how long it was.
    const squeezed = points.some((p, i) => banded[i] === true && p >= e.heldFrom && p < e.t);
    label(
      squeezed ? `${e.txn} held ${fmtDuration(e.t - e.heldFrom)}` : e.txn,
      [
        { x: x + 7, y: y1 + 10, anchor: 'start' },
        { x: x + 7, y: y1 + 22, anchor: 'start' },
        { x: x + 7, y: (y1 + y2) / 2, anchor: 'start' },
      ],
      'lockt h',
      9,
      -1,
      true,
    );
  }

  if (labelsDropped > 0) {
    labels.push(
      `<text x="12" y="${n1(laneEnd + headerH + 16)}" class="cap">${esc(
        `${count(labelsDropped, 'message label')} left out where messages are too crowded ` +
          '(every arrow carries its message as a tooltip).',
      )}</text>`,
    );
  }
  if (sel.empty || events.length === 0) {
    labels.push(
      `<text x="${n1(width / 2)}" y="${n1(plotTop + 20)}" text-anchor="middle" class="cap">nothing to draw</text>`,
    );
  }

  const style = [
    `text{font-family:${font};font-size:11px;fill:#1e293b}`,
    '.title{font-size:15px;font-weight:bold}',
    '.cap{font-size:11.5px;fill:#475569}',
    '.h{paint-order:stroke;stroke:#fff;stroke-width:3px;stroke-linejoin:round}',
    '.axis{font-size:10px;fill:#64748b}',
    '.gap{font-size:10.5px;font-style:italic;fill:#475569}',
    '.grid{stroke:#e2e8f0;stroke-width:0.6}',
    `.band{fill:${colors.band};stroke:#cbd5e1;stroke-width:0.8;stroke-dasharray:3 3}`,
    '.brk{stroke:#64748b;stroke-width:1.2;fill:none}',
    '.note{fill:#fff;stroke:#64748b;stroke-width:0.8;stroke-dasharray:3 2}',
    '.notet{font-size:10.5px;fill:#334155}',
    `.lane{stroke:${colors.lane};stroke-width:1.5}`,
    '.hdr{fill:#1e293b}',
    '.hdrt{font-size:12px;font-weight:bold;fill:#fff}',
    '.down{fill:#dc2626;fill-opacity:0.13}',
    '.downl{stroke:#dc2626;stroke-width:1.5;stroke-dasharray:2 3}',
    `.lock{fill:${colors.lock};fill-opacity:0.55}`,
    '.lockt{font-size:9px;fill:#475569}',
    '.m{stroke-width:1.4;fill:none}',
    `.m-proto{stroke:${colors.proto}}.m-app{stroke:${colors.app}}.m-commit{stroke:${colors.commit}}.m-abort{stroke:${colors.abort}}`,
    '.dup{stroke-dasharray:6 3}',
    `.ml-proto{fill:${colors.proto}}.ml-app{fill:${colors.appText};font-size:10px}`,
    `.ml-commit{fill:${colors.commit};font-weight:bold}.ml-abort{fill:${colors.abort};font-weight:bold}`,
    '.mlost{font-style:italic}',
    `.lost{stroke:${colors.lost};stroke-width:2.2}`,
    `.crash{stroke:${colors.lost};stroke-width:3.2}`,
    `.crasht{fill:${colors.lost};font-weight:bold}`,
    `.restart{fill:${colors.restart}}.restartt{fill:${colors.restart};font-weight:bold}`,
    `.rec-force{fill:${colors.record}}.rec-lazy{fill:#fff;stroke:${colors.record};stroke-width:1.3}`,
    `.rec-fail{fill:${colors.failed}}`,
    '.rl{font-size:10px;fill:#334155}.rlf{fill:#dc2626;font-weight:bold}',
    `.rm-working,.rm-prepared,.rm-committed,.rm-aborted{stroke:#fff;stroke-width:1}.rm-working{fill:${colors.working}}.rm-prepared{fill:${colors.prepared}}`,
    `.rm-committed{fill:${colors.committed}}.rm-aborted{fill:${colors.aborted}}`,
    `.rm-left,.rm-other{fill:#fff;stroke:${colors.left};stroke-width:1.3}`,
    `.dec{fill:none;stroke:${colors.decision};stroke-width:2.4}`,
    `.decl{stroke:${colors.decision};stroke-width:0.8;stroke-dasharray:2 4;stroke-opacity:0.7}`,
    `.dect{fill:${colors.decision};font-weight:bold}`,
    `.out-committed{fill:${colors.committed}}.out-aborted{fill:${colors.aborted}}.out-partial{fill:#c2410c}`,
    `.outt-committed{fill:${colors.committed};font-weight:bold}.outt-aborted{fill:${colors.aborted};font-weight:bold}`,
    '.outt-partial{fill:#c2410c;font-weight:bold}',
  ].join('');
  const markers = (['proto', 'app', 'commit', 'abort'] as const)
    .map(
      (c) =>
        `<marker id="h-${c}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" ` +
        `markerUnits="userSpaceOnUse" orient="auto"><path d="M0,1L10,5L0,9z" fill="${colors[c]}"/></marker>`,
    )
    .join('');

  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<title>${esc(options.title)}</title>`,
    `<style>${style}</style>`,
    `<defs>${markers}</defs>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...head,
    ...grid,
    ...laneSvg,
    ...bands,
    ...shade,
    ...bars,
    ...arrows,
    ...glyphs,
    ...labels,
    '</svg>',
  ].join('\n');
}

function cross(x: number, y: number, r: number, cls: string): string {
  return `<path d="M${n1(x - r)} ${n1(y - r)}L${n1(x + r)} ${n1(y + r)}M${n1(x - r)} ${n1(y + r)}L${n1(x + r)} ${n1(y - r)}" class="${cls}"/>`;
}

function noteText(f: Fold): string {
  const byName = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });
  const froms = [...f.froms].sort(byName).join(', ');
  const tos = [...f.tos].sort(byName).join(', ');
  const every = f.period > 0 ? `, every ~${fmtDuration(f.period)}` : '';
  const lost = f.lost === 0 ? '' : f.lost === f.count ? ', all lost' : `, ${f.lost} lost`;
  return `⋮ ${f.count} more × ${f.msg} (${froms} → ${tos}${every}${lost}) not drawn`;
}

// ----------------------------------------------------------------- legend

interface LegendItem {
  glyph: string;
  label: string;
  explain: string;
}

const legendItems: LegendItem[] = [
  {
    glyph: `<line x1="0" y1="-4" x2="20" y2="4" stroke="${colors.proto}" stroke-width="1.6"/><path d="M20,4l-7,-0.6l2.2,-4.4z" fill="${colors.proto}"/>`,
    label: 'message',
    explain:
      'A protocol message, drawn from its sending to its arrival (COMMIT green, ABORT red); grey ones are client requests and replies.',
  },
  {
    glyph: `<line x1="0" y1="-4" x2="20" y2="4" stroke="${colors.proto}" stroke-width="1.6" stroke-dasharray="5 3"/>`,
    label: 'duplicate',
    explain: 'A second copy of a message the network delivered twice.',
  },
  {
    glyph: `<line x1="0" y1="-4" x2="12" y2="1" stroke="${colors.proto}" stroke-width="1.6"/>${cross(13, 1.5, 4, '').replace('class=""', `stroke="${colors.lost}" stroke-width="2.2"`)}`,
    label: 'lost',
    explain:
      'A message the network dropped (it stops halfway), or one that arrived while its receiver was down (✕ on the lane).',
  },
  {
    glyph: `<rect x="2" y="-4" width="8" height="8" fill="${colors.record}"/><rect x="13" y="-4" width="8" height="8" fill="#fff" stroke="${colors.record}" stroke-width="1.3"/>`,
    label: 'forced / lazy write',
    explain: 'A log record becoming durable: filled when forced (fsync), hollow when lazy.',
  },
  {
    glyph: `<rect x="6" y="-4" width="8" height="8" fill="${colors.failed}"/>`,
    label: 'failed write',
    explain: 'A forced write that failed; the protocol is told and the record is not durable.',
  },
  {
    glyph: `<circle cx="3" cy="0" r="3.5" fill="${colors.prepared}"/><circle cx="11" cy="0" r="3.5" fill="${colors.committed}"/><circle cx="19" cy="0" r="3.5" fill="${colors.aborted}"/>`,
    label: 'prepared / committed / aborted',
    explain: "A participant's state change (small grey dot: work done, not yet voted).",
  },
  {
    glyph: `<rect x="8" y="-8" width="5" height="16" fill="${colors.lock}" fill-opacity="0.55"/>`,
    label: 'locks held',
    explain: "Beside a participant's lane: from its first lock for the transaction until release.",
  },
  {
    glyph: `<rect x="6" y="-8" width="12" height="16" fill="#dc2626" fill-opacity="0.13"/>${cross(12, -3, 4, '').replace('class=""', `stroke="${colors.lost}" stroke-width="2.6"`)}<rect x="5" y="5" width="14" height="3" fill="${colors.restart}"/>`,
    label: 'crash / down / restart',
    explain: 'A node crash (red ✕), its downtime shaded, and its restart (green bar).',
  },
  {
    glyph: `<circle cx="11" cy="0" r="6.5" fill="none" stroke="${colors.decision}" stroke-width="2"/>`,
    label: 'decision',
    explain:
      "A transaction's decision point: the coordinator's forced commit record, or its first COMMIT/ABORT message.",
  },
  {
    glyph: `<rect x="0" y="-6" width="22" height="12" fill="${colors.band}" stroke="#cbd5e1" stroke-dasharray="3 3"/><path d="M6 1l5 -4M11 4l5 -4" stroke="#64748b" stroke-width="1.2"/>`,
    label: 'squeezed gap',
    explain:
      'A stretch of time in which nothing starts or ends, drawn short; its length is written on the time axis.',
  },
];

function drawLegend(x0: number, y0: number, maxW: number): { svg: string; bottom: number } {
  const parts: string[] = [];
  let x = x0;
  let y = y0;
  for (const item of legendItems) {
    const w = 28 + textWidth(item.label, 10.5) + 16;
    if (x + w > x0 + maxW && x > x0) {
      x = x0;
      y += 20;
    }
    parts.push(
      `<g transform="translate(${n1(x + 2)} ${n1(y)})">${item.glyph}</g>`,
      `<text x="${n1(x + 30)}" y="${n1(y + 4)}" class="axis" style="font-size:10.5px;fill:#334155">${esc(item.label)}</text>`,
    );
    x += w;
  }
  return { svg: parts.join('\n'), bottom: y + 10 };
}

// ---------------------------------------------------------------- helpers

function n1(v: number): string {
  return String(Math.round(v * 10) / 10);
}

function median(xs: number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function niceStep(minMs: number): number {
  const pow = 10 ** Math.floor(Math.log10(minMs));
  for (const m of [1, 2, 5, 10]) if (m * pow >= minMs) return m * pow;
  return 10 * pow;
}

function count(n: number, what: string): string {
  return `${n.toLocaleString('en-US')} ${what}${n === 1 ? '' : 's'}`;
}

/** A virtual time in ms, with as many decimals as are useful at its size. */
function fmtTime(t: number): string {
  const a = Math.abs(t);
  return a < 10 ? t.toFixed(2) : a < 1000 ? t.toFixed(1) : t.toFixed(0);
}

function fmtDuration(ms: number): string {
  if (ms < 0.995) return `${ms.toFixed(2)} ms`;
  if (ms < 9.95) return `${ms.toFixed(1)} ms`;
  if (ms < 999.5) return `${ms.toFixed(0)} ms`;
  if (ms < 59_950) return `${(ms / 1000).toFixed(ms < 9_995 ? 2 : 1)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

function wrap(text: string, maxW: number, size: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    const next = line === '' ? word : `${line} ${word}`;
    if (line !== '' && textWidth(next, size) > maxW) {
      out.push(line);
      line = word;
    } else line = next;
  }
  if (line !== '') out.push(line);
  return out;
}
