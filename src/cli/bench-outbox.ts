// `dtx bench|recover|verify --protocol outbox`: transfers through the
// transactional outbox and inbox over NATS JetStream. A transfer debits an
// account on the producer database and writes its event to the outbox in the
// same local transaction (a share of them roll back instead); a relay
// publishes committed events; the consumer credits the account on its own
// database in the inbox transaction. `verify` checks that every committed
// debit has exactly one credit and that the money adds up.
//
// Tables (on PostgreSQL in the URL's database's default schema, on MariaDB in
// the database the URL names): `dtx_obench_meta`, `dtx_obench_accounts` on
// both; `dtx_obench_debits` and the outbox `dtx_obench_outbox` on the
// producer; `dtx_obench_credits` (deliberately without a unique key, so a
// credit applied twice shows) and the inbox `dtx_obench_inbox` on the
// consumer. The stream (`--stream`, default DTX_BENCH) takes `<stream>.>`;
// transfers go to `<stream>.transfer`.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Pool as MysqlPool } from 'mysql2/promise';
import type { Pool as PgPool } from 'pg';
import type { InboxDb } from '../adapters/inbox.ts';
import type { Outbox } from '../adapters/outbox.ts';
import { DtxError } from '../errors.ts';
import type { InboxConsumer } from '../runtime/outbox/inbox.ts';
import type { Relay } from '../runtime/outbox/relay.ts';
import { parseDbUrl } from './db.ts';
import { redact, withFix } from './errors.ts';
import { type OutboxPart, outboxParts } from './families.ts';

/** The durable consumer every bench consumer and `recover` share. */
const durable = 'dtx-bench';
/** Short, so that a killed relay's rows and a killed consumer's messages come back soon. */
const leaseMs = 4_000;
const ackWaitMs = 3_000;
/** Longer than a lease plus a publish (docs/outbox.md): a republish after a crash is dropped. */
const duplicateWindowMs = 120_000;
/** Deliveries before an event the consumer cannot apply (an unknown subject) is dead-lettered. */
const attemptsMax = 3;
const initialBalance = 1_000;

const t = {
  meta: 'dtx_obench_meta',
  accounts: 'dtx_obench_accounts',
  debits: 'dtx_obench_debits',
  credits: 'dtx_obench_credits',
  outbox: 'dtx_obench_outbox',
  inbox: 'dtx_obench_inbox',
} as const;

type Role = 'producer' | 'consumer';
const roleCodes: Record<Role, number> = { producer: 1, consumer: 2 };
/** Each role's tables besides the meta and accounts tables. */
const roleTables: Record<Role, readonly string[]> = {
  producer: [t.debits, t.outbox],
  consumer: [t.credits, t.inbox],
};

type Row = Record<string, unknown>;
/** A statement with `?` placeholders, on a pool or inside a transaction. */
type Query = (sql: string, params?: readonly unknown[]) => Promise<Row[]>;

/** One bench database: PostgreSQL or MariaDB, through its pool. */
interface BenchDb {
  kind: 'postgres' | 'mysql';
  role: Role;
  /** The URL with any password hidden, for messages. */
  where: string;
  query: Query;
  /** A local transaction; `work` gets the driver's handle (for the outbox/inbox) and a query on it. */
  tx<T>(work: (handle: unknown, q: Query) => Promise<T>): Promise<T>;
  outbox(maxPayloadBytes?: number): Promise<Outbox<unknown>>;
  inbox(): Promise<InboxDb<unknown>>;
  close(): Promise<void>;
}

const pgPlaceholders = (sql: string) => {
  let i = 0;
  return sql.replace(/\?/g, () => `$${++i}`);
};

