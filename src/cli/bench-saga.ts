// `dtx bench --protocol saga|tcc` and `dtx recover --protocol saga|tcc`: the
// transfer workload of ./bench.ts run as a saga or a TCC transaction by the
// durable orchestrators (../runtime/saga/), on two databases (debit on the
// first, credit on the second). Every branch body runs inside `withBarrier`
// on its database, in the same local transaction as its business writes.
//
// Saga: `debit` (balance -= amount, transfers row) then `credit` (balance +=
// amount, transfers row; refused for a share of transfers); compensations
// undo exactly that: re-credit and DELETE the transfers row. A compensated
// transfer is therefore on neither database, and `dtx verify` needs no new
// rule for it (the barrier table keeps the record that it ran and was undone).
//
// TCC: try reserves, confirm applies, cancel releases. The debit try takes the
// amount off the balance into a hold (`dtx_bench.holds`, or `bench:hold:<txn>`
// on SQLite); the credit try records a pending hold (and is refused for a
// share of transfers). Confirm deletes the hold and writes the transfers row
// (credit: and adds the amount); cancel deletes the hold (debit: and gives the
// amount back). `dtx verify` counts holds left: a half-done TCC transfer.
//
// Logs: `--log PATH` (SQLite) becomes `PATH.saga.sqlite` / `PATH.tcc.sqlite`,
// so 2PC, saga and TCC never share a file; `--log postgres://...` uses the
// shared `dtx_log` table with owner `bench-saga` / `bench-tcc`.
//
// See docs/saga-runtime.md ("dtx bench / recover / verify for sagas").

import type { PoolConnection as MysqlConnection } from 'mysql2/promise';
import type { PoolClient as PgClient } from 'pg';
import {
  type BarrierDb,
  type BarrierOp,
  mariadbBarrierDb,
  postgresBarrierDb,
  sqliteBarrierDb,
  withBarrier,
} from '../adapters/barrier.ts';
import type { MariaDbAdapter } from '../adapters/mariadb.ts';
import type { PostgresAdapter } from '../adapters/postgres.ts';
import type { SqliteAdapter } from '../adapters/sqlite.ts';
import type { ResourceAdapter } from '../adapters/types.ts';
import { DtxError, isDtxError } from '../errors.ts';
import type { SagaRecord } from '../protocol/saga/types.ts';
import type { TccRecord } from '../protocol/tcc/types.ts';
import { watchLoad } from '../runtime/branch/orchestrator.ts';
import type { LogLocation } from '../runtime/log/open.ts';
import type { DurableLog } from '../runtime/log/types.ts';
import {
  createSagaOrchestrator,
  openSagaLog,
  refuse,
  type SagaDefinition,
  type SagaResult,
} from '../runtime/saga/orchestrator.ts';
import { createTccOrchestrator, openTccLog, type TccDefinition } from '../runtime/tcc/orchestrator.ts';
import type { Summary } from '../sim/stats.ts';
import {
  type BenchLoad,
  type BenchLogLocation,
  benchLeaseTtlMsDefault,
  benchLogLocation,
  closedLoop,
} from './bench.ts';
import {
  accountCount,
  benchBarrierTable,
  benchSql,
  type DbTarget,
  initSagaTables,
  initSchema,
  openAdapter,
  parseDbUrl,
} from './db.ts';

export const sagaProtocols = ['saga', 'tcc'] as const;
export type SagaBenchProtocol = (typeof sagaProtocols)[number];

export const defaultRefuseShare = 0.05;
const definitionName = { saga: 'bench_transfer', tcc: 'bench_transfer_tcc' } as const;

export interface SagaBenchOptions extends BenchLoad {
  protocol: SagaBenchProtocol;
  /** Share of transfers whose credit is refused (saga: the action; TCC: the try). Default 0.05. */
  refuseShare?: number;
  /** The orchestrator log's checkpoint interval, in appends (default: the orchestrator's). */
  checkpointEvery?: number;
  /** What the start-up recovery did (unfinished transfers of an earlier run, finished before new ones start). */
  onRecovered?: (report: SagaRecoveryReport) => void;
}

