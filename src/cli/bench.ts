// `dtx bench`, `dtx verify` and `dtx recover`: a cross-database transfer run
// against real databases. A transfer debits an account on the first
// database, credits one on the second and appends an audit row on the third
// (when given), either through dtx's two-phase commit or through naive commit
// (commit on every database one after the other, the failing baseline).
// `verify` checks the books; `recover` finishes what a killed coordinator left.

import { existsSync, writeSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { ResourceAdapter } from '../adapters/types.ts';
import { DtxError, HeuristicError, isDtxError } from '../errors.ts';
import { twoPcRecordCodec } from '../protocol/twopc/codec.ts';
import type { TwoPcRecord } from '../protocol/twopc/types.ts';
import { type CommitFence, createPostgresCommitFence } from '../runtime/commit-fence.ts';
import {
  type Coordinator,
  createCoordinator,
  type RecoveryReport,
  type Transaction,
} from '../runtime/coordinator.ts';
import { isLogError, LogError } from '../runtime/log/errors.ts';
import { openSqliteLog } from '../runtime/log/sqlite.ts';
import type { LogProtocol as AnyLogProtocol, DurableLog, LogOptions } from '../runtime/log/types.ts';
import { checkAcceptorList, type PaxosCommitCoordinator } from '../runtime/paxos-commit/coordinator.ts';
import { type Summary, summarize } from '../sim/stats.ts';
import { type AuditReads, type AuditReport, startAuditors } from './audit.ts';
import type { CrashPoint } from './crash-points.ts';
import {
  accountCount,
  applyTransferPart,
  checkRole,
  checkServerUrl,
  type DbTarget,
  expectedAccountsTotal,
  holdsLeft,
  initSchema,
  naiveGidPrefix,
  openAdapter,
  parseDbUrl,
  readState,
} from './db.ts';
import {
  DbWriteCounter,
  type PaxosCosts,
  type PaxosCounters,
  type PaxosShape,
  paxosCosts,
  readPaxosCounters,
} from './paxos-costs.ts';

export const defaultLogPath = '.dtx/coordinator.sqlite';
/**
 * The PostgreSQL log owner of `dtx bench` per protocol (a postgres:// `--log`
 * holds one log per owner). The coordinator id is not this: it is generated
 * when `--init` creates the log and read back from it by every later run.
 */
/** The protocols bench writes logs of (`server` logs belong to `dtx serve`). */
export type LogProtocol = Exclude<AnyLogProtocol, 'server' | 'paxos-acceptor'>;

export const benchLogOwners: Readonly<Record<LogProtocol, string>> = {
  '2pc': 'bench',
  saga: 'bench-saga',
  tcc: 'bench-tcc',
};
/** The owner lease's ttl for bench, recover and the standby: a SIGKILLed owner's lease lapses this soon. */
export const benchLeaseTtlMsDefault = 3_000;

/** Where `--log SPEC` puts the log of `protocol`: SQLite `SPEC` (2pc), `SPEC.saga.sqlite`, `SPEC.tcc.sqlite`; or a postgres:// owner. */
export type BenchLogLocation = { sqlite: string } | { postgres: string; owner: string };

export function benchLogLocation(spec: string | undefined, protocol: LogProtocol): BenchLogLocation {
  const where = spec ?? defaultLogPath;
  if (/^postgres(ql)?:\/\//.test(where)) return { postgres: where, owner: benchLogOwners[protocol] };
  const path = where.replace(/^sqlite:/, '');
  return { sqlite: protocol === '2pc' ? path : `${path}.${protocol}.sqlite` };
}

export interface OpenBenchLogOptions {
  /** `bench --init` only: create the log when missing. */
  create?: boolean;
  /** Standby: wait for the owner lease instead of failing with DTX_LOG_BUSY. */
  waitForLease?: { onWaiting: (holder: string) => void };
  leaseTtlMs?: number;
}

/**
 * Opens the `protocol` log at `where`, exclusively (the SQLite file lock or
 * the PostgreSQL owner lease), refusing a missing log (unless `create`) and
 * a log of another protocol.
 */
export async function openBenchLog<R>(
  where: BenchLogLocation,
  protocol: LogProtocol,
  decode: (value: unknown) => R,
  options: OpenBenchLogOptions = {},
): Promise<DurableLog<R>> {
  const common: LogOptions<R> = {
    decode,
    create: options.create === true,
    identity: { protocol },
    expect: { protocol },
  };
  if ('postgres' in where) {
    const { openPostgresLog } = await import('../runtime/log/postgres.ts');
    return openPostgresLog<R>(where.postgres, {
      ...common,
      owner: where.owner,
      lease: {
        ttlMs: options.leaseTtlMs ?? benchLeaseTtlMsDefault,
        ...(options.waitForLease === undefined
          ? {}
          : { wait: true, onWaiting: options.waitForLease.onWaiting }),
      },
    });
  }
  if (options.waitForLease !== undefined) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'a lease (standby takeover) needs a postgres:// log shared by both coordinators',
    );
  }
  try {
    return await openSqliteLog<R>(where.sqlite, common);
  } catch (err) {
    if (isLogError(err, 'notFound') && options.create !== true) {
      throw new LogError('notFound', `${err.message}. Check --log; a new bench creates its log with --init`, {
        cause: err,
      });
    }
    throw err;
  }
}