async function openDb(url: string, index: number, role: Role, connections: number): Promise<BenchDb> {
  const target = parseDbUrl(url, index);
  const where = `${role} database ${redact(url)}`;
  if (target.kind === 'sqlite') {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `--protocol outbox runs on postgres:// or mysql:// databases, not ${url}`,
    );
  }
  if (target.kind === 'postgres') {
    const { default: pg } = await import('pg');
    const pool: PgPool = new pg.Pool({
      connectionString: url,
      max: connections,
      application_name: 'dtx-bench',
    });
    pool.on('error', () => undefined);
    const on =
      (c: { query: PgPool['query'] }): Query =>
      async (sql, params = []) =>
        (await c.query(pgPlaceholders(sql), params as unknown[])).rows as Row[];
    const { pgTransaction } = await import('../adapters/local-txn.ts');
    return {
      kind: 'postgres',
      role,
      where,
      query: on(pool),
      tx: (work) => pgTransaction(pool, (client) => work(client, on(client as unknown as PgPool))),
      async outbox(maxPayloadBytes) {
        const { postgresOutbox } = await import('../adapters/outbox.ts');
        return postgresOutbox(pool, { table: t.outbox, maxPayloadBytes }) as Outbox<unknown>;
      },
      async inbox() {
        const { postgresInbox } = await import('../adapters/inbox.ts');
        return postgresInbox(pool, { table: t.inbox }) as InboxDb<unknown>;
      },
      close: () => pool.end(),
    };
  }
  const u = new URL(url.replace(/^mariadb:/, 'mysql:'));
  if (!/^[A-Za-z0-9_$]{1,64}$/.test(decodeURIComponent(u.pathname.slice(1)))) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `${where}: a mysql:// URL must name the database the bench uses`,
    );
  }
  const { createPool } = await import('mysql2/promise');
  const pool: MysqlPool = createPool({
    uri: url.replace(/^mariadb:/, 'mysql:'),
    connectionLimit: connections,
  });
  const on =
    (c: { query: MysqlPool['query'] }): Query =>
    async (sql, params = []) =>
      (await c.query(sql, params as unknown[]))[0] as Row[];
  const { mariadbTransaction } = await import('../adapters/local-txn.ts');
  return {
    kind: 'mysql',
    role,
    where,
    query: on(pool),
    tx: (work) => mariadbTransaction(pool, (conn) => work(conn, on(conn as unknown as MysqlPool))),
    async outbox(maxPayloadBytes) {
      const { mariadbOutbox } = await import('../adapters/outbox.ts');
      return mariadbOutbox(pool, { table: t.outbox, maxPayloadBytes }) as Outbox<unknown>;
    },
    async inbox() {
      const { mariadbInbox } = await import('../adapters/inbox.ts');
      return mariadbInbox(pool, { table: t.inbox }) as InboxDb<unknown>;
    },
    close: () => pool.end(),
  };
}

/** The producer (first `--db`) and the consumer (second). */
async function openPair(urls: readonly string[], connections: number): Promise<[BenchDb, BenchDb]> {
  if (urls.length !== 2) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `--protocol outbox takes two --db: the producer's database, then the consumer's (got ${urls.length})`,
    );
  }
  if (urls[0] === urls[1]) {
    throw new DtxError('DTX_INVALID_ARGUMENT', 'the producer and the consumer need two different databases');
  }
  const producer = await openDb(urls[0]!, 0, 'producer', connections);
  try {
    return [producer, await openDb(urls[1]!, 1, 'consumer', connections)];
  } catch (error) {
    await producer.close();
    throw error;
  }
}

async function closeAll(dbs: readonly BenchDb[]): Promise<void> {
  for (const db of dbs) await db.close().catch(() => undefined);
}

const serial = (db: BenchDb) =>
  db.kind === 'postgres' ? 'BIGSERIAL PRIMARY KEY' : 'BIGINT AUTO_INCREMENT PRIMARY KEY';
const engine = (db: BenchDb) => (db.kind === 'mysql' ? ' ENGINE=InnoDB' : '');

/** `--init`: drops and creates this role's tables and accounts. */
async function initDb(db: BenchDb, accounts: number): Promise<void> {
  await db.query(`DROP TABLE IF EXISTS ${Object.values(t).join(', ')}`);
  await db.query(`CREATE TABLE ${t.meta} (k VARCHAR(32) PRIMARY KEY, v BIGINT NOT NULL)${engine(db)}`);
  await db.query(`CREATE TABLE ${t.accounts} (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL)${engine(db)}`);
  if (db.role === 'producer') {
    await db.query(
      `CREATE TABLE ${t.debits} (txn VARCHAR(128) PRIMARY KEY, account INTEGER NOT NULL, amount BIGINT NOT NULL)${engine(db)}`,
    );
    await (await db.outbox()).ensureSchema();
  } else {
    await db.query(
      `CREATE TABLE ${t.credits} (n ${serial(db)}, txn VARCHAR(128) NOT NULL, amount BIGINT NOT NULL)${engine(db)}`,
    );
    await (await db.inbox()).ensureSchema();
  }
  for (let start = 0; start < accounts; start += 1000) {
    const n = Math.min(1000, accounts - start);
    await db.query(
      `INSERT INTO ${t.accounts} (id, balance) VALUES ${Array(n).fill('(?, ?)').join(', ')}`,
      Array.from({ length: n }, (_, i) => [start + i, initialBalance]).flat(),
    );
  }
  await db.query(`INSERT INTO ${t.meta} (k, v) VALUES ('role', ?), ('total', ?), ('accounts', ?)`, [
    roleCodes[db.role],
    accounts * initialBalance,
    accounts,
  ]);
}

