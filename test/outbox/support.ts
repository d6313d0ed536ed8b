// What the outbox and inbox tests share: a NATS server of their own (so a test
// can kill and restart the broker), a stream per test with a long duplicate
// window, the three databases with per-run table names, and waiting for a
// condition with a deadline generous enough for a loaded machine.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import Database from 'better-sqlite3';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { freePort } from '../support/ports.ts';

export const sharedNatsUrl = process.env.DTX_TEST_NATS_URL ?? 'nats://127.0.0.1:4222';
export const pgConnection = { host: '127.0.0.1', port: 5432, user: 'postgres', database: 'test' };
/** The outbox tests' own MariaDB database (XA is server-wide; nothing here uses XA, but names stay apart). */
export const mariadbDatabase = 'dtx_outbox_test';
export const mariadbConnection = { host: '127.0.0.1', port: 3306, user: 'root', password: '' };

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = new Socket();
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.connect(port, '127.0.0.1');
  });
}

/** A nats-server with JetStream on a free port and a store directory of its own. */
export interface OwnNats {
  url: string;
  /** SIGKILLs the server. */
  kill(): Promise<void>;
  /** Starts it again on the same port and store. */
  start(): Promise<void>;
  /** Kills it and deletes its store. */
  dispose(): Promise<void>;
}

export async function startOwnNats(): Promise<OwnNats> {
  const dir = mkdtempSync(join(tmpdir(), 'dtx-nats-'));
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    child = spawn('/usr/sbin/nats-server', ['-js', '-sd', dir, '-p', String(port), '-a', '127.0.0.1'], {
      stdio: 'ignore',
    });
    const deadline = Date.now() + 20_000;
    while (!(await accepts(port))) {
      if (Date.now() > deadline) throw new Error(`nats-server on ${port} did not start`);
      await sleep(50);
    }
  };
  const kill = async () => {
    const c = child;
    child = undefined;
    if (c === undefined || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await exited;
  };
  await start();
  return {
    url: `nats://127.0.0.1:${port}`,
    start,
    kill,
    async dispose() {
      await kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` until it returns true; fails with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

export function natsConnect(url: string): Promise<NatsConnection> {
  return connect({
    servers: url,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 200,
    waitOnFirstConnect: true,
  });
}

/** A file-backed stream taking `<name>.>`, deduplicating for ten minutes (longer than any test's leases). */
export async function createStream(nc: NatsConnection, name: string): Promise<string> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name, subjects: [`${name}.>`], duplicate_window: 600e9 });
  return name;
}

export async function deleteStream(nc: NatsConnection, name: string): Promise<void> {
  const jsm = await jetstreamManager(nc);
  await jsm.streams.delete(name).catch(() => undefined);
}

export function pgPool(): pg.Pool {
  const pool = new pg.Pool({ ...pgConnection, max: 6 });
  pool.on('error', () => undefined);
  return pool;
}

export async function mariadbPool(): Promise<mysql.Pool> {
  const admin = await mysql.createConnection(mariadbConnection);
  await admin.query(`CREATE DATABASE IF NOT EXISTS ${mariadbDatabase}`);
  await admin.end();
  return mysql.createPool({ ...mariadbConnection, database: mariadbDatabase, connectionLimit: 6 });
}

export function sqliteFile(): { path: string; open(): Database.Database; dispose(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'dtx-outbox-sqlite-'));
  const path = join(dir, 'db.sqlite');
  return {
    path,
    open() {
      const db = new Database(path, { timeout: 5_000 });
      db.pragma('journal_mode = WAL');
      return db;
    },
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A PostgreSQL and a MariaDB database of this run's own (the outbox bench's tables have fixed names), dropped by `drop`. */
export async function benchDatabases(prefix: string): Promise<{
  name: string;
  pgUrl: string;
  myUrl: string;
  drop(): Promise<void>;
}> {
  const name = `${prefix}_${Math.random().toString(36).slice(2, 10)}`;
  const admin = new pg.Client({ ...pgConnection });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const my = await mysql.createConnection(mariadbConnection);
  await my.query(`CREATE DATABASE ${name}`);
  await my.end();
  return {
    name,
    pgUrl: `postgres://${pgConnection.user}@${pgConnection.host}:${pgConnection.port}/${name}`,
    myUrl: `mysql://${mariadbConnection.user}@${mariadbConnection.host}:${mariadbConnection.port}/${name}`,
    async drop() {
      const a = new pg.Client({ ...pgConnection });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
      const m = await mysql.createConnection(mariadbConnection);
      await m.query(`DROP DATABASE IF EXISTS ${name}`);
      await m.end();
    },
  };
}