/**
 * Which log `dtx recover --log SPEC` means: the one bench wrote for SPEC,
 * whatever its protocol (read from the log itself). With `protocol`, only
 * that protocol's; a log of another protocol there is DTX_LOG_MISMATCH.
 */
export async function findBenchLog(
  spec: string | undefined,
  protocol?: LogProtocol,
  coordinatorId?: string,
): Promise<{ protocol: LogProtocol; where: BenchLogLocation }> {
  const chosen = await findBenchLogOf(spec, protocol);
  if (coordinatorId !== undefined && chosen.coordinatorId !== coordinatorId) {
    const { where } = chosen;
    throw new DtxError(
      'DTX_LOG_MISMATCH',
      `the log at ${'sqlite' in where ? where.sqlite : `owner ${where.owner}`} belongs to coordinator id ` +
        `${chosen.coordinatorId}, not ${coordinatorId}; nothing was touched`,
    );
  }
  return { protocol: chosen.protocol, where: chosen.where };
}

async function findBenchLogOf(
  spec: string | undefined,
  protocol?: LogProtocol,
): Promise<{ protocol: LogProtocol; where: BenchLogLocation; coordinatorId: string }> {
  const found: { protocol: LogProtocol; where: BenchLogLocation; coordinatorId: string }[] = [];
  for (const p of ['2pc', 'saga', 'tcc'] as const) {
    const where = benchLogLocation(spec, p);
    let identity: DurableLog<unknown>['identity'];
    if ('sqlite' in where) {
      if (!existsSync(where.sqlite)) continue;
      const log = await openSqliteLog<unknown>(where.sqlite, {});
      identity = log.identity;
      await log.close();
    } else {
      const { openPostgresLog } = await import('../runtime/log/postgres.ts');
      try {
        const log = await openPostgresLog<unknown>(where.postgres, {
          owner: where.owner,
          lease: { ttlMs: benchLeaseTtlMsDefault },
        });
        identity = log.identity;
        await log.close();
      } catch (err) {
        if (isLogError(err, 'notFound')) continue;
        throw err;
      }
    }
    if (identity === undefined || identity.protocol === 'server' || identity.protocol === 'paxos-acceptor')
      continue;
    found.push({ protocol: identity.protocol, where, coordinatorId: identity.coordinatorId });
  }
  const shown = (w: BenchLogLocation) => ('sqlite' in w ? w.sqlite : `owner ${w.owner}`);
  if (protocol !== undefined) {
    const match = found.find((f) => f.protocol === protocol);
    if (match !== undefined) return match;
    if (found.length > 0) {
      throw new DtxError(
        'DTX_LOG_MISMATCH',
        `the log at ${shown(found[0]!.where)} is a ${found[0]!.protocol} log, not ${protocol}; nothing was touched`,
      );
    }
  }
  if (found.length === 1) return found[0]!;
  if (found.length > 1) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `several logs for --log ${spec ?? defaultLogPath}: ${found
        .map((f) => `${shown(f.where)} (${f.protocol})`)
        .join(', ')}; give --protocol`,
    );
  }
  const where = benchLogLocation(spec, protocol ?? '2pc');
  throw new DtxError(
    'DTX_LOG_NOT_FOUND',
    `no dtx log at ${'sqlite' in where ? where.sqlite : `${where.postgres.replace(/\/\/[^@/]*@/, '//')} (owner ${where.owner})`}; nothing was created or touched (check --log)`,
  );
}

/** What every bench runs, whatever the protocol: the databases, the log, the load. */
export interface BenchLoad {
  dbs: string[];
  log?: string;
  accounts: number;
  concurrency: number;
  durationS?: number;
  txns?: number;
  init: boolean;
  /** Called once the first transfers are issued (after setup and recovery). */
  onStart?: () => void;
}

