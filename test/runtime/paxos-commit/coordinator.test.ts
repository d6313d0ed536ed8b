// Paxos Commit on real processes and databases, the normal case and bad
// input: acceptors in this process (fast to start), SQLite participants.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createMariaDbAdapter } from '../../../src/adapters/mariadb.ts';
import type { SqliteAdapter, SqliteBranch } from '../../../src/adapters/sqlite.ts';
import type { SqlBranch } from '../../../src/adapters/types.ts';
import { createCoordinator } from '../../../src/runtime/coordinator.ts';
import { AcceptorServer } from '../../../src/runtime/paxos-commit/acceptor-server.ts';
import { PeerTransport } from '../../../src/runtime/paxos-commit/transport.ts';
import { mariaAdmin, rejectsWithCode, runId } from '../../adapters/helpers.ts';
import { accountDbs, tempDir, transfer, waitUntil } from './support.ts';

type Prepare = SqliteBranch['prepare'];

/** Every branch of `adapter` runs `around(prepare)` in place of its own prepare: a slow, held or refusing participant. */
function aroundPrepare(adapter: SqliteAdapter, around: (prepare: Prepare) => ReturnType<Prepare>): void {
  const begin = adapter.begin.bind(adapter);
  adapter.begin = async (gid: string) => {
    const branch = await begin(gid);
    const prepare = branch.prepare.bind(branch);
    branch.prepare = () => around(prepare);
    return branch;
  };
}