export interface SagaBenchReport {
  protocol: SagaBenchProtocol;
  concurrency: number;
  txns: number;
  committed: number;
  /** Transfers that ended compensated (saga) or cancelled (TCC). */
  compensated: number;
  /** Transfers that got stuck (a compensation or confirm/cancel that never succeeded). */
  stuck: number;
  refuseShare: number;
  tps: number;
  /** Latency of committed transfers, start to completed. */
  latencyMs: Summary;
}

export interface SagaRecoveryReport {
  protocol: SagaBenchProtocol;
  /** Transactions the log left unfinished, by how recovery ended them. */
  completed: string[];
  compensated: string[];
  stuck: { id: string; reason: string | null }[];
}

/** The orchestrator log for `--log`: a SQLite file next to 2PC's, or the postgres:// log under its own owner. */
export function sagaLogLocation(
  spec: string | undefined,
  protocol: SagaBenchProtocol,
  create = false,
): LogLocation {
  const where = benchLogLocation(spec, protocol);
  return 'sqlite' in where ? { ...where, create } : { ...where, create, leaseTtlMs: benchLeaseTtlMsDefault };
}

// ---------------------------------------------------------------------------
// The databases: a barrier and the bench's writes, inside one local transaction.

export interface Hold {
  account: number;
  amount: number;
}

/** This database's writes, on the barrier's transaction handle. */
export interface Store {
  adjust(account: number, delta: number): Promise<void>;
  putTransfer(txn: string, amount: number): Promise<void>;
  deleteTransfer(txn: string): Promise<void>;
  putHold(txn: string, hold: Hold): Promise<void>;
  /** Deletes the hold and returns it (undefined when there is none). */
  takeHold(txn: string): Promise<Hold | undefined>;
}

export interface Side {
  target: DbTarget;
  barrier: BarrierDb<unknown>;
  store(tx: unknown): Store;
}

function missing(account: number, target: DbTarget): DtxError {
  return new DtxError('DTX_INVALID_STATE', `account ${account} missing on ${target.name}: run with --init`);
}

function sqliteSide(target: DbTarget, adapter: ResourceAdapter): Side {
  const db = (adapter as SqliteAdapter).database();
  const get = db.prepare('SELECT value FROM dtx_kv WHERE key = ?');
  const put = db.prepare(
    'INSERT INTO dtx_kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
  );
  const del = db.prepare('DELETE FROM dtx_kv WHERE key = ?');
  const read = (key: string): unknown => {
    const row = get.get(key) as { value: string } | undefined;
    return row === undefined ? undefined : JSON.parse(row.value);
  };
  const store: Store = {
    async adjust(account, delta) {
      const key = `bench:acct:${account}`;
      const balance = read(key);
      if (typeof balance !== 'number') throw missing(account, target);
      put.run(key, JSON.stringify(balance + delta));
    },
    async putTransfer(txn, amount) {
      put.run(`bench:transfer:${txn}`, JSON.stringify(amount));
    },
    async deleteTransfer(txn) {
      del.run(`bench:transfer:${txn}`);
    },
    async putHold(txn, hold) {
      put.run(`bench:hold:${txn}`, JSON.stringify(hold));
    },
    async takeHold(txn) {
      const hold = read(`bench:hold:${txn}`) as Hold | undefined;
      if (hold !== undefined) del.run(`bench:hold:${txn}`);
      return hold;
    },
  };
  return {
    target,
    barrier: sqliteBarrierDb(db, { table: benchBarrierTable }) as BarrierDb<unknown>,
    store: () => store,
  };
}

type Query = (
  sql: string,
  params: unknown[],
) => Promise<{ rows: Record<string, unknown>[]; rowCount: number }>;

function sqlStore(target: DbTarget, query: Query): Store {
  const q: Query = (sql, params) => query(benchSql(target, sql), params);
  const p = (i: number) => (target.kind === 'postgres' ? `$${i}` : '?');
  return {
    async adjust(account, delta) {
      const r = await q(`UPDATE dtx_bench.accounts SET balance = balance + ${p(1)} WHERE id = ${p(2)}`, [
        delta,
        account,
      ]);
      if (r.rowCount !== 1) throw missing(account, target);
    },
    async putTransfer(txn, amount) {
      await q(`INSERT INTO dtx_bench.transfers (txn, amount) VALUES (${p(1)}, ${p(2)})`, [txn, amount]);
    },
    async deleteTransfer(txn) {
      await q(`DELETE FROM dtx_bench.transfers WHERE txn = ${p(1)}`, [txn]);
    },
    async putHold(txn, hold) {
      await q(`INSERT INTO dtx_bench.holds (txn, account, amount) VALUES (${p(1)}, ${p(2)}, ${p(3)})`, [
        txn,
        hold.account,
        hold.amount,
      ]);
    },
    async takeHold(txn) {
      const r = await q(`SELECT account, amount FROM dtx_bench.holds WHERE txn = ${p(1)} FOR UPDATE`, [txn]);
      const row = r.rows[0];
      if (row === undefined) return undefined;
      await q(`DELETE FROM dtx_bench.holds WHERE txn = ${p(1)}`, [txn]);
      return { account: Number(row.account), amount: Number(row.amount) };
    },
  };
}

