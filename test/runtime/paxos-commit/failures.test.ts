// Paxos Commit failures on real processes (kill -9): the leader, one
// acceptor (at most F: no effect), F+1 acceptors (commits block, and resume
// when one comes back), and a participant database that dies after it
// prepared. Acceptors are `dtx acceptor` processes; F = 1.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createPostgresAdapter } from '../../../src/adapters/postgres.ts';
import { createCoordinator } from '../../../src/runtime/coordinator.ts';
import { startPgCluster } from '../../adapters/pg-cluster.ts';
import {
  type AcceptorProcess,
  accountDbs,
  checkTakenOver,
  spawnLeader,
  startAcceptorProcesses,
  transfer,
  waitUntil,
} from './support.ts';

describe('Paxos Commit under kill -9 (3 acceptor processes, F = 1)', () => {
  let acceptors: AcceptorProcess[] = [];
  const urls = () => acceptors.map((a) => a.url);
  before(async () => {
    acceptors = await startAcceptorProcesses(3);
  });
  after(async () => {
    for (const a of acceptors) await a.stop();
  });

  test('the leader killed with every branch prepared: a backup leader finishes it, atomically', async () => {
    const { paths, adapters } = await accountDbs(100);
    const backup = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l2',
      leaders: ['l1', 'l2'],
      acceptors: urls(),
      resources: adapters,
      // Well above how long a live transaction stays prepared on a loaded machine.
      takeoverMs: 3000,
      scanIntervalMs: 100,
    });
    const leader = spawnLeader({
      id: 'l1',
      leaders: ['l1', 'l2'],
      acceptors: urls(),
      paths,
      count: 5,
      killAt: 3,
    });
    const inDoubtMs = await checkTakenOver(adapters, backup, leader);
    // Nothing of the dead leader blocks the next transactions.
    await transfer(backup, 1);
    assert.equal((adapters.a!.read('balance') as number) + (adapters.b!.read('balance') as number), 200);
    process.stdout.write(`# in doubt after the leader's death: ${inDoubtMs} ms (takeoverMs 3000)\n`);
    await backup.close();
  });

  test('one acceptor killed (F = 1): transactions commit as before', async () => {
    const { adapters } = await accountDbs(100);
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l3',
      acceptors: urls(),
      resources: adapters,
    });
    try {
      // Acceptor 1 is one of the F+1 that votes go to by default.
      await acceptors[1]!.kill9();
      const tookMs: number[] = [];
      for (let i = 0; i < 4; i++) {
        const t0 = Date.now();
        await transfer(c, 1);
        tookMs.push(Date.now() - t0);
      }
      assert.equal(adapters.a!.read('balance'), 96);
      assert.equal(adapters.b!.read('balance'), 104);
      // Once the dead acceptor has left a vote unanswered, new votes go to the
      // other two: no transfer after the first waits for the vote timeout (2 s).
      process.stdout.write(`# one acceptor dead: transfers took ${tookMs.join(', ')} ms\n`);
      for (const ms of tookMs.slice(1))
        assert.ok(ms < 1000, `a transfer took ${ms} ms: ${tookMs.join(', ')}`);
    } finally {
      await acceptors[1]!.start();
      await c.close();
    }
  });

  test('F+1 acceptors killed: a commit blocks, and finishes once one comes back', async () => {
    const { adapters } = await accountDbs(100);
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l4',
      acceptors: urls(),
      resources: adapters,
    });
    await transfer(c, 1);
    await acceptors[1]!.kill9();
    await acceptors[2]!.kill9();
    let settled = false;
    const pending = transfer(c, 1).finally(() => {
      settled = true;
    });
    await new Promise((r) => setTimeout(r, 4000));
    assert.equal(settled, false, 'a commit finished with only one acceptor of three');
    assert.equal(adapters.a!.read('balance'), 99, 'the blocked transfer was applied');
    await acceptors[1]!.start();
    await pending;
    assert.equal(adapters.a!.read('balance'), 98);
    assert.equal(adapters.b!.read('balance'), 102);
    await acceptors[2]!.start();
    await c.close();
  });

  test('a PostgreSQL participant killed after it prepared is resolved after its restart', async () => {
    const pg = await startPgCluster();
    try {
      const pgAdapter = await createPostgresAdapter({ connection: pg.connection });
      const setup = await pgAdapter.begin('setup_1');
      await (setup as import('../../../src/adapters/types.ts').SqlBranch).query(
        'CREATE TABLE acct (id int primary key, balance int)',
      );
      await (setup as import('../../../src/adapters/types.ts').SqlBranch).query(
        'INSERT INTO acct VALUES (1, 100)',
      );
      await setup.prepare();
      await pgAdapter.commitPrepared('setup_1');
      const { adapters } = await accountDbs(100);
      let killed = false;
      const c = await createCoordinator({
        protocol: 'paxos-commit',
        id: 'l5',
        acceptors: urls(),
        resources: { pg: pgAdapter, a: adapters.a! },
        crashPoints: {
          point(point) {
            if (point !== 'prepared:all' || killed) return;
            killed = true;
            const pid = Number(readFileSync(join(pg.dir, 'postmaster.pid'), 'utf8').split('\n')[0]);
            process.kill(pid, 'SIGKILL');
          },
        },
      });
      const work = c.transaction(async (tx) => {
        await tx.query('pg', 'UPDATE acct SET balance = balance - 10 WHERE id = 1');
        const a = await tx.branch<import('../../../src/adapters/sqlite.ts').SqliteBranch>('a');
        a.put('balance', (a.get('balance') as number) + 10);
      });
      await waitUntil('the kill', () => killed, 60_000);
      await new Promise((r) => setTimeout(r, 1500));
      restartPg(pg.dir);
      await work;
      const check = await createPostgresAdapter({ connection: pg.connection });
      const b = (await check.begin('check_1')) as import('../../../src/adapters/types.ts').SqlBranch;
      const { rows } = await b.query<{ balance: number }>('SELECT balance FROM acct WHERE id = 1');
      await b.rollback();
      assert.equal(rows[0]!.balance, 90);
      assert.equal(adapters.a!.read('balance'), 110);
      assert.deepEqual(await check.listPrepared(''), []);
      await check.close();
      await c.close();
      await pgAdapter.close();
    } finally {
      await pg.stop();
    }
  });
});

/** Restarts a killed cluster from its data directory (its prepared transactions come back from the WAL). */
function restartPg(dir: string): void {
  const restartBy = Date.now() + 30_000;
  for (;;) {
    try {
      const pgCtl = `${execFileSync('pg_config', ['--bindir']).toString().trim()}/pg_ctl`;
      const args = ['-D', dir, '-l', join(dir, 'server.log'), '-w', '-t', '60', 'start'];
      if (process.getuid?.() === 0)
        execFileSync('runuser', ['-u', 'postgres', '--', pgCtl, ...args], { stdio: 'ignore' });
      else execFileSync(pgCtl, args, { stdio: 'ignore' });
      return;
    } catch (err) {
      if (Date.now() > restartBy) throw err;
      execFileSync('sleep', ['0.5']);
    }
  }
}
