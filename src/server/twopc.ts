// Two-phase commit across services, as `dtx serve` runs it (docs/server.md,
// "Two-phase commit across services"): the caller begins a transaction by gid,
// has its services do their work in local transactions held open under the
// gid (src/participant), registers each service as a branch with its base
// URL, and asks the server to commit. The server is the coordinator, with
// presumed abort (Mohan, Lindsay & Obermarck 1986; PROTOCOLS.md, 2PC):
//
//   PREPARE to every branch (POST <url>/prepare): 200 {vote: yes|readOnly},
//     409 no; anything else is asked again until the prepare timeout;
//   all yes/readOnly: the `tpc-commit` record (the decision, naming the yes
//     voters) is forced, and only then does any COMMIT leave;
//   a no, the timeout, or an abort request: nothing forced; ROLLBACK to every
//     branch that may hold work (not a no or readOnly voter);
//   COMMIT / ROLLBACK (POST <url>/commit, <url>/rollback) retried with backoff
//     until each answers 200; then a lazy `tpc-end`.
//
// Recovery: a `tpc-commit` without `tpc-end` has its COMMITs sent again; a
// transaction with no decision is aborted — ROLLBACK to every registered
// branch (their registrations are forced before the caller is answered, so a
// restart knows every branch that may have prepared). The same recovery runs
// when another server takes a dead server's log over (./cluster.ts): the
// log's owner lease fences the dead server's writes, so its `tpc-commit`
// either landed before the takeover (and is read) or was never written (and
// no COMMIT left); a service whose lease is taken stops deciding at once.
//
// Why not the pure core (src/protocol/twopc) through the runtime Driver, as
// the library coordinator does: the core's ABORT is sent once and relies on
// participants asking (INQUIRY) for the outcome, and its participants are
// fixed at `begin`. Here participants are HTTP services that never call the
// server, and that hold an open database transaction until told; the server
// must retry every ROLLBACK until it is acknowledged, and must know the
// branches before the decision (they register one by one, and a restart must
// roll back each of them). So this driver keeps its own records, with the
// same forced-write discipline: only the commit decision is forced before the
// messages it allows.
//
// Calls use dtx's HTTP branch protocol envelope (src/adapters/http-branch.ts):
// body `{sagaId: <gid>, branchId: <branch>, op, payload: null}`, the
// `Idempotency-Key` `<gid>:<branch>:<op>`, redirects never followed.
//
// Owns: the 2PC transactions (in memory, rebuilt from its log), their
// timers and retry loops, and its log (`PATH.twopc` / `dtx_serve_twopc`).

import { callHttpBranch, checkBranchUrl, type HttpParticipantOp } from '../adapters/http-branch.ts';
import { DtxError } from '../errors.ts';
import { participantBranchPattern } from '../participant/index.ts';
import { recordDecoder } from '../runtime/branch/orchestrator.ts';
import { KeyedLocks } from '../runtime/keyed-lock.ts';
import { httpTimeoutMsDefault } from '../runtime/limits.ts';
import { openLog } from '../runtime/log/open.ts';
import type { DurableLog } from '../runtime/log/types.ts';
import { activeTraceHeaders, remoteParent, type SpanHandle, startSpan, withSpan } from '../runtime/otel.ts';
import { CallJournal } from './calls.ts';
import { checkGid } from './engine.ts';
import type { StoreLocation, StoreOwnership } from './store.ts';

/** Every bound of the server's 2PC, with its reason. */
export const twoPcServeLimits = {
  /** Branches of one transaction: the protocol core's participants limit. */
  branchesMax: 64,
  /** Transactions not yet ended at once: each holds memory, a timer and maybe retry loops. */
  openMax: 100_000,
  /** Ended transactions remembered for idempotency and views (their `tpc-end` records are kept this long). */
  endedMax: 100_000,
  /** Default time from begin to commit before the server aborts: services hold locks meanwhile. */
  timeoutMsDefault: 30_000,
  /** Default time phase one may take (every vote, with retries) before the server aborts. */
  prepareTimeoutMsDefault: 10_000,
  /** Longest prepare timeout: a commit request waits for the decision. */
  prepareTimeoutMsMax: 60_000,
  /** Backoff of COMMIT/ROLLBACK (and of unanswered PREPAREs): doubling from the base to the cap, with jitter. */
  retryBaseMsDefault: 50,
  retryCapMsDefault: 2_000,
  /** Compact the log every this many appends. */
  checkpointEvery: 1_000,
} as const;

/** A 2PC branch name: the participant's rule (no `.`, so that `<gid>.<branch>` is unambiguous). */
export const twoPcBranchPattern = participantBranchPattern;

export interface TwoPcRequest {
  /** Abort if not committed by then (ms from begin). */
  timeoutMs: number;
  /** Abort if the votes are not all in by then (ms from the commit request). */
  prepareTimeoutMs: number;
  /** Sent on every participant call. */
  headers: Record<string, string>;
  /** Each participant call's timeout (ms). */
  requestTimeoutMs: number | null;
}

/** An operator's action that ended (or decided) a transaction, with the reason it was given. */
export interface TwoPcOperatorMark {
  action: 'resolve' | 'abandon';
  reason: string;
}

