// The two-phase commit coordinator for real databases: the pure presumed-abort
// core (src/protocol/twopc/coordinator.ts) driven by the runtime Driver, with a
// durable log, and a transport that turns protocol messages into calls on
// resource adapters (src/adapters): PREPARE becomes `branch.prepare()`, COMMIT
// `commitPrepared(gid)`, ABORT a rollback. The databases are the participants;
// their own logs are the participants' forced writes.
//
// Owns: transaction ids and gids, the callback-scoped `transaction()` API, and
// recovery — re-driving every commit record without an end, and rolling back
// (presumed abort) every prepared branch with this coordinator's gid prefix
// that the log does not say to commit. It reports heuristic outcomes (a branch
// someone resolved by hand) instead of hiding them: `transaction()` rejects
// with HeuristicError, and recovery lists them; a branch found gone is judged
// by the resource's evidence (ResourceAdapter.fateOf), so that our own commit
// whose reply was lost is never taken for someone else's.
//
// Also owns the caller's deadlines (`timeoutMs`, `signal`, and the bounded
// wait for phase two, `commitWaitMs`), the back-off of COMMITs that keep
// failing, and the operator API (TxnOperator: list, show, retry, resolve,
// abandon), whose actions go through the core as OPERATOR_END. What it does
// goes to an optional logger and observer (./observe.ts) and, when
// `@opentelemetry/api` is installed, to spans (./otel.ts): one per attempt of
// `transaction()`, one per PREPARE, COMMIT and rollback of a branch.
//
// Identity and ownership: the coordinator's id is its log's (recorded when the
// log was created, see src/runtime/log/identity.ts), so no two deployments
// share one by default, and gids carry it: recovery only ever resolves
// branches whose gid carries its own id. The log is owned exclusively (SQLite's
// file lock, the PostgreSQL log's owner lease) before recovery reads it. When
// the PostgreSQL lease is lost, the coordinator stops at once: nothing more is
// prepared, undecided work is rolled back and its callers get the retryable
// DTX_LEADERSHIP_LOST. A periodic sweep rolls back prepared branches of its
// id that are older than a grace period and that the log does not say to
// commit — what a former owner (a zombie) left behind after the takeover.

import '../dispose.ts';
import { randomBytes } from 'node:crypto';
import type { BranchFate, ResourceAdapter } from '../adapters/types.ts';
import { DtxError, HeuristicError, isDtxError, ResourceUnavailableError } from '../errors.ts';
import { textCharsMax } from '../protocol/common/codec.ts';
import { type Hlc, hlcNow, hlcZero } from '../protocol/common/hlc.ts';
import type { NodeId, Outcome, TxnId } from '../protocol/common/types.ts';
import { twoPcRecordCodec } from '../protocol/twopc/codec.ts';
import { twoPcCoordinator } from '../protocol/twopc/coordinator.ts';
import { compactTwoPcLog } from '../protocol/twopc/log.ts';
import {
  defaultTwoPcConfig,
  type OperatorAction,
  type TwoPcConfig,
  type TwoPcMsg,
  type TwoPcRecord,
} from '../protocol/twopc/types.ts';
import { bothFences, type CommitFence, type FenceRelease, LocalCommitFence } from './commit-fence.ts';
import { Driver } from './driver.ts';
import {
  commitBackoffMsMaxDefault,
  commitWaitMsDefault,
  coordinatorIdPattern,
  orphanGraceMsDefault,
  orphanSweepIntervalMsDefault,
  resourceNamePattern,
  twoPcCheckpointEveryAppends,
  twoPcRuntimeTiming,
} from './limits.ts';
import { LockOrderedReads } from './lock-ordered-reads.ts';
import { isLogError } from './log/errors.ts';
import { type LogLocation, openLog } from './log/open.ts';
import { timedRecords } from './log/timed.ts';
import type { DurableLog } from './log/types.ts';
import { wrapLog } from './log/wrap.ts';
import { type Logger, logSafely, notify, type ObservedOutcome, type Observer } from './observe.ts';
import type { OperatorActionOptions, TxnDetail, TxnOperator, TxnState, TxnSummary } from './operator.ts';
import { type SpanHandle, startSpan, withSpan } from './otel.ts';
import {
  isPaxosCommitOptions,
  PaxosCommitCoordinator,
  type PaxosCommitCoordinatorOptions,
} from './paxos-commit/coordinator.ts';
import { type SnapshotOptions, type SnapshotReads, withSnapshot } from './snapshot.ts';
import { twoPcTxnViews } from './twopc-views.ts';

/** The name a client gets in the core; the runtime has exactly one kind of client, the caller. */
const appClient = 'app';

export interface CoordinatorOptions {
  /** The coordinator's durable log (see src/runtime/log). */
  log: DurableLog<TwoPcRecord>;
  /** The participants, by name. Names appear in gids: letters, digits, `.` and `-`, at most 32. */
  resources: Record<string, ResourceAdapter>;
  /**
   * This coordinator's id, part of every gid it makes (`dtx_<id>.<...>`).
   * Default: the id recorded in the log's identity (generated when the log was
   * created), which is what every coordinator should use; when given, it must
   * equal the log's (else DTX_LOG_MISMATCH). Required only for a log that
   * records no identity (a test double). Recovery only touches branches with
   * its own id, so several coordinators can share databases; a standby taking
   * over opens the same log and so gets the same id.
   */
  id?: string;
  /** @deprecated The former name of `id`. */
  name?: string;
  /**
   * How often to look for orphaned prepared branches of this id (left by a
   * former owner of the log after a takeover), in ms; 0 turns the sweep off.
   * Default 5,000.
   */
  orphanSweepIntervalMs?: number;
  /**
   * How long a prepared branch of this id that the log does not say to commit
   * must have existed before the sweep rolls it back (presumed abort). Must
   * exceed the longest prepare-to-decision time of a live coordinator sharing
   * the id (there is none after a takeover: the old one is fenced). Default 30,000.
   */
  orphanGraceMs?: number;
  /**
   * How long `start()` waits for the commits recovery re-drives to reach every
   * branch. Default 30,000. A transaction still not committed everywhere by
   * then (a participant is down) is listed in the report's `stillInDoubt` and
   * keeps being retried in the background: a dead participant must never keep
   * the coordinator from starting.
   */
  recoveryWaitMs?: number;
  /**
   * When `transaction()` resolves: `'committed'` (default) once every branch
   * has been committed, so the caller reads its own writes on every database;
   * `'durable'` as soon as the commit decision is durable in the log — one
   * round trip sooner, but a read right after may still see a branch locked or
   * not yet applied (it will be, recovery guarantees it).
   */
  acknowledge?: 'committed' | 'durable';
  /** Protocol timing (see TwoPcConfig). The vote timeout bounds a whole prepare phase. */
  timing?: Partial<Omit<TwoPcConfig, 'incarnation'>>;
  /** Called for every heuristic outcome found (also collected in `heuristics`). */
  onHeuristic?: (error: HeuristicError) => void;
  /**
   * Fault injection for crash tests: called at named points of each
   * transaction (`prepared:<k>` after the k-th branch prepared, `prepared:all`,
   * `committing:<k>` before the commit of a branch with k already committed,
   * `committed:<k>`), with the transaction's ordinal in this process. A crash
   * test kills the process there (SIGKILL).
   */
  faults?: { point(point: string, txnOrdinal: number): void };
  /**
   * How long `transaction()` waits, once the commit decision is durable, for
   * every branch to be committed (acknowledge `'committed'`) before it rejects
   * with DTX_DECIDED_NOT_APPLIED. The coordinator keeps committing after that
   * (and recovery, after a restart), so the caller learns the transaction WILL
   * commit without being held hostage by an unreachable database. Default
   * 30000; a transaction's own `commitWaitMs` or deadline overrides it.
   */
  commitWaitMs?: number;
  /**
   * Longest pause between two COMMIT attempts on a branch that keeps failing
   * (its database is down): the pause starts at the resend interval and
   * doubles up to this. Default 30000.
   */
  commitBackoffMaxMs?: number;
  /**
   * Called with operational warnings (a branch whose COMMIT keeps failing:
   * once per branch, not per attempt). Default: `logger.warn` when a logger
   * is given, else `process.emitWarning`.
   */
  onWarning?: (message: string) => void;
  /**
   * A structured logger (pino-compatible, src/runtime/observe.ts): warnings
   * (unless `onWarning` takes them), transactions that abort at `info`,
   * transactions and branch calls at `debug`. Default: none.
   */
  logger?: Logger;
  /** Hooks for metrics: transactions begun and ended, branch calls (src/runtime/observe.ts). */
  observer?: Observer;
  /**
   * A commit fence shared with other processes (`createPostgresCommitFence`),
   * for `snapshot()` readers and coordinators in other processes that commit
   * to the same databases. Every transaction enters it shared from before its
   * first PREPARE until its last branch committed (recovery's re-driven
   * commits from their first COMMIT), as it enters this coordinator's own
   * in-process fence. Not closed by the coordinator. docs/isolation.md.
   */
  commitFence?: CommitFence;
}