function openSide(target: DbTarget, adapter: ResourceAdapter): Side {
  switch (target.kind) {
    case 'sqlite':
      return sqliteSide(target, adapter);
    case 'postgres':
      return {
        target,
        barrier: postgresBarrierDb((adapter as PostgresAdapter).pool, {
          table: benchBarrierTable,
        }) as BarrierDb<unknown>,
        store: (tx) =>
          sqlStore(target, async (sql, params) => {
            const r = await (tx as PgClient).query(sql, params);
            return { rows: r.rows as Record<string, unknown>[], rowCount: r.rowCount ?? 0 };
          }),
      };
    case 'mysql':
      return {
        target,
        barrier: mariadbBarrierDb((adapter as MariaDbAdapter).pool, {
          table: benchBarrierTable,
        }) as BarrierDb<unknown>,
        store: (tx) =>
          sqlStore(target, async (sql, params) => {
            const [r] = await (tx as MysqlConnection).query(sql, params);
            if (Array.isArray(r)) return { rows: r as Record<string, unknown>[], rowCount: r.length };
            return { rows: [], rowCount: (r as { affectedRows: number }).affectedRows };
          }),
      };
  }
}

export interface Opened {
  debit: Side;
  credit: Side;
  adapters: ResourceAdapter[];
  close(): Promise<void>;
}

