// The transactional outbox's table, on PostgreSQL, MariaDB/MySQL (InnoDB) or
// SQLite: `publish()` writes a message as a row inside the caller's own local
// transaction, so the message exists if and only if the business write
// committed; the relay (src/runtime/outbox/relay.ts) reads, claims, marks and
// prunes rows through the same object. Which rows a relay claims and in what
// order it publishes them is decided by src/protocol/outbox/plan.ts; this
// module only runs the statements.
//
// Claims: a claim is a conditional update (the row is unsent and nobody else
// holds a live claim) of rows locked with FOR UPDATE SKIP LOCKED on
// PostgreSQL and MariaDB, so two relays never wait on each other nor both hold
// a row; SQLite has one writer at a time, so a BEGIN IMMEDIATE transaction
// does the same.
//
// Drivers are passed in by the caller (pg, mysql2/promise, better-sqlite3);
// this module imports none of them.

import { randomUUID } from 'node:crypto';
import type BetterSqlite3 from 'better-sqlite3';
import type { PoolConnection as MysqlConnection, Pool as MysqlPool } from 'mysql2/promise';
import type { PoolClient as PgClient, Pool as PgPool } from 'pg';
import { DtxError } from '../errors.ts';
import type { OutboxCandidate } from '../protocol/outbox/plan.ts';
import {
  barrierTablePattern,
  outboxIdPattern,
  outboxKeyPattern,
  outboxPayloadBytesMax,
  outboxSubjectCharsMax,
  outboxSubjectPattern,
} from '../runtime/limits.ts';
import { stringField } from './internal.ts';
import { mariadbTransaction } from './local-txn.ts';

/** A message body: bytes as they are, anything else as its JSON text. */
export type OutboxPayload = Uint8Array | string | number | boolean | null | object;

export interface PublishOptions {
  /** The message id, also its `Nats-Msg-Id`. Default: a random UUID. */
  id?: string;
  /** Ordering key: messages with the same key are published in the order they were written. */
  key?: string;
}

/** An outbox row as the relay publishes it. */
export interface OutboxRow {
  seq: number;
  id: string;
  subject: string;
  key: string | null;
  payload: Uint8Array;
  createdMs: number;
}

/** What the relay needs from an outbox table. */
export interface OutboxStore {
  readonly kind: 'postgres' | 'mariadb' | 'sqlite';
  readonly table: string;
  /** Creates the table and its index if missing. */
  ensureSchema(): Promise<void>;
  /** Fails when the table is missing; reads nothing. */
  check(): Promise<void>;
  /** Unsent rows, oldest first, at most `limit`. */
  scan(limit: number): Promise<OutboxCandidate[]>;
  /** Claims those of `seqs` that are unsent and not held by another live claim; returns what it got. */
  claim(seqs: readonly number[], relayId: string, nowMs: number, untilMs: number): Promise<OutboxRow[]>;
  /** Marks rows published (acked by JetStream). */
  markSent(seqs: readonly number[], nowMs: number): Promise<void>;
  /** Gives up this relay's claim on rows it will not publish now. */
  release(seqs: readonly number[], relayId: string): Promise<void>;
  /** Deletes up to `limit` rows sent before `sentBeforeMs`; returns how many. */
  prune(sentBeforeMs: number, limit: number): Promise<number>;
  /** Rows not yet sent (for monitoring and tests). */
  unsentCount(): Promise<number>;
}

/** An outbox on one database; `Tx` is the handle of the caller's open transaction. */
export interface Outbox<Tx, R = Promise<string>> extends OutboxStore {
  /**
   * Writes a message to `subject` as a row of the caller's open transaction
   * `tx`: it is published if and only if that transaction commits. Returns
   * the message id.
   */
  publish(tx: Tx, subject: string, payload: OutboxPayload, options?: PublishOptions): R;
}

/**
 * An outbox's options. `maxPayloadBytes`: refuse larger payloads at `publish`
 * (before the caller commits) instead of committing a row the broker will
 * never take; `brokerPayloadLimit` (src/runtime/outbox/relay.ts) reads it from
 * the server and the stream. Default and upper bound: 1,000,000 bytes.
 */