export interface BenchOptions extends BenchLoad {
  protocol: 'naive' | '2pc' | 'paxos-commit';
  /** paxos-commit: the 2F+1 acceptors (`dtx acceptor`), `host:port` or `http://host:port`. */
  acceptors?: string[];
  /** paxos-commit: acceptor failures tolerated, F (default 1). */
  faults?: number;
  /** paxos-commit: Faster Paxos Commit (the acceptors must run with --faster too). */
  faster?: boolean;
  /** paxos-commit: where the leader listens (the coordinator's `listen`). */
  listen?: string;
  /** paxos-commit: host one of the acceptors in the leader, its data directory (the coordinator's `hostAcceptor`). */
  hostAcceptor?: string;
  acknowledge?: 'committed' | 'durable';
  /** For crash tests: SIGKILL this process at a named point of the `crashAfter`-th transfer. */
  crashAt?: CrashPoint;
  crashAfter?: number;
  /**
   * Standby takeover (needs a postgres:// log): wait for the log's owner lease
   * instead of failing with DTX_LOG_BUSY while another coordinator owns it.
   * `name` only labels the progress messages (the lease is the log owner's);
   * `ttlMs` is the owner lease's ttl.
   */
  lease?: { name: string; ttlMs: number };
  /** Progress messages (stderr in the CLI). */
  progress?: (line: string) => void;
  /** What recovery did at start (2pc). */
  onRecovered?: (report: RecoveryReport) => void;
  /** The coordinator's orphan sweep (tests: see CoordinatorOptions). */
  orphanGraceMs?: number;
  orphanSweepIntervalMs?: number;
  /** Auditors summing the first two databases while transfers run (2pc for locking and snapshot reads). */
  auditors?: number;
  reads?: AuditReads;
  /** A postgres:// database for the commit fence shared with other processes (`dtx verify --live`). */
  fence?: string;
}

export interface BenchReport {
  protocol: 'naive' | '2pc' | 'paxos-commit';
  concurrency: number;
  txns: number;
  committed: number;
  aborted: number;
  tps: number;
  latencyMs: Summary;
  acknowledge?: 'committed' | 'durable';
  /**
   * Branches found contradicting their transaction's decision (someone
   * resolved them by hand), during the run or the start-up recovery. Any
   * makes `dtx bench` exit 1: the books need a human.
   */
  heuristics: HeuristicView[];
  /** With `auditors`: what the auditors saw. */
  audit?: AuditReport;
  /** paxos-commit: messages and forced writes per commit, counted on this run, next to the simulator's and the paper's. */
  costs?: PaxosCosts;
}

/** A heuristic outcome as the CLI prints it (text and JSON). */
export interface HeuristicView {
  txn: string | null;
  resource: string | null;
  gid: string;
  decision: 'commit' | 'rollback';
  found: 'committed' | 'rolledBack' | 'unknown';
  message: string;
}

/** One line per contradicting branch, from the coordinator's heuristic errors. */
export function heuristicViews(errors: readonly HeuristicError[]): HeuristicView[] {
  return errors.flatMap((e) =>
    e.branches.map((b) => ({
      txn: e.txn ?? null,
      resource: b.resource ?? null,
      gid: b.gid,
      decision: e.decision,
      found: b.found,
      message: e.message,
    })),
  );
}

const roles = ['debit', 'credit', 'audit'] as const;

interface Opened {
  targets: DbTarget[];
  adapters: Record<string, ResourceAdapter>;
  close(): Promise<void>;
}

/** Refuses `--db`s given in another order than `bench --init` had them (see checkRole). */
async function checkRoles(opened: Opened): Promise<void> {
  for (const [i, t] of opened.targets.entries()) await checkRole(t, opened.adapters[t.name]!, roles[i]!);
}

async function openAll(urls: string[], options: { create?: boolean } = {}): Promise<Opened> {
  if (urls.length < 2 || urls.length > 3) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `give two or three --db URLs (debit, credit, audit), got ${urls.length}`,
    );
  }
  const targets = urls.map((u, i) => parseDbUrl(u, i));
  const adapters: Record<string, ResourceAdapter> = {};
  try {
    for (const t of targets) adapters[t.name] = await openAdapter(t, options);
  } catch (err) {
    await Promise.allSettled(Object.values(adapters).map((a) => a.close()));
    throw err;
  }
  return {
    targets,
    adapters,
    close: async () => {
      await Promise.allSettled(Object.values(adapters).map((a) => a.close()));
    },
  };
}