export type ServeTwoPcRecord =
  | {
      type: 'tpc-begin';
      txn: string;
      hash: string;
      request: TwoPcRequest;
      /** The begin request's trace headers (W3C): the parent of the transaction's span, again after a restart. */
      trace?: Record<string, string>;
    }
  | { type: 'tpc-branch'; txn: string; branch: string; url: string }
  /** The decision, forced before any COMMIT: `branches` are the YES voters, each to be committed. */
  | { type: 'tpc-commit'; txn: string; branches: string[] }
  /** Lazy (presumed abort): only tells a reader why. Forced when an operator decided it (`operator`). */
  | { type: 'tpc-abort'; txn: string; reason: string; operator?: TwoPcOperatorMark }
  | {
      type: 'tpc-end';
      txn: string;
      outcome: 'committed' | 'aborted';
      reason: string | null;
      hash: string;
      branches: { branch: string; url: string }[];
      /** Ended by an operator (forced): `resolve` (the outcome settled by hand) or `abandon` (left as it stood). */
      operator?: TwoPcOperatorMark;
    };

export const decodeTwoPcRecord = recordDecoder<ServeTwoPcRecord>(
  ['tpc-begin', 'tpc-branch', 'tpc-commit', 'tpc-abort', 'tpc-end'],
  'dtx serve 2pc',
);

export type TwoPcPhase =
  | 'open'
  | 'preparing'
  | 'committing'
  | 'aborting'
  | 'committed'
  | 'aborted'
  /** Ended by an operator: see `outcome` and `operator`. */
  | 'resolved'
  | 'abandoned';
type VoteSeen = 'yes' | 'readOnly' | 'no' | null;

export interface TwoPcBranchView {
  branch: string;
  url: string;
  vote: VoteSeen;
  /** `registered` (no vote yet), `prepared` (yes), `committed`, `rolledBack`, `readOnly` (nothing to finish), `refused` (voted no). */
  status: 'registered' | 'prepared' | 'committed' | 'rolledBack' | 'readOnly' | 'refused';
}

export interface TwoPcView {
  id: string;
  type: '2pc';
  state: TwoPcPhase;
  outcome: 'committed' | 'aborted' | null;
  reason: string | null;
  /** The operator's action that decided or ended it, if any. */
  operator: TwoPcOperatorMark | null;
  startedAt: string | null;
  branches: TwoPcBranchView[];
  records: { at: string | null; record: ServeTwoPcRecord }[];
}

interface BranchState {
  branch: string;
  url: string;
  vote: VoteSeen;
  /** Phase two acknowledged for it. */
  finished: boolean;
}

interface Txn {
  gid: string;
  hash: string;
  request: TwoPcRequest;
  branches: BranchState[];
  phase: TwoPcPhase;
  /** The decision, once taken: `committed` only once the `tpc-commit` record is durable. */
  outcome: 'committed' | 'aborted' | null;
  reason: string | null;
  /** Aborted because someone asked (an abort request, the timeout), not by a vote. */
  abortAsked: boolean;
  /** The `tpc-commit` record is being written: no other decision may be taken meanwhile. */
  deciding: boolean;
  /** An operator's action decided or ended it. */
  operator: TwoPcOperatorMark | null;
  /** Ended by an operator: its call loops stop. */
  stopped: boolean;
  /** Its records, in order; `writing` while the log has not confirmed one (kept by a checkpoint, not shown). */
  records: { at: string | null; record: ServeTwoPcRecord; writing?: true }[];
  timer: ReturnType<typeof setTimeout> | undefined;
  decided: Deferred;
  ended: Deferred;
  /** Its OpenTelemetry span (../runtime/otel.ts), from begin (or recovery) to its end. */
  span: SpanHandle | undefined;
  /** Recovery only: the begin request's trace headers, until its span is started. */
  trace: Record<string, string> | undefined;
}

interface Deferred {
  promise: Promise<void>;
  resolve: () => void;
  done: boolean;
}

function deferred(): Deferred {
  let resolve!: () => void;
  const d: Deferred = { promise: new Promise<void>((r) => (resolve = r)), resolve: () => {}, done: false };
  d.resolve = () => {
    d.done = true;
    resolve();
  };
  return d;
}

export interface TwoPcServeOptions {
  store: StoreLocation;
  /** Default per-call timeout of a participant call (ms). */
  httpTimeoutMs?: number;
  retryBaseMs?: number;
  retryCapMs?: number;
  /** Tells whether another part of the server already uses `gid` (one gid namespace). */
  usedElsewhere?: (gid: string) => Promise<boolean>;
  /**
   * PostgreSQL store: whose log to open and how to take its owner lease
   * (./store.ts): this server's own owner (`dtx-serve:<id>`), or a dead
   * server's being taken over. Default: the owner `dtx-serve`, any holder.
   */
  ownership?: StoreOwnership;
  /** The log is a dead server's, taken over (./cluster.ts): what recovery aborts says so. */
  takenOver?: boolean;
}

