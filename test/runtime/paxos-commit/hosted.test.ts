// Paxos Commit with one of the 2F+1 acceptors hosted by the leader's process
// (`hostAcceptor`, the paper's co-location): votes to it stay in the
// process, its state survives a restart of the process, other leaders reach
// it at the leader's address, and when the leader is killed (its acceptor
// with it) a backup finishes the transaction with the two left.

import assert from 'node:assert/strict';
import { unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { SqliteBranch } from '../../../src/adapters/sqlite.ts';
import { createCoordinator } from '../../../src/runtime/coordinator.ts';
import { AcceptorServer } from '../../../src/runtime/paxos-commit/acceptor-server.ts';
import { rejectsWithCode } from '../../adapters/helpers.ts';
import { freePort } from '../../support/ports.ts';
import {
  type AcceptorProcess,
  accountDbs,
  checkTakenOver,
  spawnLeader,
  startAcceptorProcesses,
  tempDir,
  transfer,
  waitUntil,
} from './support.ts';

describe('Paxos Commit, one acceptor hosted by the leader (F = 1)', () => {
  const remote: AcceptorServer[] = [];
  before(async () => {
    for (let i = 0; i < 2; i++)
      remote.push(await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: tempDir(`hosted-r${i}`) }));
  });
  after(async () => {
    for (const a of remote) await a.close();
  });

  test('votes go to the hosted acceptor in-process and to one remote acceptor; its state survives a restart', async () => {
    const { adapters } = await accountDbs(100);
    const listen = `127.0.0.1:${await freePort()}`;
    const dataDir = tempDir('hosted-own');
    // The hosted acceptor is listed last: this process's votes still go to it first.
    const options = {
      protocol: 'paxos-commit' as const,
      id: 'h1',
      acceptors: [...remote.map((a) => a.url), listen],
      resources: adapters,
      listen,
      hostAcceptor: { dataDir },
    };
    let c = await createCoordinator(options);
    const n = 20;
    for (let i = 0; i < n; i++) await transfer(c, 1);
    assert.equal(adapters.a!.read('balance'), 80);
    assert.equal(adapters.b!.read('balance'), 120);
    // Two RMs: each votes to F+1 = 2 acceptors, the hosted one in-process.
    assert.equal(c.localMessagesByType.PHASE2A, 2 * n, 'votes to the hosted acceptor');
    assert.equal(c.messageStats.sentByType.PHASE2A, 2 * n, 'votes over the network');
    // One phase 2b per transaction from each of the two acceptors; the hosted one's in-process.
    assert.equal(c.localMessagesByType.PHASE2B, n);
    // No leader ballot: no vote went unanswered.
    assert.equal(c.messageStats.sentByType.PHASE1A, undefined);
    // Every transaction reported finished to every acceptor, the hosted one in-process.
    await waitUntil('the FORGET notices', () => (c.messageStats.sentByType.FORGET ?? 0) === 2 * n);
    assert.equal(c.localMessagesByType.FORGET, n);
    const stats = await c.acceptorStats();
    const own = stats.find((s) => s.hosted)!;
    assert.ok(own !== undefined, 'the hosted acceptor answers /stats');
    assert.equal(own.records, 2 * n, 'every vote it took is in its log');
    assert.equal(stats.filter((s) => s.hosted).length, 1);
    const rest = stats.filter((s) => !s.hosted).reduce((k, s) => k + s.records, 0);
    assert.equal(rest, 2 * n, 'the other votes went to one remote acceptor each');

    // Other processes see it at the leader's address, under the id it keeps across restarts.
    const info = async () =>
      (await (await fetch(`http://${listen}/info`)).json()) as { id: string; instances: number };
    const info1 = await info();
    assert.equal(info1.instances, n, 'forgotten transactions stay until a checkpoint');
    await c.close();
    // While the leader is down, `dtx acceptor` can serve the same directory at the same address.
    const standalone = await AcceptorServer.start({ listen, dataDir });
    const info2 = await info();
    assert.equal(info2.id, info1.id);
    // The leader's close checkpointed its acceptor: the forgotten transactions are gone from its log.
    assert.equal(info2.instances, 0);
    await standalone.close();
    c = await createCoordinator(options);
    assert.equal((await info()).id, info1.id);
    await transfer(c, 1);
    assert.equal(adapters.a!.read('balance'), 79);
    await c.close();
  });

  test('another leader votes to the hosted acceptor over the network and gets its phase 2b back', async () => {
    const listen = `127.0.0.1:${await freePort()}`;
    // The hosted acceptor first: the other leader's RMs vote to it and to the first remote one.
    const acceptors = [listen, ...remote.map((a) => a.url)];
    const host = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'h3',
      acceptors,
      resources: (await accountDbs(100)).adapters,
      listen,
      hostAcceptor: { dataDir: tempDir('hosted-h3') },
    });
    const { adapters } = await accountDbs(100);
    const other = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'o1',
      acceptors,
      resources: adapters,
    });
    const hostedRecords = async () => (await host.acceptorStats()).find((s) => s.hosted)!.records;
    const before = await hostedRecords();
    const n = 10;
    for (let i = 0; i < n; i++) await transfer(other, 1);
    assert.equal(adapters.a!.read('balance'), 100 - n);
    assert.equal(
      (await hostedRecords()) - before,
      2 * n,
      "the other leader's votes, in the hosted acceptor's log",
    );
    // Each phase 2b came back (a lost one would have cost a vote timeout and a leader ballot).
    assert.equal(other.messageStats.sentByType.PHASE2A, 4 * n);
    assert.equal(other.messageStats.sentByType.PHASE1A, undefined);
    await other.close();
    await host.close();
  });

  test('the hosted log fails: the leader stops serving its address and takes no new transaction', async () => {
    const { adapters } = await accountDbs(100);
    const listen = `127.0.0.1:${await freePort()}`;
    const dataDir = tempDir('hosted-halt');
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'h4',
      acceptors: [listen, ...remote.map((a) => a.url)],
      resources: adapters,
      listen,
      hostAcceptor: { dataDir },
    });
    await transfer(c, 1);
    // Its log's -wal removed under it: the next write fails, and the acceptor halts.
    unlinkSync(join(dataDir, 'acceptor.db-wal'));
    await assert.rejects(
      c.transaction(async (tx) => void (await tx.branch<SqliteBranch>('a')).put('balance', 0), {
        timeoutMs: 3000,
      }),
    );
    // Others now find nothing there, and suspect it, as they would a dead `dtx acceptor`.
    await waitUntil('the address to close', async () => {
      try {
        await fetch(`http://${listen}/info`, { signal: AbortSignal.timeout(1000) });
        return false;
      } catch {
        return true;
      }
    });
    await rejectsWithCode(transfer(c, 1), 'DTX_RESOURCE_UNAVAILABLE');
    await c.close();
  });

  test('bad input: listen not among the acceptors, no fixed port, a directory of another cluster', async () => {
    const { adapters } = await accountDbs(100);
    const listen = `127.0.0.1:${await freePort()}`;
    const base = {
      protocol: 'paxos-commit' as const,
      id: 'h2',
      resources: adapters,
      hostAcceptor: { dataDir: tempDir('hosted-bad') },
    };
    const urls = remote.map((a) => a.url);
    assert.match(
      (
        await rejectsWithCode(
          createCoordinator({
            ...base,
            listen,
            acceptors: [...urls, remote[0]!.url.replace('127.0.0.1', 'localhost')],
          }),
          'DTX_INVALID_ARGUMENT',
        )
      ).message,
      /must be a fixed host:port listed in acceptors/,
    );
    assert.match(
      (
        await rejectsWithCode(
          createCoordinator({ ...base, acceptors: [...urls, listen] }),
          'DTX_INVALID_ARGUMENT',
        )
      ).message,
      /listen \(undefined\)/,
    );
    assert.match(
      (
        await rejectsWithCode(
          createCoordinator({ ...base, listen: '127.0.0.1:0', acceptors: [...urls, '127.0.0.1:0'] }),
          'DTX_INVALID_ARGUMENT',
        )
      ).message,
      /fixed host:port/,
    );
    assert.match(
      (
        await rejectsWithCode(
          createCoordinator({ ...base, listen, acceptors: [...urls, listen], hostAcceptor: { dataDir: '' } }),
          'DTX_INVALID_ARGUMENT',
        )
      ).message,
      /hostAcceptor.dataDir/,
    );
    // A directory made for another cluster is refused before the leader runs, and the port is free again.
    const other = tempDir('hosted-other');
    const mine = await createCoordinator({ ...base, listen, acceptors: [...urls, listen], cluster: 'dtx' });
    await mine.close();
    const elsewhere = await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: other, cluster: 'blue' });
    await elsewhere.close();
    assert.match(
      (
        await rejectsWithCode(
          createCoordinator({
            ...base,
            listen,
            acceptors: [...urls, listen],
            hostAcceptor: { dataDir: other },
          }),
          'DTX_LOG_MISMATCH',
        )
      ).message,
      /belongs to cluster "blue"/,
    );
    const again = await createCoordinator({ ...base, listen, acceptors: [...urls, listen] });
    await again.close();
  });
});

