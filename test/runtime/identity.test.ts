// Issue 9, identity: two coordinators that were not given ids, on the same
// databases (two throwaway PostgreSQL clusters and the machine's MariaDB),
// each with its own log. Each log generates its own coordinator id, so the
// second one's start-up recovery leaves the first one's prepared branches
// alone (before, both were "c1" and it rolled them back, and the first then
// reported a commit with both writes missing). MariaDB's XA RECOVER is
// server-wide: recovery and `dtx bench --init` must touch only their own
// xids, and `--init` only the database its mysql:// URL names.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import mysql from 'mysql2/promise';
import { createMariaDbAdapter, type MariaDbAdapter } from '../../src/adapters/mariadb.ts';
import { createPostgresAdapter, type PostgresAdapter } from '../../src/adapters/postgres.ts';
import type { ResourceAdapter } from '../../src/adapters/types.ts';
import { twoPcRecordCodec } from '../../src/protocol/twopc/codec.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = join(root, 'bin', 'dtx.js');
const work = mkdtempSync(join(tmpdir(), 'dtx-identity-'));
const database = `dtx_h1_identity_${process.pid}`;
const mariaUrl = `mysql://root@127.0.0.1:3306/${database}`;

let clusters: PgCluster[] = [];
let admin: mysql.Connection;

const pgUrl = (c: PgCluster) => `postgres://postgres@127.0.0.1:${c.port}/postgres`;

before(async () => {
  clusters = await Promise.all([startPgCluster(), startPgCluster()]);
  for (const c of clusters) {
    const a = await createPostgresAdapter({ connection: { connectionString: pgUrl(c) } });
    await a.pool.query('CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v text NOT NULL)');
    await a.close();
  }
  admin = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
  await admin.query(`CREATE DATABASE IF NOT EXISTS ${database}`);
  await admin.query(`CREATE TABLE IF NOT EXISTS ${database}.kv (k varchar(64) PRIMARY KEY, v text NOT NULL)`);
});

after(async () => {
  await admin.query(`DROP DATABASE IF EXISTS ${database}`).catch(() => undefined);
  await admin.end();
  await Promise.allSettled(clusters.map((c) => c.stop()));
  rmSync(work, { recursive: true, force: true });
});

async function openResources(): Promise<{
  pg1: PostgresAdapter;
  pg2: PostgresAdapter;
  maria: MariaDbAdapter;
  close(): Promise<void>;
}> {
  const pg1 = await createPostgresAdapter({ connection: { connectionString: pgUrl(clusters[0]!) } });
  const pg2 = await createPostgresAdapter({ connection: { connectionString: pgUrl(clusters[1]!) } });
  const maria = await createMariaDbAdapter({
    connection: { host: '127.0.0.1', port: 3306, user: 'root', database },
  });
  return {
    pg1,
    pg2,
    maria,
    close: async () => {
      await Promise.allSettled([pg1.close(), pg2.close(), maria.close()]);
    },
  };
}

