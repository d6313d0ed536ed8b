// 2PC commit timestamps: the coordinator's commit timestamp is the latest of
// its YES voters' prepare timestamps, goes into the forced commit record and
// every COMMIT (first send, answer to an inquiry, resend, and after recovery
// from the record); a log and traffic without timestamps stay exactly as
// they were.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Effect } from '../../../src/protocol/common/types.ts';
import {
  decodeTwoPcMsg,
  decodeTwoPcRecord,
  encodeTwoPcMsg,
  encodeTwoPcRecord,
} from '../../../src/protocol/twopc/codec.ts';
import { type CoordinatorState, twoPcCoordinator } from '../../../src/protocol/twopc/coordinator.ts';
import type { TwoPcMsg, TwoPcRecord } from '../../../src/protocol/twopc/types.ts';

type Fx = Effect<TwoPcMsg, TwoPcRecord>;

function voteAll(ts: ({ wallMs: number; logical: number } | undefined)[]): {
  state: CoordinatorState;
  fx: Fx[];
} {
  let state = twoPcCoordinator.init('c', {});
  const participants = ts.map((_, i) => `p${i}`);
  state = twoPcCoordinator.step(state, { type: 'begin', txn: 't1', participants, client: 'client' }).state;
  const attempt = state.txns.get('t1')!.attempt;
  let fx: Fx[] = [];
  ts.forEach((t, i) => {
    const msg: TwoPcMsg = {
      type: 'VOTE',
      txn: 't1',
      attempt,
      vote: 'yes',
      ...(t === undefined ? {} : { ts: t }),
    };
    const r = twoPcCoordinator.step(state, { type: 'receive', from: `p${i}`, msg });
    state = r.state;
    fx = r.effects;
  });
  return { state, fx };
}

const commitRecord = (fx: Fx[]) =>
  fx.find((e): e is Extract<Fx, { type: 'persist' }> => e.type === 'persist')!.record as Extract<
    TwoPcRecord,
    { type: 'commit' }
  >;
const commits = (fx: Fx[]) =>
  fx
    .filter((e) => (e.type === 'send' || e.type === 'sendAfterPersist') && e.msg.type === 'COMMIT')
    .map((e) => (e as { msg: TwoPcMsg }).msg);

test('the commit timestamp is the latest prepare timestamp, in the commit record and every COMMIT', () => {
  const latest = { wallMs: 12, logical: 3 };
  const { state, fx } = voteAll([{ wallMs: 12, logical: 1 }, latest, { wallMs: 9, logical: 7 }]);
  assert.deepEqual(commitRecord(fx).ts, latest);
  assert.equal(commits(fx).length, 3);
  for (const msg of commits(fx)) assert.deepEqual(msg, { type: 'COMMIT', txn: 't1', ts: latest });
  // An inquiry and a resend answer with the same timestamp.
  const inquiry = twoPcCoordinator.step(state, {
    type: 'receive',
    from: 'p0',
    msg: { type: 'INQUIRY', txn: 't1' },
  });
  assert.deepEqual(commits(inquiry.effects), [{ type: 'COMMIT', txn: 't1', ts: latest }]);
  const resend = twoPcCoordinator.step(inquiry.state, { type: 'timeout', timer: 'resend:t1' });
  assert.deepEqual(commits(resend.effects)[0], { type: 'COMMIT', txn: 't1', ts: latest });
  // Recovery from the record re-drives COMMIT with it.
  const recovered = twoPcCoordinator.recover('c', {}, [commitRecord(fx)]);
  assert.deepEqual(commits(recovered.effects)[0], { type: 'COMMIT', txn: 't1', ts: latest });
});

test('votes without timestamps: the record and COMMIT have no ts field, text for text as before', () => {
  const { fx } = voteAll([undefined, undefined]);
  const record = commitRecord(fx);
  assert.equal('ts' in record, false);
  assert.equal(
    encodeTwoPcRecord(record),
    '{"type":"commit","txn":"t1","participants":["p0","p1"],"client":"client"}',
  );
  assert.equal(encodeTwoPcMsg(commits(fx)[0]!), '{"type":"COMMIT","txn":"t1"}');
});

test('codec: timestamps round-trip; malformed ones are refused with the field named', () => {
  const record: TwoPcRecord = {
    type: 'commit',
    txn: 't1',
    participants: ['p0'],
    client: 'client',
    ts: { wallMs: 3.25, logical: 2 },
  };
  assert.deepEqual(decodeTwoPcRecord(encodeTwoPcRecord(record)), record);
  const vote: TwoPcMsg = {
    type: 'VOTE',
    txn: 't1',
    attempt: '0.1',
    vote: 'yes',
    ts: { wallMs: 1, logical: 0 },
  };
  assert.deepEqual(decodeTwoPcMsg(encodeTwoPcMsg(vote)), vote);
  assert.throws(
    () =>
      decodeTwoPcRecord(
        '{"type":"commit","txn":"t1","participants":["p0"],"client":"c","ts":{"wallMs":-1,"logical":0}}',
      ),
    /commit\.ts must be \{ wallMs, logical \}/,
  );
  assert.throws(() => decodeTwoPcMsg('{"type":"COMMIT","txn":"t1","ts":{"wallMs":1}}'), /COMMIT\.ts/);
});