/** What a transaction callback gets: one branch per resource, opened on first use. */
export interface Transaction {
  readonly id: TxnId;
  /** The branch of this transaction on `resource`; opened (BEGIN / XA START) on first use. */
  branch<B = unknown>(resource: string): Promise<B>;
  /** Runs a statement in this transaction's branch on a SQL resource. */
  query<Row extends Record<string, unknown> = Record<string, unknown>>(
    resource: string,
    sql: string,
    params?: readonly unknown[],
  ): Promise<{ rows: Row[]; rowCount: number }>;
  /**
   * A locking read: runs one SELECT in this transaction's branch on a SQL
   * resource with the database's shared row lock (FOR SHARE, LOCK IN SHARE
   * MODE), held until the transaction's outcome, so what was read cannot
   * change before this transaction commits. A branch that only read votes
   * read-only and leaves phase two. Deadlock rule: a read on a resource
   * earlier (in the coordinator's `resources` order) than one this
   * transaction already used never waits: locked rows fail it at once with
   * the retryable DTX_LOCK_CONFLICT. docs/isolation.md.
   */
  read<Row extends Record<string, unknown> = Record<string, unknown>>(
    resource: string,
    sql: string,
    params?: readonly unknown[],
  ): Promise<{ rows: Row[]; rowCount: number }>;
}

export interface TransactionOptions {
  /**
   * Run the whole callback again, as a new transaction, this many times when
   * it fails with a retryable error (a lock conflict, a NO vote, a
   * serialization failure, a deadlock broken by a lock timeout). Default 0.
   * The callback must therefore be safe to run more than once.
   */
  retries?: number;
  /** First retry delay; doubled each time, with jitter. Default 20. */
  backoffMs?: number;
  /** Longest retry delay. Default 1000. */
  backoffMaxMs?: number;
  /**
   * Ends the wait early. Before the commit decision every branch is rolled
   * back and the call rejects with DTX_CANCELLED; once the decision is durable
   * the transaction still commits, and the call rejects with
   * DTX_DECIDED_NOT_APPLIED if branches are still being committed.
   */
  signal?: AbortSignal;
  /**
   * A deadline for the whole call, retries included: before the decision it
   * aborts everywhere and rejects with DTX_TIMEOUT; after a durable commit
   * decision it rejects with DTX_DECIDED_NOT_APPLIED (the commit still lands).
   */
  timeoutMs?: number;
  /** Overrides the coordinator's `commitWaitMs` for this call. */
  commitWaitMs?: number;
}

export interface RecoveryReport {
  /** Transactions whose commit the log records and which recovery committed on every branch. */
  recommitted: TxnId[];
  /**
   * Transactions whose commit the log records but which could not be committed
   * everywhere within `recoveryWaitMs` (a participant is unreachable). They
   * WILL commit: the coordinator keeps retrying them (`dtx txn list --state
   * in-doubt`); an operator may `abandon` one whose participant is gone for good.
   */
  stillInDoubt: TxnId[];
  /** Resources that could not be reached, so their prepared branches were not swept (presumed abort) yet. */
  unreachable: string[];
  /** Prepared branches rolled back because the log has no commit for them (presumed abort). */
  rolledBack: string[];
  /** Branches found resolved by someone else: heuristic outcomes. */
  heuristics: HeuristicError[];
}

interface ActiveTxn {
  ordinal: number;
  prepared: number;
  commitsStarted: number;
  commitsDone: number;
  branches: Map<string, BranchEntry>;
  /** The first error a participant gave while voting: the reason for an abort. */
  cause: unknown;
  outcome?: (outcome: Outcome) => void;
  /** Ends the caller's wait with an error (log failure). */
  fail?: (err: DtxError) => void;
  /** Branches still to be committed (acknowledge: 'committed'). */
  unacked: Set<string>;
  allCommitted?: () => void;
  /** Branches found contradicting the decision while this caller waits: it gets them as one HeuristicError. */
  heuristics: HeuristicError[];
  /** Its locking reads under the lock-order rule (ranks: positions in `resources`). */
  reads: LockOrderedReads;
  /** The core's decision, once known. */
  decided?: Outcome;
  /** Its span (./otel.ts) and start, for spans, durations and the observer. */
  span: SpanHandle | undefined;
  startMs: number;
}

/** The back-off state of a branch whose COMMIT failed, by `txn resource`. */
interface CommitRetry {
  failures: number;
  /** No new attempt before this time (Date.now() ms); the core's resend timer asks again. */
  nextAtMs: number;
  /**
   * A failed attempt may have been applied on the server (its reply was lost):
   * a later "no such prepared branch" is then no evidence of a heuristic.
   */
  mayHaveApplied: boolean;
}

/** A caller's `signal` and `timeoutMs`, as one thing that may fire once. */
class CallerDeadline {
  /** Set once fired: DTX_TIMEOUT or DTX_CANCELLED. */
  error: DtxError | undefined;
  /** Resolves with `error` when the deadline fires; never rejects. */
  readonly fired: Promise<DtxError>;
  /**
   * False without a signal and a timeout (most calls): it never fires, so
   * nothing needs to race it, which spares a transaction's every wait a few
   * promises.
   */
  readonly canFire: boolean;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly cleanups: (() => void)[] = [];

  constructor(signal: AbortSignal | undefined, timeoutMs: number | undefined) {
    if (timeoutMs !== undefined && (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0)) {
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `timeoutMs must be a positive integer, got ${String(timeoutMs)}`,
      );
    }
    this.canFire = signal !== undefined || timeoutMs !== undefined;
    let fire: (err: DtxError) => void = () => undefined;
    this.fired = new Promise<DtxError>((resolve) => {
      fire = (err) => {
        if (this.error !== undefined) return;
        this.error = err;
        resolve(err);
      };
    });
    if (timeoutMs !== undefined) {
      this.timer = setTimeout(
        () => fire(new DtxError('DTX_TIMEOUT', `transaction did not finish within timeoutMs ${timeoutMs}`)),
        timeoutMs,
      );
    }
    if (signal !== undefined) {
      const onAbort = () =>
        fire(new DtxError('DTX_CANCELLED', `transaction cancelled by its signal: ${String(signal.reason)}`));
      if (signal.aborted) onAbort();
      else {
        signal.addEventListener('abort', onAbort, { once: true });
        this.cleanups.push(() => signal.removeEventListener('abort', onAbort));
      }
    }
  }

  /** `p`, unless the deadline fires first: then its error. */
  race<T>(p: Promise<T>): Promise<T> {
    if (this.error !== undefined) return Promise.reject(this.error);
    return this.canFire ? this.raceFired(p) : p;
  }

  private async raceFired<T>(p: Promise<T>): Promise<T> {
    const winner = await Promise.race([
      p.then((value) => ({ value })),
      this.fired.then((error) => ({ error })),
    ]);
    if ('error' in winner) throw winner.error;
    return winner.value;
  }

  dispose(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    for (const cleanup of this.cleanups.splice(0)) cleanup();
  }
}

/** One call on a participant, as observed: its span, and what reports how it ended. */
interface BranchCall {
  span: SpanHandle | undefined;
  ended(status: 'success' | 'failure' | 'retry', reason: string | null): void;
}

interface BranchEntry {
  gid: string;
  branch: PreparingBranch;
  voted: boolean;
  /** The prepare in flight, if any: an ABORT must wait for it to know what to undo. */
  preparing?: Promise<unknown>;
}

interface PreparingBranch {
  /** See Branch.evidence. */
  readonly evidence?: string | undefined;
  prepare(): Promise<'yes' | 'readOnly'>;
  rollback(): Promise<void>;
  query?(sql: string, params?: readonly unknown[]): Promise<{ rows: unknown[]; rowCount: number }>;
  lockingRead?(
    sql: string,
    params: readonly unknown[],
    options: { wait: boolean },
  ): Promise<{ rows: unknown[]; rowCount: number }>;
}

export class Coordinator implements TxnOperator, AsyncDisposable {
  readonly name: string;
  private recoveryReport: RecoveryReport = {
    recommitted: [],
    stillInDoubt: [],
    rolledBack: [],
    unreachable: [],
    heuristics: [],
  };
  readonly heuristics: HeuristicError[] = [];
  private readonly driver: Driver<
    ReturnType<typeof twoPcCoordinator.init>,
    TwoPcMsg,
    TwoPcRecord,
    Partial<TwoPcConfig>
  >;
  private readonly active = new Map<TxnId, ActiveTxn>();
  /** Transactions re-driven by recovery: their branches' gids, to tell what to expect. */
  private readonly recovering = new Set<TxnId>();
  private readonly incarnation: string;
  /** This process's hybrid logical clock (see tickClock). */
  private clock: Hlc = hlcZero;
  private counter = 0;
  /** Phase-two calls in flight, by message type and gid: a resend must not race its original. */
  private readonly inflight = new Map<string, Promise<void>>();
  /** Branches whose COMMIT failed and is being retried with back-off, by `txn resource`. */
  private readonly commitRetries = new Map<string, CommitRetry>();
  /** recover() was called (once only). */
  private starting = false;
  /** recover() finished: transactions may begin. */
  private started = false;
  private closing = false;
  private appendsSinceCheckpoint = 0;
  private failure: unknown;
  /** Set once the log's lease was lost: why every caller is refused from then on. */
  private leadershipLost: DtxError | undefined;
  /** The orphan sweep's timer, and when it first saw each prepared branch (for resources with no prepare time). */
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping = false;
  private readonly firstSeen = new Map<string, number>();
  /** Commit phases (in-process, and the shared fence when given) against snapshot opening: see snapshot(). */
  private readonly fence: CommitFence;
  /** Each transaction's hold on the fence, from before its first PREPARE until its last branch committed (or it aborted). */
  private readonly fenceHolds = new Map<TxnId, Promise<FenceRelease>>();
  /** Each resource's rank in the lock order: its position in `resources`. */
  private readonly ranks: ReadonlyMap<string, number>;