export async function openSides(
  urls: string[],
  protocol: SagaBenchProtocol,
  create = false,
): Promise<Opened> {
  if (urls.length !== 2) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `--protocol ${protocol} transfers between two databases: give two --db URLs (debit, credit), got ${urls.length}`,
    );
  }
  const targets = urls.map((u, i) => parseDbUrl(u, i));
  const adapters: ResourceAdapter[] = [];
  const close = async () => {
    await Promise.allSettled(adapters.map((a) => a.close()));
  };
  try {
    for (const t of targets) adapters.push(await openAdapter(t, { create }));
    return {
      debit: openSide(targets[0]!, adapters[0]!),
      credit: openSide(targets[1]!, adapters[1]!),
      adapters,
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}

// ---------------------------------------------------------------------------
// The transfer as a saga and as a TCC transaction.

/** The input of one transfer, logged with its `begin`: recovery replays the same decision. */
export interface TransferInput {
  from: number;
  to: number;
  amount: number;
  refuse: boolean;
}

function branchBody(
  side: Side,
  txn: string,
  branchId: string,
  op: BarrierOp,
  body: (s: Store) => Promise<void>,
) {
  // The handlers return nothing, so the barrier stores no result (no UPDATE of its row).
  return withBarrier(side.barrier, { sagaId: txn, branchId, op }, (tx) => body(side.store(tx)));
}

function sagaDefinition(o: Opened): SagaDefinition {
  return {
    name: definitionName.saga,
    steps: [
      {
        name: 'debit',
        action: async (c) => {
          const t = c.input as TransferInput;
          await branchBody(o.debit, c.sagaId, c.branchId, 'action', async (s) => {
            await s.adjust(t.from, -t.amount);
            await s.putTransfer(c.sagaId, t.amount);
          });
        },
        compensation: async (c) => {
          const t = c.input as TransferInput;
          await branchBody(o.debit, c.sagaId, c.branchId, 'compensation', async (s) => {
            await s.adjust(t.from, t.amount);
            await s.deleteTransfer(c.sagaId);
          });
        },
      },
      {
        name: 'credit',
        action: async (c) => {
          const t = c.input as TransferInput;
          await branchBody(o.credit, c.sagaId, c.branchId, 'action', async (s) => {
            if (t.refuse) refuse('credit refused (bench --refuse-share)');
            await s.adjust(t.to, t.amount);
            await s.putTransfer(c.sagaId, t.amount);
          });
        },
        // Only runs if the saga gives up on a credit whose outcome it never
        // learned; the barrier makes it a no-op when the credit did not commit.
        compensation: async (c) => {
          const t = c.input as TransferInput;
          await branchBody(o.credit, c.sagaId, c.branchId, 'compensation', async (s) => {
            await s.adjust(t.to, -t.amount);
            await s.deleteTransfer(c.sagaId);
          });
        },
      },
    ],
  };
}

function tccDefinition(o: Opened): TccDefinition {
  return {
    name: definitionName.tcc,
    branches: [
      {
        name: 'debit',
        try: async (c) => {
          const t = c.input as TransferInput;
          await branchBody(o.debit, c.sagaId, c.branchId, 'try', async (s) => {
            await s.adjust(t.from, -t.amount);
            await s.putHold(c.sagaId, { account: t.from, amount: t.amount });
          });
        },
        confirm: async (c) => {
          await branchBody(o.debit, c.sagaId, c.branchId, 'confirm', async (s) => {
            const hold = await s.takeHold(c.sagaId);
            if (hold !== undefined) await s.putTransfer(c.sagaId, hold.amount);
          });
        },
        cancel: async (c) => {
          await branchBody(o.debit, c.sagaId, c.branchId, 'cancel', async (s) => {
            const hold = await s.takeHold(c.sagaId);
            if (hold !== undefined) await s.adjust(hold.account, hold.amount);
          });
        },
      },
      {
        name: 'credit',
        try: async (c) => {
          const t = c.input as TransferInput;
          await branchBody(o.credit, c.sagaId, c.branchId, 'try', async (s) => {
            if (t.refuse) refuse('credit refused (bench --refuse-share)');
            await s.putHold(c.sagaId, { account: t.to, amount: t.amount });
          });
        },
        confirm: async (c) => {
          await branchBody(o.credit, c.sagaId, c.branchId, 'confirm', async (s) => {
            const hold = await s.takeHold(c.sagaId);
            if (hold === undefined) return;
            await s.adjust(hold.account, hold.amount);
            await s.putTransfer(c.sagaId, hold.amount);
          });
        },
        cancel: async (c) => {
          await branchBody(o.credit, c.sagaId, c.branchId, 'cancel', async (s) => {
            await s.takeHold(c.sagaId);
          });
        },
      },
    ],
  };
}

export interface Engine {
  start(key: string, input: TransferInput): Promise<string>;
  result(id: string, timeoutMs?: number): Promise<SagaResult>;
  close(): Promise<void>;
}

/**
 * How long recovery waits for one unfinished transfer to end. Compensations
 * retry without a limit, so a branch that stays down would otherwise keep
 * `dtx recover` waiting for ever; past this the transfer is reported stuck
 * (still retrying) and the command exits 1.
 */
const recoveryWaitMs = 60_000;

/**
 * Opens the log and the orchestrator (which resumes every unfinished
 * transaction of the log) and waits until each of those has ended.
 */
export async function openEngine(
  o: Opened,
  protocol: SagaBenchProtocol,
  where: LogLocation,
  checkpointEvery?: number,
): Promise<{ engine: Engine; recovered: SagaRecoveryReport }> {
  const unfinished = new Set<string>();
  // Wraps the log to see what recovery reads: every `begin` without an `end`.
  function watch<R extends SagaRecord | TccRecord>(log: DurableLog<R>): DurableLog<R> {
    return watchLoad(log, (records) => {
      for (const r of records) {
        if (r.type === 'begin') unfinished.add(r.txn);
        else if (r.type === 'end') unfinished.delete(r.txn);
      }
    });
  }
  // Saga and TCC differ only in which orchestrator and definition they use.
  const open = async <L extends { close(): Promise<void> }, O extends { close(): Promise<void> }>(
    log: L,
    create: () => Promise<O>,
    start: (o: O, key: string, input: unknown) => Promise<string>,
    result: (o: O, id: string, timeoutMs?: number) => ReturnType<Engine['result']>,
  ): Promise<Engine> => {
    let orchestrator: O;
    try {
      orchestrator = await create();
    } catch (err) {
      await log.close();
      throw err;
    }
    return {
      start: (key, input) => start(orchestrator, key, input),
      result: (id, timeoutMs) => result(orchestrator, id, timeoutMs),
      close: async () => {
        await orchestrator.close();
        await log.close();
      },
    };
  };
  const every = checkpointEvery === undefined ? {} : { checkpointEvery };
  let engine: Engine;
  if (protocol === 'saga') {
    const log = await openSagaLog(where);
    const def = sagaDefinition(o);
    engine = await open(
      log,
      () => createSagaOrchestrator({ log: watch(log), definitions: [def], ...every }),
      (orch, key, input) => orch.start(def, { idempotencyKey: key, input }),
      (orch, id, timeoutMs) => orch.result(id, timeoutMs === undefined ? {} : { timeoutMs }),
    );
  } else {
    const log = await openTccLog(where);
    const def = tccDefinition(o);
    engine = await open(
      log,
      () => createTccOrchestrator({ log: watch(log), definitions: [def], ...every }),
      (orch, key, input) => orch.start(def, { idempotencyKey: key, input }),
      (orch, id, timeoutMs) => orch.result(id, timeoutMs === undefined ? {} : { timeoutMs }),
    );
  }

  const recovered: SagaRecoveryReport = { protocol, completed: [], compensated: [], stuck: [] };
  try {
    const results = await Promise.all(
      [...unfinished].map((id) =>
        engine.result(id, recoveryWaitMs).catch((err: unknown): SagaResult => {
          if (!isDtxError(err, 'DTX_TIMEOUT')) throw err;
          return {
            sagaId: id,
            outcome: 'stuck',
            reason: `not ended after ${recoveryWaitMs} ms; its orchestrator keeps retrying it (run recover again)`,
          };
        }),
      ),
    );
    for (const r of results) {
      if (r.outcome === 'completed') recovered.completed.push(r.sagaId);
      else if (r.outcome === 'compensated') recovered.compensated.push(r.sagaId);
      else recovered.stuck.push({ id: r.sagaId, reason: r.reason });
    }
  } catch (err) {
    await engine.close();
    throw err;
  }
  return { engine, recovered };
}

export async function prepareSagaBench(
  o: Opened,
  options: Pick<SagaBenchOptions, 'init' | 'accounts'>,
): Promise<number> {
  const sides = [o.debit, o.credit];
  if (options.init) {
    for (const [i, side] of sides.entries()) {
      await initSchema(side.target, o.adapters[i]!, options.accounts, i === 0 ? 'debit' : 'credit');
      await initSagaTables(side.target, o.adapters[i]!, true);
    }
    return options.accounts;
  }
  const counts = await Promise.all(sides.map((s, i) => accountCount(s.target, o.adapters[i]!)));
  const accounts = Math.min(...counts);
  if (accounts === 0) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'the databases have no dtx_bench accounts yet: run once with --init',
    );
  }
  for (const [i, side] of sides.entries()) await initSagaTables(side.target, o.adapters[i]!, false);
  return accounts;
}