function crashHook(options: BenchOptions, counter: { n: number }) {
  if (options.crashAt === undefined) return undefined;
  const target = options.crashAfter ?? 1;
  return (point: string, txnOrdinal: number) => {
    if (txnOrdinal < target) return;
    const hit =
      (options.crashAt === 'prepared-some' && point === 'prepared:1') ||
      (options.crashAt === 'prepared-all' && point === 'prepared:all') ||
      (options.crashAt === 'decided' && point === 'committing:0') ||
      (options.crashAt === 'between-commits' && point === 'committed:1');
    if (hit) {
      counter.n++;
      // Which transfer the kill hit: with several in flight, the first to
      // reach the point at or after `crashAfter` need not be the `crashAfter`-th.
      writeSync(2, `dtx bench: crash point ${point} of transfer ${txnOrdinal}\n`);
      process.kill(process.pid, 'SIGKILL');
    }
  };
}

export interface ClosedLoopOptions {
  concurrency: number;
  /** Stop issuing after this many transfers... */
  txns?: number;
  /** ...or after this many seconds, whichever comes first. */
  durationS?: number;
  onStart?: () => void;
}

/**
 * The load both `dtx bench` engines put on: `concurrency` workers, each
 * running one transfer after the other until `txns` were issued or
 * `durationS` has passed. `transfer` names each one's outcome; the committed
 * ones are timed and make the throughput.
 */
export async function closedLoop<O extends string>(
  options: ClosedLoopOptions,
  transfer: (ordinal: number) => Promise<O | 'committed'>,
): Promise<{ outcomes: Partial<Record<O | 'committed', number>>; tps: number; latencyMs: Summary }> {
  const started = performance.now();
  const deadline =
    options.durationS !== undefined ? started + options.durationS * 1000 : Number.POSITIVE_INFINITY;
  const total = options.txns ?? Number.POSITIVE_INFINITY;
  let issued = 0;
  const outcomes: Partial<Record<O | 'committed', number>> = {};
  const latencies: number[] = [];
  const worker = async () => {
    while (issued < total && performance.now() < deadline) {
      const ordinal = ++issued;
      const t0 = performance.now();
      const outcome = await transfer(ordinal);
      if (outcome === 'committed') latencies.push(performance.now() - t0);
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
  };
  const workers = Array.from({ length: options.concurrency }, worker);
  options.onStart?.();
  await Promise.all(workers);
  const elapsedS = (performance.now() - started) / 1000;
  return {
    outcomes,
    tps: Math.round((latencies.length / elapsedS) * 10) / 10,
    latencyMs: summarize(latencies),
  };
}

export async function runBench(options: BenchOptions): Promise<BenchReport> {
  const auditors = options.auditors ?? 0;
  const reads = options.reads ?? 'plain';
  if (auditors > 0 && options.protocol !== '2pc' && (reads === 'locking' || reads === 'snapshot')) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `--reads ${reads} needs --protocol 2pc (its coordinator)`);
  }
  if (options.protocol === 'paxos-commit') checkPaxosOptions(options);
  const opened = await openAll(options.dbs, { create: options.init });
  let coordinator: Coordinator | undefined;
  let paxos: PaxosBench | undefined;
  let log: DurableLog<TwoPcRecord> | undefined;
  let fence: CommitFence | undefined;
  try {
    const accounts = options.init ? options.accounts : await existingAccounts(opened);
    const pick = () => Math.floor(Math.random() * accounts);
    const hook = crashHook(options, { n: 0 });
    let transfer: (txnOrdinal: number) => Promise<void>;
    if (options.protocol === '2pc') {
      log = await openTwoPcBenchLog(options);
      if (options.fence !== undefined) fence = await openBenchFence(options.fence);
      coordinator = await startBenchCoordinator(options, opened, log, hook, fence);
      transfer = coordinatedTransfer(coordinator, opened, pick);
    } else if (options.protocol === 'paxos-commit') {
      paxos = await startBenchPaxos(options, opened);
      transfer = coordinatedTransfer(paxos.leader, opened, pick);
    } else {
      if (options.init) {
        for (const [i, t] of opened.targets.entries()) {
          await initSchema(t, opened.adapters[t.name]!, options.accounts, roles[i]!);
        }
      }
      transfer = (ordinal) => naiveTransfer(opened, pick, ordinal, hook);
    }
    const auditing =
      auditors > 0 ? await startBenchAuditors(opened, auditors, reads, coordinator) : undefined;
    let run: Awaited<ReturnType<typeof closedLoop<'aborted' | 'heuristic'>>>;
    let audit: AuditReport | undefined;
    const countersBefore = paxos === undefined ? undefined : await paxos.counters();
    try {
      run = await closedLoop(options, async (ordinal) => {
        try {
          await transfer(ordinal);
          return 'committed';
        } catch (err) {
          return outcomeOfFailure(err);
        }
      });
    } finally {
      audit = await auditing?.stop();
    }
    const committed = run.outcomes.committed ?? 0;
    const aborted = run.outcomes.aborted ?? 0;
    const costs =
      paxos === undefined || countersBefore === undefined
        ? undefined
        : paxosCosts(countersBefore, await paxos.counters(), committed, paxos.shape);
    return {
      protocol: options.protocol,
      concurrency: options.concurrency,
      txns: committed + aborted,
      committed,
      aborted,
      tps: run.tps,
      latencyMs: run.latencyMs,
      ...(options.protocol === '2pc' ? { acknowledge: options.acknowledge ?? 'committed' } : {}),
      heuristics: heuristicViews(coordinator?.heuristics ?? []),
      ...(audit === undefined ? {} : { audit }),
      ...(costs === undefined ? {} : { costs }),
    };
  } finally {
    await paxos?.leader.close();
    await coordinator?.close();
    await fence?.close();
    await log?.close();
    await opened.close();
  }
}