/** Refuses a database without the bench's tables (naming the first missing one) or set up for the other role. */
async function checkDb(db: BenchDb): Promise<{ accounts: number; total: number }> {
  for (const table of [t.meta, t.accounts, ...roleTables[db.role]]) {
    try {
      await db.query(`SELECT 1 FROM ${table} WHERE 1 = 0`);
    } catch (cause) {
      throw withFix(
        new DtxError('DTX_INVALID_STATE', `the ${db.where} has no table ${table}`, { cause }),
        'run dtx bench --protocol outbox --init with the same --db URLs first (it creates the tables)',
      );
    }
  }
  const meta = new Map((await db.query(`SELECT k, v FROM ${t.meta}`)).map((r) => [String(r.k), Number(r.v)]));
  if (meta.get('role') !== roleCodes[db.role]) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `the ${db.where} was not set up as the ${db.role}: give the producer's --db first, as bench --init had them; nothing was touched`,
    );
  }
  return { accounts: meta.get('accounts') ?? 0, total: meta.get('total') ?? 0 };
}

/** Connects to NATS, failing at once (not waiting) when it cannot be reached. */
async function connectNats(url: string): Promise<NatsConnection> {
  const { connect } = await import('@nats-io/transport-node');
  try {
    return await connect({
      servers: url,
      name: 'dtx-bench',
      timeout: 3_000,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
  } catch (cause) {
    throw new DtxError(
      'DTX_RESOURCE_UNAVAILABLE',
      `cannot reach NATS at ${redact(url)}: ${(cause as Error).message}; nothing was written or marked sent`,
      { cause },
    );
  }
}

const streamSubjects = (stream: string) => [`${stream}.>`];

/**
 * The bench's stream. `create` (bench --init): replaced by a fresh one with
 * explicit settings (file storage, subjects `<stream>.>`, a two-minute
 * duplicate window); otherwise it must exist (DTX_INVALID_STATE).
 */
async function ensureStream(nc: NatsConnection, stream: string, create: boolean): Promise<void> {
  const { jetstreamManager, StorageType } = await import('@nats-io/jetstream');
  const jsm = await jetstreamManager(nc, { timeout: 5_000 });
  if (create) {
    await jsm.streams.delete(stream).catch(() => undefined);
    await jsm.streams.add({
      name: stream,
      subjects: streamSubjects(stream),
      storage: StorageType.File,
      duplicate_window: duplicateWindowMs * 1e6,
    });
    return;
  }
  try {
    await jsm.streams.info(stream);
  } catch (cause) {
    throw withFix(
      new DtxError('DTX_INVALID_STATE', `JetStream has no stream ${stream}: ${(cause as Error).message}`, {
        cause,
      }),
      `run dtx bench --protocol outbox --init (it creates ${stream} for subjects ${stream}.> with a 2-minute duplicate window)`,
    );
  }
}

interface Event {
  txn: string;
  account: number;
  amount: number;
}

/** The consumer's handler: credits a transfer event; anything else it cannot apply (and says why). */
function creditHandler(stream: string) {
  const subject = `${stream}.transfer`;
  return async (m: { subject: string; json<T>(): T }, q: Query) => {
    if (m.subject !== subject) {
      throw new DtxError(
        'DTX_BAD_MESSAGE',
        `unknown subject ${m.subject}: the bench consumer applies ${subject} only`,
      );
    }
    const e = m.json<Event>();
    await q(`UPDATE ${t.accounts} SET balance = balance + ? WHERE id = ?`, [e.amount, e.account]);
    await q(`INSERT INTO ${t.credits} (txn, amount) VALUES (?, ?)`, [e.txn, e.amount]);
  };
}

/** What the running parts share. */
interface Running {
  relay?: Relay;
  consumer?: InboxConsumer;
  stop(): Promise<void>;
}

async function startParts(
  parts: ReadonlySet<OutboxPart>,
  producer: BenchDb,
  consumerDb: BenchDb,
  nc: NatsConnection,
  stream: string,
  log: (line: string) => void,
  afterCommit?: (id: string) => void,
): Promise<Running> {
  const running: Running = {
    async stop() {
      await running.consumer?.stop();
      await running.relay?.stop();
    },
  };
  if (parts.has('relay')) {
    const { startRelay } = await import('../runtime/outbox/relay.ts');
    running.relay = await startRelay({
      db: await producer.outbox(),
      nats: nc,
      stream,
      leaseMs,
      pollMs: 5,
      log,
    });
  }
  if (parts.has('consumer')) {
    const { consume } = await import('../runtime/outbox/inbox.ts');
    const inbox = await consumerDb.inbox();
    const handler = creditHandler(stream);
    // The inbox hands the handler its transaction's driver handle; the query runs on it.
    const onHandle = consumerDb.kind === 'postgres' ? pgOn : mysqlOn;
    try {
      running.consumer = await consume(
        {
          nats: nc,
          stream,
          durable,
          db: inbox,
          ackWaitMs,
          attemptsMax,
          log,
          ...(afterCommit === undefined ? {} : { afterCommit: (m) => afterCommit(m.id) }),
        },
        (m, handle) => handler(m, onHandle(handle)),
      );
    } catch (error) {
      await running.relay?.stop();
      throw error;
    }
  }
  return running;
}

function pgOn(handle: unknown): Query {
  const c = handle as { query(sql: string, p: unknown[]): Promise<{ rows: Row[] }> };
  return async (sql, params = []) => (await c.query(pgPlaceholders(sql), [...params])).rows;
}

function mysqlOn(handle: unknown): Query {
  const c = handle as { query(sql: string, p: unknown[]): Promise<[unknown, unknown]> };
  return async (sql, params = []) => (await c.query(sql, [...params]))[0] as Row[];
}

/** Opens both databases, checks (or creates) the tables, connects NATS, checks (or creates) the stream. */
async function setUp(opts: {
  dbs: readonly string[];
  nats: string;
  stream: string;
  init: boolean;
  accounts: number;
  connections: number;
}): Promise<{
  producer: BenchDb;
  consumer: BenchDb;
  nc: NatsConnection;
  accounts: number;
  close(): Promise<void>;
}> {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(opts.stream)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `--stream ${JSON.stringify(opts.stream)} must be 1 to 64 of A-Z a-z 0-9 _ -`,
    );
  }
  const [producer, consumer] = await openPair(opts.dbs, opts.connections);
  try {
    // NATS first: when it is unreachable nothing is touched, --init included.
    const nc = await connectNats(opts.nats);
    try {
      if (opts.init) for (const db of [producer, consumer]) await initDb(db, opts.accounts);
      const [p] = [await checkDb(producer), await checkDb(consumer)];
      await ensureStream(nc, opts.stream, opts.init);
      return {
        producer,
        consumer,
        nc,
        accounts: p.accounts,
        async close() {
          await nc.close();
          await closeAll([producer, consumer]);
        },
      };
    } catch (error) {
      await nc.close();
      throw error;
    }
  } catch (error) {
    await closeAll([producer, consumer]);
    throw error;
  }
}

