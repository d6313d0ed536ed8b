// The dashboard's pure parts: the phase vocabulary (above all, that "every
// participant voted yes" without a durable decision is never shown as
// committed), the timeline built from records and calls, and the bounded
// journal of branch calls.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CallJournal, callJournalLimits } from '../../src/server/calls.ts';
import {
  phase,
  phaseKeys,
  phaseOf,
  type TwoPcProgress,
  twoPcPhase,
  twoPcProgressOf,
} from '../../src/server/phases.ts';
import { recordLabel, serverLane, timelineEvents, timelineSvg } from '../../src/server/timeline.ts';

const progress = (p: Partial<TwoPcProgress>): TwoPcProgress => ({
  participants: 3,
  votedYes: 0,
  votedNo: 0,
  decision: null,
  decisionDurable: false,
  acknowledged: 0,
  ...p,
});

test('all voted yes without a durable decision is not committed, and its label does not say commit', () => {
  for (const p of [
    progress({ votedYes: 3 }),
    // A decision taken but not yet forced to the log is no decision: a crash forgets it.
    progress({ votedYes: 3, decision: 'commit', decisionDurable: false }),
  ]) {
    const ph = twoPcPhase(p);
    assert.equal(ph.key, 'all-voted-yes');
    assert.equal(ph.committed, false);
    assert.equal(ph.ended, false);
    assert.doesNotMatch(ph.label, /commit/i);
    assert.match(ph.explain, /NOT committed/);
    assert.equal(ph.attention, 'in-doubt');
  }
  assert.equal(phaseOf({ type: '2pc', state: 'running', twoPc: progress({ votedYes: 3 }) }).committed, false);
});

test('2PC phases follow votes, the durable decision and the acknowledgements', () => {
  assert.equal(twoPcPhase(progress({ votedYes: 2 })).key, 'preparing');
  assert.equal(twoPcPhase(progress({ votedYes: 2, votedNo: 1 })).key, 'preparing');
  const decided = twoPcPhase(progress({ votedYes: 3, decision: 'commit', decisionDurable: true }));
  assert.equal(decided.key, 'decided');
  assert.equal(decided.committed, true);
  assert.equal(decided.ended, false);
  const applying = twoPcPhase(
    progress({ votedYes: 3, decision: 'commit', decisionDurable: true, acknowledged: 1 }),
  );
  assert.equal(applying.key, 'applying');
  assert.equal(applying.attention, 'in-doubt');
  const done = twoPcPhase(
    progress({ votedYes: 3, decision: 'commit', decisionDurable: true, acknowledged: 3 }),
  );
  assert.equal(done.key, 'acknowledged');
  assert.equal(done.ended, true);
  const aborting = twoPcPhase(progress({ votedNo: 1, decision: 'abort', decisionDurable: true }));
  assert.equal(aborting.key, 'aborted');
  assert.equal(aborting.ended, false);
  assert.equal(aborting.committed, false);
  assert.equal(
    twoPcPhase(progress({ votedNo: 1, decision: 'abort', decisionDurable: true, acknowledged: 3 })).ended,
    true,
  );
  // Without progress, the operator's states.
  assert.equal(phaseOf({ type: '2pc', state: 'in-doubt' }).key, 'applying');
  assert.equal(phaseOf({ type: '2pc', state: 'committed' }).key, 'acknowledged');
  assert.equal(phaseOf({ type: '2pc', state: 'running' }).key, 'preparing');
});

test('saga and TCC states map onto their phases; only completion is committed', () => {
  for (const s of ['prepared', 'running', 'compensating', 'stuck', 'compensated', 'resolved', 'abandoned']) {
    const ph = phaseOf({ type: 'saga', state: s });
    assert.equal(ph.key, s);
    assert.equal(ph.committed, false, s);
  }
  assert.equal(phaseOf({ type: 'saga', state: 'completed' }).committed, true);
  assert.equal(phaseOf({ type: 'tcc', state: 'stuck' }).attention, 'stuck');
  assert.equal(phaseOf({ type: 'saga', state: 'resolved' }).attention, 'heuristic');
  assert.equal(phaseOf({ type: 'saga', state: 'abandoned' }).attention, 'heuristic');
  assert.equal(phaseOf({ type: 'msg', state: 'running' }).attention, null);
  // Every label is distinct: a list never shows two phases alike.
  assert.equal(new Set(phaseKeys.map((k) => phase(k).label)).size, phaseKeys.length);
});

