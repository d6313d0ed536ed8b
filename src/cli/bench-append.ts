// `dtx bench --workload append`: a list-append workload over real databases,
// recorded as a Jepsen history and checked by the history checker
// (src/history), in the manner of Jepsen's Elle. It shows, on real databases,
// what each read mode gives across them (docs/isolation.md, "Histories from
// real databases").
//
// Each database holds a table of lists: one row per key, its list a text of
// comma-separated elements; key k lives on database k mod N. Read-write
// transactions (`concurrency` workers) run 1 to 4 micro-ops, each a read of
// a key's list or an append of a new element (`UPDATE ... SET v = v || ',x'`),
// through dtx's two-phase commit; read-only transactions (`auditors` workers)
// read 2 to 4 keys. Micro-ops run database by database in resource order, as
// the lock-order rule asks. How reads are done, per `--reads`:
//
//   plain         read-write and read-only: a plain SELECT in the branch
//                 (READ COMMITTED on PostgreSQL; MariaDB's XA default,
//                 REPEATABLE READ)
//   serializable  the same, in SERIALIZABLE branches on every database
//   locking       read-write and read-only: locking reads (tx.read)
//   snapshot      read-write: locking reads (a snapshot is for read-only
//                 work); read-only: coordinator.snapshot()
//
// Every transaction is recorded as an invocation and a completion: `ok` when
// transaction() returned, `fail` when it failed with an error that promises
// nothing was committed (the coordinator's own retry rule: a retryable
// DtxError), `info` otherwise (the outcome is unknown; that process then goes
// on under a new process id, as in Jepsen). The whole history is checked for
// serializability and for strict serializability.

import { writeFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { ResourceAdapter } from '../adapters/types.ts';
import { DtxError, isDtxError } from '../errors.ts';
import { checkHistoryOps } from '../history/check.ts';
import type { CheckResult, Consistency } from '../history/types.ts';
import { twoPcRecordCodec } from '../protocol/twopc/codec.ts';
import type { TwoPcRecord } from '../protocol/twopc/types.ts';
import { type Coordinator, createCoordinator } from '../runtime/coordinator.ts';
import type { DurableLog } from '../runtime/log/types.ts';
import { type Summary, summarize } from '../sim/stats.ts';
import type { AuditReads } from './audit.ts';
import { benchLogLocation, openBenchLog } from './bench.ts';
import { type DbTarget, openAdapter, parseDbUrl, rollBackLeftovers, withSql } from './db.ts';

export interface AppendBenchOptions {
  dbs: string[];
  log?: string;
  /** Read-write transactions in flight at once. */
  concurrency: number;
  /** Read-only transactions in flight at once. */
  auditors: number;
  reads: AuditReads;
  /** Keys per database (with --init; later runs use the keys the tables hold). */
  keys: number;
  durationS?: number;
  /** Stop after this many read-write transactions. */
  txns?: number;
  init: boolean;
  /** Write the history here (one JSON op per line). */
  history?: string;
  onStart?: () => void;
}

export interface Outcomes {
  ok: number;
  fail: number;
  info: number;
}

/** What the checker found, per consistency model: the verdict and how many witnesses of each type. */
export interface HistoryVerdict {
  valid: boolean;
  anomalyTypes: string[];
  counts: Record<string, number>;
}

export interface AppendBenchReport {
  workload: 'append';
  reads: AuditReads;
  databases: string[];
  concurrency: number;
  auditors: number;
  keys: number;
  readWrite: Outcomes;
  readOnly: Outcomes;
  /** Committed read-write transactions per second. */
  tps: number;
  latencyMs: { readWrite: Summary; readOnly: Summary };
  /** The first failure's code and message, to tell what failed. */
  firstFailure: string | null;
  /** Ops recorded (two per transaction), and the file they were written to. */
  historyOps: number;
  history: string | null;
  check: Record<'serializable' | 'strict-serializable', HistoryVerdict>;
}

type Key = number;
type Planned = ['append', Key, number] | ['r', Key, null];
type Done = ['append', Key, number] | ['r', Key, number[]];

/** One op of the history, in Jepsen's JSON form. */
interface HistoryOp {
  index: number;
  time: number;
  process: number;
  type: 'invoke' | 'ok' | 'fail' | 'info';
  f: 'txn';
  value: (Planned | Done)[];
}

const table = { postgres: 'dtx_bench.lists', mysql: 'dtx_bench_lists' } as const;

/** The statements of one database kind: create, read one key's list, append to it. */
function sqlOf(target: DbTarget) {
  if (target.kind === 'postgres') {
    return {
      create: [
        'CREATE SCHEMA IF NOT EXISTS dtx_bench',
        `DROP TABLE IF EXISTS ${table.postgres}`,
        `CREATE TABLE ${table.postgres} (k integer PRIMARY KEY, v text NOT NULL)`,
      ],
      insert: `INSERT INTO ${table.postgres} (k, v) SELECT k, '' FROM unnest($1::integer[]) AS k`,
      read: `SELECT v FROM ${table.postgres} WHERE k = $1`,
      append: `UPDATE ${table.postgres} SET v = v || $1 WHERE k = $2`,
    };
  }
  if (target.kind === 'mysql') {
    return {
      create: [
        `DROP TABLE IF EXISTS ${table.mysql}`,
        `CREATE TABLE ${table.mysql} (k int PRIMARY KEY, v mediumtext NOT NULL) ENGINE=InnoDB`,
      ],
      insert: undefined,
      read: `SELECT v FROM ${table.mysql} WHERE k = ?`,
      append: `UPDATE ${table.mysql} SET v = CONCAT(v, ?) WHERE k = ?`,
    };
  }
  throw new DtxError(
    'DTX_INVALID_ARGUMENT',
    `${target.name}: the append workload runs on PostgreSQL and MariaDB, not SQLite`,
  );
}

/** A list as stored (`,3,7,12`), as the history records it. */
export function listOf(v: unknown): number[] {
  if (typeof v !== 'string') throw new Error(`a list row holds ${typeof v}, not text`);
  return v === '' ? [] : v.slice(1).split(',').map(Number);
}

/** Creates the lists tables with `keys` empty lists per database (key k on database k mod n). */
async function initLists(targets: DbTarget[], adapters: Record<string, ResourceAdapter>, keys: number) {
  for (const [i, t] of targets.entries()) {
    const sql = sqlOf(t);
    const own = Array.from({ length: keys }, (_, j) => j * targets.length + i);
    await withSql(t, adapters[t.name]!, async (q) => {
      for (const statement of sql.create) await q(statement);
      if (sql.insert !== undefined) await q(sql.insert, [own]);
      else await q(`INSERT INTO ${table.mysql} (k, v) VALUES ${own.map(() => "(?, '')").join(', ')}`, own);
    });
  }
}

/** Keys per database the tables hold: the fewest of any database. */
async function existingKeys(targets: DbTarget[], adapters: Record<string, ResourceAdapter>) {
  let fewest = Number.POSITIVE_INFINITY;
  for (const t of targets) {
    const name = t.kind === 'postgres' ? table.postgres : table.mysql;
    const n = await withSql(t, adapters[t.name]!, async (q) =>
      Number((await q(`SELECT count(*) AS n FROM ${name}`))[0]?.n ?? 0),
    ).catch(() => 0);
    fewest = Math.min(fewest, n);
  }
  if (!(fewest > 0)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'the databases have no append-workload lists yet: run once with --init',
    );
  }
  return fewest;
}

const randomInt = (n: number) => Math.floor(Math.random() * n);

