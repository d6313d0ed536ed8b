// Semantic locks for saga branches on a real database: the countermeasure
// that gives a saga's uncommitted steps a flag others can see (Garcia-Molina
// & Salem give sagas no isolation; the countermeasure is the one Richardson,
// "Microservices Patterns" ch. 4, calls a semantic lock, after Frank & Zahle
// 1998). A step that changes a resource also writes a row
// `(resource, saga_id, branch_id)` in the SAME local transaction as its
// business write (inside `withBarrier`), so a crash keeps both or neither; the
// row is deleted by the step's compensation, or by the saga's last step once
// every step succeeded. The flag is a row, not a process's memory: it survives
// any crash of the orchestrator or the service, and the recovered saga clears
// it when it completes or compensates.
//
// What "respect" means here:
// - another saga's step that wants a flagged resource gets `SemanticLockError`
//   (`DTX_LOCK_CONFLICT`, retryable): the orchestrator retries the action with
//   backoff, and past its attempt limit compensates the saga (a step that
//   would rather give up at once catches it and calls `refuse()`);
// - a reader reads through `read(resources, work)`: one read-only snapshot in
//   which it first looks at the flags; any flag on a resource it reads makes
//   the read fail with the same retryable error, so it never sees a value a
//   saga may still compensate (a dirty read). `holders()` tells a reader that
//   would rather skip flagged resources which ones are.
// What it does not give: a consistent read across several databases (each
// database's flags and values are read in its own snapshot).
//
// Drivers are the barrier's (./barrier.ts); this module imports none.

import type BetterSqlite3 from 'better-sqlite3';
import type { PoolConnection as MysqlConnection } from 'mysql2/promise';
import type { PoolClient as PgClient } from 'pg';
import { DtxError, LockConflictError } from '../errors.ts';
import { barrierTablePattern } from '../runtime/limits.ts';
import type { BarrierDb } from './barrier.ts';

/** `DTX_LOCK_CONFLICT` (retryable): `resource` carries another saga's semantic lock. */
export class SemanticLockError extends LockConflictError {
  override name = 'SemanticLockError';
  readonly resource: string;
  readonly holderSagaId: string;

  constructor(resource: string, holderSagaId: string, by: string) {
    super(
      `${resource} is pending in saga ${holderSagaId}; ${by} must wait for it to complete or compensate`,
      {
        retryable: true,
        key: resource,
      },
    );
    this.resource = resource;
    this.holderSagaId = holderSagaId;
  }
}

export interface SemanticLockOwner {
  sagaId: string;
  branchId: string;
}

export interface SemanticLocks<Tx> {
  readonly table: string;
  /**
   * Creates the table if missing. Await it once before `acquire`, `release`
   * or `holders` (they run inside a transaction of yours, where MariaDB would
   * commit on DDL); `read` and the saga helpers (../runtime/saga/countermeasures.ts)
   * call it themselves.
   */
  ensureTable(): Promise<void>;
  /**
   * Inside the step's local transaction (`tx` from `withBarrier`): flags
   * `resource` for `owner`. Taking it again for the same saga is a no-op;
   * held by another saga, it throws `SemanticLockError`. On PostgreSQL and
   * MariaDB a flag another transaction is writing at that moment is waited for
   * (its row's key is locked until that transaction ends).
   */
  acquire(tx: Tx, owner: SemanticLockOwner, resource: string): Promise<void>;
  /**
   * Inside a local transaction: clears the flags of `sagaId` (only those its
   * branch `branchId` set, when given: a compensation clears its own step's).
   * Returns how many it cleared.
   */
  release(tx: Tx, sagaId: string, branchId?: string): Promise<number>;
  /** The flagged resources among `resources`, with the saga holding each, read in `tx`. */
  holders(tx: Tx, resources: readonly string[]): Promise<Map<string, string>>;
  /**
   * A reader that respects the flags: one read-only snapshot in which no
   * resource of `resources` may be flagged (else `SemanticLockError`, retryable),
   * then `work` reads in that same snapshot.
   */
  read<T>(resources: readonly string[], work: (tx: Tx) => Promise<T>): Promise<T>;
}

const resourceLimit = 128;
const idLimit = 128;
/** Resources one read may name: they go into one statement's parameter list. */
const resourcesPerReadMax = 1000;

function checkText(name: string, v: unknown, limit: number): string {
  if (typeof v !== 'string' || v.length === 0 || v.length > limit)
    throw new DtxError('DTX_INVALID_ARGUMENT', `semantic lock ${name} must be 1 to ${limit} characters`);
  return v;
}

function checkResources(resources: readonly string[]): void {
  if (!Array.isArray(resources) || resources.length > resourcesPerReadMax)
    throw new DtxError('DTX_INVALID_ARGUMENT', `a read names 0 to ${resourcesPerReadMax} resources`);
  for (const r of resources) checkText('resource', r, resourceLimit);
}