export interface OutboxOptions {
  table?: string;
  maxPayloadBytes?: number;
}

/** The payload limit an outbox enforces. */
function payloadLimit(options: OutboxOptions): number {
  const max = options.maxPayloadBytes ?? outboxPayloadBytesMax;
  if (!Number.isSafeInteger(max) || max < 1) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `maxPayloadBytes must be a positive integer, got ${max}`);
  }
  return Math.min(max, outboxPayloadBytesMax);
}

export function checkOutboxTable(table: string | undefined, fallback: string): string {
  const t = table ?? fallback;
  if (!barrierTablePattern.test(t)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `table ${JSON.stringify(t)} must match ${barrierTablePattern}`,
    );
  }
  return t;
}

interface Checked {
  id: string;
  subject: string;
  key: string | null;
  payload: Buffer;
}

/** Validates a publish before anything reaches SQL, so bad input costs the caller's transaction nothing. */
function checkPublish(
  subject: string,
  payload: OutboxPayload,
  options: PublishOptions | undefined,
  maxBytes: number,
): Checked {
  if (
    typeof subject !== 'string' ||
    subject.length > outboxSubjectCharsMax ||
    !outboxSubjectPattern.test(subject)
  ) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `subject ${JSON.stringify(subject)} must be dot-separated tokens of letters, digits, _ and - (no wildcards), at most ${outboxSubjectCharsMax} characters`,
    );
  }
  const id = options?.id ?? randomUUID();
  if (typeof id !== 'string' || !outboxIdPattern.test(id)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `message id ${JSON.stringify(id)} must match ${outboxIdPattern}`,
    );
  }
  const key = options?.key ?? null;
  if (key !== null && (typeof key !== 'string' || !outboxKeyPattern.test(key))) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `ordering key ${JSON.stringify(key)} must be 1 to 128 printable ASCII characters`,
    );
  }
  let bytes: Buffer;
  if (payload instanceof Uint8Array)
    bytes = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
  else {
    const text = JSON.stringify(payload);
    if (text === undefined) throw new DtxError('DTX_INVALID_ARGUMENT', 'payload is not JSON-serializable');
    bytes = Buffer.from(text, 'utf8');
  }
  if (bytes.byteLength > maxBytes) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `payload of ${bytes.byteLength} bytes exceeds ${maxBytes} bytes` +
        (maxBytes < outboxPayloadBytesMax ? " (the broker's limit)" : ''),
    );
  }
  return { id, subject, key, payload: bytes };
}

/** A second message with an id already in the outbox: the caller reused an id. */
function duplicateId(id: string, cause: unknown): DtxError {
  return new DtxError('DTX_INVALID_ARGUMENT', `message id ${JSON.stringify(id)} is already in the outbox`, {
    cause,
  });
}

const insertSql = (table: string, params: string) =>
  `INSERT INTO ${table} (id, subject, msg_key, payload, created_ms) VALUES (${params})`;

/** Runs the insert of a checked message; a unique violation (`duplicateCode`) becomes `duplicateId`. */
async function insertMessage(
  m: Checked,
  duplicateCode: string,
  insert: (row: unknown[]) => Promise<unknown>,
): Promise<void> {
  try {
    await insert([m.id, m.subject, m.key, m.payload, Date.now()]);
  } catch (error) {
    if (stringField(error, 'code') === duplicateCode) throw duplicateId(m.id, error);
    throw error;
  }
}

const columns = 'seq, id, subject, msg_key, payload, created_ms';

interface RawRow {
  seq: number | string;
  id: string;
  subject: string;
  msg_key: string | null;
  payload: Uint8Array;
  created_ms: number | string;
}

function toRow(r: RawRow): OutboxRow {
  return {
    seq: Number(r.seq),
    id: r.id,
    subject: r.subject,
    key: r.msg_key,
    payload: r.payload,
    createdMs: Number(r.created_ms),
  };
}