describe('Paxos Commit, the leader hosting an acceptor killed (kill -9)', () => {
  let acceptors: AcceptorProcess[] = [];
  before(async () => {
    acceptors = await startAcceptorProcesses(2, 'dtx', []);
  });
  after(async () => {
    for (const a of acceptors) await a.stop();
  });

  test('a backup leader finishes the transaction with the two acceptors left, atomically', async () => {
    const { paths, adapters } = await accountDbs(100);
    const listen = `127.0.0.1:${await freePort()}`;
    const urls = [listen, ...acceptors.map((a) => a.url)];
    const goFile = join(tempDir('hosted-go'), 'go');
    const startBackup = () =>
      createCoordinator({
        protocol: 'paxos-commit',
        id: 'l2',
        leaders: ['l1', 'l2'],
        acceptors: urls,
        resources: adapters,
        takeoverMs: 3000,
        scanIntervalMs: 100,
      });
    // A leader does not start while an acceptor is unreachable, the hosted one too: l1 first, then the backup.
    const refused = await rejectsWithCode(startBackup(), 'DTX_RESOURCE_UNAVAILABLE');
    assert.match(refused.message, new RegExp(`unreachable at start: http://${listen}`));
    const leader = spawnLeader({
      id: 'l1',
      leaders: ['l1', 'l2'],
      acceptors: urls,
      paths,
      count: 5,
      killAt: 3,
      listen,
      hostAcceptorDir: tempDir('hosted-l1'),
      goFile,
    });
    await waitUntil(
      'the leader to start',
      () => leader.output().includes('ready\n') || !leader.running(),
      60_000,
    );
    const l2 = await startBackup();
    writeFileSync(goFile, '');
    const inDoubtMs = await checkTakenOver(adapters, l2, leader);
    // The dead leader's acceptor stays down: the backup commits with the other two.
    await transfer(l2, 1);
    assert.equal((adapters.a!.read('balance') as number) + (adapters.b!.read('balance') as number), 200);
    process.stdout.write(`# in doubt after the hosting leader's death: ${inDoubtMs} ms (takeoverMs 3000)\n`);
    await l2.close();
  });
});
