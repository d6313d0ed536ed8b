// `dtx bench --protocol paxos-commit`: transfers through a Paxos Commit
// leader over three real acceptors (in this process, each with its own
// SQLite log) and real SQLite participants; the books balance afterwards,
// and the costs it reports are the counters' (checked against the normal
// case of Gray & Lamport 2006, section 4.3, for N = 2 RMs and F = 1, run one
// transfer at a time so that nothing but the normal case happens). Bad
// acceptor lists are refused with a clear error before any transfer.

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runBench, runVerify } from '../../src/cli/bench.ts';
import { type DtxErrorCode, isDtxError } from '../../src/errors.ts';
import { AcceptorServer } from '../../src/runtime/paxos-commit/acceptor-server.ts';
import { tempDir } from '../runtime/paxos-commit/support.ts';
import { freePort } from '../support/ports.ts';

const work = tempDir('bench');
const dbs = [`sqlite:${join(work, 'debit.db')}`, `sqlite:${join(work, 'credit.db')}`];
let acceptors: AcceptorServer[] = [];

before(async () => {
  for (let i = 0; i < 3; i++)
    acceptors.push(await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: join(work, `acc${i}`) }));
});

after(async () => {
  for (const a of acceptors) await a.close();
  acceptors = [];
  rmSync(work, { recursive: true, force: true });
});

test('transfers commit, the books balance, and the costs are the normal case', {
  timeout: 300_000,
}, async () => {
  const report = await runBench({
    dbs,
    protocol: 'paxos-commit',
    acceptors: acceptors.map((a) => a.url),
    accounts: 50,
    concurrency: 1,
    txns: 20,
    init: true,
  });
  assert.equal(report.protocol, 'paxos-commit');
  assert.equal(report.committed, 20);
  const verify = await runVerify(dbs);
  assert.ok(verify.ok, JSON.stringify(verify));
  assert.equal(verify.committedTransfers, 20);
  const costs = report.costs;
  assert.ok(costs !== undefined);
  assert.equal(costs.committed, 20);
  // N = 2 RMs, F = 1: each RM's vote to F+1 acceptors, one bundled phase 2b
  // from each of them; PREPARE and COMMIT stay in the leader's process.
  const m = costs.measured;
  const { other, ...normal } = m.byKind;
  assert.deepEqual(normal, { begin: 0, prepare: 2, phase2a: 4, phase2b: 2, commit: 2 });
  // Beyond the normal case only inquiries, which an RM sends its leader (in
  // this process) when the decision takes over inquiryMs: a busy machine's.
  assert.deepEqual(Object.keys(m.otherByType), other === 0 ? [] : ['INQUIRY']);
  assert.ok(Math.abs(m.messages - (10 + other)) < 0.011, `messages ${m.messages}, other ${other}`);
  assert.equal(m.overNetwork, 6);
  assert.equal(m.forget, 3);
  // Before the outcome: 2 prepares and each RM's instance at 2 acceptors; after: 2 commits.
  assert.equal(m.forcedWrites, 6);
  assert.equal(m.acceptorRecords, 4);
  assert.ok(m.acceptorFsyncs >= 2 && m.acceptorFsyncs <= 4, `fsyncs ${m.acceptorFsyncs}`);
  assert.equal(m.forcedWritesAfter, 2);
  // The paper's count for the same shape, and the simulator's forced writes (it forces as dtx does).
  assert.equal(costs.paper.messages, 10);
  assert.equal(costs.paper.forcedWrites, 4);
  assert.equal(costs.simulator.forcedWrites, 6);
});

test('--host-acceptor: one acceptor in the leader, its votes and phase 2b in-process', {
  timeout: 300_000,
}, async () => {
  const listen = `127.0.0.1:${await freePort()}`;
  const report = await runBench({
    dbs,
    protocol: 'paxos-commit',
    // Listed last; the leader's RMs still vote to it first.
    acceptors: [acceptors[0]!.url, acceptors[1]!.url, listen],
    listen,
    hostAcceptor: join(work, 'hosted'),
    accounts: 50,
    concurrency: 1,
    txns: 20,
    init: true,
  });
  assert.equal(report.committed, 20);
  const verify = await runVerify(dbs);
  assert.ok(verify.ok, JSON.stringify(verify));
  const m = report.costs!.measured;
  const { other, ...normal } = m.byKind;
  assert.deepEqual(normal, { begin: 0, prepare: 2, phase2a: 4, phase2b: 2, commit: 2 });
  assert.ok(Math.abs(m.messages - (10 + other)) < 0.011, `messages ${m.messages}, other ${other}`);
  // Over the network: the two votes to the one remote acceptor, and its phase 2b.
  assert.equal(m.overNetwork, 3);
  // FORGET notices to the three acceptors (the hosted one's in-process).
  assert.equal(m.forget, 3);
  // The hosted acceptor's records are counted with the others'.
  assert.equal(m.acceptorRecords, 4);
  assert.equal(m.forcedWrites, 6);
});

test('bad acceptor lists are refused with a typed error', { timeout: 120_000 }, async () => {
  const urls = acceptors.map((a) => a.url);
  const load = { dbs, protocol: 'paxos-commit' as const, accounts: 10, concurrency: 1, txns: 1, init: false };
  const refused = async (extra: object, code: DtxErrorCode, message: RegExp) => {
    await assert.rejects(
      runBench({ ...load, ...extra }),
      (err) => isDtxError(err, code) && message.test((err as Error).message),
    );
  };
  await refused({}, 'DTX_INVALID_ARGUMENT', /needs its acceptors: --acceptors/);
  await refused(
    { acceptors: urls.slice(0, 2) },
    'DTX_INVALID_ARGUMENT',
    /faults = 1 needs 2F\+1 = 3 acceptors, got 2/,
  );
  await refused(
    { acceptors: urls, faults: 2 },
    'DTX_INVALID_ARGUMENT',
    /faults = 2 needs 2F\+1 = 5 acceptors, got 3/,
  );
  await refused({ acceptors: [urls[0], urls[1], urls[0]] }, 'DTX_INVALID_ARGUMENT', /listed twice/);
  await refused({ acceptors: ['nonsense', urls[1], urls[2]] }, 'DTX_INVALID_ARGUMENT', /not host:port/);
  await refused(
    { acceptors: urls, log: join(work, 'x.sqlite') },
    'DTX_INVALID_ARGUMENT',
    /--log .* does not apply/,
  );
  // A port nothing listens on: the error names it.
  const down = 'http://127.0.0.1:9';
  await refused(
    { acceptors: [urls[0], urls[1], down] },
    'DTX_RESOURCE_UNAVAILABLE',
    /unreachable at start: http:\/\/127\.0\.0\.1:9/,
  );
  // The same acceptor under two addresses is found by its id.
  // (0.0.0.0 reaches 127.0.0.1 on Linux.)
  const same = urls[0]!.replace('127.0.0.1', '0.0.0.0');
  await refused({ acceptors: [urls[0], same, urls[2]] }, 'DTX_INVALID_ARGUMENT', /are the same acceptor/);
});