interface RawCandidate {
  seq: number | string;
  msg_key: string | null;
  claimed_by: string | null;
  claim_until_ms: number | string | null;
}

function toCandidate(r: RawCandidate): OutboxCandidate {
  return {
    seq: Number(r.seq),
    key: r.msg_key,
    claimedBy: r.claimed_by,
    claimUntilMs: r.claim_until_ms === null ? null : Number(r.claim_until_ms),
  };
}

/** The column list after `seq`, the same on every database but for the binary and auto-increment types. */
function tableBody(binary: string): string {
  return (
    'id VARCHAR(128) NOT NULL UNIQUE, subject VARCHAR(255) NOT NULL, msg_key VARCHAR(128), ' +
    `payload ${binary} NOT NULL, created_ms BIGINT NOT NULL, claimed_by VARCHAR(64), ` +
    'claim_until_ms BIGINT, attempts INTEGER NOT NULL DEFAULT 0, sent_ms BIGINT'
  );
}

const scanSql = (table: string, param: string) =>
  `SELECT seq, msg_key, claimed_by, claim_until_ms FROM ${table} WHERE sent_ms IS NULL ORDER BY seq LIMIT ${param}`;

/** The claim's condition on a row: unsent, and free, expired, or already ours. */
const claimableSql = (relay: string, now: string) =>
  `sent_ms IS NULL AND (claimed_by IS NULL OR claimed_by = ${relay} OR claim_until_ms <= ${now})`;

/** An outbox in a PostgreSQL database, through a `pg` pool; `publish` takes the client of an open transaction. */
export function postgresOutbox(pool: PgPool, options: OutboxOptions = {}): Outbox<PgClient> {
  const table = checkOutboxTable(options.table, 'dtx_outbox');
  const maxBytes = payloadLimit(options);
  return {
    kind: 'postgres',
    table,
    async publish(tx, subject, payload, opts) {
      const m = checkPublish(subject, payload, opts, maxBytes);
      await insertMessage(m, '23505', (row) => tx.query(insertSql(table, '$1, $2, $3, $4, $5'), row));
      return m.id;
    },
    async ensureSchema() {
      await pool.query(
        `CREATE TABLE IF NOT EXISTS ${table} (seq BIGSERIAL PRIMARY KEY, ${tableBody('BYTEA')})`,
      );
      await pool.query(`CREATE INDEX IF NOT EXISTS ${table}_unsent ON ${table} (sent_ms, seq)`);
    },
    async check() {
      await pool.query(`SELECT 1 FROM ${table} WHERE false`);
    },
    async scan(limit) {
      const r = await pool.query(scanSql(table, '$1'), [limit]);
      return (r.rows as RawCandidate[]).map(toCandidate);
    },
    async claim(seqs, relayId, nowMs, untilMs) {
      if (seqs.length === 0) return [];
      const r = await pool.query(
        `UPDATE ${table} SET claimed_by = $2, claim_until_ms = $4, attempts = attempts + 1 ` +
          `WHERE seq IN (SELECT seq FROM ${table} WHERE seq = ANY($1::bigint[]) AND ${claimableSql('$2', '$3')} ` +
          `FOR UPDATE SKIP LOCKED) RETURNING ${columns}`,
        [seqs, relayId, nowMs, untilMs],
      );
      return (r.rows as RawRow[]).map(toRow).sort((a, b) => a.seq - b.seq);
    },
    async markSent(seqs, nowMs) {
      if (seqs.length === 0) return;
      await pool.query(
        `UPDATE ${table} SET sent_ms = $2, claimed_by = NULL, claim_until_ms = NULL ` +
          'WHERE seq = ANY($1::bigint[]) AND sent_ms IS NULL',
        [seqs, nowMs],
      );
    },
    async release(seqs, relayId) {
      if (seqs.length === 0) return;
      await pool.query(
        `UPDATE ${table} SET claimed_by = NULL, claim_until_ms = NULL WHERE seq = ANY($1::bigint[]) AND claimed_by = $2`,
        [seqs, relayId],
      );
    },
    async prune(sentBeforeMs, limit) {
      const r = await pool.query(
        `DELETE FROM ${table} WHERE seq IN (SELECT seq FROM ${table} WHERE sent_ms < $1 ORDER BY sent_ms LIMIT $2)`,
        [sentBeforeMs, limit],
      );
      return r.rowCount ?? 0;
    },
    async unsentCount() {
      const r = await pool.query(`SELECT count(*) AS n FROM ${table} WHERE sent_ms IS NULL`);
      return Number((r.rows[0] as { n: string }).n);
    },
  };
}