/** `adapter`, with every COMMIT PREPARED held until `gate` opens: the coordinator sits between its two phases. */
function gated(adapter: ResourceAdapter, gate: Promise<void>): ResourceAdapter {
  return new Proxy(adapter, {
    get(target, property) {
      if (property === 'commitPrepared') {
        return async (gid: string) => {
          await gate;
          return target.commitPrepared(gid);
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

test("two coordinators without ids on the same databases: the second one's recovery leaves the first one's prepared branches alone", async () => {
  const first = await openResources();
  const second = await openResources();
  const logA = await openSqliteLog<TwoPcRecord>(join(work, 'a.sqlite'), {
    create: true,
    decode: (v) => twoPcRecordCodec.check(v),
  });
  const logB = await openSqliteLog<TwoPcRecord>(join(work, 'b.sqlite'), {
    create: true,
    decode: (v) => twoPcRecordCodec.check(v),
  });
  let open: () => void = () => {};
  const gate = new Promise<void>((r) => {
    open = r;
  });
  const a = await createCoordinator({
    log: logA,
    resources: {
      pg1: gated(first.pg1, gate),
      pg2: gated(first.pg2, gate),
      maria: gated(first.maria, gate),
    },
  });
  const key = `a-${process.pid}`;
  const committed = a.transaction(async (tx) => {
    await tx.query('pg1', 'INSERT INTO kv (k, v) VALUES ($1, $2)', [key, 'debit']);
    await tx.query('pg2', 'INSERT INTO kv (k, v) VALUES ($1, $2)', [key, 'credit']);
    await tx.query('maria', 'INSERT INTO kv (k, v) VALUES (?, ?)', [key, 'audit']);
  });
  // Wait until A has prepared everywhere and holds its commit.
  for (let i = 0; (await first.maria.listPrepared(a.gidPrefix)).length === 0; i++) {
    assert.ok(i < 500, 'A never prepared');
    await new Promise((r) => setTimeout(r, 10));
  }
  const b = await createCoordinator({
    log: logB,
    resources: { pg1: second.pg1, pg2: second.pg2, maria: second.maria },
  });
  assert.notEqual(a.id, b.id);
  assert.match(a.id, /^[a-z0-9]{10}$/);
  const report = b.recovery;
  assert.deepEqual(report.rolledBack, [], 'B rolled back branches that are not its own');
  for (const adapter of [first.pg1, first.pg2, first.maria]) {
    assert.equal((await adapter.listPrepared(a.gidPrefix)).length, 1);
  }
  open();
  await committed;
  assert.deepEqual(a.heuristics, []);
  for (const [adapter, sql] of [
    [first.pg1, 'SELECT v FROM kv WHERE k = $1'],
    [first.pg2, 'SELECT v FROM kv WHERE k = $1'],
  ] as const) {
    const r = await adapter.pool.query(sql, [key]);
    assert.equal(r.rowCount, 1);
  }
  const [rows] = await first.maria.pool.query('SELECT v FROM kv WHERE k = ?', [key]);
  assert.equal((rows as unknown[]).length, 1);
  await a.close();
  await b.close();
  await logA.close();
  await logB.close();
  await first.close();
  await second.close();
});

function dtx(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root, timeout: 120_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

test('bench --init on a mysql:// URL uses the database it names and never touches xids it did not make', async () => {
  // A prepared XA branch of someone else on the same server.
  const other = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root', database });
  const xid = `'dtx_other${process.pid}.x.1_db3'`;
  await other.query(`XA START ${xid}`);
  await other.query('INSERT INTO kv (k, v) VALUES (?, ?)', [`other-${process.pid}`, 'x']);
  await other.query(`XA END ${xid}`);
  await other.query(`XA PREPARE ${xid}`);
  try {
    const log = join(work, 'bench.sqlite');
    const args = ['--db', pgUrl(clusters[0]!), '--db', pgUrl(clusters[1]!), '--db', mariaUrl, '--log', log];
    const init = dtx(['bench', ...args, '--init', '--txns', '20', '--accounts', '100']);
    assert.equal(init.code, 0, init.stderr);
    const [tables] = await admin.query(
      'SELECT table_name AS t FROM information_schema.tables WHERE table_schema = ? ORDER BY 1',
      [database],
    );
    const names = (tables as { t: string }[]).map((r) => r.t);
    assert.ok(names.includes('dtx_bench_transfers'), names.join(','));
    const [count] = await admin.query(`SELECT count(*) AS n FROM ${database}.dtx_bench_transfers`);
    assert.equal(Number((count as { n: number }[])[0]!.n), 20);
    // Crash one, recover: the foreign xid is still there after all of it.
    const crash = dtx(['bench', ...args, '--txns', '10', '--crash-at', 'prepared-all', '--crash-after', '2']);
    assert.equal(crash.signal, 'SIGKILL', crash.stderr);
    const recovered = dtx([
      'recover',
      '--db',
      pgUrl(clusters[0]!),
      '--db',
      pgUrl(clusters[1]!),
      '--db',
      mariaUrl,
      '--log',
      log,
      '--json',
    ]);
    assert.equal(recovered.code, 0, recovered.stderr);
    assert.ok((JSON.parse(recovered.stdout) as { rolledBack: string[] }).rolledBack.length >= 1);
    const again = dtx(['bench', ...args, '--init', '--txns', '1', '--accounts', '10']);
    assert.equal(again.code, 0, again.stderr);
    const [xa] = await admin.query('XA RECOVER');
    assert.ok(
      (xa as { data: string }[]).some((r) => String(r.data) === xid.slice(1, -1)),
      'a foreign prepared xid was resolved by dtx',
    );
  } finally {
    await other.query(`XA ROLLBACK ${xid}`).catch(() => undefined);
    await other.end();
  }
});
