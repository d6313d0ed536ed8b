// The README's library example (examples/transfer.ts), run as a user would
// run it — importing the built package by name — against a throwaway
// PostgreSQL cluster and the machine's MariaDB.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { type PgCluster, startPgCluster } from './adapters/pg-cluster.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const table = `dtx_example_${process.pid}`;
let cluster: PgCluster;
const dir = mkdtempSync(join(tmpdir(), 'dtx-example-'));

before(async () => {
  cluster = await startPgCluster();
  const client = new pg.Client(cluster.connection);
  await client.connect();
  await client.query('CREATE TABLE accounts (id text PRIMARY KEY, balance int NOT NULL)');
  await client.query("INSERT INTO accounts VALUES ('karan', 1000)");
  await client.end();
  const my = await mysql.createConnection({ host: '127.0.0.1', user: 'root', database: 'test' });
  await my.query(`CREATE DATABASE IF NOT EXISTS ${table}`);
  await my.query(`CREATE TABLE ${table}.accounts (id varchar(32) PRIMARY KEY, balance int NOT NULL)`);
  await my.query(`INSERT INTO ${table}.accounts VALUES ('merchant-17', 0)`);
  await my.end();
});

after(async () => {
  await cluster?.stop();
  const my = await mysql.createConnection({ host: '127.0.0.1', user: 'root' });
  await my.query(`DROP DATABASE IF EXISTS ${table}`);
  await my.end();
  rmSync(dir, { recursive: true, force: true });
});

test('examples/transfer.ts moves 500 from PostgreSQL to MariaDB atomically, and closes what it opened', async () => {
  const run = () =>
    spawnSync(process.execPath, ['--import', 'tsx', 'examples/transfer.ts'], {
      cwd: root,
      encoding: 'utf8',
      timeout: 60_000,
      env: {
        ...process.env,
        DTX_PG_URL: `postgres://postgres@127.0.0.1:${cluster.port}/postgres`,
        DTX_MYSQL_URL: `mysql://root@127.0.0.1:3306/${table}`,
        DTX_LOG: join(dir, 'coordinator.sqlite'),
      },
    });
  // The example ends with no close() calls: it exits only because `await
  // using` closed the coordinator, the log and both pools, and a second run
  // can open the log only because the first released its lock.
  for (const expected of [
    { karan: 500, merchant: 500 },
    { karan: 0, merchant: 1000 },
  ]) {
    const r = run();
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /recovered: 0 recommitted, 0 rolled back/);
    assert.match(r.stdout, /transfer committed on both databases/);
    const client = new pg.Client(cluster.connection);
    await client.connect();
    const { rows } = await client.query("SELECT balance FROM accounts WHERE id = 'karan'");
    await client.end();
    assert.equal(rows[0].balance, expected.karan);
    const my = await mysql.createConnection({ host: '127.0.0.1', user: 'root' });
    const [mrows] = await my.query(`SELECT balance FROM ${table}.accounts WHERE id = 'merchant-17'`);
    await my.end();
    assert.equal((mrows as { balance: number }[])[0]!.balance, expected.merchant);
  }
});
