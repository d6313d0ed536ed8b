// The chart of `dtx compare`: commit latency per protocol, healthy and with
// the coordinator crashed — log-scaled, because the interesting differences
// span milliseconds to tens of seconds. Pure: it draws a CompareReport the
// simulator measured and does no I/O.

import type { CompareReport, CompareRow } from '../sim/compare.ts';
import type { Summary } from '../sim/stats.ts';
import { esc, textWidth } from './svg.ts';

/** A duration as the compare table and chart print it: `3.57 ms`, `112 ms`, `30.1 s`. */
export function formatMs(x: number): string {
  return x >= 1000 ? `${(x / 1000).toFixed(1)} s` : `${x.toFixed(x < 10 ? 2 : 0)} ms`;
}

/** The chart's text size; the row labels are bold. */
const fontPx = 12;
/**
 * textWidth estimates DejaVu Sans regular; bold glyphs are wider. DejaVu Sans
 * Bold, what `sans-serif` is on most Linux systems and the widest of the
 * usual sans-serif fonts, runs 10-15% wider, so this factor keeps the
 * estimate at or above the real width: "paxos-commit colocated" is 164.6 px
 * in DejaVu Sans Bold at 12 px, estimated 181.3 px.
 */
const boldWidthFactor = 1.15;
/** Room left of the widest row label, and between the labels and the plot. */
const labelPadPx = 12;
const labelGapPx = 10;

/**
 * The left margin: wide enough for the widest row label, so that a long
 * protocol label ("paxos-commit colocated") is not cut at the picture's edge.
 */
export function compareChartLeftPx(labels: readonly string[]): number {
  const widest = Math.max(0, ...labels.map((l) => textWidth(l, fontPx) * boldWidthFactor));
  return Math.ceil(labelPadPx + widest + labelGapPx);
}

/** Latency chart: for each protocol, healthy commit latency and, on a crash, how long participants stayed in doubt. */
export function renderCompareSvg(report: CompareReport): string {
  const width = 900;
  const rowH = 56;
  const left = compareChartLeftPx(report.rows.map((r) => r.protocol));
  const right = 30;
  const top = 70;
  const height = top + report.rows.length * rowH + 60;
  const values = report.rows.flatMap((r) => [
    r.healthy.latencyMs.max,
    r.coordinatorFailure.inDoubtMs.max,
    0.1,
  ]);
  const lo = 0.1;
  const hi = Math.max(...values) * 1.5;
  const x = (v: number) =>
    left +
    ((Math.log10(Math.max(v, lo)) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) *
      (width - left - right);
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="${fontPx}">`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${left}" y="22" font-size="15" font-weight="bold">Commit latency, healthy, and time in doubt when the coordinator crashes</text>`,
    `<text x="${left}" y="40" fill="#555">${esc(
      `N=${report.options.participants}, RTT ${report.options.rttMs} ms, fsync ${report.options.fsyncMs} ms, coordinator down ${report.options.takeoverMs} ms. Bars: p50 to max; tick: p99. Log scale.`,
    )}</text>`,
  );
  for (let e = Math.ceil(Math.log10(lo)); e <= Math.floor(Math.log10(hi)); e++) {
    const v = 10 ** e;
    const xv = x(v);
    out.push(
      `<line x1="${xv}" y1="${top - 10}" x2="${xv}" y2="${height - 50}" stroke="#ddd"/>`,
      `<text x="${xv}" y="${height - 34}" text-anchor="middle" fill="#555">${esc(formatMs(v))}</text>`,
    );
  }
  const bar = (y: number, s: Summary, color: string, label: string) => {
    if (s.max === 0) {
      out.push(`<text x="${left + 4}" y="${y + 11}" fill="#888">${esc(`${label}: none`)}</text>`);
      return;
    }
    const x1 = x(s.p50);
    const x2 = Math.max(x(s.max), x1 + 2);
    out.push(
      `<rect x="${x1}" y="${y}" width="${x2 - x1}" height="14" fill="${color}" opacity="0.8"><title>${esc(
        `${label}: p50 ${formatMs(s.p50)}, p99 ${formatMs(s.p99)}, max ${formatMs(s.max)}`,
      )}</title></rect>`,
      `<line x1="${x(s.p99)}" y1="${y - 2}" x2="${x(s.p99)}" y2="${y + 16}" stroke="#000"/>`,
      // A label that would run off the chart goes inside its bar instead.
      x2 + 230 > width
        ? `<text x="${x1 + 6}" y="${y + 11}" fill="#fff">${esc(`${label} ${formatMs(s.p50)}–${formatMs(s.max)}`)}</text>`
        : `<text x="${x2 + 4}" y="${y + 11}" fill="#333">${esc(`${label} ${formatMs(s.p50)}–${formatMs(s.max)}`)}</text>`,
    );
  };
  report.rows.forEach((r: CompareRow, i) => {
    const y = top + i * rowH;
    out.push(
      `<text x="${left - labelGapPx}" y="${y + 22}" text-anchor="end" font-weight="bold">${esc(r.protocol)}</text>`,
    );
    bar(y, r.healthy.latencyMs, '#3a7bd5', 'commit');
    bar(y + 20, r.coordinatorFailure.inDoubtMs, '#d9534f', 'in doubt on crash');
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
