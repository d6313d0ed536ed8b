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
//
// This file lays the picture out and draws it, one function per section
// (header, time axis, lanes, downtimes, lock bars, decisions, messages,
// records, state dots, crashes, outcomes, labels), every section drawing
// into the layers of one Canvas. What is drawn is chosen in trace-window.ts;
// how it looks (colours, stylesheet, legend) is trace-style.ts.

import type { TraceEvent } from '../sim/commit-world.ts';
import { Placer, type TextCandidate, textBox } from './placer.ts';
import { esc, n1, textWidth, wrap } from './svg.ts';
import { cross, drawLegend, legendItems, traceMarkers, traceStyle } from './trace-style.ts';
import {
  clientLane,
  count,
  downtimes,
  type Fold,
  fmtDuration,
  fmtTime,
  type LockEvent,
  median,
  type PersistEvent,
  type SendEvent,
  select,
  type TraceRenderOptions,
  tokens,
  traceDefaults,
  txnOf,
} from './trace-window.ts';

export { type TraceRenderOptions, traceDefaults } from './trace-window.ts';

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

// ----------------------------------------------------------------- layout

const axisW = 92;
const rightPad = 118;
/** Height of the name boxes at the top and the bottom of each lane. */
const headerH = 24;
/** Vertical pixels the typical (median) message takes. */
const messagePx = 46;
/** Gaps longer than this many typical message times are squeezed into a band. */
const linearMaxMessages = 2.5;
const bandPx = 42;
const notePx = 20;
const maxLinearTotalPx = 24_000;

type MsgClass = 'proto' | 'app' | 'commit' | 'abort';