export async function runSagaBench(options: SagaBenchOptions): Promise<SagaBenchReport> {
  const refuseShare = options.refuseShare ?? defaultRefuseShare;
  if (!(refuseShare >= 0 && refuseShare <= 1)) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `--refuse-share must be between 0 and 1, got ${refuseShare}`);
  }
  const o = await openSides(options.dbs, options.protocol, options.init);
  let engine: Engine | undefined;
  try {
    const accounts = await prepareSagaBench(o, options);
    const opened = await openEngine(
      o,
      options.protocol,
      sagaLogLocation(options.log, options.protocol, options.init),
      options.checkpointEvery,
    );
    engine = opened.engine;
    options.onRecovered?.(opened.recovered);
    const e = engine;
    const incarnation = `${Date.now().toString(36)}.${process.pid.toString(36)}`;
    const pick = () => Math.floor(Math.random() * accounts);

    const run = await closedLoop(options, async (ordinal) => {
      const input: TransferInput = {
        from: pick(),
        to: pick(),
        amount: 1 + Math.floor(Math.random() * 100),
        refuse: Math.random() < refuseShare,
      };
      const id = await e.start(`${incarnation}.${ordinal}`, input);
      const { outcome } = await e.result(id);
      return outcome === 'completed' ? 'committed' : outcome;
    });
    const committed = run.outcomes.committed ?? 0;
    const compensated = run.outcomes.compensated ?? 0;
    const stuck = run.outcomes.stuck ?? 0;
    return {
      protocol: options.protocol,
      concurrency: options.concurrency,
      txns: committed + compensated + stuck,
      committed,
      compensated,
      stuck,
      refuseShare,
      tps: run.tps,
      latencyMs: run.latencyMs,
    };
  } finally {
    await engine?.close();
    await o.close();
  }
}