  constructor(private readonly options: CoordinatorOptions) {
    this.name = coordinatorIdOf(options);
    for (const resource of Object.keys(options.resources)) {
      if (!resourceNamePattern.test(resource)) {
        throw new DtxError(
          'DTX_INVALID_ARGUMENT',
          `resource name ${JSON.stringify(resource)} must match ${resourceNamePattern}`,
        );
      }
    }
    this.ranks = new Map(Object.keys(options.resources).map((name, i) => [name, i]));
    this.fence =
      options.commitFence === undefined
        ? new LocalCommitFence()
        : bothFences(new LocalCommitFence(), options.commitFence);
    // Unique per process start: attempt names and transaction ids embed it.
    this.incarnation = `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
    this.driver = new Driver(
      twoPcCoordinator,
      this.name,
      { ...defaultTwoPcConfig, ...twoPcRuntimeTiming, ...options.timing, incarnation: this.incarnation },
      {
        log: this.fencedLog(countingLog(options.log, () => this.appendsSinceCheckpoint++)),
        send: (to, msg) => this.deliver(to, msg),
        outcome: (txn, _client, outcome) => this.onOutcome(txn, outcome),
        halted: (err) => this.onLogFailure(err),
      },
    );
  }

  /** What recovery did before `createCoordinator` returned this coordinator. */
  get recovery(): RecoveryReport {
    return this.recoveryReport;
  }

  /** This coordinator's id (the log's), in every gid and transaction id it makes. */
  get id(): string {
    return this.name;
  }

  /** The gid prefix of every branch this coordinator makes. */
  get gidPrefix(): string {
    return `dtx_${this.name}.`;
  }

  gidFor(txn: TxnId, resource: string): string {
    return `dtx_${txn}_${resource}`;
  }

  private adapter(resource: string): ResourceAdapter {
    const adapter = this.options.resources[resource];
    if (adapter === undefined) {
      throw new DtxError('DTX_INVALID_ARGUMENT', `no resource named ${JSON.stringify(resource)}`);
    }
    return adapter;
  }

  /**
   * Load the log, re-drive every commit it records without an end, and roll
   * back every prepared branch of ours that it does not say to commit.
   * `createCoordinator` calls it once, before it returns the coordinator, as
   * `createSagaOrchestrator` and `createTccOrchestrator` do.
   */
  async recover(): Promise<RecoveryReport> {
    if (this.starting) throw new DtxError('DTX_INVALID_STATE', 'recover() was called already');
    this.starting = true;
    try {
      const report = await this.recoverAtStart();
      this.recoveryReport = report;
      this.started = true;
      this.watchOwnership();
      return report;
    } catch (err) {
      await this.driver.close();
      throw err;
    }
  }

  private async recoverAtStart(): Promise<RecoveryReport> {
    let committing = new Set<TxnId>();
    await this.driver.start(() => {
      committing = this.committingTxns();
      for (const txn of committing) this.recovering.add(txn);
    });
    const report: RecoveryReport = {
      recommitted: [],
      stillInDoubt: [],
      rolledBack: [],
      unreachable: [],
      heuristics: [],
    };
    for (const [resource, adapter] of Object.entries(this.options.resources)) {
      let prepared: Awaited<ReturnType<ResourceAdapter['listPrepared']>>;
      try {
        prepared = await adapter.listPrepared(this.gidPrefix);
      } catch (err) {
        // A resource that is down must not keep the coordinator from starting
        // (and its operators from acting): its branches are swept later, by
        // the periodic orphan sweep or the next recovery.
        if (!(err instanceof ResourceUnavailableError)) throw err;
        report.unreachable.push(resource);
        continue;
      }
      for (const { gid } of prepared) {
        const txn = this.txnOfGid(gid, resource);
        if (txn === null || committing.has(txn) || !this.mayPresumeAborted(txn)) continue;
        await adapter.rollbackPrepared(gid);
        report.rolledBack.push(gid);
      }
    }
    try {
      await this.untilRecovered(this.options.recoveryWaitMs ?? 30_000);
    } catch (err) {
      // A participant is down: the re-driven commits go on in the background.
      if (!(err instanceof ResourceUnavailableError)) throw err;
    }
    const pending = this.committingTxns();
    for (const txn of committing) (pending.has(txn) ? report.stillInDoubt : report.recommitted).push(txn);
    report.heuristics.push(...this.heuristics);
    return report;
  }

  /**
   * After recovery: react to the loss of the log's lease, and sweep for
   * orphans every `orphanSweepIntervalMs` (on an unref'd timer, so that it
   * never keeps a process alive).
   */
  private watchOwnership(): void {
    const intervalMs = this.options.orphanSweepIntervalMs ?? orphanSweepIntervalMsDefault;
    if (intervalMs > 0) {
      this.sweepTimer = setInterval(() => {
        this.sweepOrphans().catch((err: unknown) => {
          if (!this.closing) this.warn(`dtx: orphan sweep failed: ${String(err)}`);
        });
      }, intervalMs);
      this.sweepTimer.unref();
    }
    void this.options.log.lost?.then((err) => this.onLeadershipLost(err));
  }

  /**
   * Rolls back (presumed abort) every prepared branch with this coordinator's
   * id that is older than `orphanGraceMs`, that no transaction of this process
   * is working on, and that the log does not say to commit. After a takeover
   * these are what the former owner prepared and could not decide (it is
   * fenced, so it never will); the one-time recovery at start cannot see
   * branches the zombie prepares after it. Resolves with the gids rolled back.
   */
  async sweepOrphans(): Promise<string[]> {
    const rolledBack: string[] = [];
    if (this.sweeping || this.closing || !this.started || this.driver.failed) return rolledBack;
    this.sweeping = true;
    try {
      const graceMs = this.options.orphanGraceMs ?? orphanGraceMsDefault;
      const seen = new Set<string>();
      for (const [resource, adapter] of Object.entries(this.options.resources)) {
        const prepared = await adapter.listPrepared(this.gidPrefix);
        const now = Date.now();
        for (const { gid, preparedAt } of prepared) {
          const txn = this.txnOfGid(gid, resource);
          if (txn === null) continue;
          const key = `${resource} ${gid}`;
          seen.add(key);
          const firstSeenAt = this.firstSeen.get(key) ?? now;
          this.firstSeen.set(key, firstSeenAt);
          // MariaDB records no prepare time: count from when the sweep first saw it.
          const sinceMs = preparedAt?.getTime() ?? firstSeenAt;
          if (now - sinceMs < graceMs) continue;
          // Checked last, right before acting: the log may have recorded a commit meanwhile.
          if (this.closing || !this.mayPresumeAborted(txn)) continue;
          // An ABORT of ours still on its way to this branch would then find it
          // gone and report a heuristic outcome that is not one.
          if (this.inflight.has(`ABORT ${txn} ${resource}`)) continue;
          await adapter.rollbackPrepared(gid);
          rolledBack.push(gid);
          this.firstSeen.delete(key);
        }
      }
      for (const key of this.firstSeen.keys()) if (!seen.has(key)) this.firstSeen.delete(key);
    } finally {
      this.sweeping = false;
    }
    return rolledBack;
  }

  /**
   * The log's lease was lost (another coordinator took the log over): stop
   * at once, as a crash would, but tidier. The driver halts, so nothing more
   * is prepared or decided; a transaction the core had not decided can never
   * be committed now (its commit record can no longer be written), so its
   * branches are rolled back here and its caller gets the retryable
   * DTX_LEADERSHIP_LOST. A decided one may have a durable commit record: it is
   * left to the new owner's recovery, and its caller gets DTX_OUTCOME_UNKNOWN.
   */
  private onLeadershipLost(err: unknown): void {
    if (this.closing || this.leadershipLost !== undefined) return;
    this.leadershipLost = new DtxError(
      'DTX_LEADERSHIP_LOST',
      `coordinator ${this.name} lost ownership of its log (another coordinator took it over); ` +
        'nothing undecided was committed: run the transaction again on the new owner',
      { cause: err },
    );
    clearInterval(this.sweepTimer);
    this.driver.fail(err);
  }

  /** Rolls back every branch of an undecided transaction, prepared or not (lease lost: it can never commit). */
  private async rollbackUndecided(t: ActiveTxn): Promise<void> {
    await Promise.allSettled(
      [...t.branches.entries()].map(async ([resource, entry]) => {
        if (entry.preparing !== undefined) await entry.preparing;
        if (!entry.voted) {
          try {
            await entry.branch.rollback();
            return;
          } catch {
            // Prepared after all (in doubt), or its connection is gone: resolve it by gid.
          }
        }
        await this.adapter(resource).rollbackPrepared(entry.gid);
      }),
    );
  }

  /**
   * Whether presumed abort may roll back a prepared branch of `txn`: only when
   * this process is not working on it and the log holds no commit decision
   * for it — neither one still being applied nor one an operator ended
   * (`resolve`/`abandon` of a decided commit leaves its branches to the
   * operator: they are to be committed, never rolled back). Every path that
   * rolls back by gid asks this one question: start-up recovery, the orphan
   * sweep, and `bench --init` (`presumedAbortAllowed`).
   */
  private mayPresumeAborted(txn: TxnId): boolean {
    const state = this.driver.peek();
    return (
      !this.active.has(txn) && state.txns.get(txn)?.phase !== 'committing' && !state.endedByOperator.has(txn)
    );
  }

  /** Whether presumed abort may roll back the prepared branch `gid` on `resource` (see mayPresumeAborted). */
  presumedAbortAllowed(gid: string, resource: string): boolean {
    const txn = this.txnOfGid(gid, resource);
    return txn !== null && this.mayPresumeAborted(txn);
  }

  private txnOfGid(gid: string, resource: string): TxnId | null {
    const suffix = `_${resource}`;
    if (!gid.startsWith(this.gidPrefix) || !gid.endsWith(suffix)) return null;
    return gid.slice('dtx_'.length, gid.length - suffix.length);
  }

  private committingTxns(): Set<TxnId> {
    const state = this.driver.peek();
    return new Set([...state.txns].filter(([, t]) => t.phase === 'committing').map(([txn]) => txn));
  }

  /** Resolves once every transaction recovery re-drives has been committed everywhere. */
  async untilRecovered(timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.committingTxns().size > 0 && [...this.committingTxns()].some((t) => this.recovering.has(t))) {
      if (Date.now() > deadline) {
        throw new ResourceUnavailableError('recovery could not commit every re-driven transaction in time');
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /**
   * Run `work` as one atomic transaction across the resources it touches.
   * Returning commits it through two-phase commit; throwing rolls every branch
   * back and rethrows. Rejects with `DTX_ABORTED` when the protocol aborts,
   * and with `DTX_OUTCOME_UNKNOWN` when the coordinator's log failed while the
   * outcome was being decided (recovery will finish it one way or the other).
   *
   * @example
   * await coordinator.transaction(async (tx) => {
   *   await tx.query('pg', 'update accounts set balance = balance - $1 where id = $2', [500, 'alice']);
   *   await tx.query('maria', 'update accounts set balance = balance + ? where id = ?', [500, 'shop']);
   * });
   */
  async transaction<T>(work: (tx: Transaction) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    const retries = options.retries ?? 0;
    const commitWaitMs = options.commitWaitMs ?? this.options.commitWaitMs ?? commitWaitMsDefault;
    if (!Number.isSafeInteger(commitWaitMs) || commitWaitMs <= 0) {
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `commitWaitMs must be a positive integer, got ${String(commitWaitMs)}`,
      );
    }
    const deadline = new CallerDeadline(options.signal, options.timeoutMs);
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          return await this.transactionOnce(work, deadline, commitWaitMs);
        } catch (err) {
          // Only errors that promise nothing was committed (lock conflicts, NO
          // votes, serialization failures) are retried: never DTX_OUTCOME_UNKNOWN,
          // and never once the caller's deadline has fired.
          if (deadline.error !== undefined && err !== deadline.error && isDtxError(err, 'DTX_ABORTED')) {
            throw deadline.error;
          }
          if (attempt >= retries || !isDtxError(err) || !err.retryable || deadline.error !== undefined)
            throw err;
          const backoffMs = Math.min(options.backoffMaxMs ?? 1_000, (options.backoffMs ?? 20) * 2 ** attempt);
          await deadline.race(new Promise((r) => setTimeout(r, backoffMs * (0.5 + Math.random()))));
        }
      }
    } finally {
      deadline.dispose();
    }
  }

  // transactionOnce is split into its phases (checks, opening branches,
  // running the work, the decision, phase two) so each can be read alone; the
  // order of awaits and of `this.active` updates is exactly what it was.
  private async transactionOnce<T>(
    work: (tx: Transaction) => Promise<T>,
    deadline: CallerDeadline,
    commitWaitMs: number,
  ): Promise<T> {
    this.assertCanBegin(deadline);
    const { id, txn } = this.registerTxn();
    notify(this.options.observer, 'transactionBegun', { type: '2pc', id });
    logSafely(this.options.logger, 'debug', { txn: id, type: '2pc' }, 'transaction started');
    try {
      // The work runs with the transaction's span active: its own spans are children.
      const result = await withSpan(txn.span, () =>
        this.runTransaction(work, deadline, commitWaitMs, id, txn),
      );
      this.onTxnEnded(id, txn, null);
      return result;
    } catch (err) {
      this.onTxnEnded(id, txn, err);
      throw err;
    }
  }

  /** Ends a transaction's span and tells the observer and the logger how it ended. */
  private onTxnEnded(id: TxnId, txn: ActiveTxn, err: unknown): void {
    // Committed once the decision is (durable and) made, whatever the caller is told after.
    const outcome: ObservedOutcome =
      txn.decided === 'committed' || (err === null && txn.decided === undefined)
        ? 'committed'
        : isDtxError(err, 'DTX_OUTCOME_UNKNOWN')
          ? 'unknown'
          : 'aborted';
    const durationMs = Date.now() - txn.startMs;
    const reason = err === null ? null : err instanceof Error ? err.message : String(err);
    txn.span?.end({ 'dtx.transaction.outcome': outcome }, outcome === 'committed' ? undefined : err);
    notify(this.options.observer, 'transactionEnded', { type: '2pc', id, outcome, durationMs, reason });
    logSafely(
      this.options.logger,
      outcome === 'committed' ? 'debug' : 'info',
      { txn: id, type: '2pc', outcome, durationMs, reason },
      'transaction ended',
    );
  }

  private async runTransaction<T>(
    work: (tx: Transaction) => Promise<T>,
    deadline: CallerDeadline,
    commitWaitMs: number,
    id: TxnId,
    txn: ActiveTxn,
  ): Promise<T> {
    const { tx, opening } = this.openTransaction(id, txn, deadline);
    const result = await this.runWork(work, tx, opening, id, deadline);
    if (txn.branches.size === 0) {
      this.active.delete(id);
      return result;
    }
    await this.enterFence(id, txn, deadline);
    await this.decide(id, txn, deadline);
    // Every branch voted read-only: there is no commit phase, and the hold ends here.
    this.settleFence(id);
    await this.awaitPhaseTwo(id, txn, deadline, commitWaitMs);
    this.active.delete(id);
    if (txn.heuristics.length > 0) throw HeuristicError.ofTransaction(id, 'commit', txn.heuristics);
    return result;
  }

  /** Refuses a new transaction when the coordinator cannot decide one (kept first: nothing is registered yet). */
  private assertCanBegin(deadline: CallerDeadline): void {
    if (!this.started)
      throw new DtxError(
        'DTX_INVALID_STATE',
        'recovery has not finished: create the coordinator with createCoordinator()',
      );
    if (this.closing) throw new DtxError('DTX_INVALID_STATE', 'coordinator is closed');
    if (this.leadershipLost !== undefined) throw this.leadershipLost;
    if (this.failure !== undefined) {
      throw new DtxError(
        'DTX_RESOURCE_UNAVAILABLE',
        'the coordinator log failed; restart the coordinator to recover',
        {
          cause: this.failure,
          retryable: false,
        },
      );
    }
    if (deadline.error !== undefined) throw deadline.error;
  }

  /** Allocates the next transaction id and records it as active. */
  private registerTxn(): { id: TxnId; txn: ActiveTxn } {
    const ordinal = ++this.counter;
    const id: TxnId = `${this.name}.${this.incarnation}.${ordinal.toString(36)}`;
    const txn: ActiveTxn = {
      ordinal,
      prepared: 0,
      commitsStarted: 0,
      commitsDone: 0,
      branches: new Map(),
      cause: undefined,
      unacked: new Set(),
      heuristics: [],
      reads: new LockOrderedReads(this.ranks),
      span: startSpan('dtx.2pc', { 'dtx.transaction.type': '2pc', 'dtx.transaction.id': id }),
      startMs: Date.now(),
    };
    this.active.set(id, txn);
    return { id, txn };
  }

  /**
   * Builds the Transaction handed to the work. Branches open lazily, once per
   * resource; `opening` holds every begin so the caller can wait for or roll
   * back all of them.
   */
  private openTransaction(
    id: TxnId,
    txn: ActiveTxn,
    deadline: CallerDeadline,
  ): { tx: Transaction; opening: Map<string, Promise<PreparingBranch>> } {
    const opening = new Map<string, Promise<PreparingBranch>>();
    const open = (resource: string): Promise<PreparingBranch> => {
      // Work that goes on after the deadline fired opens nothing more: what it
      // opened already is being rolled back.
      if (deadline.error !== undefined) return Promise.reject(deadline.error);
      let p = opening.get(resource);
      if (p === undefined) {
        const gid = this.gidFor(id, resource);
        p = this.adapter(resource)
          .begin(gid)
          .then((branch) => {
            txn.branches.set(resource, { gid, branch: branch as PreparingBranch, voted: false });
            return branch as PreparingBranch;
          });
        opening.set(resource, p);
      }
      return p;
    };
    const tx: Transaction = {
      id,
      branch: <B>(resource: string) => {
        txn.reads.noteUse(resource);
        return open(resource) as Promise<B>;
      },
      query: async (resource, sql, params) => {
        txn.reads.noteUse(resource);
        const branch = await open(resource);
        if (branch.query === undefined) {
          throw new DtxError(
            'DTX_INVALID_ARGUMENT',
            `resource ${resource} is not a SQL resource; use tx.branch()`,
          );
        }
        return (await branch.query(sql, params)) as { rows: never[]; rowCount: number };
      },
      read: (resource, sql, params = []) => txn.reads.read(resource, sql, params, open),
    };
    return { tx, opening };
  }

  /**
   * The log as the driver sees it: a commit record is appended only once its
   * transaction holds the commit fence. A live transaction holds it already
   * (enterFence, before its first PREPARE), so this finds its hold at once;
   * it is the safety net for a commit record of anything else. Appends wait
   * for the fence one after the other, in the order the driver issued them: a
   * later record's wait can never hold back an earlier one (the driver's
   * after-persist effects wait for every earlier write). A fence that cannot
   * be taken fails the append, and the coordinator stops as on a log
   * failure: the decision was not written.
   */
  private fencedLog(log: DurableLog<TwoPcRecord>): DurableLog<TwoPcRecord> {
    let queue: Promise<unknown> = Promise.resolve();
    /** Appends in `queue` not yet handed to the log. */
    let queued = 0;
    return wrapLog(log, {
      append: (records, force) => {
        const commits = records.flatMap((r) => (r.type === 'commit' ? [r.txn] : []));
        // Nothing to wait for (no commit record, no earlier append waiting):
        // straight to the log, in the same order as through the queue.
        if (commits.length === 0 && queued === 0) return log.append(records, force);
        queued++;
        const entered = queue.then(() => Promise.all(commits.map((txn) => this.fenceHold(txn))));
        queue = entered.catch(() => undefined);
        return entered.then(
          () => {
            queued--;
            return log.append(records, force);
          },
          (err: unknown) => {
            queued--;
            throw err;
          },
        );
      },
    });
  }

  /**
   * Enters the commit fence before the transaction's first PREPARE, and
   * holds it until its last branch committed (or it aborted, or every branch
   * voted read-only). From PREPARE, not from the decision: a branch that only
   * read votes read-only at PREPARE and releases its share locks there, so a
   * writer may commit over what it read while its other branches are still
   * prepared. A snapshot opened then would see that writer and not this
   * transaction's writes: two anti-dependencies in a cycle (G2-item), which
   * serializability forbids. Holding the fence from PREPARE, every
   * transaction is, when snapshots open, either done everywhere or has
   * released no lock and made nothing visible. It must also be before the
   * decision for a second reason: a commit record that waits for the fence
   * (a snapshot queued) would hold back every later record's COMMITs, among
   * them those of the transactions the snapshot waits for.
   * docs/isolation.md, "A read-only vote beside snapshot readers".
   */
  private async enterFence(id: TxnId, txn: ActiveTxn, deadline: CallerDeadline): Promise<void> {
    try {
      await deadline.race(this.fenceHold(id));
    } catch (err) {
      // Nothing was prepared: every branch is rolled back and the transaction
      // forgotten (a hold granted after the deadline is given back at once).
      this.settleFence(id);
      await Promise.allSettled([...txn.branches.values()].map((b) => b.branch.rollback()));
      this.active.delete(id);
      throw err;
    }
  }

  /** The transaction's hold on the fence, entered once. */
  private fenceHold(txn: TxnId): Promise<FenceRelease> {
    let hold = this.fenceHolds.get(txn);
    if (hold === undefined) {
      const entering = this.fence.enterCommitPhase();
      // A failed entry is not kept: the next COMMIT attempt tries again.
      entering.catch(() => {
        if (this.fenceHolds.get(txn) === entering) this.fenceHolds.delete(txn);
      });
      hold = entering;
      this.fenceHolds.set(txn, hold);
    }
    return hold;
  }

  /** Leaves the fence once `txn` has no commit phase left (aborted, all read-only, or committed everywhere). */
  private settleFence(txn: TxnId): void {
    const hold = this.fenceHolds.get(txn);
    if (hold === undefined || this.driver.peek().txns.has(txn)) return;
    this.fenceHolds.delete(txn);
    hold.then(
      (release) => release(),
      () => undefined,
    );
  }

  /**
   * Runs `work` on one snapshot per database, taken at a single consistent
   * cut: no transaction of this coordinator (or of any coordinator sharing
   * its `commitFence`) is seen committed on one database and not on another.
   * New commit phases are held back only while the snapshots open; the reads
   * lock nothing and never block writers. docs/isolation.md.
   *
   * @example
   * const total = await coordinator.snapshot(async (reads) => {
   *   const a = await reads.query('pg', 'SELECT sum(balance) AS s FROM accounts');
   *   const b = await reads.query('maria', 'SELECT sum(balance) AS s FROM accounts');
   *   return Number(a.rows[0]!.s) + Number(b.rows[0]!.s);
   * });
   */
  async snapshot<T>(work: (reads: SnapshotReads) => Promise<T>, options: SnapshotOptions = {}): Promise<T> {
    if (!this.started || this.closing) {
      throw new DtxError('DTX_INVALID_STATE', 'the coordinator is not running: no snapshot can be fenced');
    }
    return withSnapshot(this.options.resources, this.fence, work, options);
  }

  /**
   * Runs the work under the caller's deadline. On any failure every opened
   * branch is rolled back and the transaction forgotten before rethrowing.
   */
  private async runWork<T>(
    work: (tx: Transaction) => Promise<T>,
    tx: Transaction,
    opening: Map<string, Promise<PreparingBranch>>,
    id: TxnId,
    deadline: CallerDeadline,
  ): Promise<T> {
    try {
      const working = (async () => {
        const value = await work(tx);
        await Promise.all(opening.values());
        return value;
      })();
      // When the deadline wins, the work may still fail later: that is no one's to see.
      working.catch(() => undefined);
      const result = await deadline.race(working);
      // The log may have failed, or close() been called, while the work ran:
      // then nothing will decide this transaction, so give its work up now.
      if (this.leadershipLost !== undefined) throw this.leadershipLost;
      if (this.failure !== undefined || this.closing) {
        throw new DtxError(
          'DTX_RESOURCE_UNAVAILABLE',
          'the coordinator stopped before the transaction could commit',
          {
            cause: this.failure,
            retryable: false,
          },
        );
      }
      return result;
    } catch (err) {
      await Promise.allSettled([...opening.values()].map(async (p) => (await p).rollback()));
      this.active.delete(id);
      // Lease lost while the work ran: its branches were rolled back under it,
      // so whatever the work then tripped over (a branch no longer active),
      // the caller's answer is the retryable DTX_LEADERSHIP_LOST.
      // (Read afresh: the lease may have been lost while this call awaited.)
      const lost = this.leadershipLost as DtxError | undefined;
      if (lost !== undefined && err !== lost) {
        throw new DtxError('DTX_LEADERSHIP_LOST', lost.message, { cause: err });
      }
      throw err;
    }
  }

  /**
   * Hands the transaction to the 2PC core and waits for its decision.
   * Returns when it committed; throws (after rolling back unvoted branches)
   * when it aborted.
   */
  private async decide(id: TxnId, txn: ActiveTxn, deadline: CallerDeadline): Promise<void> {
    const decided = new Promise<Outcome>((resolve, reject) => {
      txn.outcome = resolve;
      txn.fail = reject;
      this.driver.input({
        type: 'begin',
        txn: id,
        participants: [...txn.branches.keys()],
        client: appClient,
      });
    });
    // A deadline that fires before the decision ends the vote as a vote
    // timeout would: the core aborts a transaction still collecting votes,
    // and ignores it once it has decided to commit (the commit then stands).
    // Either way the outcome comes back through `decided`.
    if (deadline.canFire) {
      void deadline.fired.then(() => this.driver.input({ type: 'timeout', timer: `vote:${id}` }));
    }
    const outcome = await decided;
    if (outcome !== 'committed') {
      this.active.delete(id);
      this.settleFence(id);
      // Branches that never voted (the core refused the transaction outright,
      // or timed out before their vote) are rolled back here as well; the
      // ABORTs the core sent may still be on their way, which is harmless.
      await Promise.allSettled(
        [...txn.branches.values()]
          .filter((b) => !b.voted && b.preparing === undefined)
          .map((b) => b.branch.rollback()),
      );
      if (deadline.error !== undefined) throw deadline.error;
      const cause = txn.cause;
      throw new DtxError(
        'DTX_ABORTED',
        `transaction ${id} aborted${cause instanceof Error ? `: ${cause.message}` : ''}`,
        { cause, retryable: isDtxError(cause) ? cause.retryable : true },
      );
    }
  }

  /**
   * After a commit decision, waits (bounded by commitWaitMs and the deadline)
   * for phase two when the caller asked to be acknowledged only once applied.
   */
  private async awaitPhaseTwo(
    id: TxnId,
    txn: ActiveTxn,
    deadline: CallerDeadline,
    commitWaitMs: number,
  ): Promise<void> {
    if ((this.options.acknowledge ?? 'committed') !== 'committed' || txn.unacked.size === 0) return;
    // Phase two is bounded: the decision is durable, so the transaction
    // WILL commit; the caller is told so, rather than kept waiting for a
    // database that may be down for hours (the coordinator keeps retrying).
    // One promise settled by whichever comes first: every branch committed,
    // the wait is over, the caller's deadline, or a log failure.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ending = new Promise<'done' | 'wait'>((resolve, reject) => {
      timer = setTimeout(() => resolve('wait'), commitWaitMs);
      txn.allCommitted = () => resolve('done');
      txn.fail = reject;
      if (deadline.canFire) void deadline.fired.then(() => resolve('wait'));
    });
    try {
      const ended = await ending;
      if (ended === 'wait') {
        this.active.delete(id);
        if (txn.heuristics.length > 0) throw HeuristicError.ofTransaction(id, 'commit', txn.heuristics);
        throw new DtxError(
          'DTX_DECIDED_NOT_APPLIED',
          `transaction ${id} is committed (the decision is durable) but not yet applied on ` +
            `${[...txn.unacked].join(', ')}: dtx keeps committing it there (and recovery does after a restart)`,
          { retryable: false, ...(deadline.error === undefined ? {} : { cause: deadline.error }) },
        );
      }
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The log failed: stop as if crashed. Transactions waiting for a decision get
   * DTX_OUTCOME_UNKNOWN — their commit record may or may not be durable, and
   * only recovery from the log, on the next start, can tell.
   */
  private onLogFailure(err: unknown): void {
    this.failure = err;
    if (isLogError(err, 'fenced') && this.leadershipLost === undefined) this.onLeadershipLost(err);
    const decided = this.leadershipLost === undefined ? undefined : this.committingTxns();
    for (const [txn, t] of this.active) {
      if (decided !== undefined && this.leadershipLost !== undefined && !decided.has(txn)) {
        // Undecided, and no decision can be made durable any more: undo it.
        t.fail?.(this.leadershipLost);
        void this.rollbackUndecided(t);
        continue;
      }
      t.fail?.(
        new DtxError(
          'DTX_OUTCOME_UNKNOWN',
          this.leadershipLost === undefined
            ? `the coordinator log failed while transaction ${txn} was being decided`
            : `coordinator ${this.name} lost ownership of its log after deciding transaction ${txn}; ` +
                "the new owner's recovery commits it if its decision reached the log, else rolls it back",
          {
            cause: err,
          },
        ),
      );
    }
  }

  private onOutcome(txn: TxnId, outcome: Outcome): void {
    const t = this.active.get(txn);
    if (t === undefined) return;
    t.decided = outcome;
    if (outcome === 'committed') {
      for (const [resource, b] of t.branches) if (b.voted) t.unacked.add(resource);
    }
    t.outcome?.(outcome);
  }

  /** The transport: what a protocol message to a participant means for its database. */
  private deliver(to: NodeId, msg: TwoPcMsg): void {
    const key = `${msg.type} ${msg.txn} ${to}`;
    if (this.inflight.has(key)) return;
    const retryKey = `${msg.txn} ${to}`;
    if (msg.type === 'COMMIT') {
      // A branch whose COMMIT keeps failing is retried with back-off: the core's
      // resend timer asks every interval, and the asks inside the pause are dropped.
      const retry = this.commitRetries.get(retryKey);
      if (retry !== undefined && Date.now() < retry.nextAtMs) return;
    }
    const call =
      msg.type === 'PREPARE' || msg.type === 'COMMIT' || msg.type === 'ABORT'
        ? this.branchCall(to, msg)
        : undefined;
    const handling = withSpan(call?.span, () => this.handle(to, msg));
    this.inflight.set(key, this.delivered(to, msg, handling, call, key, retryKey));
  }

  /** How a `deliver` call ended: reported, and removed from `inflight` (never rejects). */
  private async delivered(
    to: NodeId,
    msg: TwoPcMsg,
    handling: Promise<'success' | 'failure' | undefined>,
    call: BranchCall | undefined,
    key: string,
    retryKey: string,
  ): Promise<void> {
    try {
      const status = await handling;
      call?.ended(status ?? 'success', status === 'failure' ? 'voted no' : null);
      if (msg.type === 'COMMIT') this.commitRetries.delete(retryKey);
    } catch (err) {
      call?.ended(msg.type === 'PREPARE' ? 'failure' : 'retry', String(err));
      // A failed COMMIT is retried by the core's resend timer; a failed ABORT
      // leaves a prepared branch for the recovery sweep. Neither may crash us.
      if (this.closing) return;
      if (msg.type === 'COMMIT') {
        this.onCommitFailed(msg.txn, to, err);
        // A COMMIT for a transaction already ended must not keep a hold.
        this.settleFence(msg.txn);
      } else this.warn(`dtx: ${msg.type} ${msg.txn} on ${to} failed: ${String(err)}`);
    } finally {
      this.inflight.delete(key);
    }
  }

  /** A span, and the observer's and logger's report, of one call on a participant. */
  private branchCall(resource: NodeId, msg: TwoPcMsg): BranchCall {
    const op = msg.type === 'PREPARE' ? 'prepare' : msg.type === 'COMMIT' ? 'commit' : 'rollback';
    const parent = this.active.get(msg.txn)?.span;
    const span = startSpan(
      `dtx.branch.${op}`,
      {
        'dtx.transaction.type': '2pc',
        'dtx.transaction.id': msg.txn,
        'dtx.branch.id': resource,
        'dtx.branch.op': op,
      },
      parent ?? 'root',
      'client',
    );
    const startedMs = Date.now();
    return {
      span,
      ended: (status, reason) => {
        span?.end({ 'dtx.branch.status': status }, status === 'success' ? undefined : reason);
        const durationMs = Date.now() - startedMs;
        const event = { type: '2pc', id: msg.txn, branch: resource, op, status, durationMs, reason } as const;
        notify(this.options.observer, 'branchCalled', event);
        if (status !== 'success')
          logSafely(this.options.logger, 'debug', event, 'branch call did not succeed');
      },
    };
  }

  /** Back off (exponentially, capped) and warn once per branch, not once per attempt. */
  private onCommitFailed(txn: TxnId, resource: NodeId, err: unknown): void {
    const key = `${txn} ${resource}`;
    const retry = this.commitRetries.get(key) ?? { failures: 0, nextAtMs: 0, mayHaveApplied: false };
    retry.failures++;
    // Whatever failed (the connection, the server), the COMMIT may have been
    // applied before its reply was lost; only a resource's evidence can tell.
    retry.mayHaveApplied = true;
    const resendMs = this.options.timing?.commitResendMs ?? twoPcRuntimeTiming.commitResendMs;
    const delayMs = Math.min(
      this.options.commitBackoffMaxMs ?? commitBackoffMsMaxDefault,
      resendMs * 2 ** (retry.failures - 1),
    );
    retry.nextAtMs = Date.now() + delayMs;
    this.commitRetries.set(key, retry);
    if (retry.failures === 1) {
      this.warn(
        `dtx: COMMIT of ${txn} on ${resource} failed (${String(err)}); the commit decision is durable, ` +
          'dtx keeps retrying with back-off until it is applied',
      );
    }
  }

  /**
   * A hybrid logical clock over this process's wall clock: the prepare
   * timestamps the YES votes carry, so that every commit record has a commit
   * timestamp (nothing reads it yet; the simulator's timestamp reads do).
   */
  private tickClock(): Hlc {
    this.clock = hlcNow(this.clock, Date.now());
    return this.clock;
  }

  private warn(message: string): void {
    try {
      if (this.options.onWarning !== undefined) this.options.onWarning(message);
      else if (!logSafely(this.options.logger, 'warn', { coordinator: this.name }, message))
        process.emitWarning(message);
    } catch {
      // A failing hook must not stop the protocol.
    }
  }

  /** Carries out one message; for a PREPARE, `failure` when the branch voted NO. */
  private async handle(resource: NodeId, msg: TwoPcMsg): Promise<'success' | 'failure' | undefined> {
    const t = this.active.get(msg.txn);
    const entry = t?.branches.get(resource);
    const gid = entry?.gid ?? this.gidFor(msg.txn, resource);
    switch (msg.type) {
      case 'PREPARE': {
        const reply = (vote: 'yes' | 'no' | 'readOnly', evidence?: string) => {
          const voted: TwoPcMsg = { type: 'VOTE', txn: msg.txn, attempt: msg.attempt, vote };
          if (evidence !== undefined) voted.evidence = evidence;
          // The prepare timestamp, on this process's clock: the core logs the latest as the commit timestamp.
          if (vote === 'yes') voted.ts = this.tickClock();
          this.driver.input({ type: 'receive', from: resource, msg: voted });
        };
        if (entry === undefined) {
          reply('no');
          return 'failure';
        }
        try {
          const preparing = entry.branch.prepare();
          entry.preparing = preparing.catch(() => undefined);
          const vote = await preparing;
          entry.voted = vote === 'yes';
          if (t !== undefined && vote === 'yes') {
            t.prepared++;
            this.point('prepared', t.prepared, t);
            if (t.prepared === t.branches.size) this.point('prepared', 'all', t);
          }
          // The branch's evidence rides with its YES into the commit record,
          // so that a coordinator restarted from the log can still ask it.
          reply(vote, vote === 'yes' ? entry.branch.evidence : undefined);
          return 'success';
        } catch (err) {
          if (t !== undefined && t.cause === undefined) t.cause = err;
          // A prepare that failed with the connection may have prepared on the
          // server all the same (in doubt): we vote NO, so it can only be rolled
          // back, and nobody else will (the core sends no ABORT to a NO voter).
          if (err instanceof ResourceUnavailableError && err.inDoubt) {
            await this.adapter(resource)
              .rollbackPrepared(gid)
              .catch(() => undefined); // left for the recovery sweep
          }
          reply('no');
          return 'failure';
        }
      }
      case 'COMMIT': {
        // Recovery's re-driven commits enter the fence too (a live
        // transaction entered it before its decision: this finds its hold).
        await this.fenceHold(msg.txn);
        if (t !== undefined) this.point('committing', t.commitsStarted++, t);
        let resolution: 'done' | 'unknown';
        try {
          resolution = await this.adapter(resource).commitPrepared(gid);
        } catch (err) {
          // The resource says it rolled the branch back itself (MariaDB's
          // XA_RBROLLBACK): a heuristic outcome, and nothing a resend can change.
          if (!(err instanceof HeuristicError)) throw err;
          this.onBranchHeuristic(msg.txn, resource, gid, 'commit', err.outcome, err);
          resolution = 'done';
        }
        if (t !== undefined) this.point('committed', ++t.commitsDone, t);
        if (resolution === 'unknown') await this.checkCommitted(msg.txn, resource, gid, entry);
        this.driver.input({ type: 'receive', from: resource, msg: { type: 'ACK', txn: msg.txn } });
        this.settleFence(msg.txn);
        if (t !== undefined) {
          t.unacked.delete(resource);
          if (t.unacked.size === 0) t.allCommitted?.();
        }
        if (this.recovering.has(msg.txn) && !this.committingTxns().has(msg.txn))
          this.recovering.delete(msg.txn);
        this.maybeCheckpoint();
        return;
      }
      case 'ABORT': {
        // A vote timeout or another NO can overtake this branch's prepare:
        // wait for it, so that we know whether there is a prepared branch to undo.
        if (entry?.preparing !== undefined) await entry.preparing;
        if (entry !== undefined && !entry.voted) {
          try {
            await entry.branch.rollback();
          } catch {
            // In doubt (its prepare lost the connection): resolve it by gid.
            await this.adapter(resource).rollbackPrepared(gid);
          }
          return;
        }
        const resolution = await this.adapter(resource).rollbackPrepared(gid);
        if (resolution === 'unknown' && entry?.voted) {
          // We saw it prepare and never committed it: it can only have been
          // resolved by someone else. Rolled back is what we wanted; anything
          // else (committed, or no evidence either way) contradicts the decision.
          const fate = await this.fateOf(resource, gid, entry.branch.evidence);
          if (fate !== 'rolledBack') this.onBranchHeuristic(msg.txn, resource, gid, 'rollback', fate);
        }
        return;
      }
      case 'VOTE':
      case 'ACK':
      case 'INQUIRY':
      case 'OPERATOR_END':
        return; // participant-bound only
    }
  }

  /**
   * A COMMIT found no prepared branch. That is expected when an earlier COMMIT
   * of ours was applied (its reply lost, or a crash before its ACK), and a
   * heuristic outcome when someone rolled the branch back by hand. The
   * resource's evidence decides; without it, only what we saw decides: a
   * branch we watched prepare and never sent a COMMIT that may have landed
   * was resolved by someone else, anything else stays ambiguous and is not
   * reported (docs/adapters.md, "Heuristic outcomes").
   */
  private async checkCommitted(
    txn: TxnId,
    resource: NodeId,
    gid: string,
    entry: BranchEntry | undefined,
  ): Promise<void> {
    const evidence = this.evidenceOf(txn, resource) ?? entry?.branch.evidence;
    const fate = await this.fateOf(resource, gid, evidence);
    if (fate === 'committed') return;
    if (fate === 'rolledBack') {
      this.onBranchHeuristic(txn, resource, gid, 'commit', 'rolledBack');
      return;
    }
    const mayHaveApplied = this.commitRetries.get(`${txn} ${resource}`)?.mayHaveApplied === true;
    if (!this.recovering.has(txn) && entry?.voted === true && !mayHaveApplied) {
      this.onBranchHeuristic(txn, resource, gid, 'commit', 'unknown');
      return;
    }
    // Ambiguous: most likely our own commit (before a crash, or with its reply
    // lost), but the resource keeps no evidence to prove it. Said once, not hidden.
    this.warn(
      `dtx: branch ${gid} of ${txn} on ${resource} was no longer prepared when dtx committed it; ` +
        'the resource keeps no evidence of how it ended, so it is assumed committed (see docs/adapters.md, "Heuristic outcomes")',
    );
  }

  /** The evidence a branch gave with its YES, from the core's commit state (rebuilt from the log at recovery). */
  private evidenceOf(txn: TxnId, resource: NodeId): string | undefined {
    return this.driver.peek().txns.get(txn)?.evidence?.[resource];
  }

  private async fateOf(resource: NodeId, gid: string, evidence: string | undefined): Promise<BranchFate> {
    const adapter = this.adapter(resource);
    return adapter.fateOf === undefined ? 'unknown' : adapter.fateOf(gid, evidence);
  }

  private onBranchHeuristic(
    txn: TxnId,
    resource: NodeId,
    gid: string,
    decision: 'commit' | 'rollback',
    found: 'committed' | 'rolledBack' | 'unknown',
    cause?: unknown,
  ): void {
    const what =
      found === 'unknown'
        ? 'was already resolved by someone else (how, the resource cannot tell)'
        : `was found ${found}`;
    const err = new HeuristicError(
      `branch ${gid} of transaction ${txn} on ${resource} ${what}, but the decision was ${decision === 'commit' ? 'COMMIT' : 'ROLLBACK'}`,
      { decision, outcome: found, gid, txn, branches: [{ resource, gid, found }], cause },
    );
    this.active.get(txn)?.heuristics.push(err);
    this.heuristic(err);
  }

  /** The fault point `<stage>:<at>` (see CoordinatorOptions.faults); its name is built only when faults are injected. */
  private point(stage: string, at: number | 'all', t: ActiveTxn): void {
    this.options.faults?.point(`${stage}:${at}`, t.ordinal);
  }

  private heuristic(err: HeuristicError): void {
    this.heuristics.push(err);
    try {
      this.options.onHeuristic?.(err);
    } catch (hookError) {
      // A failing callback must not stop the protocol (the ACK would never be delivered).
      this.warn(`dtx: onHeuristic threw: ${String(hookError)}`);
    }
  }

  /** Truncate the log to what recovery needs once it has grown (see compactTwoPcLog). */
  private maybeCheckpoint(): void {
    if (this.appendsSinceCheckpoint < twoPcCheckpointEveryAppends) return;
    this.appendsSinceCheckpoint = 0;
    const keep: TwoPcRecord[] = [];
    for (const [txn, { participants, end }] of this.driver.peek().endedByOperator) {
      keep.push({ type: 'commit', txn, participants, client: appClient }, end);
    }
    for (const [txn, t] of this.driver.peek().txns) {
      if (t.phase === 'committing') {
        keep.push({
          type: 'commit',
          txn,
          participants: [...t.committers],
          client: t.client,
          ...(t.evidence === undefined ? {} : { evidence: { ...t.evidence } }),
        });
      }
    }
    this.options.log.checkpoint(compactTwoPcLog(keep)).catch((err: unknown) => this.driver.fail(err));
  }

  /** `await using coordinator = await createCoordinator(...)` closes it on leaving the block (the log stays open). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  /** Stop: no new transactions; wait for in-flight log writes. Prepared branches stay for recovery. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweepTimer);
    await this.driver.close();
    // Let the database calls under way finish before the caller closes the
    // adapters under them (a COMMIT PREPARED cut off here would be redone by
    // recovery, but needlessly).
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight.values()]);
    for (const [txn, t] of this.active) {
      t.fail?.(
        new DtxError(
          'DTX_OUTCOME_UNKNOWN',
          `the coordinator closed before transaction ${txn} was finished; recovery at the next start completes it`,
        ),
      );
    }
  }
  // ------------------------------------------------------------ operator API
  //
  // The TxnOperator surface (./operator.ts) for 2PC. Every action goes through
  // the pure core (an OPERATOR_END input), so what an operator does is decided
  // by the same code the simulator checks and is recorded in the log before
  // the call returns. Nothing here contradicts a durable decision.

  /** Transactions this coordinator holds now: `running` (work or votes) and `in-doubt` (committing). */
  async list(filter: { state?: TxnState } = {}): Promise<TxnSummary[]> {
    const out: TxnSummary[] = [];
    const core = this.driver.peek().txns;
    for (const [id, t] of this.active) {
      if (core.has(id)) continue;
      out.push({
        id,
        protocol: '2pc',
        state: 'running',
        startedAt: null,
        reason: null,
        branches: Object.fromEntries([...t.branches.keys()].map((r) => [r, 'working'])),
      });
    }
    for (const [id, t] of core) {
      const branches: Record<string, string> = {};
      if (t.phase === 'collecting') {
        for (const p of t.participants)
          branches[p] = t.votes.has(p) ? `voted ${t.votes.get(p)}` : 'preparing';
      } else {
        for (const p of t.committers) branches[p] = t.acked.has(p) ? 'committed' : 'prepared';
      }
      out.push({
        id,
        protocol: '2pc',
        state: t.phase === 'collecting' ? 'running' : 'in-doubt',
        startedAt: null,
        reason: null,
        branches,
      });
    }
    return filter.state === undefined ? out : out.filter((s) => s.state === filter.state);
  }

  /** One transaction: its live state when this coordinator holds it, and every record the log has for it. */
  async show(id: string): Promise<TxnDetail> {
    const records = (await timedRecords(this.options.log)).filter(({ record }) => record.txn === id);
    const fromLog = twoPcTxnViews(records)[0];
    const live = (await this.list()).find((s) => s.id === id);
    if (live !== undefined) {
      return { ...live, records: fromLog?.records ?? [] };
    }
    if (fromLog === undefined) {
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `no transaction ${JSON.stringify(id)} in this coordinator or its log (an aborted transaction leaves no record)`,
      );
    }
    return fromLog;
  }

  /** Re-drive phase two of an in-doubt transaction now, forgetting any back-off. */
  async retry(id: string): Promise<void> {
    const t = this.driver.peek().txns.get(id);
    if (t === undefined || t.phase !== 'committing') {
      throw new DtxError(
        'DTX_INVALID_STATE',
        `transaction ${JSON.stringify(id)} is not in doubt here: nothing to retry`,
      );
    }
    for (const p of t.committers) {
      if (t.acked.has(p)) continue;
      // Now, not at the next back-off; but keep what the failed attempts
      // taught: a COMMIT that failed may have been applied, so a branch the
      // retry then finds gone is not someone else's doing.
      const retry = this.commitRetries.get(`${id} ${p}`);
      if (retry !== undefined) retry.nextAtMs = 0;
      this.deliver(p, { type: 'COMMIT', txn: id });
    }
  }

  /**
   * End a transaction by hand, with an explicit force and a reason that the
   * log records. `aborted` aborts a transaction still collecting votes (never
   * one whose commit is durable); `committed` ends an in-doubt one whose
   * remaining branches the operator has committed by hand (never one with no
   * commit record). Returns the gids still prepared as far as dtx knows.
   */
  async resolve(
    id: string,
    options: OperatorActionOptions & { outcome: 'committed' | 'aborted' },
  ): Promise<{ stillPrepared: string[] }> {
    checkOperatorOptions(options);
    if (options.outcome !== 'committed' && options.outcome !== 'aborted') {
      throw new DtxError('DTX_INVALID_ARGUMENT', `outcome must be 'committed' or 'aborted'`);
    }
    const t = this.driver.peek().txns.get(id);
    if (t?.phase === 'committing' && options.outcome === 'aborted') {
      throw new DtxError(
        'DTX_INVALID_STATE',
        `transaction ${id} is decided COMMIT (its commit record is durable): it cannot be resolved as aborted. ` +
          'Let dtx finish it (`retry`), or commit its branches by hand and resolve it as committed',
      );
    }
    if (t?.phase !== 'committing' && options.outcome === 'committed') {
      throw new DtxError(
        'DTX_INVALID_STATE',
        `transaction ${id} has no commit record here: it cannot be resolved as committed ` +
          '(without one it is aborted, by presumption)',
      );
    }
    if (t === undefined) {
      throw new DtxError(
        'DTX_INVALID_STATE',
        `transaction ${JSON.stringify(id)} is not undecided here (still doing its work, or already ended): ` +
          'cancel running work through its signal',
      );
    }
    return this.operatorEnd(id, 'resolved', options.reason);
  }

  /**
   * Stop retrying an in-doubt transaction (or abort an undecided one) and
   * record why. The branches it leaves prepared are returned: resolving them
   * is now the operator's job.
   */
  async abandon(id: string, options: OperatorActionOptions): Promise<{ stillPrepared: string[] }> {
    checkOperatorOptions(options);
    if (!this.driver.peek().txns.has(id)) {
      throw new DtxError(
        'DTX_INVALID_STATE',
        `transaction ${JSON.stringify(id)} is neither running nor in doubt here`,
      );
    }
    return this.operatorEnd(id, 'abandoned', options.reason);
  }

  private async operatorEnd(
    id: TxnId,
    action: OperatorAction,
    reason: string,
  ): Promise<{ stillPrepared: string[] }> {
    const t = this.driver.peek().txns.get(id);
    const stillPrepared =
      t?.phase === 'committing'
        ? t.committers.filter((p) => !t.acked.has(p)).map((p) => this.gidFor(id, p))
        : [];
    const waiting = this.active.get(id);
    this.driver.input({
      type: 'receive',
      from: 'operator',
      msg: { type: 'OPERATOR_END', txn: id, action, reason },
    });
    await this.driver.settled();
    if (this.driver.failed) {
      throw new DtxError(
        'DTX_OUTCOME_UNKNOWN',
        `the log failed while recording the operator's end of ${id}`,
        {
          cause: this.failure,
        },
      );
    }
    for (const p of t?.committers ?? []) this.commitRetries.delete(`${id} ${p}`);
    this.recovering.delete(id);
    this.settleFence(id);
    if (t?.phase === 'committing' && waiting !== undefined) {
      this.active.delete(id);
      waiting.fail?.(
        new DtxError(
          'DTX_DECIDED_NOT_APPLIED',
          `transaction ${id} was ${action} by an operator (${reason}) before every branch was committed`,
        ),
      );
    }
    return { stillPrepared };
  }
}