/** An outbox in a MariaDB/MySQL database (InnoDB), through a `mysql2/promise` pool; `publish` takes the connection of an open transaction. */
export function mariadbOutbox(pool: MysqlPool, options: OutboxOptions = {}): Outbox<MysqlConnection> {
  const table = checkOutboxTable(options.table, 'dtx_outbox');
  const maxBytes = payloadLimit(options);
  const inList = (seqs: readonly number[]) => seqs.map((s) => Number(s).toFixed(0)).join(', ');
  return {
    kind: 'mariadb',
    table,
    async publish(tx, subject, payload, opts) {
      const m = checkPublish(subject, payload, opts, maxBytes);
      await insertMessage(m, 'ER_DUP_ENTRY', (row) => tx.query(insertSql(table, '?, ?, ?, ?, ?'), row));
      return m.id;
    },
    async ensureSchema() {
      await pool.query(
        `CREATE TABLE IF NOT EXISTS ${table} (seq BIGINT AUTO_INCREMENT PRIMARY KEY, ${tableBody('LONGBLOB')}, ` +
          `INDEX ${table}_unsent (sent_ms, seq)) ENGINE=InnoDB`,
      );
    },
    async check() {
      await pool.query(`SELECT 1 FROM ${table} WHERE 1 = 0`);
    },
    async scan(limit) {
      const [rows] = await pool.query(scanSql(table, '?'), [limit]);
      return (rows as RawCandidate[]).map(toCandidate);
    },
    async claim(seqs, relayId, nowMs, untilMs) {
      if (seqs.length === 0) return [];
      return mariadbTransaction(pool, async (conn) => {
        const [rows] = await conn.query(
          `SELECT ${columns} FROM ${table} WHERE seq IN (${inList(seqs)}) AND ${claimableSql('?', '?')} ` +
            'ORDER BY seq FOR UPDATE SKIP LOCKED',
          [relayId, nowMs],
        );
        const got = (rows as RawRow[]).map(toRow);
        if (got.length > 0) {
          await conn.query(
            `UPDATE ${table} SET claimed_by = ?, claim_until_ms = ?, attempts = attempts + 1 WHERE seq IN (${inList(got.map((r) => r.seq))})`,
            [relayId, untilMs],
          );
        }
        return got;
      });
    },
    async markSent(seqs, nowMs) {
      if (seqs.length === 0) return;
      await pool.query(
        `UPDATE ${table} SET sent_ms = ?, claimed_by = NULL, claim_until_ms = NULL ` +
          `WHERE seq IN (${inList(seqs)}) AND sent_ms IS NULL`,
        [nowMs],
      );
    },
    async release(seqs, relayId) {
      if (seqs.length === 0) return;
      await pool.query(
        `UPDATE ${table} SET claimed_by = NULL, claim_until_ms = NULL WHERE seq IN (${inList(seqs)}) AND claimed_by = ?`,
        [relayId],
      );
    },
    async prune(sentBeforeMs, limit) {
      const [r] = await pool.query(`DELETE FROM ${table} WHERE sent_ms < ? ORDER BY sent_ms LIMIT ?`, [
        sentBeforeMs,
        limit,
      ]);
      return (r as { affectedRows: number }).affectedRows;
    },
    async unsentCount() {
      const [rows] = await pool.query(`SELECT count(*) AS n FROM ${table} WHERE sent_ms IS NULL`);
      return Number((rows as { n: number }[])[0]!.n);
    },
  };
}