/** Opens the 2PC log next to the server's others (created on first use, held exclusively). */
export function openTwoPcLog(
  where: StoreLocation,
  ownership?: StoreOwnership,
): Promise<DurableLog<ServeTwoPcRecord> & AsyncDisposable> {
  if ('sqlite' in where) {
    return openLog({ sqlite: `${where.sqlite}.twopc`, create: true }, decodeTwoPcRecord, 'server');
  }
  return openLog(
    {
      postgres: where.postgres,
      owner: ownership?.owner ?? 'dtx-serve',
      table: 'dtx_serve_twopc',
      create: true,
      ...(ownership === undefined
        ? {}
        : {
            leaseHolder: ownership.holder,
            leaseTtlMs: ownership.leaseTtlMs,
            waitForLease: ownership.waitForLease,
          }),
    },
    decodeTwoPcRecord,
    'server',
  );
}

/** The participant URL of one op: `<base>/<op>`. */
export function participantUrl(base: string, op: HttpParticipantOp): string {
  return `${base.replace(/\/+$/, '')}/${op}`;
}

/** Throws DTX_INVALID_ARGUMENT unless `url` is an http(s) base URL without query or fragment. */
export function checkParticipantUrl(url: string, where: string): void {
  const parsed = checkBranchUrl(url, where);
  if (parsed.search !== '' || parsed.hash !== '' || url.includes('?') || url.includes('#')) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `${where}: a participant's base URL takes no query or fragment (the server appends /prepare, /commit, /rollback)`,
    );
  }
}

export class TwoPcCoordinatorService {
  private readonly open = new Map<string, Txn>();
  private readonly ended = new Map<string, Txn>();
  private readonly locks = new KeyedLocks();
  /** Backoffs being waited out, by transaction: `retry` ends its transaction's at once. */
  private readonly sleeping = new Set<{
    gid: string;
    timer: ReturnType<typeof setTimeout>;
    wake: () => void;
  }>();
  private readonly running = new Set<Promise<void>>();
  private appends = 0;
  private closed = false;
  /** Another server took this log over (its owner lease): nothing more is decided or sent from here. */
  private fenced = false;
  /** The log failed: nothing more may be decided here (a restart recovers). */
  private failure: unknown = undefined;
  /** The participant calls this process made, for the dashboard's timeline (./calls.ts). */
  readonly calls = new CallJournal();

  private constructor(
    private readonly log: DurableLog<ServeTwoPcRecord> & AsyncDisposable,
    private readonly options: TwoPcServeOptions,
  ) {}

  /** Opens the log, recovers (re-sends decided commits, rolls back the undecided) and starts. */
  static async open(options: TwoPcServeOptions): Promise<TwoPcCoordinatorService> {
    const log = await openTwoPcLog(options.store, options.ownership);
    const service = new TwoPcCoordinatorService(log, options);
    void log.lost?.then((error) => service.onLost(error));
    try {
      await service.recover();
    } catch (error) {
      await log.close().catch(() => undefined);
      throw error;
    }
    return service;
  }

  /** Resolves once another server has taken this log over (never for SQLite). */
  get lost(): Promise<unknown> {
    return this.log.lost ?? new Promise(() => undefined);
  }

  /** Nothing open here: every transaction ended, no request running. */
  idle(): boolean {
    return this.open.size === 0 && this.locks.size === 0;
  }

  /**
   * The log's lease was taken: the new holder recovers every transaction
   * from the log and finishes it. Writes here already fail (fenced); stopping
   * the timers and loops too means no ROLLBACK or COMMIT leaves from a
   * server that no longer runs the transaction.
   */
  private onLost(error: unknown): void {
    this.failure ??= error;
    this.fenced = true;
    for (const t of this.open.values()) {
      clearTimeout(t.timer);
      // A commit request waiting for phase one is answered now: this server will decide nothing.
      if (t.phase === 'preparing') t.decided.resolve();
    }
    for (const s of this.sleeping) {
      clearTimeout(s.timer);
      s.wake();
    }
  }

