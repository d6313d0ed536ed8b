// How a trace diagram looks: its font, colours, stylesheet, arrow heads and
// legend. Kept apart from the drawing so that the drawing reads as geometry,
// and so that a page embedding the pictures (the HTML trace, a dashboard) can
// show the same legend. Pure: no I/O.

import { esc, n1, textWidth } from './svg.ts';

/** The font the pictures ask for first; textWidth estimates its widths. */
const font = "'DejaVu Sans',Verdana,'Helvetica Neue',Arial,sans-serif";

/** One colour per meaning; the stylesheet, the arrow heads and the legend take theirs from here. */
export const colors = {
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

/** The stylesheet of a trace picture: every class the drawing uses. */
export const traceStyle = [
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
/** Arrow heads, one per message class, coloured like their arrows. */
export const traceMarkers = (['proto', 'app', 'commit', 'abort'] as const)
  .map(
    (c) =>
      `<marker id="h-${c}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" ` +
      `markerUnits="userSpaceOnUse" orient="auto"><path d="M0,1L10,5L0,9z" fill="${colors[c]}"/></marker>`,
  )
  .join('');

/** A ✕ of radius `r`: a crash, or a lost message. */
export function cross(x: number, y: number, r: number, cls: string): string {
  return `<path d="M${n1(x - r)} ${n1(y - r)}L${n1(x + r)} ${n1(y + r)}M${n1(x - r)} ${n1(y + r)}L${n1(x + r)} ${n1(y - r)}" class="${cls}"/>`;
}

// ----------------------------------------------------------------- legend

export interface LegendItem {
  glyph: string;
  label: string;
  explain: string;
}

/** What each mark means: drawn compactly in the SVG, explained in full in the HTML page. */
export const legendItems: LegendItem[] = [
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

/** The compact legend under the caption, wrapped to `maxW`; returns where it ends. */
export function drawLegend(x0: number, y0: number, maxW: number): { svg: string; bottom: number } {
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