/** `dtx recover --protocol saga|tcc`: runs every transfer the log left unfinished to its end. */
export async function runSagaRecover(options: {
  dbs: string[];
  log?: string;
  protocol: SagaBenchProtocol;
  /** The exact log (from findBenchLog); default: bench's for `log` and `protocol`. */
  where?: BenchLogLocation;
}): Promise<SagaRecoveryReport> {
  const where: LogLocation =
    options.where === undefined
      ? sagaLogLocation(options.log, options.protocol)
      : 'sqlite' in options.where
        ? options.where
        : { ...options.where, leaseTtlMs: benchLeaseTtlMsDefault };
  // Check the log (exists, is this protocol's, nobody owns it) before any database is touched.
  const probe = await (options.protocol === 'saga' ? openSagaLog(where) : openTccLog(where));
  await probe.close();
  const o = await openSides(options.dbs, options.protocol);
  try {
    for (const [i, side] of [o.debit, o.credit].entries()) {
      await initSagaTables(side.target, o.adapters[i]!, false);
    }
    const { engine, recovered } = await openEngine(o, options.protocol, where);
    await engine.close();
    return recovered;
  } finally {
    await o.close();
  }
}

/** The operator surface `dtx txn` needs of bench's saga or TCC orchestrator. */
export interface BenchOrchestratorActions {
  retry(id: string): Promise<void>;
  resolve(id: string, options: { outcome: string; force: true; reason: string }): Promise<void>;
  abandon(id: string, options: { force: true; reason: string }): Promise<void>;
}

/**
 * Runs `work` with bench's saga or TCC orchestrator open on its log (which
 * resumes every unfinished transfer) and its two databases, then closes it:
 * for the operator commands (`dtx txn retry|resolve|abandon`). Only bench's
 * own definitions are registered here; another program's sagas are operated
 * through its own orchestrator's API.
 */
export async function withBenchOrchestrator<T>(
  options: { dbs: string[]; protocol: SagaBenchProtocol; where: BenchLogLocation },
  work: (orchestrator: BenchOrchestratorActions) => Promise<T>,
): Promise<T> {
  const where: LogLocation =
    'sqlite' in options.where ? options.where : { ...options.where, leaseTtlMs: benchLeaseTtlMsDefault };
  // Check the log (exists, is this protocol's, nobody owns it) before any database is touched.
  const probe = await (options.protocol === 'saga' ? openSagaLog(where) : openTccLog(where));
  await probe.close();
  const o = await openSides(options.dbs, options.protocol);
  try {
    if (options.protocol === 'saga') {
      const log = await openSagaLog(where);
      try {
        const orchestrator = await createSagaOrchestrator({ log, definitions: [sagaDefinition(o)] });
        try {
          return await work({
            retry: (id) => orchestrator.retry(id),
            resolve: (id, opts) =>
              orchestrator.resolve(id, { ...opts, outcome: opts.outcome as 'completed' | 'compensated' }),
            abandon: (id, opts) => orchestrator.abandon(id, opts),
          });
        } finally {
          await orchestrator.close();
        }
      } finally {
        await log.close();
      }
    }
    const log = await openTccLog(where);
    try {
      const orchestrator = await createTccOrchestrator({ log, definitions: [tccDefinition(o)] });
      try {
        return await work({
          retry: (id) => orchestrator.retry(id),
          resolve: (id, opts) =>
            orchestrator.resolve(id, { ...opts, outcome: opts.outcome as 'confirmed' | 'cancelled' }),
          abandon: (id, opts) => orchestrator.abandon(id, opts),
        });
      } finally {
        await orchestrator.close();
      }
    } finally {
      await log.close();
    }
  } finally {
    await o.close();
  }
}