describe('Paxos Commit coordinator (F = 1, in-process acceptors)', () => {
  const acceptors: AcceptorServer[] = [];
  before(async () => {
    for (let i = 0; i < 3; i++)
      acceptors.push(await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: tempDir(`a${i}`) }));
  });
  after(async () => {
    for (const a of acceptors) await a.close();
  });

  test('transfers commit on both databases and conserve the total', async () => {
    const { adapters } = await accountDbs(100);
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l1',
      resources: adapters,
      acceptors: acceptors.map((a) => a.url),
      faults: 1,
    });
    for (let i = 0; i < 5; i++) await transfer(c, 1);
    // Concurrent transactions on distinct keys (the same key would conflict at prepare).
    await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        c.transaction(async (tx) => {
          (await tx.branch<SqliteBranch>('a')).put(`k${i}`, -i);
          (await tx.branch<SqliteBranch>('b')).put(`k${i}`, i);
        }),
      ),
    );
    assert.equal(adapters.a!.read('balance'), 95);
    assert.equal(adapters.b!.read('balance'), 105);
    for (let i = 0; i < 6; i++)
      assert.equal((adapters.a!.read(`k${i}`) as number) + (adapters.b!.read(`k${i}`) as number), 0);
    assert.deepEqual(await adapters.a!.listPrepared(''), []);
    assert.deepEqual(await adapters.b!.listPrepared(''), []);
    await c.close();
  });

  test('a callback that throws rolls back; a NO vote aborts with DTX_ABORTED', async () => {
    const { adapters } = await accountDbs(100);
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l2',
      resources: adapters,
      acceptors: acceptors.map((a) => a.url),
    });
    await assert.rejects(
      c.transaction(async (tx) => {
        const a = await tx.branch<SqliteBranch>('a');
        a.put('balance', 0);
        throw new Error('no');
      }),
      /no/,
    );
    // A NO vote: what b's branch read changed before it prepared (serialization failure).
    await rejectsWithCode(
      c.transaction(async (tx) => {
        const a = await tx.branch<SqliteBranch>('a');
        const b = await tx.branch<SqliteBranch>('b');
        a.put('balance', (a.get('balance') as number) - 5);
        b.put('balance', (b.get('balance') as number) + 5);
        const other = await adapters.b!.begin('other_1');
        other.put('balance', 1000);
        await other.prepare();
        await adapters.b!.commitPrepared('other_1');
      }),
      'DTX_ABORTED',
    );
    assert.equal(adapters.a!.read('balance'), 100);
    assert.equal(adapters.b!.read('balance'), 1000);
    assert.deepEqual(await adapters.a!.listPrepared(''), []);
    await c.close();
  });

  test('bad input: wrong count for F, duplicates, another cluster, unreachable acceptors', async () => {
    const { adapters } = await accountDbs();
    const urls = acceptors.map((a) => a.url);
    const base = { protocol: 'paxos-commit' as const, id: 'l3', resources: adapters };
    await rejectsWithCode(
      createCoordinator({ ...base, acceptors: urls.slice(0, 2), faults: 1 }),
      'DTX_INVALID_ARGUMENT',
    );
    await rejectsWithCode(
      createCoordinator({ ...base, acceptors: [urls[0]!, urls[0]!, urls[1]!] }),
      'DTX_INVALID_ARGUMENT',
    );
    const other = await rejectsWithCode(
      createCoordinator({ ...base, acceptors: urls, cluster: 'other' }),
      'DTX_INVALID_ARGUMENT',
    );
    assert.match(other.message, /cluster "dtx", not "other"/);
    const down = await rejectsWithCode(
      createCoordinator({ ...base, acceptors: [urls[0]!, urls[1]!, 'http://127.0.0.1:9'] }),
      'DTX_RESOURCE_UNAVAILABLE',
    );
    assert.match(down.message, /127\.0\.0\.1:9/);
  });

  test('Faster Paxos Commit (phase 2b to the RMs too) commits; a leader of the other variant is refused', async () => {
    const fast: AcceptorServer[] = [];
    for (let i = 0; i < 3; i++)
      fast.push(
        await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: tempDir(`f${i}`), faster: true }),
      );
    const { adapters } = await accountDbs(100);
    const urls = fast.map((a) => a.url);
    // A leader that does not run the acceptors' variant is refused.
    await rejectsWithCode(
      createCoordinator({ protocol: 'paxos-commit', id: 'l6', resources: adapters, acceptors: urls }),
      'DTX_INVALID_ARGUMENT',
    );
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l6',
      resources: adapters,
      acceptors: urls,
      faster: true,
    });
    for (let i = 0; i < 3; i++) await transfer(c, 1);
    assert.equal(adapters.a!.read('balance'), 97);
    assert.equal(adapters.b!.read('balance'), 103);
    await c.close();
    for (const a of fast) await a.close();
  });

  test('MariaDB (XA) and SQLite participants: a transfer commits on both', async () => {
    const db = `dtx_w5_pc_${runId()}`;
    await mariaAdmin(`CREATE DATABASE ${db}`);
    const connection = { host: '127.0.0.1', port: 3306, user: 'root', database: db };
    const maria = await createMariaDbAdapter({ connection });
    try {
      await mariaAdmin(`CREATE TABLE ${db}.acct (id INT PRIMARY KEY, balance INT NOT NULL) ENGINE=InnoDB`);
      await mariaAdmin(`INSERT INTO ${db}.acct VALUES (1, 100)`);
      const { adapters } = await accountDbs(100);
      const c = await createCoordinator({
        protocol: 'paxos-commit',
        id: 'l7',
        resources: { m: maria, a: adapters.a! },
        acceptors: acceptors.map((a) => a.url),
      });
      await c.transaction(async (tx) => {
        await tx.query('m', 'UPDATE acct SET balance = balance - 10 WHERE id = 1');
        const a = await tx.branch<SqliteBranch>('a');
        a.put('balance', (a.get('balance') as number) + 10);
      });
      const check = await createMariaDbAdapter({ connection });
      const b = (await check.begin('pc_check_1')) as SqlBranch;
      const { rows } = await b.query<{ balance: number }>('SELECT balance FROM acct WHERE id = 1');
      await b.rollback();
      await check.close();
      assert.equal(Number(rows[0]!.balance), 90);
      assert.equal(adapters.a!.read('balance'), 110);
      assert.deepEqual(await maria.listPrepared('pc_'), []);
      await c.close();
    } finally {
      await maria.close();
      await mariaAdmin(`DROP DATABASE ${db}`);
    }
  });

  test('checkpoints drop finished transactions; what is kept survives a restart', async () => {
    const dir = tempDir('ck');
    let a = await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: dir });
    const { adapters } = await accountDbs(100);
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l8',
      resources: adapters,
      acceptors: [a.url],
      faults: 0,
    });
    for (let i = 0; i < 3; i++) await transfer(c, 1);
    assert.ok(a.info().instances >= 1);
    // The FORGET notices leave after the commits; give them a moment to arrive.
    await waitUntil('FORGET notices', async () => {
      await a.checkpoint();
      return a.info().instances === 0;
    });
    await c.close();
    // An instance of an unfinished transaction stays, across a checkpoint and a restart.
    const t = await PeerTransport.listen({
      cluster: 'dtx',
      listen: '127.0.0.1:0',
      hosts: ['lx'],
      onBatch: () => {},
    });
    const vote = {
      type: 'PHASE2A' as const,
      txn: 'open-1',
      bal: 0,
      entries: [{ ins: 'a', val: 'prepared' as const }],
      leader: 'lx',
      participants: ['a', 'b'],
      client: 'app',
    };
    t.send(a.url, { from: 'a', to: a.id, msg: vote });
    await waitUntil('the vote', () => a.info().instances === 1);
    await a.checkpoint();
    await a.close();
    a = await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: dir });
    assert.equal(a.info().instances, 1);
    await t.close();
    await a.close();
  });

  test('acceptors with one log sync in flight (the default is two): concurrent transfers commit, and a restart after the checkpoint at close keeps none of them', async () => {
    const dirs = [0, 1, 2].map((i) => tempDir(`s${i}`));
    const start = () =>
      Promise.all(
        dirs.map((dataDir) => AcceptorServer.start({ listen: '127.0.0.1:0', dataDir, syncsInFlight: 1 })),
      );
    let two = await start();
    const { adapters } = await accountDbs(100);
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l9',
      resources: adapters,
      acceptors: two.map((a) => a.url),
      faults: 1,
    });
    await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        c.transaction(async (tx) => {
          (await tx.branch<SqliteBranch>('a')).put(`s${i}`, -i);
          (await tx.branch<SqliteBranch>('b')).put(`s${i}`, i);
        }),
      ),
    );
    for (let i = 0; i < 40; i++)
      assert.equal((adapters.a!.read(`s${i}`) as number) + (adapters.b!.read(`s${i}`) as number), 0);
    await c.close();
    // Each of the 40 transactions voted at F+1 = 2 acceptors (`info().instances` counts transactions); each acceptor reloads what it wrote.
    const instances = two.map((a) => a.info().instances);
    assert.equal(
      instances.reduce((sum, n) => sum + n, 0),
      40 * 2,
    );
    // The leader's close sent its last FORGET notices: each acceptor checkpoints as it closes, and
    // restarts with none of the finished transactions (what is not finished survives: the test above).
    for (const a of two) await a.close();
    two = await start();
    assert.deepEqual(
      two.map((a) => a.info().instances),
      [0, 0, 0],
    );
    for (const a of two) await a.close();
  });

  test("votes wait for each other: each acceptor writes a transaction's votes in one fsync; a slow branch's vote leaves alone after voteHoldMs", async () => {
    const { adapters } = await accountDbs(100);
    // b prepares 30 ms after a, as a slower database would.
    let slowMs = 30;
    aroundPrepare(adapters.b!, async (prepare) => {
      await new Promise((r) => setTimeout(r, slowMs));
      return prepare();
    });
    const flushes = () => acceptors.reduce((sum, a) => sum + a.stats.flushes, 0);
    /** Acceptor fsyncs per transfer over `n` transfers one after another, with the leader's `voteHoldMs`. */
    const fsyncsPerTransfer = async (id: string, voteHoldMs: number | undefined, n: number) => {
      const c = await createCoordinator({
        protocol: 'paxos-commit',
        id,
        resources: adapters,
        acceptors: acceptors.map((a) => a.url),
        ...(voteHoldMs === undefined ? {} : { voteHoldMs }),
      });
      const before = flushes();
      for (let i = 0; i < n; i++) await transfer(c, 1);
      const per = (flushes() - before) / n;
      const sent = c.messageStats.sentByType.PHASE2A ?? 0;
      await c.close();
      // Every RM voted to F+1 = 2 acceptors, held or not.
      assert.equal(sent, n * 2 * 2);
      return per;
    };
    const n = 8;
    // Held (2 voting acceptors, one fsync each), then sent as each branch prepared (two each).
    const held = await fsyncsPerTransfer('h1', 1000, n);
    const unheld = await fsyncsPerTransfer('h2', 0, n);
    assert.ok(held <= 2.25, `held votes: ${held} acceptor fsyncs per transfer`);
    assert.ok(unheld >= 3, `votes not held: ${unheld} acceptor fsyncs per transfer`);
    // A branch slower than voteHoldMs: the votes of a leave first, the transfer still commits.
    slowMs = 150;
    const bounded = await fsyncsPerTransfer('h3', 20, 3);
    assert.ok(bounded >= 3, `a slow branch past voteHoldMs: ${bounded} acceptor fsyncs per transfer`);
    assert.equal(adapters.a!.read('balance'), 100 - 2 * n - 3);
    assert.equal(adapters.b!.read('balance'), 100 + 2 * n + 3);
  });

  test('a NO vote is not held: it reaches the acceptors while another branch is still preparing', async () => {
    const { adapters } = await accountDbs(100);
    // a's prepare waits for the test; b refuses to prepare (a NO vote).
    let open = () => {};
    const gate = new Promise<void>((resolve) => {
      open = resolve;
    });
    aroundPrepare(adapters.a!, async (prepare) => {
      await gate;
      return prepare();
    });
    aroundPrepare(adapters.b!, async () => {
      throw new Error('b refuses');
    });
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'h5',
      resources: adapters,
      acceptors: acceptors.map((a) => a.url),
      voteHoldMs: 1900,
    });
    const instances = () => acceptors.reduce((sum, a) => sum + a.info().instances, 0);
    const before = instances();
    const done = transfer(c, 1).then(
      () => 'committed',
      (e: { code?: string }) => e.code,
    );
    try {
      // Held, it would wait for a's vote or 1,900 ms.
      await waitUntil('the NO vote at the acceptors', () => instances() > before, 1500);
      open();
      assert.equal(await done, 'DTX_ABORTED');
      assert.equal(adapters.a!.read('balance'), 100);
      assert.deepEqual(await adapters.a!.listPrepared(''), []);
    } finally {
      open();
      await done;
      await c.close();
    }
  });

  test('voteHoldMs out of range is refused (it must stay below the vote timeout)', async () => {
    const { adapters } = await accountDbs(100);
    for (const voteHoldMs of [-1, Number.NaN, 2000, 20_000, '5' as unknown as number])
      await rejectsWithCode(
        createCoordinator({
          protocol: 'paxos-commit',
          id: 'h4',
          resources: adapters,
          acceptors: acceptors.map((a) => a.url),
          voteHoldMs,
        }),
        'DTX_INVALID_ARGUMENT',
      );
  });

  test('an acceptor directory of another cluster is refused', async () => {
    const dir = tempDir('cl');
    const a = await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: dir, cluster: 'east' });
    await a.close();
    await rejectsWithCode(
      AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: dir, cluster: 'west' }),
      'DTX_LOG_MISMATCH',
    );
  });
});