export async function runAppendBench(options: AppendBenchOptions): Promise<AppendBenchReport> {
  if (options.dbs.length < 2 || options.dbs.length > 3) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `give two or three --db URLs, got ${options.dbs.length}`);
  }
  const targets = options.dbs.map((u, i) => parseDbUrl(u, i));
  for (const t of targets) sqlOf(t);
  const isolationLevel = options.reads === 'serializable' ? 'serializable' : undefined;
  const adapters: Record<string, ResourceAdapter> = {};
  let log: DurableLog<TwoPcRecord> | undefined;
  let coordinator: Coordinator | undefined;
  try {
    // The log before the databases, as bench does: a wrong --log stops everything first.
    log = await openBenchLog(benchLogLocation(options.log, '2pc'), '2pc', (v) => twoPcRecordCodec.check(v), {
      create: options.init,
    });
    for (const t of targets) adapters[t.name] = await openAdapter(t, { isolationLevel });
    coordinator = await createCoordinator({ log, resources: adapters });
    if (options.init) {
      const c = coordinator;
      for (const t of targets) {
        await rollBackLeftovers(adapters[t.name]!, {
          prefix: c.gidPrefix,
          mayRollBack: (gid) => c.presumedAbortAllowed(gid, t.name),
        });
      }
      await initLists(targets, adapters, options.keys);
    }
    const keys = options.init ? options.keys : await existingKeys(targets, adapters);
    return await runWorkload(options, targets, coordinator, keys);
  } finally {
    await coordinator?.close();
    await log?.close();
    await Promise.allSettled(Object.values(adapters).map((a) => a.close()));
  }
}