/** `resolve` and `abandon` take an explicit `force: true` and a reason the log keeps. */
function checkOperatorOptions(options: OperatorActionOptions): void {
  if (options?.force !== true) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'an operator action needs force: true (it overrides what dtx would do)',
    );
  }
  const reason = options.reason;
  if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > textCharsMax) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `an operator action needs a reason of 1 to ${textCharsMax} characters`,
    );
  }
}

/** The coordinator's id: the log's, or an explicit one that must agree with it. */
function coordinatorIdOf(options: CoordinatorOptions): string {
  const identity = options.log.identity;
  const explicit = options.id ?? options.name;
  if (identity !== undefined && identity.protocol !== '2pc') {
    throw new DtxError(
      'DTX_LOG_MISMATCH',
      `the coordinator's log is a ${identity.protocol} log (coordinator id ${identity.coordinatorId}), not a 2pc log`,
    );
  }
  if (explicit !== undefined && identity !== undefined && explicit !== identity.coordinatorId) {
    throw new DtxError(
      'DTX_LOG_MISMATCH',
      `coordinator id ${JSON.stringify(explicit)} does not match its log's id ${JSON.stringify(identity.coordinatorId)}`,
    );
  }
  const id = explicit ?? identity?.coordinatorId;
  if (id === undefined) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'the log records no identity, so give the coordinator an `id` (letters, digits and -, at most 16)',
    );
  }
  if (!coordinatorIdPattern.test(id)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `coordinator id ${JSON.stringify(id)} must match ${coordinatorIdPattern}`,
    );
  }
  return id;
}