/** The commit fence shared with other processes (`--fence postgres://...`). */
export async function openBenchFence(url: string): Promise<CommitFence> {
  if (checkServerUrl(url, 'fence URL') !== 'postgres') {
    throw new DtxError('DTX_INVALID_ARGUMENT', '--fence takes a postgres:// URL (an advisory lock there)');
  }
  return createPostgresCommitFence({ connection: { connectionString: url, max: 64 } });
}

/** Auditors over the first two databases (debit and credit), against the total --init set up. */
async function startBenchAuditors(
  opened: Opened,
  auditors: number,
  reads: AuditReads,
  coordinator: Coordinator | undefined,
  fence?: CommitFence,
): Promise<{ stop(): Promise<AuditReport> }> {
  const targets = opened.targets.slice(0, 2);
  let expectedTotal = 0;
  for (const t of targets) expectedTotal += await expectedAccountsTotal(t, opened.adapters[t.name]!);
  return startAuditors({
    auditors,
    reads,
    targets,
    adapters: opened.adapters,
    expectedTotal,
    ...(coordinator === undefined ? {} : { coordinator }),
    ...(fence === undefined ? {} : { fence }),
  });
}

/** How many accounts the databases were set up with; refuses databases bench never set up or given in another order. */
async function existingAccounts(opened: Opened): Promise<number> {
  await checkRoles(opened);
  const counts = await Promise.all(
    opened.targets.slice(0, 2).map((t) => accountCount(t, opened.adapters[t.name]!)),
  );
  const accounts = Math.min(...counts);
  if (accounts === 0) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'the databases have no dtx_bench accounts yet: run once with --init',
    );
  }
  return accounts;
}

/**
 * The 2PC log, first and exclusively: its identity is the coordinator's id,
 * and recovery must own it before it touches any database. With a lease, this
 * process is a standby until it gets the log's owner lease.
 */
async function openTwoPcBenchLog(options: BenchOptions): Promise<DurableLog<TwoPcRecord>> {
  const leaseOptions: OpenBenchLogOptions =
    options.lease === undefined
      ? {}
      : {
          leaseTtlMs: options.lease.ttlMs,
          waitForLease: {
            onWaiting: (holder) =>
              options.progress?.(`standby: waiting for lease ${options.lease?.name} (held by ${holder})`),
          },
        };
  const log = await openBenchLog(
    benchLogLocation(options.log, '2pc'),
    '2pc',
    (v) => twoPcRecordCodec.check(v),
    {
      create: options.init,
      ...leaseOptions,
    },
  );
  if (options.lease !== undefined) {
    const holder = (log as { ownerLease?: { holder: string } }).ownerLease?.holder;
    options.progress?.(`active: holding lease ${options.lease.name} as ${holder}`);
  }
  return log;
}