  /** Loops and timers stop: the server is closing, or its log was taken over. */
  private get stopped(): boolean {
    return this.closed || this.fenced;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.open.values()) clearTimeout(t.timer);
    for (const s of this.sleeping) {
      clearTimeout(s.timer);
      s.wake();
    }
    // Loops stop at their next step; a call in flight ends within its timeout.
    await Promise.allSettled([...this.running]);
    await this.log.close();
  }

  // ------------------------------------------------------------ requests

  /** Begins a transaction: idempotent for the same request; another request under the gid is DTX_DUPLICATE_GID. */
  begin(gid: string, request: TwoPcRequest, hash: string): Promise<{ created: boolean }> {
    checkGid(gid);
    return this.locked(gid, async () => {
      this.checkUsable();
      const known = this.open.get(gid) ?? this.ended.get(gid);
      if (known !== undefined) {
        if (known.hash !== hash) throw duplicate(gid, 'with another request');
        return { created: false };
      }
      if ((await this.options.usedElsewhere?.(gid)) === true)
        throw duplicate(gid, 'by a saga, TCC or message');
      if (this.open.size >= twoPcServeLimits.openMax) {
        throw new DtxError(
          'DTX_RESOURCE_UNAVAILABLE',
          `${twoPcServeLimits.openMax} 2PC transactions are open`,
        );
      }
      const t = newTxn(gid, hash, request);
      // A child of the span active now: the begin request's `traceparent` (./app.ts), kept for a restart.
      const trace = activeTraceHeaders();
      t.span = startSpan('dtx.2pc', { 'dtx.transaction.type': '2pc', 'dtx.transaction.id': gid });
      try {
        await this.append(
          t,
          { type: 'tpc-begin', txn: gid, hash, request, ...(trace === undefined ? {} : { trace }) },
          true,
        );
      } catch (error) {
        t.span?.end({}, error);
        throw error;
      }
      this.open.set(gid, t);
      t.timer = setTimeout(() => {
        void this.abort(gid, `not committed within ${request.timeoutMs} ms`).catch(() => undefined);
      }, request.timeoutMs);
      t.timer.unref?.();
      return { created: true };
    });
  }

  /** Registers a branch (durable before it resolves). The same branch with the same URL again is a no-op. */
  registerBranch(gid: string, branch: string, url: string): Promise<void> {
    checkGid(gid);
    if (!twoPcBranchPattern.test(branch)) {
      throw new DtxError('DTX_INVALID_ARGUMENT', `branch must match ${twoPcBranchPattern.source}`);
    }
    checkParticipantUrl(url, 'url');
    return this.locked(gid, async () => {
      this.checkUsable();
      const t = this.open.get(gid);
      if (t === undefined) throw this.notOpen(gid, 'register a branch on');
      const same = t.branches.find((b) => b.branch === branch);
      if (same !== undefined) {
        if (same.url === url) return;
        throw new DtxError('DTX_DUPLICATE_GID', `branch ${branch} of ${gid} is registered with another URL`, {
          gid,
        });
      }
      if (t.phase !== 'open') throw this.notOpen(gid, 'register a branch on');
      if (t.branches.length >= twoPcServeLimits.branchesMax) {
        throw new DtxError(
          'DTX_INVALID_ARGUMENT',
          `${gid} has ${twoPcServeLimits.branchesMax} branches already`,
        );
      }
      await this.append(t, { type: 'tpc-branch', txn: gid, branch, url }, true);
      t.branches.push({ branch, url, vote: null, finished: false });
    });
  }

  /**
   * Commits: runs phase one and resolves once the outcome is decided
   * (committed or aborted; phase two goes on). A repeat answers the same.
   * Refused after an abort request or a timeout (DTX_INVALID_STATE).
   */
  async commit(gid: string): Promise<void> {
    checkGid(gid);
    const t = await this.locked(gid, async () => {
      const t = this.open.get(gid) ?? this.ended.get(gid);
      if (t === undefined) throw new DtxError('DTX_NOT_FOUND', `no 2PC transaction ${gid}`, { gid });
      if (t.abortAsked) {
        throw new DtxError('DTX_INVALID_STATE', `${gid} was aborted (${t.reason}): cannot commit it`, {
          gid,
        });
      }
      if (t.phase === 'open') {
        this.checkUsable();
        clearTimeout(t.timer);
        t.phase = 'preparing';
        this.spawn(() => this.runPhaseOne(t));
      }
      return t;
    });
    await t.decided.promise;
    if (t.phase === 'preparing') {
      // Decided nothing: the log failed under the commit record, or another server took it over.
      throw new DtxError(
        'DTX_RESOURCE_UNAVAILABLE',
        this.fenced
          ? `another server took over this server's 2PC log while deciding ${gid}: it decides ${gid} now`
          : `the server log failed while deciding ${gid}`,
        { gid },
      );
    }
  }

  /** Aborts a transaction not yet decided. Refused once committing (DTX_INVALID_STATE). */
  abort(gid: string, reason: string): Promise<void> {
    checkGid(gid);
    return this.locked(gid, async () => {
      const t = this.open.get(gid) ?? this.ended.get(gid);
      if (t === undefined) throw new DtxError('DTX_NOT_FOUND', `no 2PC transaction ${gid}`, { gid });
      if (t.outcome === 'aborted') return;
      if (t.phase !== 'open') {
        throw new DtxError('DTX_INVALID_STATE', `${gid} is ${t.phase}: it can no longer be aborted`, { gid });
      }
      this.checkUsable();
      clearTimeout(t.timer);
      t.abortAsked = true;
      await this.decideAbort(t, reason);
    });
  }

  /** Waits up to `timeoutMs` for `gid` to end (phase two acknowledged everywhere). */
  async wait(gid: string, timeoutMs: number): Promise<void> {
    const t = this.open.get(gid);
    if (t === undefined || timeoutMs <= 0) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([t.ended.promise, new Promise<void>((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  /** Whether `gid` names a 2PC transaction here. */
  knows(gid: string): boolean {
    return this.open.has(gid) || this.ended.has(gid);
  }

  /** Every transaction open here and the latest ended, for the dashboard. */
  views(): TwoPcView[] {
    return [...this.open.values(), ...this.ended.values()].map(viewOf);
  }

  view(gid: string): TwoPcView {
    const t = this.open.get(gid) ?? this.ended.get(gid);
    if (t === undefined) throw new DtxError('DTX_NOT_FOUND', `no 2PC transaction ${gid}`, { gid });
    return viewOf(t);
  }

  // ------------------------------------------------------------ operator actions
  //
  // The library coordinator's rules (../runtime/coordinator.ts, resolve and
  // abandon; docs/server.md, "Operator actions on 2PC transactions"): nothing
  // may contradict a durable decision, every action that decides or ends a
  // transaction is forced to the log with its reason before it is answered,
  // and a refused action (DTX_INVALID_STATE) changes nothing. Undecided means
  // no `tpc-commit` durable: by presumed abort its outcome can only be abort.

  /** Sends its pending calls now (phase two's COMMIT or ROLLBACK, phase one's unanswered PREPAREs), not at their next backoff. */
  retry(gid: string): Promise<void> {
    checkGid(gid);
    return this.locked(gid, async () => {
      const t = this.liveForOperator(gid, 'retry');
      if (t.phase === 'open') {
        throw new DtxError(
          'DTX_INVALID_STATE',
          `${gid} is open: no call is pending (commit or abort it through /v1/2pc)`,
          { gid },
        );
      }
      this.checkUsable();
      this.wake(gid);
    });
  }

  /**
   * Ends it with the outcome an operator established. `committed`: only once
   * the commit decision is durable (the operator committed the branches not
   * yet acknowledged by hand); it ends now. `aborted`: never once a commit is
   * durable; an undecided transaction is decided abort (forced, with the
   * reason) and ROLLBACK still goes to every branch that may hold work, each
   * until acknowledged; one already aborting (the operator rolled its
   * remaining branches back by hand) ends now.
   */
  resolve(gid: string, outcome: 'committed' | 'aborted', reason: string): Promise<void> {
    checkGid(gid);
    return this.locked(gid, async () => {
      const t = this.liveForOperator(gid, 'resolve');
      const mark: TwoPcOperatorMark = { action: 'resolve', reason };
      if (outcome === 'committed') {
        if (t.phase !== 'committing') {
          throw new DtxError(
            'DTX_INVALID_STATE',
            t.phase === 'aborting'
              ? `${gid} is decided abort: it cannot be resolved as committed`
              : `${gid} has no durable commit decision: it cannot be resolved as committed (without one it is aborted, by presumption)`,
            { gid },
          );
        }
        return this.endByOperator(t, mark, 'committed');
      }
      if (t.phase === 'committing') {
        throw new DtxError(
          'DTX_INVALID_STATE',
          `${gid} is decided commit (its commit record is durable): it cannot be resolved as aborted; retry it, or commit its branches by hand and resolve it as committed`,
          { gid },
        );
      }
      if (t.phase === 'aborting') return this.endByOperator(t, mark, 'aborted');
      this.checkUsable();
      clearTimeout(t.timer);
      t.abortAsked = true;
      await this.decideAbort(t, `resolved as aborted by an operator: ${reason}`, mark);
    });
  }

  /**
   * Ends it as it stands: nothing more is called. Its decision stands (a
   * decided commit stays committed: the branches not yet acknowledged are the
   * operator's to commit); an undecided one is decided abort by the same
   * forced record, and its branches that may hold work (prepared or still
   * open) are the operator's to roll back.
   */
  abandon(gid: string, reason: string): Promise<void> {
    checkGid(gid);
    return this.locked(gid, async () => {
      const t = this.liveForOperator(gid, 'abandon');
      if (t.outcome === null) t.abortAsked = true;
      await this.endByOperator(t, { action: 'abandon', reason }, t.outcome ?? 'aborted');
    });
  }

  /** The transaction an operator acts on: not ended, and not in the middle of writing its commit decision. */
  private liveForOperator(gid: string, action: string): Txn {
    const t = this.open.get(gid);
    if (t === undefined) {
      const e = this.ended.get(gid);
      if (e === undefined) throw new DtxError('DTX_NOT_FOUND', `no 2PC transaction ${gid}`, { gid });
      throw new DtxError('DTX_INVALID_STATE', `${gid} has ended (${e.phase}): ${action} refused`, { gid });
    }
    if (t.deciding) {
      throw new DtxError(
        'DTX_INVALID_STATE',
        `${gid}: its commit decision is being written; ${action} refused, ask again in a moment`,
        { gid },
      );
    }
    return t;
  }

  /** Ends `t` now with `outcome`, by the operator's forced `tpc-end`; its call loops stop. */
  private async endByOperator(
    t: Txn,
    operator: TwoPcOperatorMark,
    outcome: 'committed' | 'aborted',
  ): Promise<void> {
    this.checkUsable();
    // Synchronously, before the write: phase one must not decide commit meanwhile.
    clearTimeout(t.timer);
    t.stopped = true;
    t.outcome = outcome;
    t.operator = operator;
    t.reason = operator.reason;
    if (t.phase === 'open' || t.phase === 'preparing') t.phase = 'aborting';
    t.decided.resolve();
    this.wake(t.gid);
    try {
      await this.append(t, endRecord(t, outcome), true);
    } catch (error) {
      // Unknown whether it landed: a restart reads the log (and aborts what has no decision).
      this.failure = error;
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', `the server log failed while ending ${t.gid}`, {
        gid: t.gid,
      });
    }
    this.moveToEnded(t, operator.action === 'resolve' ? 'resolved' : 'abandoned');
  }

  // ------------------------------------------------------------ the protocol

  private async runPhaseOne(t: Txn): Promise<void> {
    const deadline = Date.now() + t.request.prepareTimeoutMs;
    if (t.branches.length === 0) return this.decideCommit(t);
    // The first NO (or a prepare answered without a vote) ends phase one at once.
    const votes = { refused: null as string | null };
    await Promise.all(
      t.branches.map(async (b) => {
        for (let attempt = 1; ; attempt++) {
          if (this.stopped || t.phase !== 'preparing' || votes.refused !== null || Date.now() >= deadline)
            return;
          const answer = await this.call(
            t,
            b,
            'prepare',
            Math.max(1, Math.min(this.callTimeoutMs(t), deadline - Date.now())),
          );
          if (votes.refused !== null) return;
          if (answer.result === 'success') {
            const vote = (answer.body as { vote?: unknown } | undefined)?.vote;
            if (vote === 'yes' || vote === 'readOnly') {
              b.vote = vote;
              return;
            }
            b.vote = 'no';
            votes.refused = `branch ${b.branch} answered prepare without a vote`;
            return;
          }
          if (answer.result === 'failure') {
            b.vote = 'no';
            votes.refused = `branch ${b.branch} voted no: ${answer.reason}`;
            return;
          }
          await this.sleep(Math.min(this.backoffMs(attempt), Math.max(0, deadline - Date.now())), t.gid);
        }
      }),
    );
    // Stopped, or an operator decided meanwhile.
    if (this.stopped || t.phase !== 'preparing') return;
    if (votes.refused !== null) return this.decideAbort(t, votes.refused);
    const missing = t.branches.filter((b) => b.vote === null).map((b) => b.branch);
    if (missing.length > 0) {
      return this.decideAbort(
        t,
        `no vote from ${missing.join(', ')} within ${t.request.prepareTimeoutMs} ms`,
      );
    }
    await this.decideCommit(t);
  }

  private async decideCommit(t: Txn): Promise<void> {
    // An operator's abort came first: it stands.
    if (t.phase !== 'preparing') return;
    const committers = t.branches.filter((b) => b.vote === 'yes').map((b) => b.branch);
    if (committers.length > 0) {
      t.deciding = true;
      try {
        // Presumed abort: this is the one forced decision. No COMMIT before it is durable.
        await this.append(t, { type: 'tpc-commit', txn: t.gid, branches: committers }, true);
      } catch (error) {
        // Whether the record landed is unknown: stop deciding here; a restart reads the log.
        this.failure = error;
        t.decided.resolve();
        return;
      } finally {
        t.deciding = false;
      }
    }
    t.phase = 'committing';
    t.outcome = 'committed';
    t.decided.resolve();
    await this.runPhaseTwo(t, 'commit');
  }

  /**
   * Decides abort and sends ROLLBACK. Lazy (presumed abort) unless an
   * operator decided it: then the record, with the operator's reason, is
   * forced before this resolves.
   */
  private async decideAbort(t: Txn, reason: string, operator?: TwoPcOperatorMark): Promise<void> {
    t.phase = 'aborting';
    t.outcome = 'aborted';
    t.reason = reason;
    if (operator !== undefined) t.operator = operator;
    t.decided.resolve();
    const record: ServeTwoPcRecord = {
      type: 'tpc-abort',
      txn: t.gid,
      reason,
      ...(operator === undefined ? {} : { operator }),
    };
    let written: unknown;
    if (operator !== undefined) {
      written = await this.append(t, record, true).catch((error: unknown) => {
        this.failure = error;
        return error;
      });
    }
    this.spawn(async () => {
      if (operator === undefined) await this.append(t, record, false).catch(() => undefined);
      await this.runPhaseTwo(t, 'rollback');
    });
    if (written !== undefined) {
      // The ROLLBACKs go on (an abort is safe without its record: presumed abort).
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', `the server log failed while aborting ${t.gid}`, {
        gid: t.gid,
      });
    }
  }

  /** Sends `op` to every branch that needs it, each until acknowledged, then ends the transaction. */
  private async runPhaseTwo(t: Txn, op: 'commit' | 'rollback'): Promise<void> {
    const targets = t.branches.filter((b) =>
      op === 'commit' ? b.vote === 'yes' : b.vote !== 'no' && b.vote !== 'readOnly',
    );
    await Promise.all(
      targets.map(async (b) => {
        for (let attempt = 1; !this.stopped && !t.stopped; attempt++) {
          const answer = await this.call(t, b, op, this.callTimeoutMs(t));
          if (answer.result === 'success') {
            b.finished = true;
            return;
          }
          await this.sleep(this.backoffMs(attempt), t.gid);
        }
      }),
    );
    if (this.stopped) return;
    const outcome = op === 'commit' ? 'committed' : 'aborted';
    await this.locked(t.gid, async () => {
      // An operator ended it meanwhile: its own `tpc-end` is written.
      if (t.stopped) return;
      const end = endRecord(t, outcome);
      this.moveToEnded(t, t.operator === null ? outcome : 'resolved');
      await this.append(t, end, false).catch(() => undefined);
    });
  }

  /** `t` has ended as `phase`: forgotten from the open ones, its waiters and its span told. */
  private moveToEnded(t: Txn, phase: TwoPcPhase): void {
    t.phase = phase;
    this.open.delete(t.gid);
    this.ended.set(t.gid, t);
    while (this.ended.size > twoPcServeLimits.endedMax) this.ended.delete(this.ended.keys().next().value!);
    t.decided.resolve();
    t.ended.resolve();
    t.span?.end(
      {
        'dtx.transaction.outcome': t.outcome ?? 'aborted',
        ...(t.operator === null ? {} : { 'dtx.operator.action': t.operator.action }),
      },
      t.outcome === 'committed' && t.operator === null ? undefined : (t.reason ?? phase),
    );
  }

  private async call(t: Txn, b: BranchState, op: HttpParticipantOp, timeoutMs: number) {
    const answered = this.calls.begin(t.gid, { branch: b.branch, op, url: b.url });
    // A child of the transaction's span, active during the call: the request carries its `traceparent`.
    const span = startSpan(
      `dtx.branch.${op}`,
      {
        'dtx.transaction.type': '2pc',
        'dtx.transaction.id': t.gid,
        'dtx.branch.id': b.branch,
        'dtx.branch.op': op,
      },
      t.span ?? 'root',
      'client',
    );
    const answer = await withSpan(span, () =>
      callHttpBranch(participantUrl(b.url, op), {
        sagaId: t.gid,
        branchId: b.branch,
        op,
        payload: null,
        timeoutMs,
        headers: t.request.headers,
      }),
    );
    const status = answer.result === 'ongoing' ? 'retry' : answer.result;
    span?.end({ 'dtx.branch.status': status }, status === 'success' ? undefined : answer.reason);
    answered(status, answer.reason);
    return answer;
  }

  private callTimeoutMs(t: Txn): number {
    return t.request.requestTimeoutMs ?? this.options.httpTimeoutMs ?? httpTimeoutMsDefault;
  }

  private backoffMs(attempt: number): number {
    const base = this.options.retryBaseMs ?? twoPcServeLimits.retryBaseMsDefault;
    const cap = this.options.retryCapMs ?? twoPcServeLimits.retryCapMsDefault;
    const ms = Math.min(cap, base * 2 ** Math.min(attempt - 1, 20));
    return ms / 2 + Math.random() * (ms / 2);
  }

  /** Waits out a backoff of `gid`'s calls (ended early by `retry`, an operator's end, or a stop). */
  private sleep(ms: number, gid: string): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const entry = {
        gid,
        timer: setTimeout(() => {
          this.sleeping.delete(entry);
          resolve();
        }, ms),
        wake: resolve,
      };
      this.sleeping.add(entry);
    });
  }

  /** Ends every backoff `gid`'s calls are waiting out. */
  private wake(gid: string): void {
    for (const s of [...this.sleeping]) {
      if (s.gid !== gid) continue;
      clearTimeout(s.timer);
      this.sleeping.delete(s);
      s.wake();
    }
  }

  private spawn(work: () => Promise<void>): void {
    const run: Promise<void> = work()
      .catch(() => undefined)
      .finally(() => this.running.delete(run));
    this.running.add(run);
  }

  // ------------------------------------------------------------ log

  private async recover(): Promise<void> {
    const records = await this.log.load();
    // The times records were appended, for the views (in load()'s order); null where the store keeps none.
    const times = (await this.log.history?.())?.map((h) => h.at.toISOString());
    const timeOf = (i: number) => (times?.length === records.length ? (times[i] ?? null) : null);
    for (const [i, r] of records.entries()) {
      const at = timeOf(i);
      const t = this.open.get(r.txn);
      switch (r.type) {
        case 'tpc-begin': {
          const fresh = newTxn(r.txn, r.hash, r.request);
          fresh.records.push({ at, record: r });
          fresh.trace = r.trace;
          this.open.set(r.txn, fresh);
          break;
        }
        case 'tpc-branch':
          t?.branches.push({ branch: r.branch, url: r.url, vote: null, finished: false });
          t?.records.push({ at, record: r });
          break;
        case 'tpc-commit':
          if (t !== undefined) {
            for (const b of t.branches) b.vote = r.branches.includes(b.branch) ? 'yes' : 'readOnly';
            t.phase = 'committing';
            t.outcome = 'committed';
            t.records.push({ at, record: r });
          }
          break;
        case 'tpc-abort':
          if (t !== undefined) {
            t.reason = r.reason;
            if (r.operator !== undefined) t.operator = r.operator;
            t.records.push({ at, record: r });
          }
          break;
        case 'tpc-end': {
          this.open.delete(r.txn);
          const e = newTxn(r.txn, r.hash, {
            timeoutMs: 0,
            prepareTimeoutMs: 0,
            headers: {},
            requestTimeoutMs: null,
          });
          e.phase =
            r.operator === undefined ? r.outcome : r.operator.action === 'resolve' ? 'resolved' : 'abandoned';
          e.outcome = r.outcome;
          e.operator = r.operator ?? null;
          e.reason = r.reason;
          // An operator's end left its unfinished branches as they stood; which ones, the log no longer says.
          e.branches = r.branches.map((b) => ({ ...b, vote: null, finished: r.operator === undefined }));
          e.records.push({ at, record: r });
          e.decided.resolve();
          e.ended.resolve();
          this.ended.set(r.txn, e);
          break;
        }
      }
    }
    while (this.ended.size > twoPcServeLimits.endedMax) this.ended.delete(this.ended.keys().next().value!);
    await this.log.checkpoint(this.keep());
    for (const t of this.open.values()) {
      // Its span is new (the old one ended with the process), a child of the begin request's trace again.
      t.span = startSpan(
        'dtx.2pc',
        { 'dtx.transaction.type': '2pc', 'dtx.transaction.id': t.gid, 'dtx.recovered': true },
        remoteParent(t.trace) ?? 'root',
      );
      t.trace = undefined;
      if (t.phase === 'committing') {
        t.decided.resolve();
        this.spawn(() => this.runPhaseTwo(t, 'commit'));
      } else {
        // No decision survived: presumed abort. Every registered branch may have prepared.
        // Taken over from a dead server: its caller may still have been registering branches;
        // a branch it registered after the takeover was refused (fenced), so none is missed.
        const why = this.options.takenOver
          ? 'the server running it stopped before a decision; taken over (presumed abort)'
          : 'the server restarted before a decision (presumed abort)';
        void this.decideAbort(t, t.reason ?? why);
      }
    }
  }

  private keep(): ServeTwoPcRecord[] {
    const keep: ServeTwoPcRecord[] = [];
    for (const t of this.ended.values()) keep.push(t.records.at(-1)!.record);
    for (const t of this.open.values()) keep.push(...t.records.map((x) => x.record));
    return keep;
  }

  private async append(t: Txn, record: ServeTwoPcRecord, force: boolean): Promise<void> {
    const entry: Txn['records'][number] = { at: new Date().toISOString(), record, writing: true };
    t.records.push(entry);
    const done = this.log.append([record], force).then(() => {
      // Shown from now on: a view never shows a decision that is not durable yet.
      delete entry.writing;
    });
    if (++this.appends >= twoPcServeLimits.checkpointEvery) {
      this.appends = 0;
      const keep = this.keep();
      await done;
      await this.log.checkpoint(keep);
      return;
    }
    await done;
  }

  private checkUsable(): void {
    if (this.fenced) {
      throw new DtxError(
        'DTX_RESOURCE_UNAVAILABLE',
        "another server took this server's 2PC log over (its lease lapsed): restart this server",
      );
    }
    if (this.failure !== undefined) {
      throw new DtxError(
        'DTX_RESOURCE_UNAVAILABLE',
        'the server log failed: restart the server to recover its 2PC transactions',
      );
    }
    if (this.closed) throw new DtxError('DTX_RESOURCE_UNAVAILABLE', 'the server is closing');
  }

  private notOpen(gid: string, what: string): DtxError {
    if (!this.knows(gid)) return new DtxError('DTX_NOT_FOUND', `no 2PC transaction ${gid}`, { gid });
    return new DtxError('DTX_INVALID_STATE', `${gid} is no longer open: cannot ${what} it`, { gid });
  }

  /** Runs `work` after every earlier request on `gid` has finished. */
  private locked<T>(gid: string, work: () => Promise<T>): Promise<T> {
    return this.locks.run(gid, work);
  }
}