export interface OutboxBenchOptions {
  dbs: readonly string[];
  nats: string;
  stream: string;
  accounts: number;
  concurrency: number;
  durationS?: number;
  txns?: number;
  init: boolean;
  /** Share of transfers rolled back after writing their debit and event. */
  abortShare: number;
  /** Which parts run in this process (default all three). */
  parts: readonly OutboxPart[];
  progress(line: string): void;
}

export interface OutboxBenchReport {
  protocol: 'outbox';
  txns: number;
  committed: number;
  aborted: number;
  /** Committed transfers whose credit this process saw committed (all parts in this process). */
  applied: number;
  concurrency: number;
  /** Committed transfers per second, from the first start to the last credit seen (or to the last commit when this process does not consume). */
  tps: number;
  /** Producer commit to consumer commit, when this process runs all three parts. */
  latencyMs?: { p50: number; p99: number; max: number };
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return Number(sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!.toFixed(1));
}

/** Waits for SIGINT or SIGTERM. */
const signalled = () =>
  new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });

export async function runOutboxBench(o: OutboxBenchOptions): Promise<OutboxBenchReport> {
  if (!(o.abortShare >= 0 && o.abortShare < 1)) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `--abort-share must be in [0, 1), got ${o.abortShare}`);
  }
  const parts = new Set(o.parts.length === 0 ? outboxParts : o.parts);
  const env = await setUp({ ...o, connections: o.concurrency + 4 });
  const { producer, consumer: consumerDb, nc } = env;
  const accounts = env.accounts;
  if (accounts < 1)
    throw new DtxError('DTX_INVALID_STATE', 'the producer database has no accounts: run with --init');
  const all = parts.size === outboxParts.length;
  const committedAt = new Map<string, number>();
  const latencies: number[] = [];
  let lastAppliedMs = 0;
  const log = (line: string) => o.progress(line.replace(/^dtx /, ''));
  try {
    const running = await startParts(parts, producer, consumerDb, nc, o.stream, log, (id) => {
      const at = committedAt.get(id);
      if (at === undefined) return;
      committedAt.delete(id);
      lastAppliedMs = performance.now();
      latencies.push(lastAppliedMs - at);
    });
    try {
      if (!parts.has('producer')) {
        o.progress(`outbox ${[...parts].join(' and ')} running until SIGINT or SIGTERM`);
        await signalled();
        return { protocol: 'outbox', txns: 0, committed: 0, aborted: 0, applied: 0, concurrency: 0, tps: 0 };
      }
      const outbox = await producer.outbox(
        await (await import('../runtime/outbox/relay.ts')).brokerPayloadLimit(nc, o.stream),
      );
      const incarnation = randomBytes(4).toString('hex');
      const subject = `${o.stream}.transfer`;
      const rand = (n: number) => Math.floor(Math.random() * n);
      let started = 0;
      let committed = 0;
      let aborted = 0;
      const t0 = performance.now();
      const endAt = o.durationS === undefined ? Number.POSITIVE_INFINITY : t0 + o.durationS * 1000;
      const more = () => performance.now() < endAt && (o.txns === undefined || started < o.txns);
      const rollback = new Error('rollback');
      o.progress('transfers started');
      const worker = async () => {
        while (more()) {
          const txn = `${incarnation}-${started++}`;
          const event: Event = { txn, account: rand(accounts), amount: 1 + rand(100) };
          const abort = Math.random() < o.abortShare;
          try {
            const from = rand(accounts);
            await producer.tx(async (handle, q) => {
              await q(`UPDATE ${t.accounts} SET balance = balance - ? WHERE id = ?`, [event.amount, from]);
              await q(`INSERT INTO ${t.debits} (txn, account, amount) VALUES (?, ?, ?)`, [
                txn,
                from,
                event.amount,
              ]);
              await outbox.publish(handle, subject, event, { id: txn });
              if (abort) throw rollback;
            });
          } catch (error) {
            if (error !== rollback) throw error;
            aborted++;
            continue;
          }
          committed++;
          if (all) committedAt.set(txn, performance.now());
          running.relay?.wake();
        }
      };
      await Promise.all(Array.from({ length: o.concurrency }, worker));
      const producedMs = performance.now();
      if (all) {
        // Every committed transfer's credit, or a minute of waiting.
        const deadline = performance.now() + 60_000;
        while (committedAt.size > 0 && performance.now() < deadline)
          await new Promise((r) => setTimeout(r, 10));
      }
      const endMs = all ? Math.max(lastAppliedMs, producedMs) : producedMs;
      latencies.sort((a, b) => a - b);
      return {
        protocol: 'outbox',
        txns: committed + aborted,
        committed,
        aborted,
        applied: latencies.length,
        concurrency: o.concurrency,
        tps: Math.round((all ? latencies.length : committed) / ((endMs - t0) / 1000)),
        ...(all
          ? {
              latencyMs: {
                p50: percentile(latencies, 50),
                p99: percentile(latencies, 99),
                max: percentile(latencies, 100),
              },
            }
          : {}),
      };
    } finally {
      await running.stop();
    }
  } finally {
    await env.close();
  }
}