test('the timeline draws records on the server lane and each call as a request and its answer', () => {
  const t0 = Date.parse('2026-01-01T00:00:00.000Z');
  const at = (ms: number) => new Date(t0 + ms).toISOString();
  const input = {
    id: 'order-1',
    records: [
      { at: at(0), record: { type: 'begin', txn: 'order-1' } },
      { at: at(2), record: { type: 'start', txn: 'order-1', branch: 'ship', op: 'action' } },
      {
        at: at(500),
        record: { type: 'stuck', txn: 'order-1', branch: 'ship', reason: 'action failed 3 times' },
      },
    ],
    calls: [
      {
        branch: 'ship',
        op: 'action',
        url: 'http://x/ship',
        sentAtMs: t0 + 3,
        answeredAtMs: t0 + 13,
        result: 'retry' as const,
        detail: 'HTTP 503',
      },
      {
        branch: 'ship',
        op: 'action',
        url: 'http://x/ship',
        sentAtMs: t0 + 600,
        answeredAtMs: null,
        result: null,
        detail: '',
      },
    ],
    callsDropped: 0,
  };
  const { events, t0Ms } = timelineEvents(input, t0 + 700);
  assert.equal(t0Ms, t0);
  assert.deepEqual(
    events.map((e) => (e.kind === 'send' ? [e.t, e.from, e.to, e.msg, e.arrive] : [e.t, e.kind])),
    [
      [0, 'persist'],
      [2, 'persist'],
      [3, serverLane, 'ship', 'CALL action', 8],
      [8, 'ship', serverLane, 'retry: HTTP 503', 13],
      [500, 'persist'],
      [600, serverLane, 'ship', 'CALL action (no answer yet)', 700],
    ],
  );
  const svg = timelineSvg(input, t0 + 700);
  assert.match(svg, /<svg /);
  assert.match(svg, />ship</);
  assert.match(svg, />dtx serve</);
  assert.match(svg, /stuck: action failed 3 times/);
  // Text from records is escaped, never markup.
  const evil = timelineSvg(
    { ...input, records: [{ at: at(0), record: { type: 'stuck', reason: '<script>x</script>' } }] },
    t0 + 10,
  );
  assert.doesNotMatch(evil, /<script>/);
  assert.match(evil, /&lt;script&gt;/);
});

test('record labels name what a record says; a 2PC decision is named with its transaction', () => {
  assert.equal(
    recordLabel({ type: 'result', branch: 'b', op: 'action', result: 'failure', reason: 'no' }, 't'),
    'result b action: failure (no)',
  );
  assert.equal(
    recordLabel({ type: 'end', outcome: 'completed', operator: { action: 'resolve', reason: 'r' } }, 't'),
    'end: resolve by an operator (completed)',
  );
  assert.equal(recordLabel({ type: 'commit' }, 'g-1'), 'commit g-1');
  assert.equal(recordLabel(null, 't'), 'record');
  assert.ok(recordLabel({ type: 'stuck', reason: 'x'.repeat(500) }, 't').length <= 72);
});

test('the call journal keeps the first and the latest attempts and forgets the oldest transactions', () => {
  const j = new CallJournal();
  let now = 0;
  const clock = () => now;
  for (let i = 0; i < callJournalLimits.callsPerTxnMax + 10; i++) {
    const done = j.begin('a', { branch: 'b', op: 'action', url: `u${i}` }, clock);
    now += 1;
    done('retry', `attempt ${i}`);
  }
  const a = j.of('a');
  assert.equal(a.calls.length, callJournalLimits.callsPerTxnMax);
  assert.equal(a.dropped, 10);
  assert.equal(a.calls[0]!.url, 'u0');
  assert.equal(a.calls[callJournalLimits.headKept - 1]!.url, `u${callJournalLimits.headKept - 1}`);
  assert.equal(a.calls.at(-1)!.url, `u${callJournalLimits.callsPerTxnMax + 9}`);
  for (let i = 0; i < callJournalLimits.txnsMax; i++)
    j.begin(`t${i}`, { branch: 'b', op: 'a', url: 'u' }, clock);
  assert.equal(j.of('a').calls.length, 0);
  assert.equal(j.of('t0').calls.length, 1);
});

test("dtx serve's 2PC views: all yes while still preparing is not committed; committing is durable", () => {
  // [state, each branch as vote/status, phase, committed, ended]
  const cases: [string, string[], string, boolean, boolean][] = [
    // Every vote in, the tpc-commit record not yet durable: the view is still `preparing`.
    ['preparing', ['yes/prepared', 'readOnly/readOnly'], 'all-voted-yes', false, false],
    ['preparing', ['yes/prepared', '-/registered'], 'preparing', false, false],
    ['open', ['-/registered'], 'open', false, false],
    ['committing', ['yes/prepared', 'yes/prepared'], 'decided', true, false],
    ['committing', ['yes/committed', 'yes/prepared'], 'applying', true, false],
    ['committed', ['yes/committed', 'readOnly/readOnly'], 'acknowledged', true, true],
    ['aborting', ['no/refused', 'yes/prepared'], 'aborted', false, false],
    ['aborted', ['no/refused', 'yes/rolledBack'], 'aborted', false, true],
  ];
  for (const [state, branches, key, committed, ended] of cases) {
    const parsed = branches.map((b) => {
      const [vote, status] = b.split('/') as [string, string];
      return { vote: vote === '-' ? null : vote, status };
    });
    const ph = phaseOf({ type: '2pc', state, twoPc: twoPcProgressOf({ state, branches: parsed }) });
    assert.deepEqual([ph.key, ph.committed, ph.ended], [key, committed, ended], `${state} ${branches}`);
  }
});