function msgClass(msg: string): MsgClass {
  const type = tokens(msg)[0] ?? '';
  if (type === 'COMMIT') return 'commit';
  if (type === 'ABORT') return 'abort';
  return /^[A-Z]/.test(type) ? 'proto' : 'app';
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

/** The time axis of a picture and where the fold notes go on it. */
interface TimeLayout {
  axis: TimeAxis;
  /** The linear scale, after it was shrunk to keep the picture under maxLinearTotalPx. */
  pxPerMs: number;
  /** Fold notes drawn inside the squeezed band that starts at the key time. */
  bandNotes: Map<number, Fold[]>;
  /** Fold notes drawn on a row of their own at the key time. */
  rowNotes: Map<number, Fold[]>;
  plotBottom: number;
}

/**
 * The layers of a picture, back to front, and what every section needs to
 * place things: the lanes' x, the time axis' y, and the label placer, which
 * all sections share so that labels avoid whatever was drawn before them.
 */
interface Canvas {
  readonly width: number;
  readonly lanes: readonly string[];
  readonly xOf: (node: string) => number;
  readonly axis: TimeAxis;
  readonly laneTop: number;
  readonly plotTop: number;
  readonly laneEnd: number;
  readonly plotLeft: number;
  readonly plotRight: number;
  readonly grid: string[];
  readonly bands: string[];
  readonly laneSvg: string[];
  readonly shade: string[];
  readonly bars: string[];
  readonly arrows: string[];
  readonly glyphs: string[];
  readonly labels: string[];
  readonly placer: Placer;
  /** Message labels given up where messages are too crowded; the footer says how many. */
  labelsDropped: number;
}

/**
 * Labels wait until every glyph is drawn, since glyphs are obstacles for
 * them: the late ones (decisions, crashes, restarts, outcomes) are placed
 * first, then message and record labels.
 */
interface LabelJobs {
  readonly late: Array<() => void>;
  readonly labels: Array<() => void>;
}

type StateEvent = Extract<TraceEvent, { kind: 'rm' }>;
type NodeEvent = Extract<TraceEvent, { kind: 'crash' | 'restart' }>;
type OutcomeEvent = Extract<TraceEvent, { kind: 'outcome' }>;
type Downtimes = Map<string, Array<[number, number]>>;

// ------------------------------------------------------------------- draw

function draw(trace: readonly TraceEvent[], options: TraceRenderOptions): string {
  const down = downtimes(trace);
  // A message arriving at the very instant of a crash was delivered: its step is the one that crashed.
  const isDownAt = (node: string, t: number) =>
    (down.get(node) ?? []).some(([from, until]) => t > from && t < until);
  const isLost = (s: SendEvent) => s.arrive === null || isDownAt(s.to, s.arrive);
  const sel = select(trace, options, isLost);
  const events = sel.events;

  const participants = new Set<string>();
  for (const e of trace) if (e.kind === 'rm' || e.kind === 'lock') participants.add(e.node);
  const lanes = laneOrder(events, sel.folds, participants);
  const width = Math.max(options.widthPx ?? traceDefaults.widthPx, axisW + rightPad + lanes.length * 90);
  const head = drawHeader(options.title, sel.caption, width);
  const plotTop = head.bottom + headerH + 18;
  const time = layoutTime(events, sel.folds, plotTop);
  const c = newCanvas(width, lanes, head.bottom, plotTop, time);

  drawTimeAxis(c, time);
  drawLanes(c);
  drawDowntimes(c, down);
  const locks = events.filter((e): e is LockEvent => e.kind === 'lock');
  const lockCol = drawLockBars(c, locks);
  const columnsOf = new Map<string, number>();
  for (const [e, col] of lockCol) columnsOf.set(e.node, Math.max(columnsOf.get(e.node) ?? 0, col + 1));
  const jobs: LabelJobs = { late: [], labels: [] };
  drawDecisions(c, decisionPoints(events, participants), jobs);
  let arrowSeq = 0;
  /** The state dots already drawn on each lane, so that simultaneous ones sit side by side. */
  const dotsAt = new Map<string, number[]>();
  for (const e of events) {
    switch (e.kind) {
      case 'send':
        drawMessage(c, e, ++arrowSeq, isDownAt, jobs);
        break;
      case 'persist':
        drawRecord(c, e, 10 + 7 * (columnsOf.get(e.node) ?? 0), jobs);
        break;
      case 'rm':
        drawStateDot(c, e, dotsAt);
        break;
      case 'crash':
        drawCrash(c, e, down, jobs);
        break;
      case 'restart':
        drawRestart(c, e, jobs);
        break;
      case 'outcome':
        drawOutcome(c, e, jobs);
        break;
      case 'read':
        drawRead(c, e, jobs);
        break;
      case 'lock':
        break;
    }
  }
  for (const job of jobs.late) job();
  for (const job of jobs.labels) job();
  labelLockBars(c, locks, lockCol);
  drawFooter(c, sel.empty || events.length === 0);
  return svgDocument(c, options.title, head.svg, time.plotBottom);
}

/** The lanes: the client, then the other non-participant nodes in order of appearance, then participants. */
function laneOrder(
  events: readonly TraceEvent[],
  folds: readonly Fold[],
  participants: Set<string>,
): string[] {
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
  for (const f of folds) for (const n of [...f.froms, ...f.tos]) see(n);
  return [
    ...seen.filter((n) => n === clientLane),
    ...seen.filter((n) => n !== clientLane && !participants.has(n)),
    ...seen.filter((n) => participants.has(n)).sort((a, b) => a.localeCompare(b, 'en', { numeric: true })),
  ];
}

function newCanvas(
  width: number,
  lanes: readonly string[],
  laneTop: number,
  plotTop: number,
  time: TimeLayout,
): Canvas {
  const laneGap = lanes.length === 0 ? 0 : (width - axisW - rightPad) / lanes.length;
  const laneX = new Map<string, number>();
  lanes.forEach((n, i) => {
    laneX.set(n, axisW + laneGap * (i + 0.5));
  });
  return {
    width,
    lanes,
    xOf: (n: string) => laneX.get(n) ?? axisW,
    axis: time.axis,
    laneTop,
    plotTop,
    laneEnd: time.plotBottom - 6,
    plotLeft: axisW - 8,
    plotRight: width - 12,
    grid: [],
    bands: [],
    laneSvg: [],
    shade: [],
    bars: [],
    arrows: [],
    glyphs: [],
    labels: [],
    placer: new Placer(),
    labelsDropped: 0,
  };
}

/** Title, caption and legend; `bottom` is where the lanes start. */
function drawHeader(
  title: string,
  caption: readonly string[],
  width: number,
): { svg: string[]; bottom: number } {
  const head: string[] = [];
  let y = 24;
  wrap(title, width - 24, 15).forEach((line, i) => {
    if (i > 0) y += 19;
    head.push(`<text x="12" y="${y}" class="title">${esc(line)}</text>`);
  });
  y += 8;
  for (const para of caption) {
    for (const line of wrap(para, width - 24, 11.5)) {
      y += 16;
      head.push(`<text x="12" y="${y}" class="cap">${esc(line)}</text>`);
    }
  }
  y += 14;
  const legend = drawLegend(12, y, width - 24);
  head.push(legend.svg);
  return { svg: head, bottom: legend.bottom + 10 };
}

/**
 * The time scale: fitted so that the typical message takes messagePx, every
 * gap longer than linearMaxMessages typical messages squeezed into a band,
 * and a row added wherever a fold note needs one.
 */
function layoutTime(events: readonly TraceEvent[], folds: readonly Fold[], plotTop: number): TimeLayout {
  const durations: number[] = [];
  for (const e of events)
    if (e.kind === 'send' && e.arrive !== null && e.arrive > e.t) durations.push(e.arrive - e.t);
  const typical = durations.length > 0 ? median(durations) : 0.5;
  let pxPerMs = Math.min(Math.max(messagePx / typical, 1e-4), 1e4);
  const linearMax = linearMaxMessages * typical;

  const pointSet = timePoints(events);
  let points = [...pointSet].sort((a, b) => a - b);
  const { bandNotes, rowNotes } = placeFoldNotes(folds, points, linearMax);
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
  return { axis, pxPerMs, bandNotes, rowNotes, plotBottom: (ys.at(-1) ?? plotTop) + 30 };
}

/** The instants something starts or ends; lock bars are clipped to the window of the other events. */
function timePoints(events: readonly TraceEvent[]): Set<number> {
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
  return pointSet;
}

/** Fold notes sit in the band that holds their first folded sending, or on a row of their own. */
function placeFoldNotes(
  folds: readonly Fold[],
  points: readonly number[],
  linearMax: number,
): { bandNotes: Map<number, Fold[]>; rowNotes: Map<number, Fold[]> } {
  const bandNotes = new Map<number, Fold[]>();
  const rowNotes = new Map<number, Fold[]>();
  const gapIndex = (t: number): number => {
    let i = 0;
    while (i + 1 < points.length && points[i + 1]! <= t) i++;
    return i;
  };
  for (const f of folds) {
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
  return { bandNotes, rowNotes };
}

/** Places `text` at the candidate that overlaps least; an optional message label may be given up. */
function label(
  c: Canvas,
  text: string,
  candidates: TextCandidate[],
  cls: string,
  size: number,
  owner = -1,
  optional = false,
): void {
  const i = c.placer.place(
    candidates.map((cand) => textBox(cand, text, size)),
    owner,
    optional,
  );
  if (i < 0) {
    if (owner >= 0) c.labelsDropped++;
    return;
  }
  const at = candidates[i]!;
  c.labels.push(
    `<text x="${n1(at.x)}" y="${n1(at.y)}"${at.anchor === 'start' ? '' : ` text-anchor="${at.anchor}"`} ` +
      `class="${cls}">${esc(text)}</text>`,
  );
}

/** Time axis: ticks in linear stretches, a band with the gap's length over each squeezed one. */
function drawTimeAxis(c: Canvas, time: TimeLayout): void {
  const { axis, pxPerMs } = time;
  const { points, ys, banded } = axis;
  const tickStep = niceStep(56 / pxPerMs);
  const decimals = Math.max(0, -Math.floor(Math.log10(tickStep) + 1e-9));
  c.grid.push(
    `<text x="${axisW - 14}" y="${c.plotTop - 14}" text-anchor="end" class="axis">time (ms)</text>`,
  );
  let runStart = 0;
  const lastLabelY = { y: Number.NEGATIVE_INFINITY };
  const tickLabel = (t: number, yv: number, exact: boolean) => {
    if (yv - lastLabelY.y < 14) return;
    lastLabelY.y = yv;
    const text = exact ? fmtTime(t) : t.toFixed(decimals);
    c.grid.push(
      `<text x="${axisW - 14}" y="${n1(yv + 3.5)}" text-anchor="end" class="axis">${esc(text)}</text>`,
      `<line x1="${axisW - 10}" y1="${n1(yv)}" x2="${c.plotRight}" y2="${n1(yv)}" class="grid"/>`,
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
    drawBand(c, ys[i]!, ys[i + 1]!, points[i + 1]! - points[i]!, time.bandNotes.get(points[i]!) ?? []);
  }
  flushRun(points.length - 1);
  for (const [t, notes] of time.rowNotes) {
    const yv = axis.y(t);
    notes.forEach((f, k) => {
      drawFoldNote(c, f, yv + 3 + notePx * k);
    });
  }
}

/** A squeezed gap from `ya` to `yb`: the grey band, its length on the axis, `//` marks on every lane. */
function drawBand(c: Canvas, ya: number, yb: number, gap: number, notes: readonly Fold[]): void {
  const mid = (ya + yb) / 2;
  c.bands.push(
    `<rect x="${c.plotLeft}" y="${n1(ya + 5)}" width="${n1(c.plotRight - c.plotLeft)}" height="${n1(yb - ya - 10)}" class="band"/>`,
    `<text x="${axisW - 14}" y="${n1(mid + 4)}" text-anchor="end" class="gap">+${esc(fmtDuration(gap))}</text>`,
    `<path d="M${axisW - 10} ${n1(mid - 2)}l8 -5M${axisW - 10} ${n1(mid + 4)}l8 -5" class="brk"/>`,
  );
  for (const n of c.lanes) {
    const x = c.xOf(n);
    c.bands.push(
      `<path d="M${n1(x - 6)} ${n1(mid - 1)}l12 -6M${n1(x - 6)} ${n1(mid + 5)}l12 -6" class="brk"/>`,
    );
  }
  notes.forEach((f, k) => {
    const ny =
      ya + 21 + notePx * (k - (notes.length - 1) / 2) + (yb - ya - bandPx - notePx * notes.length) / 2;
    drawFoldNote(c, f, ny + notePx / 2 - 10);
  });
}

/** The dashed note standing for a folded run of repeated messages, centred between its lanes. */
function drawFoldNote(c: Canvas, f: Fold, top: number): void {
  const xs = [...f.froms, ...f.tos].map(c.xOf);
  const cx = (Math.min(...xs) + Math.max(...xs)) / 2;
  const text = noteText(f);
  const w = textWidth(text, 10.5) + 14;
  const x = Math.min(Math.max(cx - w / 2, c.plotLeft + 2), c.plotRight - w - 2);
  c.bands.push(
    `<rect x="${n1(x)}" y="${n1(top)}" width="${n1(w)}" height="17" rx="4" class="note"/>`,
    `<text x="${n1(x + 7)}" y="${n1(top + 12.5)}" class="notet">${esc(text)}</text>`,
  );
  c.placer.add({ x1: x, y1: top, x2: x + w, y2: top + 17 });
}

function noteText(f: Fold): string {
  const byName = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });
  const froms = [...f.froms].sort(byName).join(', ');
  const tos = [...f.tos].sort(byName).join(', ');
  const every = f.period > 0 ? `, every ~${fmtDuration(f.period)}` : '';
  const lost = f.lost === 0 ? '' : f.lost === f.count ? ', all lost' : `, ${f.lost} lost`;
  return `⋮ ${f.count} more × ${f.msg} (${froms} → ${tos}${every}${lost}) not drawn`;
}

function niceStep(minMs: number): number {
  const pow = 10 ** Math.floor(Math.log10(minMs));
  for (const m of [1, 2, 5, 10]) if (m * pow >= minMs) return m * pow;
  return 10 * pow;
}

/** Lanes: a header box at the top and the bottom, a line between. */
function drawLanes(c: Canvas): void {
  for (const n of c.lanes) {
    const x = c.xOf(n);
    const w = Math.max(46, textWidth(n, 12) + 16);
    c.laneSvg.push(
      `<line x1="${n1(x)}" y1="${c.laneTop + headerH}" x2="${n1(x)}" y2="${n1(c.laneEnd)}" class="lane"/>`,
    );
    for (const top of [c.laneTop, c.laneEnd]) {
      c.laneSvg.push(
        `<rect x="${n1(x - w / 2)}" y="${n1(top)}" width="${n1(w)}" height="${headerH}" rx="4" class="hdr"/>`,
        `<text x="${n1(x)}" y="${n1(top + 16.5)}" text-anchor="middle" class="hdrt">${esc(n)}</text>`,
      );
    }
  }
}

/** Downtime shading (from the whole trace, clipped to the window). */
function drawDowntimes(c: Canvas, down: Downtimes): void {
  const shownLo = c.axis.points[0] ?? 0;
  const shownHi = c.axis.points.at(-1) ?? 0;
  for (const n of c.lanes) {
    for (const [from, until] of down.get(n) ?? []) {
      if (until < shownLo || from > shownHi) continue;
      const y1 = c.axis.y(Math.max(from, shownLo));
      const y2 = Number.isFinite(until) && until <= shownHi ? c.axis.y(until) : c.laneEnd;
      const x = c.xOf(n);
      c.shade.push(
        `<rect x="${n1(x - 9)}" y="${n1(y1)}" width="18" height="${n1(Math.max(y2 - y1, 1))}" class="down">` +
          `<title>${esc(`${n} down ${fmtTime(from)} → ${Number.isFinite(until) ? `${fmtTime(until)} ms` : 'the end'}`)}</title></rect>`,
        `<line x1="${n1(x)}" y1="${n1(y1)}" x2="${n1(x)}" y2="${n1(y2)}" class="downl"/>`,
      );
    }
  }
}

/**
 * Lock bars, stacked in columns when a participant holds several
 * transactions' locks at once. Returns each bar's column.
 */
function drawLockBars(c: Canvas, locks: readonly LockEvent[]): Map<LockEvent, number> {
  const lockCol = new Map<LockEvent, number>();
  const ends = new Map<string, number[]>();
  for (const e of [...locks].sort((a, b) => a.heldFrom - b.heldFrom)) {
    const cols = ends.get(e.node) ?? [];
    let col = cols.findIndex((end) => end <= e.heldFrom + 1e-6);
    if (col < 0) col = cols.length;
    cols[col] = e.t;
    ends.set(e.node, cols);
    lockCol.set(e, col);
  }
  for (const e of locks) {
    const x = c.xOf(e.node) + 5 + 7 * (lockCol.get(e) ?? 0);
    const y1 = c.axis.y(e.heldFrom);
    const y2 = c.axis.y(e.t);
    c.bars.push(
      `<rect x="${n1(x)}" y="${n1(y1)}" width="5" height="${n1(Math.max(y2 - y1, 1.5))}" class="lock">` +
        `<title>${esc(`${e.node} holds ${e.txn}'s locks ${fmtTime(e.heldFrom)} → ${fmtTime(e.t)} ms (${fmtDuration(e.t - e.heldFrom)})`)}</title></rect>`,
    );
    c.placer.add({ x1: x, y1, x2: x + 5, y2: Math.max(y2, y1 + 1.5) });
  }
  return lockCol;
}

/** Lock bar labels go last, where room is left. */
function labelLockBars(c: Canvas, locks: readonly LockEvent[], lockCol: Map<LockEvent, number>): void {
  const { points, banded } = c.axis;
  for (const e of locks) {
    const x = c.xOf(e.node) + 5 + 7 * (lockCol.get(e) ?? 0);
    const y1 = c.axis.y(e.heldFrom);
    const y2 = c.axis.y(e.t);
    if (y2 - y1 < 14) continue;
    // A bar that crosses a squeezed gap looks shorter than it is: say how long it was.
    const squeezed = points.some((p, i) => banded[i] === true && p >= e.heldFrom && p < e.t);
    label(
      c,
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
}

interface Decision {
  t: number;
  node: string;
  what: string;
  record: PersistEvent | null;
}

/** Decision points: a coordinator's forced commit/abort record, else the first COMMIT/ABORT message. */
function decisionPoints(events: readonly TraceEvent[], participants: Set<string>): Map<string, Decision> {
  const decisions = new Map<string, Decision>();
  for (const e of events) {
    let cand: Decision | null = null;
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
  return decisions;
}

/** A purple ring at each decision point and a dotted line across the picture. */
function drawDecisions(c: Canvas, decisions: Map<string, Decision>, jobs: LabelJobs): void {
  for (const [txn, d] of decisions) {
    const x = c.xOf(d.node);
    const yv = c.axis.y(d.t);
    c.glyphs.push(
      `<line x1="${c.plotLeft}" y1="${n1(yv)}" x2="${c.plotRight}" y2="${n1(yv)}" class="decl"/>`,
      `<circle cx="${n1(x)}" cy="${n1(yv)}" r="10" class="dec"><title>${esc(`decision for ${txn}: ${d.what} at ${fmtTime(d.t)} ms`)}</title></circle>`,
    );
    c.placer.add({ x1: x - 11, y1: yv - 11, x2: x + 11, y2: yv + 11 });
    jobs.late.unshift(() => {
      const text = `${txn} decided: ${d.what}`;
      label(
        c,
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
}

/**
 * A message: an arrow from its sending to its arrival, stopping halfway in a
 * ✕ when the network lost it, ending in a ✕ on the lane when its receiver was
 * down. `owner` identifies the arrow, so that its own label may sit on it.
 */
function drawMessage(
  c: Canvas,
  e: SendEvent,
  owner: number,
  isDownAt: (node: string, t: number) => boolean,
  jobs: LabelJobs,
): void {
  const x1 = c.xOf(e.from);
  const x2 = c.xOf(e.to);
  const y1 = c.axis.y(e.t);
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
    ey = c.axis.y(e.arrive!);
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
  c.placer.addLine(x1, y1, ex, ey, owner);
  c.arrows.push(
    `<line x1="${n1(x1)}" y1="${n1(y1)}" x2="${n1(tipX)}" y2="${n1(ey)}" class="m m-${cls}${e.dup ? ' dup' : ''}"${marker}>` +
      `<title>${esc(tail)}</title></line>`,
  );
  if (dropped || lostAtNode) {
    c.glyphs.push(cross(ex, ey, 4.5, 'lost'));
    c.placer.add({ x1: ex - 5, y1: ey - 5, x2: ex + 5, y2: ey + 5 });
  }
  jobs.labels.push(() => {
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
    label(c, text, cands, `ml-${cls}${dropped || lostAtNode ? ' mlost' : ''} h`, size, owner, true);
  });
}

/** A log record becoming durable (or failing): a square on the lane, labelled `dx` px to its right. */
function drawRecord(c: Canvas, e: PersistEvent, dx: number, jobs: LabelJobs): void {
  const x = c.xOf(e.node);
  const yv = c.axis.y(e.t);
  const cls = !e.ok ? 'rec-fail' : e.force ? 'rec-force' : 'rec-lazy';
  c.glyphs.push(
    `<rect x="${n1(x - 4)}" y="${n1(yv - 4)}" width="8" height="8" class="${cls}">` +
      `<title>${esc(`${e.node} ${e.force ? 'forced' : 'lazy'} write "${e.record}" ${e.ok ? 'durable' : 'FAILED'} at ${fmtTime(e.t)} ms`)}</title></rect>`,
  );
  c.placer.add({ x1: x - 5, y1: yv - 5, x2: x + 5, y2: yv + 5 });
  jobs.labels.unshift(() => {
    const text = e.ok ? e.record : `${e.record}: write failed`;
    label(
      c,
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
}

/** A participant's state change: a dot left of its lane, simultaneous ones side by side. */
function drawStateDot(c: Canvas, e: StateEvent, dotsAt: Map<string, number[]>): void {
  const yv = c.axis.y(e.t);
  const taken = dotsAt.get(e.node) ?? [];
  const slot = taken.filter((y0) => Math.abs(y0 - yv) < 8).length;
  taken.push(yv);
  dotsAt.set(e.node, taken);
  const x = c.xOf(e.node) - 12 - 10 * slot;
  const st = (['working', 'prepared', 'committed', 'aborted', 'left'] as const).find((s) => s === e.state);
  c.glyphs.push(
    `<circle cx="${n1(x)}" cy="${n1(yv)}" r="${st === 'working' || st === 'left' ? 3.5 : 4.5}" class="rm-${st ?? 'other'}">` +
      `<title>${esc(`${e.node}: ${e.txn} ${e.state} at ${fmtTime(e.t)} ms`)}</title></circle>`,
  );
  c.placer.add({ x1: x - 5, y1: yv - 5, x2: x + 5, y2: yv + 5 });
}

/** A crash: a red ✕ on the lane, labelled with how long the node stayed down. */
function drawCrash(c: Canvas, e: NodeEvent, down: Downtimes, jobs: LabelJobs): void {
  const x = c.xOf(e.node);
  const yv = c.axis.y(e.t);
  c.glyphs.push(cross(x, yv, 7, 'crash'));
  c.placer.add({ x1: x - 8, y1: yv - 8, x2: x + 8, y2: yv + 8 });
  const span = (down.get(e.node) ?? []).find(([from]) => from === e.t);
  const text =
    span !== undefined && Number.isFinite(span[1])
      ? `${e.node} crashes (down ${fmtDuration(span[1] - span[0])})`
      : `${e.node} crashes`;
  besideLane(c, jobs, x, yv, 12, text, 'crasht h');
}

/** A label beside a lane at `yv`: right or left of it, on the line or just below. */
function besideLane(
  c: Canvas,
  jobs: LabelJobs,
  x: number,
  yv: number,
  dx: number,
  text: string,
  cls: string,
): void {
  jobs.late.push(() =>
    label(
      c,
      text,
      [
        { x: x + dx, y: yv + 4, anchor: 'start' },
        { x: x - dx, y: yv + 4, anchor: 'end' },
        { x: x + dx, y: yv + 16, anchor: 'start' },
        { x: x - dx, y: yv + 16, anchor: 'end' },
      ],
      cls,
      11,
    ),
  );
}

/** A restart: a green bar across the lane. */
function drawRestart(c: Canvas, e: NodeEvent, jobs: LabelJobs): void {
  const x = c.xOf(e.node);
  const yv = c.axis.y(e.t);
  c.glyphs.push(`<rect x="${n1(x - 9)}" y="${n1(yv - 2)}" width="18" height="4" class="restart"/>`);
  c.placer.add({ x1: x - 9, y1: yv - 3, x2: x + 9, y2: yv + 3 });
  jobs.late.push(() =>
    label(
      c,
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
}

/** What the client was told: a coloured dot on the client lane. */
function drawOutcome(c: Canvas, e: OutcomeEvent, jobs: LabelJobs): void {
  const x = c.xOf(clientLane);
  const yv = c.axis.y(e.t);
  const cls = e.outcome === 'committed' ? 'committed' : e.outcome === 'aborted' ? 'aborted' : 'partial';
  c.glyphs.push(
    `<circle cx="${n1(x)}" cy="${n1(yv)}" r="5" class="out-${cls}"><title>${esc(`client told: ${e.txn} ${e.outcome}`)}</title></circle>`,
  );
  c.placer.add({ x1: x - 6, y1: yv - 6, x2: x + 6, y2: yv + 6 });
  jobs.late.push(() =>
    label(
      c,
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
}

/** What a transaction read at a participant (or its snapshot there): a small diamond and the values. */
function drawRead(c: Canvas, e: Extract<TraceEvent, { kind: 'read' }>, jobs: LabelJobs): void {
  const x = c.xOf(e.node);
  const yv = c.axis.y(e.t);
  c.glyphs.push(
    `<path d="M${n1(x)} ${n1(yv - 5)} l5 5 l-5 5 l-5 -5 z" class="out-partial"><title>${esc(`${e.txn} read at ${e.node}: ${e.values}`)}</title></path>`,
  );
  c.placer.add({ x1: x - 6, y1: yv - 6, x2: x + 6, y2: yv + 6 });
  besideLane(c, jobs, x, yv, 10, `${e.txn} read ${e.values}`, 'outt-partial h');
}

/** The notes under the picture: labels left out for lack of room, or that there was nothing to draw. */
function drawFooter(c: Canvas, nothing: boolean): void {
  if (c.labelsDropped > 0) {
    c.labels.push(
      `<text x="12" y="${n1(c.laneEnd + headerH + 16)}" class="cap">${esc(
        `${count(c.labelsDropped, 'message label')} left out where messages are too crowded ` +
          '(every arrow carries its message as a tooltip).',
      )}</text>`,
    );
  }
  if (nothing) {
    c.labels.push(
      `<text x="${n1(c.width / 2)}" y="${n1(c.plotTop + 20)}" text-anchor="middle" class="cap">nothing to draw</text>`,
    );
  }
}

/** The SVG element: stylesheet, arrow heads, background, then the layers back to front. */
function svgDocument(c: Canvas, title: string, head: readonly string[], plotBottom: number): string {
  const { width } = c;
  const height = Math.ceil(plotBottom + headerH + 28);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">`,
    `<title>${esc(title)}</title>`,
    `<style>${traceStyle}</style>`,
    `<defs>${traceMarkers}</defs>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    ...head,
    ...c.grid,
    ...c.laneSvg,
    ...c.bands,
    ...c.shade,
    ...c.bars,
    ...c.arrows,
    ...c.glyphs,
    ...c.labels,
    '</svg>',
  ].join('\n');
}