/**
 * An outbox in a SQLite file, through a better-sqlite3 connection. `publish`
 * is synchronous (better-sqlite3 transactions are): call it inside
 * `db.transaction(...)` with the same connection, and it throws there.
 */
export function sqliteOutbox(
  db: BetterSqlite3.Database,
  options: OutboxOptions = {},
): Outbox<BetterSqlite3.Database, string> {
  const table = checkOutboxTable(options.table, 'dtx_outbox');
  const maxBytes = payloadLimit(options);
  const claimTxn = db.transaction(
    (seqs: readonly number[], relayId: string, nowMs: number, untilMs: number): OutboxRow[] => {
      const select = db.prepare(
        `SELECT ${columns} FROM ${table} WHERE seq = ? AND ${claimableSql('?', '?')}`,
      );
      const update = db.prepare(
        `UPDATE ${table} SET claimed_by = ?, claim_until_ms = ?, attempts = attempts + 1 WHERE seq = ?`,
      );
      const got: OutboxRow[] = [];
      for (const seq of seqs) {
        const raw = select.get(seq, relayId, nowMs) as RawRow | undefined;
        if (raw === undefined) continue;
        update.run(relayId, untilMs, seq);
        got.push(toRow(raw));
      }
      return got;
    },
  );
  const eachSeq = (seqs: readonly number[], run: (seq: number) => void) =>
    db.transaction(() => {
      for (const s of seqs) run(s);
    })();
  return {
    kind: 'sqlite',
    table,
    publish(tx, subject, payload, opts) {
      const m = checkPublish(subject, payload, opts, maxBytes);
      try {
        tx.prepare(insertSql(table, '?, ?, ?, ?, ?')).run(m.id, m.subject, m.key, m.payload, Date.now());
      } catch (error) {
        if (stringField(error, 'code')?.startsWith('SQLITE_CONSTRAINT') === true)
          throw duplicateId(m.id, error);
        throw error;
      }
      return m.id;
    },
    async ensureSchema() {
      db.exec(
        `CREATE TABLE IF NOT EXISTS ${table} (seq INTEGER PRIMARY KEY AUTOINCREMENT, ${tableBody('BLOB')}); ` +
          `CREATE INDEX IF NOT EXISTS ${table}_unsent ON ${table} (sent_ms, seq)`,
      );
    },
    async check() {
      db.prepare(`SELECT 1 FROM ${table} WHERE 0`).all();
    },
    async scan(limit) {
      return (db.prepare(scanSql(table, '?')).all(limit) as RawCandidate[]).map(toCandidate);
    },
    async claim(seqs, relayId, nowMs, untilMs) {
      return claimTxn.immediate(seqs, relayId, nowMs, untilMs);
    },
    async markSent(seqs, nowMs) {
      const st = db.prepare(
        `UPDATE ${table} SET sent_ms = ?, claimed_by = NULL, claim_until_ms = NULL WHERE seq = ? AND sent_ms IS NULL`,
      );
      eachSeq(seqs, (s) => st.run(nowMs, s));
    },
    async release(seqs, relayId) {
      const st = db.prepare(
        `UPDATE ${table} SET claimed_by = NULL, claim_until_ms = NULL WHERE seq = ? AND claimed_by = ?`,
      );
      eachSeq(seqs, (s) => st.run(s, relayId));
    },
    async prune(sentBeforeMs, limit) {
      return db
        .prepare(
          `DELETE FROM ${table} WHERE seq IN (SELECT seq FROM ${table} WHERE sent_ms < ? ORDER BY sent_ms LIMIT ?)`,
        )
        .run(sentBeforeMs, limit).changes;
    },
    async unsentCount() {
      return Number(
        (db.prepare(`SELECT count(*) AS n FROM ${table} WHERE sent_ms IS NULL`).get() as { n: number }).n,
      );
    },
  };
}

/** Creates the outbox table and its index if missing. Nothing creates them implicitly. */
export function ensureOutboxSchema(outbox: OutboxStore): Promise<void> {
  return outbox.ensureSchema();
}