async function runWorkload(
  options: AppendBenchOptions,
  targets: DbTarget[],
  coordinator: Coordinator,
  keysPerDb: number,
): Promise<AppendBenchReport> {
  const n = targets.length;
  const keyCount = keysPerDb * n;
  const dbOf = (k: Key) => targets[k % n]!;
  const sql = targets.map((t) => sqlOf(t));
  const byResourceOrder = (ops: Planned[]) => ops.sort((a, b) => (a[1] % n) - (b[1] % n));
  let nextElement = 1;
  const planReadWrite = (): Planned[] =>
    byResourceOrder(
      Array.from({ length: 1 + randomInt(4) }, (): Planned => {
        const k = randomInt(keyCount);
        return Math.random() < 0.5 ? ['r', k, null] : ['append', k, nextElement++];
      }),
    );
  const planReadOnly = (): Planned[] => {
    const picked = new Set<Key>();
    const want = Math.min(keyCount, 2 + randomInt(3));
    while (picked.size < want) picked.add(randomInt(keyCount));
    return byResourceOrder([...picked].map((k): Planned => ['r', k, null]));
  };

  /** Runs the micro-ops in one distributed transaction; reads lock when `locking`. */
  const inTransaction = (ops: Planned[], locking: boolean) =>
    coordinator.transaction(async (tx) => {
      const done: Done[] = [];
      for (const op of ops) {
        const t = dbOf(op[1]);
        const s = sql[op[1] % n]!;
        if (op[0] === 'append') {
          const r = await tx.query(t.name, s.append, [`,${op[2]}`, op[1]]);
          if (r.rowCount !== 1) throw new Error(`append to key ${op[1]} changed ${r.rowCount} rows`);
          done.push(op);
        } else {
          const { rows } = locking
            ? await tx.read<{ v: unknown }>(t.name, s.read, [op[1]])
            : await tx.query<{ v: unknown }>(t.name, s.read, [op[1]]);
          done.push(['r', op[1], listOf(rows[0]?.v)]);
        }
      }
      return done;
    });
  const inSnapshot = (ops: Planned[]) =>
    coordinator.snapshot(
      async (reads) => {
        const done: Done[] = [];
        for (const op of ops) {
          const { rows } = await reads.query<{ v: unknown }>(dbOf(op[1]).name, sql[op[1] % n]!.read, [op[1]]);
          done.push(['r', op[1], listOf(rows[0]?.v)]);
        }
        return done;
      },
      { resources: [...new Set(ops.map((op) => dbOf(op[1]).name))] },
    );
  const rwLocking = options.reads === 'locking' || options.reads === 'snapshot';
  const readWrite = (ops: Planned[]) => inTransaction(ops, rwLocking);
  const readOnly = (ops: Planned[]) =>
    options.reads === 'snapshot' ? inSnapshot(ops) : inTransaction(ops, options.reads === 'locking');

  const history: HistoryOp[] = [];
  const t0 = performance.now();
  const record = (process: number, type: HistoryOp['type'], value: (Planned | Done)[]) =>
    history.push({
      index: history.length,
      time: Math.round((performance.now() - t0) * 1e6),
      process,
      type,
      f: 'txn',
      value,
    });
  const outcomes = { readWrite: { ok: 0, fail: 0, info: 0 }, readOnly: { ok: 0, fail: 0, info: 0 } };
  const latencies = { readWrite: [] as number[], readOnly: [] as number[] };
  let firstFailure: string | null = null;
  let stopping = false;
  let issued = 0;
  const deadline = options.durationS === undefined ? Number.POSITIVE_INFINITY : t0 + options.durationS * 1000;
  const more = () =>
    !stopping && performance.now() < deadline && (options.txns === undefined || issued < options.txns);
  const processes = options.concurrency + options.auditors;

  const worker = async (first: number, kind: 'readWrite' | 'readOnly') => {
    let process = first;
    try {
      while (more()) {
        if (kind === 'readWrite') issued++;
        const ops = kind === 'readWrite' ? planReadWrite() : planReadOnly();
        record(process, 'invoke', ops);
        const started = performance.now();
        try {
          const done = await (kind === 'readWrite' ? readWrite(ops) : readOnly(ops));
          latencies[kind].push(performance.now() - started);
          record(process, 'ok', done);
          outcomes[kind].ok++;
        } catch (err) {
          firstFailure ??= isDtxError(err) ? `${err.code}: ${err.message}` : String(err);
          // The coordinator's retry rule: a retryable DtxError promises nothing
          // was committed. Anything else may have committed: `info`.
          const nothing = isDtxError(err) && err.retryable && err.code !== 'DTX_LEADERSHIP_LOST';
          const type = nothing || kind === 'readOnly' ? 'fail' : 'info';
          record(process, type, ops);
          outcomes[kind][type]++;
          if (type === 'info') process += processes;
          // What is neither an abort nor an unknown outcome is a fault of the run itself.
          if (!isDtxError(err)) throw err;
          if (nothing) await new Promise((r) => setTimeout(r, 2 + randomInt(8)));
        }
      }
    } catch (err) {
      stopping = true;
      throw err;
    }
  };
  const workers = [
    ...Array.from({ length: options.concurrency }, (_, i) => worker(i, 'readWrite')),
    ...Array.from({ length: options.auditors }, (_, i) => worker(options.concurrency + i, 'readOnly')),
  ];
  options.onStart?.();
  await Promise.all(workers);
  const elapsedS = (performance.now() - t0) / 1000;
  if (options.history !== undefined) {
    writeFileSync(options.history, history.map((op) => `${JSON.stringify(op)}\n`).join(''));
  }
  const verdict = (consistency: Consistency): HistoryVerdict => {
    const result: CheckResult = checkHistoryOps(history, 'append history', {
      model: 'list-append',
      consistency,
    });
    const counts: Record<string, number> = {};
    for (const type of result.anomalyTypes) counts[type] = result.anomalies[type]!.length;
    return { valid: result.valid, anomalyTypes: result.anomalyTypes, counts };
  };
  return {
    workload: 'append',
    reads: options.reads,
    databases: targets.map((t) => t.kind),
    concurrency: options.concurrency,
    auditors: options.auditors,
    keys: keysPerDb,
    readWrite: outcomes.readWrite,
    readOnly: outcomes.readOnly,
    tps: Math.round((outcomes.readWrite.ok / elapsedS) * 10) / 10,
    latencyMs: { readWrite: summarize(latencies.readWrite), readOnly: summarize(latencies.readOnly) },
    firstFailure,
    historyOps: history.length,
    history: options.history ?? null,
    check: { serializable: verdict('serializable'), 'strict-serializable': verdict('strict-serializable') },
  };
}

/** One line for people: the run and the checker's verdicts. */
export function appendLine(r: AppendBenchReport): string {
  const o = (x: Outcomes) => `${x.ok} ok, ${x.fail} failed, ${x.info} unknown`;
  const v = (h: HistoryVerdict) =>
    h.valid ? 'valid' : `NOT valid (${h.anomalyTypes.map((t) => `${t} ${h.counts[t]}`).join(', ')})`;
  return (
    `append (${r.reads} reads, ${r.databases.join('+')}): read-write ${o(r.readWrite)}, ${r.tps} tps; ` +
    `read-only ${o(r.readOnly)}\n` +
    `history of ${r.historyOps} ops${r.history === null ? '' : ` in ${r.history}`}: serializable ${v(r.check.serializable)}; ` +
    `strict-serializable ${v(r.check['strict-serializable'])}`
  );
}
