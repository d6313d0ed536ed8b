// Gray & Lamport 2006, section 4.3 ("The Cost of Paxos Commit"): the normal
// case's message and write counts, against what the simulator actually sends
// and forces (src/sim/paper-costs.ts). Where dtx's placement is the paper's,
// the counts must be the paper's; everywhere, they must be the per-kind
// derivation that `dtx compare` prints as its explanation.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { paperCostRow, paperCostRows } from '../../src/sim/paper-costs.ts';

const rows = paperCostRows();

test('the grid: N = 3 and 5, F = 1 and 2, separate, co-located and faster; every transaction committed, nothing retransmitted', () => {
  assert.equal(rows.length, 12);
  for (const r of rows) {
    const at = `${r.placement} N=${r.rms} F=${r.F}`;
    assert.equal(r.measured.committed, 12, at);
    assert.equal(r.measured.otherMessages, 0, at);
    assert.ok(
      r.matchesDerivation,
      `${at}: measured ${JSON.stringify(r.measured)} vs derived ${JSON.stringify(r.dtx)}`,
    );
  }
});

test('paper: each RM sends its vote to F+1 acceptors, N(F+1) phase 2a messages, whatever the placement of the leader', () => {
  for (const r of rows.filter((x) => x.placement !== 'colocated')) {
    assert.equal(r.measured.byKind.phase2a, r.rms * (r.F + 1), `${r.placement} N=${r.rms} F=${r.F}`);
    assert.equal(r.measured.byKind.phase2a, r.paper.byKind.phase2a);
  }
  // Co-located, the paper's acceptors share the RMs' nodes; dtx's have their own, so none of the N(F+1) stays local.
  for (const r of rows.filter((x) => x.placement === 'colocated'))
    assert.equal(r.measured.byKind.phase2a, r.rms * (r.F + 1));
});

test('paper: (N+1)(F+3)-2 messages per commit with the leader apart from the RMs, measured exactly', () => {
  for (const r of rows.filter((x) => x.placement === 'separate')) {
    assert.equal(r.paper.messages, (r.rms + 1) * (r.F + 3) - 2);
    assert.equal(r.measured.messages, r.paper.messages, `N=${r.rms} F=${r.F}`);
    assert.ok(r.agrees.messages);
  }
  // N = 5, F = 1: the paper's example numbers hold for its co-located count.
  const c = rows.find((x) => x.placement === 'colocated' && x.rms === 5 && x.F === 1)!;
  assert.equal(c.paper.messages, 17);
});

test('forced writes: the paper counts N+F+1; a dtx acceptor forces one record per instance, so N + N(F+1), and says why', () => {
  for (const r of rows) {
    assert.equal(r.paper.forcedWrites, r.rms + r.F + 1);
    assert.equal(r.measured.forcedWrites, r.rms + r.rms * (r.F + 1));
    assert.equal(r.measured.forcedWritesAfter, r.rms, 'each RM forces its committed record');
    assert.ok(!r.agrees.forcedWrites);
    assert.ok(r.differences.some((d) => d.startsWith('forced writes:')));
  }
});

test('with every vote sent to all 2F+1 acceptors the count leaves the paper: F more phase 2a per RM', () => {
  const quorum = paperCostRow(3, 1, 'separate', 'quorum');
  const all = paperCostRow(3, 1, 'separate', 'all');
  assert.ok(all.matchesDerivation);
  assert.equal(all.measured.byKind.phase2a - quorum.measured.byKind.phase2a, 3 * 1);
  assert.ok(!all.agrees.messages);
  assert.ok(all.differences.some((d) => d.startsWith('phase2a:')));
});