/** The coordinator, recovered; with --init, the books reset after recovery (never over a decided branch). */
async function startBenchCoordinator(
  options: BenchOptions,
  opened: Opened,
  log: DurableLog<TwoPcRecord>,
  hook: ReturnType<typeof crashHook>,
  fence: CommitFence | undefined,
): Promise<Coordinator> {
  const coordinator = await createCoordinator({
    log,
    resources: opened.adapters,
    ...(fence === undefined ? {} : { commitFence: fence }),
    acknowledge: options.acknowledge ?? 'committed',
    ...(options.orphanGraceMs === undefined ? {} : { orphanGraceMs: options.orphanGraceMs }),
    ...(options.orphanSweepIntervalMs === undefined
      ? {}
      : { orphanSweepIntervalMs: options.orphanSweepIntervalMs }),
    ...(hook ? { faults: { point: hook } } : {}),
  });
  options.onRecovered?.(coordinator.recovery);
  if (options.init) {
    for (const [i, t] of opened.targets.entries()) {
      await initSchema(t, opened.adapters[t.name]!, options.accounts, roles[i]!, {
        prefix: coordinator.gidPrefix,
        mayRollBack: (gid) => coordinator.presumedAbortAllowed(gid, t.name),
      });
    }
  }
  return coordinator;
}

/**
 * One transfer through two-phase commit: each database's part in its own
 * branch, one database after the other in resource order, so that no two
 * transfers (nor a transfer and a locking auditor) can wait for each other
 * across databases (the lock-order rule, docs/isolation.md).
 */
/** What both commit protocols' coordinators offer a transfer: a transaction with one branch per resource. */
interface TransferCoordinator {
  transaction(work: (tx: Pick<Transaction, 'id' | 'branch'>) => Promise<void>): Promise<unknown>;
}

/** One transfer (2PC or Paxos Commit): the statements of each database's part, one branch per database in order. */
function coordinatedTransfer(
  c: TransferCoordinator,
  opened: Opened,
  pick: () => number,
): () => Promise<void> {
  return async () => {
    await c.transaction(async (tx) => {
      const amount = 1 + Math.floor(Math.random() * 100);
      for (const [i, t] of opened.targets.entries()) {
        const branch = await tx.branch(t.name);
        await applyTransferPart(t, branch, roles[i]!, tx.id, pick(), amount);
      }
    });
  };
}

/** `dtx bench --protocol paxos-commit`: the acceptor list fits --faults, and no 2PC-only flag was given. */
function checkPaxosOptions(options: BenchOptions): void {
  if (options.acceptors === undefined || options.acceptors.length === 0) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'paxos-commit needs its acceptors: --acceptors host:port,host:port,host:port (2F+1 `dtx acceptor` processes)',
    );
  }
  checkAcceptorList(options.acceptors, options.faults ?? 1);
  const refused: [boolean, string][] = [
    [
      options.log !== undefined,
      '--log (a Paxos Commit leader keeps no log: its acceptors hold the decisions)',
    ],
    [options.lease !== undefined, '--lease'],
    [options.crashAt !== undefined, '--crash-at'],
    [options.fence !== undefined, '--fence'],
    [
      options.acknowledge === 'durable',
      '--acknowledge durable (Paxos Commit answers once every branch committed)',
    ],
  ];
  for (const [given, flag] of refused) {
    if (given)
      throw new DtxError('DTX_INVALID_ARGUMENT', `${flag} does not apply to --protocol paxos-commit`);
  }
}

/** A Paxos Commit leader for bench, with the counters its costs are read from. */
interface PaxosBench {
  leader: PaxosCommitCoordinator;
  shape: PaxosShape;
  counters(): Promise<PaxosCounters>;
}

