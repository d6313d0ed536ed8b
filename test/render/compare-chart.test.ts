// The `dtx compare` chart (src/render/compare-chart.ts): its left margin is
// computed from the row labels, so that no label runs off the picture.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compareChartLeftPx, renderCompareSvg } from '../../src/render/compare-chart.ts';
import { runCompare } from '../../src/sim/compare.ts';

// The widths DejaVu Sans Bold gives these labels at 12 px, read from the font
// file's advance widths: the estimate must never be narrower.
const boldWidthsPx: Record<string, number> = {
  naive: 36.7,
  '2pc': 24.1,
  'paxos-commit': 95.0,
  'paxos-commit colocated': 164.6,
  'faster paxos-commit': 139.4,
};

test('the left margin holds the widest row label, measured in the bold font', () => {
  for (const [text, widthPx] of Object.entries(boldWidthsPx)) {
    // The label ends 10 px left of the plot: it starts inside the picture.
    assert.ok(compareChartLeftPx([text]) - 10 - widthPx >= 0, text);
  }
  assert.ok(compareChartLeftPx(['2pc']) < compareChartLeftPx(['paxos-commit colocated']));
});

test('every row label of a real report starts inside the picture', () => {
  const report = runCompare({ txns: 20, swarmSeeds: 1 });
  const svg = renderCompareSvg(report);
  const left = compareChartLeftPx(report.rows.map((r) => r.protocol));
  for (const r of report.rows) {
    const m = svg.match(
      new RegExp(`<text x="([\\d.]+)"[^>]*text-anchor="end" font-weight="bold">${r.protocol}</text>`),
    );
    assert.ok(m, r.protocol);
    assert.equal(Number(m[1]), left - 10);
    assert.ok(Number(m[1]) >= (boldWidthsPx[r.protocol] ?? 0), r.protocol);
  }
});