/** Runs one statement with `?` placeholders on the transaction handle of `kind` (also for ../runtime/saga/countermeasures.ts). */
export async function queryOn(
  kind: BarrierDb<unknown>['kind'],
  tx: unknown,
  sql: string,
  params: readonly (string | number)[],
): Promise<{ rows: Record<string, unknown>[]; changes: number }> {
  if (kind === 'postgres') {
    let n = 0;
    const r = await (tx as PgClient).query(
      sql.replace(/\?/g, () => `$${++n}`),
      params as unknown[],
    );
    return { rows: r.rows, changes: r.rowCount ?? 0 };
  }
  if (kind === 'mariadb') {
    const [r] = await (tx as MysqlConnection).query(sql, [...params]);
    return Array.isArray(r)
      ? { rows: r as Record<string, unknown>[], changes: 0 }
      : { rows: [], changes: (r as { affectedRows: number }).affectedRows };
  }
  const statement = (tx as BetterSqlite3.Database).prepare(sql);
  if (statement.reader) return { rows: statement.all(...params) as Record<string, unknown>[], changes: 0 };
  return { rows: [], changes: statement.run(...params).changes };
}

/**
 * Semantic locks in `barrier`'s database, in table `table` (default
 * `dtx_semantic_lock`; the same identifier rule as the barrier's table).
 */
export function semanticLocks<Tx>(
  barrier: BarrierDb<Tx>,
  options: { table?: string } = {},
): SemanticLocks<Tx> {
  const table = options.table ?? 'dtx_semantic_lock';
  if (!barrierTablePattern.test(table))
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `semantic lock table ${JSON.stringify(table)} must match ${barrierTablePattern}`,
    );
  const kind = barrier.kind;
  const q = (tx: Tx, sql: string, params: readonly (string | number)[]) => queryOn(kind, tx, sql, params);
  const insertIgnore =
    kind === 'postgres'
      ? `INSERT INTO ${table} (resource, saga_id, branch_id) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`
      : kind === 'mariadb'
        ? `INSERT IGNORE INTO ${table} (resource, saga_id, branch_id) VALUES (?, ?, ?)`
        : `INSERT OR IGNORE INTO ${table} (resource, saga_id, branch_id) VALUES (?, ?, ?)`;
  let ready: Promise<void> | null = null;
  let created = false;
  const mustExist = () => {
    if (!created)
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `semantic locks: await ensureTable() before using ${table} inside a transaction`,
      );
  };
  const ensureTable = (): Promise<void> => {
    ready ??= (async () => {
      const engine = kind === 'mariadb' ? ' ENGINE=InnoDB' : '';
      await barrier.transaction(async (tx) => {
        await q(
          tx,
          `CREATE TABLE IF NOT EXISTS ${table} (resource VARCHAR(${resourceLimit}) NOT NULL PRIMARY KEY, ` +
            `saga_id VARCHAR(${idLimit}) NOT NULL, branch_id VARCHAR(${idLimit}) NOT NULL, ` +
            `created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP)${engine}`,
          [],
        );
        await q(tx, `CREATE INDEX IF NOT EXISTS ${table}_saga ON ${table} (saga_id)`, []);
      });
      created = true;
    })();
    ready.catch(() => {
      ready = null;
    });
    return ready;
  };
  const holders = async (tx: Tx, resources: readonly string[]): Promise<Map<string, string>> => {
    checkResources(resources);
    mustExist();
    if (resources.length === 0) return new Map();
    const marks = resources.map(() => '?').join(', ');
    const { rows } = await q(
      tx,
      `SELECT resource, saga_id FROM ${table} WHERE resource IN (${marks})`,
      resources,
    );
    return new Map(rows.map((r) => [String(r.resource), String(r.saga_id)]));
  };
  return {
    table,
    ensureTable,
    async acquire(tx, owner, resource) {
      checkText('resource', resource, resourceLimit);
      checkText('sagaId', owner?.sagaId, idLimit);
      checkText('branchId', owner?.branchId, idLimit);
      mustExist();
      const inserted = await q(tx, insertIgnore, [resource, owner.sagaId, owner.branchId]);
      if (inserted.changes === 1) return;
      const holder = (await holders(tx, [resource])).get(resource);
      if (holder === undefined || holder === owner.sagaId) {
        // Released between the insert and the look (SQLite never; a row being
        // deleted elsewhere): take it now, or it is this saga's already.
        if (holder === undefined) await q(tx, insertIgnore, [resource, owner.sagaId, owner.branchId]);
        return;
      }
      throw new SemanticLockError(resource, holder, `${owner.sagaId}/${owner.branchId}`);
    },
    async release(tx, sagaId, branchId) {
      checkText('sagaId', sagaId, idLimit);
      mustExist();
      if (branchId === undefined)
        return (await q(tx, `DELETE FROM ${table} WHERE saga_id = ?`, [sagaId])).changes;
      checkText('branchId', branchId, idLimit);
      return (await q(tx, `DELETE FROM ${table} WHERE saga_id = ? AND branch_id = ?`, [sagaId, branchId]))
        .changes;
    },
    holders,
    async read(resources, work) {
      checkResources(resources);
      await ensureTable();
      return barrier.readTransaction(async (tx) => {
        const held = await holders(tx, resources);
        for (const [resource, holder] of held) throw new SemanticLockError(resource, holder, 'a reader');
        return work(tx);
      });
    },
  };
}
