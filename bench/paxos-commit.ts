// Paxos Commit's costs on a real run: messages and forced writes per
// committed transaction, counted by the processes' own counters (the leader's
// and the acceptors' transports, the acceptors' logs), next to what Gray &
// Lamport give for the normal case. Three in-process acceptors (F = 1), two
// SQLite participants, sequential transfers so that no group commit merges
// two transactions' writes.
//
//   node --import tsx bench/paxos-commit.ts [transfers]

import { createCoordinator } from '../src/runtime/coordinator.ts';
import { AcceptorServer } from '../src/runtime/paxos-commit/acceptor-server.ts';
import { accountDbs, tempDir, transfer } from '../test/runtime/paxos-commit/support.ts';

const n = Number(process.argv[2] ?? 50);
const acceptors: AcceptorServer[] = [];
for (let i = 0; i < 3; i++)
  acceptors.push(await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: tempDir(`bench${i}`) }));
const { adapters } = await accountDbs(1_000_000);
const c = await createCoordinator({
  protocol: 'paxos-commit',
  id: 'bench',
  resources: adapters,
  acceptors: acceptors.map((a) => a.url),
});
await transfer(c, 1); // warm-up: connections, first checkpoint-free writes
const before = { leader: c.messageStats.sent, acc: acceptors.map((a) => a.stats) };
const t0 = performance.now();
for (let i = 0; i < n; i++) await transfer(c, 1);
const ms = performance.now() - t0;
const after = acceptors.map((a) => a.stats);
const accSent = after.reduce((s, a, i) => s + a.sent - before.acc[i]!.sent, 0);
const accFlushes = after.reduce((s, a, i) => s + a.flushes - before.acc[i]!.flushes, 0);
const accRecords = after.reduce((s, a, i) => s + a.records - before.acc[i]!.records, 0);
const leaderSent = c.messageStats.sent - before.leader;
const N = 2; // RMs
const F = 1;
console.log(
  JSON.stringify(
    {
      transfers: n,
      msPerCommit: Math.round((ms / n) * 10) / 10,
      perCommit: {
        // Over HTTP: votes (N(F+1)), bundled phase 2b (F+1), FORGET notices (2F+1).
        networkMessages: (leaderSent + accSent) / n,
        forgetNotices: 2 * F + 1,
        // Protocol messages, the in-process PREPARE and COMMIT (N each) included, FORGET left out.
        protocolMessages: (leaderSent + accSent) / n - (2 * F + 1) + 2 * N,
        acceptorRecordsForced: accRecords / n,
        acceptorFsyncs: accFlushes / n,
        // Before the outcome: N prepares and the acceptors' records; after it, N commits.
        forcedWritesBeforeOutcome: N + accRecords / n,
      },
      // docs/protocols/paxos-commit.md, "Paper vs measured" (Gray & Lamport, section 4.3), separate leader.
      paper: { messages: (N + 1) * (F + 3) - 2, forcedWritesBeforeOutcome: N + F + 1 },
      simulator: { forcedWritesBeforeOutcome: N + N * (F + 1) },
    },
    null,
    2,
  ),
);
await c.close();
for (const a of acceptors) await a.close();