function newTxn(gid: string, hash: string, request: TwoPcRequest): Txn {
  return {
    gid,
    hash,
    request,
    branches: [],
    phase: 'open',
    outcome: null,
    reason: null,
    abortAsked: false,
    deciding: false,
    operator: null,
    stopped: false,
    records: [],
    timer: undefined,
    decided: deferred(),
    ended: deferred(),
    span: undefined,
    trace: undefined,
  };
}

/** The `tpc-end` of `t` (forced when an operator ended it). */
function endRecord(t: Txn, outcome: 'committed' | 'aborted'): ServeTwoPcRecord {
  return {
    type: 'tpc-end',
    txn: t.gid,
    outcome,
    reason: t.reason,
    hash: t.hash,
    branches: t.branches.map(({ branch, url }) => ({ branch, url })),
    ...(t.operator === null ? {} : { operator: t.operator }),
  };
}

function viewOf(t: Txn): TwoPcView {
  const outcome = t.outcome;
  return {
    id: t.gid,
    type: '2pc',
    state: t.phase,
    outcome,
    reason: t.reason,
    operator: t.operator,
    startedAt: t.records[0]?.at ?? null,
    branches: t.branches.map((b) => ({
      branch: b.branch,
      url: b.url,
      vote: b.vote,
      status: branchStatus(b, outcome),
    })),
    records: t.records.filter((r) => r.writing !== true),
  };
}

function branchStatus(b: BranchState, outcome: TwoPcView['outcome']): TwoPcBranchView['status'] {
  if (b.vote === 'no') return 'refused';
  if (b.vote === 'readOnly') return 'readOnly';
  if (b.finished) return outcome === 'committed' ? 'committed' : 'rolledBack';
  return b.vote === 'yes' ? 'prepared' : 'registered';
}

function duplicate(gid: string, how: string): DtxError {
  return new DtxError('DTX_DUPLICATE_GID', `gid ${gid} is already used ${how}`, { gid });
}