export interface OutboxRecoverReport {
  protocol: 'outbox';
  /** Rows the relay published (and marked sent). */
  relayed: number;
  /** Of those, copies JetStream had already (a relay killed after the ack). */
  duplicatesDropped: number;
  applied: number;
  /** Redeliveries the inbox had already applied. */
  skipped: number;
  deadLettered: number;
}

/**
 * Relays every unsent outbox row and consumes until the stream is drained:
 * nothing unsent, and nothing pending or unacknowledged for the bench's
 * durable consumer (messages a killed consumer held come back after the ack
 * wait), seen twice in a row.
 */
export async function runOutboxRecover(o: {
  dbs: readonly string[];
  nats: string;
  stream: string;
  timeoutMs?: number;
  log(line: string): void;
}): Promise<OutboxRecoverReport> {
  const env = await setUp({ ...o, init: false, accounts: 0, connections: 8 });
  try {
    const running = await startParts(
      new Set(outboxParts),
      env.producer,
      env.consumer,
      env.nc,
      o.stream,
      o.log,
    );
    const outbox = await env.producer.outbox();
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const jsm = await jetstreamManager(env.nc, { timeout: 5_000 });
    const deadline = Date.now() + (o.timeoutMs ?? 120_000);
    try {
      let quiet = 0;
      while (quiet < 2) {
        if (Date.now() > deadline) {
          throw new DtxError(
            'DTX_TIMEOUT',
            `the stream did not drain: ${await outbox.unsentCount()} outbox row(s) unsent; run recover again`,
          );
        }
        await new Promise((r) => setTimeout(r, 250));
        const unsent = await outbox.unsentCount();
        const info = await jsm.consumers.info(o.stream, durable);
        quiet = unsent === 0 && info.num_pending === 0 && info.num_ack_pending === 0 ? quiet + 1 : 0;
      }
    } finally {
      await running.stop();
    }
    const r = running.relay!.stats();
    const c = running.consumer!.stats();
    return {
      protocol: 'outbox',
      relayed: r.published,
      duplicatesDropped: r.duplicates,
      applied: c.applied,
      skipped: c.skipped,
      deadLettered: c.deadLettered,
    };
  } finally {
    await env.close();
  }
}