/** The leader bench's transfers use; with --init, the books reset once no branch of an earlier run is prepared. */
async function startBenchPaxos(options: BenchOptions, opened: Opened): Promise<PaxosBench> {
  const db = new DbWriteCounter();
  const faults = options.faults ?? 1;
  const leader = await createCoordinator({
    protocol: 'paxos-commit',
    id: 'bench',
    resources: db.wrap(opened.adapters),
    acceptors: options.acceptors ?? [],
    faults,
    faster: options.faster === true,
    ...(options.listen === undefined ? {} : { listen: options.listen }),
    ...(options.hostAcceptor === undefined ? {} : { hostAcceptor: { dataDir: options.hostAcceptor } }),
  });
  try {
    if (options.init) {
      // Branches a killed earlier run left prepared hold locks on the tables
      // --init drops, and only the acceptors know their outcome: this
      // leader's scan takes them over and finishes them; wait for that.
      const prefix = `pc_${leader.cluster}_`;
      const deadline = Date.now() + paxosLeftoverWaitMs;
      for (const t of opened.targets) {
        while ((await opened.adapters[t.name]!.listPrepared(prefix)).length > 0) {
          if (Date.now() > deadline) {
            throw new DtxError(
              'DTX_INVALID_STATE',
              `${t.name} still holds prepared Paxos Commit branches (${prefix}*) after ` +
                `${paxosLeftoverWaitMs / 1000} s; --init would drop their tables: check the acceptors`,
            );
          }
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      for (const [i, t] of opened.targets.entries()) {
        await initSchema(t, opened.adapters[t.name]!, options.accounts, roles[i]!);
      }
    }
  } catch (err) {
    await leader.close();
    throw err;
  }
  return {
    leader,
    shape: { rms: opened.targets.length, F: faults, faster: options.faster === true, fanout: 'quorum' },
    counters: () => readPaxosCounters(leader, db),
  };
}

/** How long --init waits for an earlier run's prepared Paxos Commit branches to be finished (takeover 1 s, then a round). */
const paxosLeftoverWaitMs = 30_000;

/** What a failed transfer counts as; rethrows what must end the run. */
function outcomeOfFailure(err: unknown): 'heuristic' | 'committed' | 'aborted' {
  // A heuristic ends one transfer, not the run: it is reported (from
  // coordinator.heuristics) and makes the command fail at the end.
  if (err instanceof HeuristicError) return 'heuristic';
  // Decided, and still being applied: it commits; the run goes on.
  if (isDtxError(err, 'DTX_DECIDED_NOT_APPLIED')) return 'committed';
  // Leadership lost: this process may run nothing more (the new owner does).
  if (!isDtxError(err) || !err.retryable || err.code === 'DTX_LEADERSHIP_LOST') throw err;
  return 'aborted';
}

let naiveCounter = 0;
const naiveIncarnation = `${Date.now().toString(36)}${process.pid.toString(36)}`;

/**
 * Naive commit: do the work on every database, then commit each one in turn,
 * with no prepare phase, no log and no recovery. (Each local commit is made
 * here as prepare-then-commit-at-once, which is one durable local commit; a
 * crash between two databases' commits leaves one committed and the other not.)
 */
async function naiveTransfer(
  opened: Opened,
  pick: () => number,
  ordinal: number,
  hook: ((point: string, ordinal: number) => void) | undefined,
): Promise<void> {
  const txn = `naive.${naiveIncarnation}.${(++naiveCounter).toString(36)}`;
  const amount = 1 + Math.floor(Math.random() * 100);
  const branches: {
    adapter: ResourceAdapter;
    gid: string;
    branch: { prepare(): Promise<unknown>; rollback(): Promise<void> };
  }[] = [];
  try {
    for (const [i, t] of opened.targets.entries()) {
      const adapter = opened.adapters[t.name]!;
      const gid = `dtx_${txn}_${t.name}`;
      const branch = await adapter.begin(gid);
      branches.push({ adapter, gid, branch });
      await applyTransferPart(t, branch, roles[i]!, txn, pick(), amount);
    }
  } catch (err) {
    await Promise.allSettled(branches.map((b) => b.branch.rollback()));
    throw err;
  }
  let done = 0;
  try {
    for (const b of branches) {
      // A failure here is the naive protocol's failure: earlier databases stay committed.
      const vote = await b.branch.prepare();
      if (vote === 'yes') await b.adapter.commitPrepared(b.gid);
      done++;
      hook?.(`committed:${done}`, ordinal);
    }
  } catch (err) {
    // The databases not reached yet keep nothing: release their work and locks.
    await Promise.allSettled(branches.slice(done + 1).map((b) => b.branch.rollback()));
    throw err;
  }
}

export interface VerifyReport {
  ok: boolean;
  total: number;
  expectedTotal: number;
  auditRows: number;
  committedTransfers: number;
  /** Transfers some databases have and others do not: partial commits. */
  partialTransfers: number;
  preparedLeft: number;
  /** TCC reservations (`dtx_bench.holds`) neither confirmed nor cancelled: a half-done TCC transfer. */
  holdsLeft: number;
}

/**
 * Checks the books on `dbs`. With `logs` (the bench logs that wrote to them),
 * only their coordinators' prepared branches (and naive commit's) count as
 * left behind; without, every dtx branch on those servers does.
 */
export async function runVerify(
  dbs: string[],
  options: { logs?: readonly string[] } = {},
): Promise<VerifyReport> {
  let prefixes: string[] | undefined;
  if (options.logs !== undefined && options.logs.length > 0) {
    prefixes = [naiveGidPrefix];
    for (const spec of options.logs) {
      try {
        prefixes.push(`dtx_${(await findBenchLogOf(spec, '2pc')).coordinatorId}.`);
      } catch (err) {
        // A saga or TCC log: its transfers prepare nothing.
        if (!isDtxError(err, 'DTX_LOG_MISMATCH')) throw err;
      }
    }
  }
  const opened = await openAll(dbs);
  try {
    await checkRoles(opened);
    const states = await Promise.all(
      opened.targets.map((t) => readState(t, opened.adapters[t.name]!, prefixes)),
    );
    const [debit, credit, audit] = states;
    const total = debit!.total + credit!.total;
    const expectedTotal = debit!.expectedTotal + credit!.expectedTotal;
    const all = new Set(states.flatMap((s) => [...s.transfers]));
    const everywhere = [...all].filter((txn) => states.every((s) => s.transfers.has(txn)));
    const preparedLeft = states.reduce((n, s) => n + s.preparedLeft.length, 0);
    const auditRows = (audit ?? credit!).transfers.size;
    const holds = await Promise.all(opened.targets.map((t) => holdsLeft(t, opened.adapters[t.name]!)));
    const report: VerifyReport = {
      ok: false,
      total,
      expectedTotal,
      auditRows,
      committedTransfers: everywhere.length,
      partialTransfers: all.size - everywhere.length,
      preparedLeft,
      holdsLeft: holds.reduce((a, b) => a + b, 0),
    };
    report.ok =
      total === expectedTotal &&
      report.partialTransfers === 0 &&
      auditRows === everywhere.length &&
      preparedLeft === 0 &&
      report.holdsLeft === 0;
    return report;
  } finally {
    await opened.close();
  }
}

/**
 * `dtx verify --live`: audits the books while transfers run, from another
 * process than the coordinators: one consistent snapshot per database at a
 * time, fenced by the commit fence the coordinators share (`bench --fence`),
 * for `durationS` seconds. `ok` when at least one audit read and none saw a
 * wrong total.
 */
export async function runLiveVerify(
  dbs: string[],
  options: { fence: string; durationS: number; auditors?: number },
): Promise<AuditReport & { ok: boolean }> {
  const opened = await openAll(dbs);
  let fence: CommitFence | undefined;
  try {
    await checkRoles(opened);
    fence = await openBenchFence(options.fence);
    const auditing = await startBenchAuditors(opened, options.auditors ?? 1, 'snapshot', undefined, fence);
    await new Promise((r) => setTimeout(r, options.durationS * 1000));
    const report = await auditing.stop();
    return { ok: report.audits > 0 && report.inconsistentAudits === 0, ...report };
  } finally {
    await fence?.close();
    await opened.close();
  }
}

/**
 * `dtx recover` for 2PC: opens the log exclusively (DTX_LOG_BUSY while a
 * live coordinator owns it), refusing a missing one, then runs the
 * coordinator's start-up recovery under the log's own coordinator id.
 */
export async function runRecover(options: {
  dbs: string[];
  log?: string;
  where?: BenchLogLocation;
  leaseTtlMs?: number;
}): Promise<RecoveryReport> {
  return withBenchCoordinator(options, async (_coordinator, report) => report);
}

/**
 * Runs `work` with bench's 2PC coordinator started on its log (which runs
 * recovery first) and the databases, then closes everything: for `dtx
 * recover` and the operator commands (`dtx txn retry|resolve|abandon`).
 */
export async function withBenchCoordinator<T>(
  options: {
    dbs: string[];
    log?: string;
    where?: BenchLogLocation;
    leaseTtlMs?: number;
    recoveryWaitMs?: number;
  },
  work: (coordinator: Coordinator, recovery: RecoveryReport) => Promise<T>,
): Promise<T> {
  // The log before the databases: a wrong --log must stop everything before anything is opened.
  const log = await openBenchLog(
    options.where ?? benchLogLocation(options.log, '2pc'),
    '2pc',
    (v) => twoPcRecordCodec.check(v),
    options.leaseTtlMs === undefined ? {} : { leaseTtlMs: options.leaseTtlMs },
  );
  let opened: Opened | undefined;
  let coordinator: Coordinator | undefined;
  try {
    opened = await openAll(options.dbs);
    await checkRoles(opened);
    coordinator = await createCoordinator({
      log,
      resources: opened.adapters,
      orphanSweepIntervalMs: 0,
      ...(options.recoveryWaitMs === undefined ? {} : { recoveryWaitMs: options.recoveryWaitMs }),
    });
    return await work(coordinator, coordinator.recovery);
  } finally {
    await coordinator?.close();
    await log.close();
    await opened?.close();
  }
}