function countingLog(log: DurableLog<TwoPcRecord>, onAppend: () => void): DurableLog<TwoPcRecord> {
  return wrapLog(log, {
    append(records, force) {
      onAppend();
      return log.append(records, force);
    },
  });
}

/**
 * Creates a coordinator and recovers before it returns (see
 * `Coordinator.recover`; what recovery did is `coordinator.recovery`), so
 * `transaction()` may be called at once, as on what `createSagaOrchestrator`
 * returns. A failed recovery rejects, and nothing is left running.
 */
export async function createCoordinator(options: CoordinatorOptions): Promise<Coordinator>;
/** Paxos Commit (`protocol: 'paxos-commit'`): see src/runtime/paxos-commit/coordinator.ts. */
export async function createCoordinator(
  options: PaxosCommitCoordinatorOptions,
): Promise<PaxosCommitCoordinator>;
export async function createCoordinator(
  options: CoordinatorOptions | PaxosCommitCoordinatorOptions,
): Promise<Coordinator | PaxosCommitCoordinator> {
  if (isPaxosCommitOptions(options)) return PaxosCommitCoordinator.create(options);
  const coordinator = new Coordinator(options);
  await coordinator.recover();
  return coordinator;
}

/**
 * Opens the 2PC coordinator's log where it is, with the 2PC record codec
 * wired in, refusing a saga or TCC log (DTX_LOG_MISMATCH). `await using`
 * closes it.
 */
export async function openCoordinatorLog(
  where: LogLocation,
): Promise<DurableLog<TwoPcRecord> & AsyncDisposable> {
  return openLog(where, (value) => twoPcRecordCodec.check(value), '2pc');
}