export interface OutboxVerifyReport {
  ok: boolean;
  /** Sum of the balances on both databases. */
  total: number;
  expectedTotal: number;
  /** Committed debits. */
  produced: number;
  /** Debits with a credit. */
  applied: number;
  /** Debits credited more than once (counted once each). */
  duplicates: number;
  /** Committed debits without a credit. */
  missing: number;
  /** Credits for no committed debit. */
  unknown: number;
}

/** Every committed debit has exactly one credit, no credit lacks its debit, and the money adds up. */
export async function runOutboxVerify(dbs: readonly string[]): Promise<OutboxVerifyReport> {
  const [producer, consumer] = await openPair(dbs, 2);
  try {
    let total = 0;
    let expectedTotal = 0;
    for (const db of [producer, consumer]) {
      expectedTotal += (await checkDb(db)).total;
      total += Number(
        (await db.query(`SELECT COALESCE(SUM(balance), 0) AS s FROM ${t.accounts}`))[0]?.s ?? 0,
      );
    }
    const debits = new Set((await producer.query(`SELECT txn FROM ${t.debits}`)).map((r) => String(r.txn)));
    const credits = new Map<string, number>();
    for (const r of await consumer.query(`SELECT txn FROM ${t.credits}`)) {
      const txn = String(r.txn);
      credits.set(txn, (credits.get(txn) ?? 0) + 1);
    }
    let applied = 0;
    let duplicates = 0;
    let unknown = 0;
    for (const [txn, n] of credits) {
      if (!debits.has(txn)) unknown++;
      else applied++;
      if (n > 1) duplicates++;
    }
    const missing = debits.size - applied;
    return {
      ok: missing === 0 && duplicates === 0 && unknown === 0 && total === expectedTotal,
      total,
      expectedTotal,
      produced: debits.size,
      applied,
      duplicates,
      missing,
      unknown,
    };
  } finally {
    await closeAll([producer, consumer]);
  }
}

/** True when the first `--db` holds an outbox bench's producer tables (how recover and verify tell without --protocol). */
export async function isOutboxBench(dbs: readonly string[]): Promise<boolean> {
  if (dbs.length !== 2 || dbs[0]!.startsWith('sqlite:')) return false;
  let db: BenchDb;
  try {
    db = await openDb(dbs[0]!, 0, 'producer', 1);
  } catch {
    return false; // not a URL this bench takes: the other families report it
  }
  try {
    const rows = await db.query(`SELECT v FROM ${t.meta} WHERE k = 'role'`);
    return Number(rows[0]?.v) === roleCodes.producer;
  } catch {
    return false;
  } finally {
    await db.close();
  }
}
