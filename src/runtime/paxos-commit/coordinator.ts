// Paxos Commit on real databases (Gray & Lamport 2006): the coordinator API
// of the 2PC runtime (`transaction(async tx => ...)`, the same adapters), with
// the decision held by 2F+1 acceptor processes (./acceptor-server.ts) instead
// of one coordinator log, so that a leader's death does not block.
//
// Roles in this process, all the pure cores of src/protocol/paxos-commit:
// - one leader candidate (leader.ts), this process's `id`, driven by the
//   runtime Driver; its only durable record, its ballot round, is kept on the
//   acceptors (./round-log.ts);
// - one RM (rm.ts) per resource and transaction (./rm-branch.ts), whose log is
//   the database: its `prepared` record is PREPARE TRANSACTION, its vote a
//   ballot-0 phase 2a to the acceptors.
// Other leader processes (backups) run the same code with the same resources;
// `leaders` lists them all, in ballot order, identically everywhere.
//
// Recovery reads the acceptors, not a local log: every `scanIntervalMs` this
// process lists the prepared branches of its cluster on every resource, and a
// branch it did not open and that has stayed prepared for `takeoverMs` (its
// leader is dead or cut off) gets an RM rebuilt from the branch (the RM
// core's own `recover`), which asks this process's candidate; the candidate
// runs phase 1 and 2 on the acceptors, and the RMs commit or roll back. So a
// participant stays in doubt at most about takeoverMs + scanIntervalMs + one
// round, whatever happened to the leader.
//
// Participants: every transaction's participants are ALL the configured
// resources, in name order, the same on every leader process. A recovering
// process must know every instance of a transaction, and a prepared branch
// names only itself (its gid), so the set must be known without asking
// anyone. A resource the callback did not use takes part as an RM with no
// branch: it votes `prepared` (there is nothing to prepare) and applies
// nothing. That costs acceptor writes, never a database call.
//
// Gids: `pc_<cluster>_<txn>_<resource>`; the txn id is
// `<leader id>-<incarnation>-<ordinal>`, so no two processes make the same.

import { randomBytes } from 'node:crypto';
import type { Branch, ResourceAdapter, SqlBranch } from '../../adapters/types.ts';
import { DtxError, isDtxError } from '../../errors.ts';
import type { NodeId, Outcome, TxnId } from '../../protocol/common/types.ts';
import { faultsMax } from '../../protocol/paxos-commit/layout.ts';
import { type CandidateState, paxosCandidate } from '../../protocol/paxos-commit/leader.ts';
import {
  type AcceptorFanout,
  defaultPaxosCommitConfig,
  type PaxosCommitConfig,
  type PaxosCommitMsg,
  type PaxosCommitRecord,
  quorum,
} from '../../protocol/paxos-commit/types.ts';
import type { Transaction } from '../coordinator.ts';
import { Driver } from '../driver.ts';
import { coordinatorIdPattern, resourceNamePattern } from '../limits.ts';
import { type LockingReadBranch, LockOrderedReads } from '../lock-ordered-reads.ts';
import { syncsInFlightMax } from '../log/group-commit.ts';
import { type Logger, warn } from '../observe.ts';
import { type AcceptorMeta, AcceptorServer } from './acceptor-server.ts';
import { RmBranch } from './rm-branch.ts';
import { AcceptorRoundLog } from './round-log.ts';
import { baseUrl, PeerTransport } from './transport.ts';
import { type WireBatch, type WireItem, wireVersion } from './wire.ts';

/** The client name the leader core reports outcomes to: the caller of `transaction()`. */
const appClient = 'app';

/**
 * Protocol timing for real processes. The simulator's defaults (100 ms vote
 * timeout, 40 ms per recovery attempt) assume a 1 ms network and a fast
 * disk. Here a vote is a database prepare and an acceptor fsync, and a
 * recovery attempt is three forced writes in a row (the round on F+1
 * acceptors, their promises, their acceptances) with HTTP between them: on a
 * loaded machine each can take hundreds of ms. A recovery attempt cut short
 * by its timer starts over in a higher ballot, and one that is always cut
 * short never finishes, so `recoveryMs` is far above what one attempt takes.
 */
export const paxosRuntimeTiming = {
  voteTimeoutMs: 2000,
  recoveryMs: 5000,
  inquiryMs: 300,
  unvotedAbortMs: 10_000,
  bundleMs: 5,
} as const;

export interface PaxosCommitCoordinatorOptions {
  protocol: 'paxos-commit';
  /** The participants, by name (letters, digits, `.` and `-`, at most 32). The same on every leader. */
  resources: Record<string, ResourceAdapter>;
  /** The 2F+1 acceptors' URLs (`http://host:port` or `host:port`), in the same order on every leader. */
  acceptors: string[];
  /** Acceptor failures tolerated, F: `acceptors` must number 2F+1. Default 1. */
  faults?: number;
  /** This leader's id (a leader candidate): letters, digits and `-`, at most 16. */
  id: string;
  /** Every leader candidate, in ballot order, identical on every leader. Default `[id]`. */
  leaders?: string[];
  /** The acceptors' cluster id (`dtx acceptor --cluster`); a different one is refused. Default `dtx`. */
  cluster?: string;
  /** Faster Paxos Commit: RMs learn the outcome from the acceptors (must match the acceptors'). */
  faster?: boolean;
  /** Where RMs send their votes: the first F+1 acceptors (default) or all. */
  acceptorFanout?: AcceptorFanout;
  /** Where this process listens for the acceptors' replies. Default `127.0.0.1:0`. */
  listen?: string;
  /**
   * Host one of the 2F+1 acceptors in this process, as the paper's
   * co-location does: its address is `listen` (a fixed port), which must be
   * one of `acceptors`; other leaders reach it there. This process's votes
   * go to it first, in-process, and to F remote acceptors, so a transaction
   * waits for one remote round instead of the slowest of F+1, and one
   * acceptor process less works per commit. The cost: while this process is
   * down, so is its acceptor, which uses up one of the F failures the
   * others tolerate (with F = 1, the two remaining acceptors must both answer
   * until it is back). Its directory is an acceptor's data directory (the
   * same format as `dtx acceptor --data`), kept across restarts of this process.
   */
  hostAcceptor?: { dataDir: string; syncsInFlight?: number };
  /** How long a branch of another process stays prepared before this one recovers it. Default 1000. */
  takeoverMs?: number;
  /** How often to look for such branches; 0 turns it off. Default 250. */
  scanIntervalMs?: number;
  /** Protocol timing overrides (see `paxosRuntimeTiming`). */
  timing?: Partial<typeof paxosRuntimeTiming>;
  /**
   * How long the votes of this process's RMs for one transaction may wait
   * for each other before they leave (see `holdVote`); 0 sends each vote as
   * soon as its branch is prepared. Below the vote timeout. Default 20.
   */
  voteHoldMs?: number;
  /**
   * Crash tests: called with `prepared:all` once every branch of the k-th
   * transaction (`ordinal`) is prepared, before any outcome is known here.
   */
  crashPoints?: { point(point: string, ordinal: number): void };
  onWarning?: (message: string) => void;
  /** Takes the warnings `onWarning` does not (src/runtime/observe.ts); default `process.emitWarning`. */
  logger?: Logger;
}

/**
 * What the callback gets: the 2PC `Transaction`. `tx.read` is the same
 * locking read under the same lock-order rule, with the resources ranked in
 * name order (every leader process orders its participants so). Unlike 2PC,
 * a branch that only read is not read-only: it prepares, votes and commits
 * like any other (see docs/protocols/paxos-commit.md, Limits).
 */
export type PaxosTransaction = Transaction;

export interface PaxosTransactionOptions {
  /** Reject with DTX_TIMEOUT when the callback and the vote take longer (the protocol then aborts or finishes on its own). */
  timeoutMs?: number;
  /** Run the callback again, as a new transaction, this many times when it fails with a retryable error. Default 0. */
  retries?: number;
  /** First retry delay; doubled each time, with jitter. Default 20. */
  backoffMs?: number;
  /** Longest retry delay. Default 1000. */
  backoffMaxMs?: number;
}

/**
 * 2PC `transaction()` options Paxos Commit does not carry out, with why. A
 * JavaScript caller that passes one gets DTX_UNSUPPORTED instead of an
 * option silently ignored.
 */
const unsupportedTransactionOptions: Readonly<Record<string, string>> = {
  signal:
    'cancelling is not wired into Paxos Commit (the decision is taken by the acceptors, not here); use timeoutMs',
  commitWaitMs:
    'a Paxos Commit transaction resolves once every branch applied its outcome; there is no separate commit wait',
};

/** Votes of one transaction's RMs waiting for each other (`holdVote`). */
interface HeldVotes {
  voted: Set<NodeId>;
  items: { url: string; from: NodeId; to: NodeId; msg: PaxosCommitMsg }[];
  timer: ReturnType<typeof setTimeout> | undefined;
}

export const voteHoldMsDefault = 20;

interface LiveTxn {
  ordinal: number;
  outcome: Promise<Outcome>;
  resolveOutcome(o: Outcome): void;
  /** Local RMs not finished yet. */
  pending: Set<RmBranch>;
  allFinished: Promise<void>;
  resolveFinished(): void;
  prepared: number;
}

function check(cond: boolean, message: string): asserts cond {
  if (!cond) throw new DtxError('DTX_INVALID_ARGUMENT', message);
}

/**
 * The acceptor list for F faults, as base URLs: 2F+1 entries, no address
 * twice. Refused with DTX_INVALID_ARGUMENT before anything connects (the
 * same acceptor under two addresses is found later, by its id).
 */
export function checkAcceptorList(acceptors: unknown, faults = 1): { F: number; urls: string[] } {
  const F = faults;
  check(
    Number.isInteger(F) && F >= 0 && F <= faultsMax,
    `faults must be an integer in 0..${faultsMax}, not ${String(F)}`,
  );
  check(Array.isArray(acceptors), 'acceptors must be a list of URLs');
  const urls = (acceptors as unknown[]).map((a) => baseUrl(String(a)));
  check(
    urls.length === 2 * F + 1,
    `faults = ${F} needs 2F+1 = ${2 * F + 1} acceptors, got ${urls.length} (${urls.join(', ')})`,
  );
  const dup = urls.find((u, i) => urls.indexOf(u) !== i);
  check(dup === undefined, `acceptor ${dup} is listed twice`);
  return { F, urls };
}

function checkOptions(o: PaxosCommitCoordinatorOptions): { F: number; urls: string[]; leaders: string[] } {
  const { F, urls } = checkAcceptorList(o.acceptors, o.faults);
  check(
    coordinatorIdPattern.test(o.id ?? ''),
    `id ${JSON.stringify(o.id)} must match ${coordinatorIdPattern}`,
  );
  const leaders = o.leaders ?? [o.id];
  check(
    leaders.every((l) => coordinatorIdPattern.test(l)),
    `leaders must match ${coordinatorIdPattern}`,
  );
  check(new Set(leaders).size === leaders.length, 'leaders repeat an id');
  check(leaders.includes(o.id), `id ${o.id} is not in leaders (${leaders.join(', ')})`);
  if (o.hostAcceptor !== undefined) {
    check(
      typeof o.hostAcceptor?.dataDir === 'string' && o.hostAcceptor.dataDir !== '',
      'hostAcceptor.dataDir must be a directory path',
    );
    const syncs = o.hostAcceptor.syncsInFlight;
    check(
      syncs === undefined || (Number.isSafeInteger(syncs) && syncs >= 1 && syncs <= syncsInFlightMax),
      `hostAcceptor.syncsInFlight must be an integer from 1 to ${syncsInFlightMax}, not ${String(syncs)}`,
    );
    const own = o.listen === undefined ? undefined : baseUrl(o.listen);
    check(
      own !== undefined && !own.endsWith(':0') && urls.includes(own),
      `hostAcceptor: listen (${String(o.listen)}) must be a fixed host:port listed in acceptors (${urls.join(', ')}), where the other leaders reach the hosted acceptor`,
    );
  }
  const voteTimeoutMs = o.timing?.voteTimeoutMs ?? paxosRuntimeTiming.voteTimeoutMs;
  check(
    o.voteHoldMs === undefined ||
      (typeof o.voteHoldMs === 'number' &&
        Number.isFinite(o.voteHoldMs) &&
        o.voteHoldMs >= 0 &&
        o.voteHoldMs < voteTimeoutMs),
    `voteHoldMs must be a number of ms from 0 to below the vote timeout (${voteTimeoutMs}), not ${String(o.voteHoldMs)}`,
  );
  const names = Object.keys(o.resources ?? {});
  check(names.length > 0, 'give at least one resource');
  for (const n of names)
    check(
      resourceNamePattern.test(n),
      `resource name ${JSON.stringify(n)} must match ${resourceNamePattern}`,
    );
  return { F, urls, leaders };
}

/** Asks every acceptor who it is; refuses unreachable ones, another cluster, duplicates, a faster mismatch. */
async function identifyAcceptors(
  transport: PeerTransport,
  urls: string[],
  cluster: string,
  faster: boolean,
): Promise<AcceptorMeta[]> {
  const answers = await Promise.allSettled(urls.map((u) => transport.call(u, '/info', null)));
  const down = urls.filter((_, i) => answers[i]!.status === 'rejected');
  if (down.length > 0)
    throw new DtxError(
      'DTX_RESOURCE_UNAVAILABLE',
      `acceptor(s) unreachable at start: ${down
        .map((u) => `${u} (${((answers[urls.indexOf(u)] as PromiseRejectedResult).reason as Error).message})`)
        .join('; ')}`,
    );
  const metas = answers.map((a) => (a as PromiseFulfilledResult<unknown>).value as AcceptorMeta);
  metas.forEach((m, i) => {
    if (m?.cluster !== cluster)
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `acceptor ${urls[i]} belongs to cluster ${JSON.stringify(m?.cluster)}, not ${JSON.stringify(cluster)}`,
      );
    if (m.faster !== faster)
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `acceptor ${urls[i]} runs ${m.faster ? 'Faster ' : ''}Paxos Commit; this leader was given faster: ${faster}`,
      );
  });
  const ids = metas.map((m) => m.id);
  const dup = ids.findIndex((id, i) => ids.indexOf(id) !== i);
  if (dup >= 0)
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `acceptors ${urls[ids.indexOf(ids[dup]!)]} and ${urls[dup]} are the same acceptor (${ids[dup]})`,
    );
  return metas;
}

export class PaxosCommitCoordinator implements AsyncDisposable {
  readonly protocol = 'paxos-commit';
  private readonly participants: NodeId[];
  /** The lock order of `tx.read`: the participants' name order, the same on every leader process. */
  private readonly ranks: ReadonlyMap<string, number>;
  private readonly acceptorUrl = new Map<NodeId, string>();
  private readonly rms = new Map<string, RmBranch>();
  private readonly live = new Map<TxnId, LiveTxn>();
  private readonly heldVotes = new Map<TxnId, HeldVotes>();
  private readonly voteHoldMs: number;
  /** Prepared branches of others, by gid: when first seen. */
  private readonly seen = new Map<string, number>();
  private readonly incarnation = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  private counter = 0;
  private scanTimer: ReturnType<typeof setInterval> | undefined;
  private scanning = false;
  private closed = false;
  private candidate!: Driver<CandidateState, PaxosCommitMsg, PaxosCommitRecord, Partial<PaxosCommitConfig>>;
  private transport!: PeerTransport;
  private config!: PaxosCommitConfig;
  private failure: unknown;
  /** The acceptor this process hosts (`hostAcceptor`), and its base URL (this process's). */
  private hosted: AcceptorServer | null = null;
  private hostedUrl = '';
  /** Branches this process recovered (took over) and finished. */
  readonly recovered = { committed: 0, rolledBack: 0 };

  private constructor(private readonly options: PaxosCommitCoordinatorOptions) {
    this.participants = Object.keys(options.resources).sort();
    this.voteHoldMs = options.voteHoldMs ?? voteHoldMsDefault;
    this.ranks = new Map(this.participants.map((name, i) => [name, i]));
  }

  get id(): string {
    return this.options.id;
  }

  get cluster(): string {
    return this.options.cluster ?? 'dtx';
  }

  /** The transport's counters (messages sent, batches, dropped). */
  get messageStats(): PeerTransport['stats'] {
    return this.transport.stats;
  }

  /**
   * Protocol messages between the roles of this process, by type (PREPARE
   * and COMMIT from the leader to its RMs, inquiries; with `hostAcceptor`,
   * votes, phase 2b and FORGET notices to and from the hosted acceptor):
   * delivered in-process, so the transport never counts them, yet each is a
   * message of the protocol.
   */
  readonly localMessagesByType: Record<string, number> = {};

  /** Every acceptor's counters (`/stats`), in `acceptors` order; for benchmarks. */
  async acceptorStats(): Promise<import('./acceptor-server.ts').AcceptorStats[]> {
    return Promise.all(
      [...this.acceptorUrl.values()].map(
        async (url) =>
          (await this.transport.call(url, '/stats', null)) as import('./acceptor-server.ts').AcceptorStats,
      ),
    );
  }

  static async create(options: PaxosCommitCoordinatorOptions): Promise<PaxosCommitCoordinator> {
    const { F, urls, leaders } = checkOptions(options);
    const c = new PaxosCommitCoordinator(options);
    const faster = options.faster ?? false;
    const host = options.hostAcceptor;
    c.transport = await PeerTransport.listen({
      cluster: c.cluster,
      listen: options.listen ?? '127.0.0.1:0',
      hosts: [options.id],
      onBatch: (batch) => c.onBatch(batch),
      onWarning: (m) => (options.onWarning ?? ((w: string) => warn(options.logger, {}, w)))(m),
      ...(host === undefined ? {} : { routes: AcceptorServer.routes(() => c.hostedOrGone()) }),
    });
    try {
      if (host !== undefined) {
        c.hostedUrl = baseUrl(options.listen!);
        c.hosted = await AcceptorServer.host({
          dataDir: host.dataDir,
          cluster: c.cluster,
          faster,
          ...(host.syncsInFlight === undefined ? {} : { syncsInFlight: host.syncsInFlight }),
          // Its log failed: this process stops serving its address, as a
          // `dtx acceptor` process exits, so that other leaders suspect it and
          // vote elsewhere; this leader takes no new transaction (a backup
          // finishes those in flight).
          onHalt: (err) => {
            c.failure ??= err;
            void c.transport.close();
          },
          send: (url, item) => c.sendTo(url, item),
        });
      }
      const metas = await identifyAcceptors(c.transport, urls, c.cluster, faster);
      for (const [i, m] of metas.entries()) c.acceptorUrl.set(m.id, urls[i]!);
      c.config = {
        ...defaultPaxosCommitConfig,
        ...paxosRuntimeTiming,
        ...options.timing,
        F,
        acceptors: metas.map((m) => m.id),
        candidates: leaders,
        faster,
        acceptorFanout: options.acceptorFanout ?? 'quorum',
      };
      const roundLog = new AcceptorRoundLog(c.transport, urls, options.id, quorum(c.config));
      c.candidate = new Driver(paxosCandidate, options.id, c.config, {
        log: roundLog,
        send: (to, msg) => c.route(options.id, to, msg),
        outcome: (txn, _client, outcome) => {
          // Decided: a vote still held would only reach the acceptors after the FORGET.
          c.dropVotes(txn);
          c.live.get(txn)?.resolveOutcome(outcome);
        },
        halted: (err) => {
          c.failure = err;
        },
      });
      await c.candidate.start();
      const interval = options.scanIntervalMs ?? 250;
      await c.scan();
      if (interval > 0) {
        c.scanTimer = setInterval(() => void c.scan(), interval);
        c.scanTimer.unref?.();
      }
    } catch (error) {
      await c.transport.close();
      await c.hosted?.close();
      throw error;
    }
    return c;
  }

  private hostedOrGone(): AcceptorServer {
    if (this.hosted === null)
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', 'the hosted acceptor is not open yet');
    return this.hosted;
  }

  /**
   * Sends one item to the process at `url`. The hosted acceptor is this
   * process: what goes to it, and what it sends to this process's nodes, is
   * delivered in-process on the next microtask (no core steps inside
   * another's step), and counted with the in-process messages.
   */
  private sendTo(url: string, item: WireItem, kind: 'message' | 'notice' = 'message'): void {
    if (url !== this.hostedUrl || this.hosted === null) {
      this.transport.send(url, item, kind);
      return;
    }
    if (this.closed) return;
    const { msg } = item;
    this.localMessagesByType[msg.type] = (this.localMessagesByType[msg.type] ?? 0) + 1;
    const hosted = this.hosted;
    const toHosted = item.to === hosted.id;
    queueMicrotask(() => {
      if (this.closed) return;
      if (toHosted)
        hosted.onBatch({
          v: wireVersion,
          cluster: this.cluster,
          origin: this.hostedUrl,
          // As the transport's batches do: the leader's phase 2b goes here even before the leader sent anything.
          hosts: [this.options.id],
          items: [item],
        });
      else if (msg.type !== 'FORGET') this.deliver(item.from, item.to, msg);
    });
  }

  private rmKey(resource: NodeId, txn: TxnId): string {
    return `${resource}|${txn}`;
  }

  private gid(txn: TxnId, resource: string): string {
    return `pc_${this.cluster}_${txn}_${resource}`;
  }

  /** Carries a message from a local node: to an acceptor over HTTP, to a local role in-process. */
  private route(from: NodeId, to: NodeId, msg: PaxosCommitMsg): void {
    const url = this.acceptorUrl.get(to);
    if (url !== undefined) {
      if (msg.type === 'PHASE2A' && msg.bal === 0 && this.holdVote(url, from, to, msg)) return;
      this.sendTo(url, { from, to, msg });
      return;
    }
    this.localMessagesByType[msg.type] = (this.localMessagesByType[msg.type] ?? 0) + 1;
    const sent = msg.type === 'PREPARE' ? this.withVoteOrder(msg) : msg;
    // In-process deliveries wait for the next microtask, so no core is stepped inside another's step.
    queueMicrotask(() => this.deliver(from, to, sent));
  }

  /**
   * The votes (ballot-0 phase 2a) of a transaction this process began leave
   * together once every one of its RMs here has voted: each acceptor then
   * gets them in one batch, writes them in one log transaction and answers
   * with one phase 2b, where votes sent as each prepare ends cost it a batch,
   * a log transaction and often an fsync wait each. The decision needs every
   * vote, so holding the early ones for the last costs it nothing;
   * `voteHoldMs` bounds the wait for an RM that is slow to prepare (its vote
   * then leaves alone). A vote held when the process dies is lost like a vote
   * not yet sent: the transaction aborts, as it would have. Safety does not
   * depend on it (ballot 0 is the RM's alone).
   */
  private holdVote(url: string, from: NodeId, to: NodeId, msg: PaxosCommitMsg): boolean {
    const held = this.heldVotes.get(msg.txn);
    if (held === undefined) return false;
    held.items.push({ url, from, to, msg });
    held.voted.add(from);
    // A NO vote decides alone: it does not wait, and the prepared branches need not either.
    const no = msg.type === 'PHASE2A' && msg.entries.some((e) => e.val === 'aborted');
    if (no || held.voted.size >= this.participants.length) this.releaseVotes(msg.txn);
    else held.timer ??= setTimeout(() => this.releaseVotes(msg.txn), this.voteHoldMs);
    return true;
  }

  /** Stops holding the transaction's votes; returns those held, unsent. */
  private dropVotes(txn: TxnId): HeldVotes | undefined {
    const held = this.heldVotes.get(txn);
    if (held === undefined) return undefined;
    this.heldVotes.delete(txn);
    if (held.timer !== undefined) clearTimeout(held.timer);
    return held;
  }

  /** Sends the transaction's held votes (if any) and stops holding its later ones. */
  private releaseVotes(txn: TxnId): void {
    const held = this.dropVotes(txn);
    if (held === undefined || this.closed) return; // once closed, dropped as a crash would drop them
    for (const { url, from, to, msg } of held.items) this.sendTo(url, { from, to, msg });
  }

  /**
   * A PREPARE whose RM should vote to the acceptors that answer: while the
   * transport suspects any acceptor (it left messages unanswered lately:
   * killed, stopped, cut off), the others go first, so new votes do
   * not wait out the vote timeout and a leader ballot each. The first PREPARE
   * after a failure is sent before it is known; the leader's re-PREPARE at
   * its vote timeout then carries the new order. Safety does not depend on
   * the choice (ballot 0 is the RM's alone).
   */
  private withVoteOrder(msg: Extract<PaxosCommitMsg, { type: 'PREPARE' }>): PaxosCommitMsg {
    if (this.config.acceptorFanout !== 'quorum') return msg;
    // The hosted acceptor goes first: a vote to it stays in this process.
    const first = this.hosted?.id;
    const order: NodeId[] = first === undefined ? [] : [first];
    const suspected: NodeId[] = [];
    for (const acc of this.config.acceptors) {
      if (acc === first) continue;
      if (this.transport.suspected(this.acceptorUrl.get(acc)!)) suspected.push(acc);
      else order.push(acc);
    }
    order.push(...suspected);
    if (order.every((acc, i) => acc === this.config.acceptors[i])) return msg;
    return { ...msg, voteTo: order };
  }

  private deliver(from: NodeId, to: NodeId, msg: PaxosCommitMsg): void {
    if (to === this.options.id) {
      this.candidate.input({ type: 'receive', from, msg });
      return;
    }
    // A message for another leader process is dropped: RMs ask candidates in
    // turn, and the turn comes back to this one.
    this.rms.get(this.rmKey(to, msg.txn))?.input({ type: 'receive', from, msg });
  }

  private onBatch(batch: WireBatch): void {
    const hosted = this.hosted;
    if (hosted !== null) hosted.onBatch(batch); // takes the items addressed to it
    for (const { from, to, msg } of batch.items) {
      if (msg.type === 'FORGET' || to === hosted?.id) continue;
      this.deliver(from, to, msg);
    }
  }

  private rmPorts(txn: TxnId) {
    return {
      send: (from: NodeId, to: NodeId, msg: PaxosCommitMsg) => this.route(from, to, msg),
      finished: (rm: RmBranch, action: 'commit' | 'abort' | 'release') => this.onRmFinished(txn, rm, action),
      warn: (m: string) => (this.options.onWarning ?? ((w: string) => warn(this.options.logger, {}, w)))(m),
    };
  }

  private onRmFinished(txn: TxnId, rm: RmBranch, action: 'commit' | 'abort' | 'release'): void {
    this.rms.delete(this.rmKey(rm.resource, txn));
    const t = this.live.get(txn);
    if (t === undefined) {
      // A branch this process took over.
      if (action === 'commit') this.recovered.committed++;
      else this.recovered.rolledBack++;
      return;
    }
    t.pending.delete(rm);
    if (t.pending.size === 0) t.resolveFinished();
  }

  /**
   * Runs `work` as one transaction over every resource: commits when it
   * returns (resolving once every branch committed), rolls back and rethrows
   * when it throws, and rejects with DTX_ABORTED when the protocol aborts.
   */
  async transaction<T>(
    work: (tx: PaxosTransaction) => Promise<T>,
    options: PaxosTransactionOptions = {},
  ): Promise<T> {
    for (const [name, why] of Object.entries(unsupportedTransactionOptions)) {
      if ((options as Record<string, unknown>)[name] !== undefined)
        throw new DtxError('DTX_UNSUPPORTED', `transaction option ${name}: ${why}`);
    }
    const retries = options.retries ?? 0;
    if (!Number.isSafeInteger(retries) || retries < 0)
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `retries must be a non-negative integer, got ${String(retries)}`,
      );
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.transactionOnce(work, options);
      } catch (error) {
        // Only errors that promise nothing was committed (a lock conflict, an
        // abort) are retryable; DTX_TIMEOUT is not: the outcome is unknown.
        if (attempt >= retries || !isDtxError(error) || !error.retryable) throw error;
        const backoffMs = Math.min(options.backoffMaxMs ?? 1_000, (options.backoffMs ?? 20) * 2 ** attempt);
        await new Promise((r) => setTimeout(r, backoffMs * (0.5 + Math.random())));
      }
    }
  }

  private async transactionOnce<T>(
    work: (tx: PaxosTransaction) => Promise<T>,
    options: PaxosTransactionOptions,
  ): Promise<T> {
    if (this.closed) throw new DtxError('DTX_INVALID_STATE', 'coordinator is closed');
    if (this.failure !== undefined)
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', 'the leader stopped; restart it', {
        cause: this.failure,
      });
    const ordinal = ++this.counter;
    const txn = `${this.options.id}-${this.incarnation}-${ordinal.toString(36)}`;
    const opening = new Map<string, Promise<Branch>>();
    const open = (resource: string): Promise<Branch> => {
      const adapter = this.options.resources[resource];
      if (adapter === undefined)
        return Promise.reject(
          new DtxError('DTX_INVALID_ARGUMENT', `no resource named ${JSON.stringify(resource)}`),
        );
      let p = opening.get(resource);
      if (p === undefined) {
        p = adapter.begin(this.gid(txn, resource));
        opening.set(resource, p);
      }
      return p;
    };
    const reads = new LockOrderedReads(this.ranks);
    const tx: PaxosTransaction = {
      id: txn,
      branch: async <B>(resource: string) => {
        reads.noteUse(resource);
        return (await open(resource)) as B;
      },
      query: async (resource, sql, params) => {
        reads.noteUse(resource);
        const b = (await open(resource)) as SqlBranch;
        if (typeof b.query !== 'function')
          throw new DtxError('DTX_INVALID_ARGUMENT', `resource ${resource} does not run SQL`);
        return b.query(sql, params);
      },
      read: (resource, sql, params = []) =>
        reads.read(resource, sql, params, (r) => open(r) as Promise<LockingReadBranch>),
    };
    let result: T;
    try {
      result = await work(tx);
    } catch (error) {
      await Promise.allSettled([...opening.values()].map((p) => p.then((b) => b.rollback())));
      throw error;
    }
    const branches = new Map<string, Branch>();
    for (const [resource, p] of opening) branches.set(resource, await p);
    return this.commit(txn, ordinal, branches, result, options);
  }

  private async commit<T>(
    txn: TxnId,
    ordinal: number,
    branches: Map<string, Branch>,
    result: T,
    options: PaxosTransactionOptions,
  ): Promise<T> {
    let resolveOutcome!: (o: Outcome) => void;
    let resolveFinished!: () => void;
    const t: LiveTxn = {
      ordinal,
      outcome: new Promise((r) => {
        resolveOutcome = r;
      }),
      resolveOutcome: (o) => resolveOutcome(o),
      pending: new Set(),
      allFinished: new Promise((r) => {
        resolveFinished = r;
      }),
      resolveFinished: () => resolveFinished(),
      prepared: 0,
    };
    this.live.set(txn, t);
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      if (this.voteHoldMs > 0 && this.participants.length > 1)
        this.heldVotes.set(txn, { voted: new Set(), items: [], timer: undefined });
      const config = this.config;
      for (const resource of this.participants) {
        const adapter = this.options.resources[resource]!;
        const branch = branches.get(resource);
        const rm =
          branch === undefined
            ? RmBranch.unused(resource, txn, this.gid(txn, resource), adapter, config, this.rmPorts(txn))
            : RmBranch.live(resource, txn, adapter, branch, config, this.rmPorts(txn));
        this.rms.set(this.rmKey(resource, txn), rm);
        t.pending.add(rm);
        rm.input({ type: 'executed', txn, coordinator: this.options.id, readOnly: false });
      }
      if (this.options.crashPoints !== undefined) this.watchPrepared(t);
      this.candidate.input({ type: 'begin', txn, participants: this.participants, client: appClient });
      const outcome = await (options.timeoutMs === undefined
        ? t.outcome
        : Promise.race([
            t.outcome,
            new Promise<never>((_, reject) => {
              timer = setTimeout(
                () =>
                  reject(
                    new DtxError(
                      'DTX_TIMEOUT',
                      `transaction ${txn}: no outcome within ${options.timeoutMs} ms`,
                    ),
                  ),
                options.timeoutMs,
              );
            }),
          ]));
      await t.allFinished;
      this.forget(txn);
      if (outcome !== 'committed')
        throw new DtxError(
          'DTX_ABORTED',
          `transaction ${txn} aborted (a participant voted no or timed out)`,
          {
            retryable: true,
          },
        );
      return result;
    } finally {
      if (timer !== undefined) clearTimeout(timer);
      this.releaseVotes(txn);
      void t.allFinished.then(() => this.live.delete(txn));
    }
  }

  /** Crash tests: waits until every RM of the transaction is durably prepared, then calls the hook. */
  private watchPrepared(t: LiveTxn): void {
    const poll = setInterval(() => {
      const rms = [...t.pending];
      if (rms.length === this.participants.length && rms.every((rm) => rm.preparedAt !== null)) {
        clearInterval(poll);
        this.options.crashPoints?.point('prepared:all', t.ordinal);
      }
      if (this.closed || rms.length < this.participants.length) clearInterval(poll);
    }, 1);
  }

  /** Every RM applied the outcome: the acceptors may drop the transaction at their next checkpoint. */
  private forget(txn: TxnId): void {
    for (const [id, url] of this.acceptorUrl)
      this.sendTo(url, { from: this.options.id, to: id, msg: { type: 'FORGET', txn } }, 'notice');
  }

  /** Takes over prepared branches of this cluster that nobody here owns once they outlast `takeoverMs`. */
  async scan(): Promise<void> {
    if (this.scanning || this.closed) return;
    this.scanning = true;
    try {
      const prefix = `pc_${this.cluster}_`;
      const now = Date.now();
      const present = new Set<string>();
      for (const resource of this.participants) {
        const adapter = this.options.resources[resource]!;
        let found: { gid: string }[];
        try {
          found = await adapter.listPrepared(prefix);
        } catch {
          continue; // the database is down: its branches wait for it
        }
        for (const { gid } of found) {
          const parts = gid.split('_');
          if (parts.length !== 4 || parts[3] !== resource) continue;
          const txn = parts[2]!;
          if (this.rms.has(this.rmKey(resource, txn))) continue;
          present.add(gid);
          const first = this.seen.get(gid) ?? now;
          this.seen.set(gid, first);
          if (now - first < (this.options.takeoverMs ?? 1000)) continue;
          this.seen.delete(gid);
          const rm = RmBranch.recovered(
            resource,
            txn,
            gid,
            adapter,
            this.participants,
            this.options.id,
            appClient,
            this.config,
            this.rmPorts(txn),
          );
          this.rms.set(this.rmKey(resource, txn), rm);
        }
      }
      for (const gid of this.seen.keys()) if (!present.has(gid)) this.seen.delete(gid);
    } finally {
      this.scanning = false;
    }
  }

  /** Branches of this process's own transactions and taken-over ones not finished yet. */
  get inFlight(): number {
    return this.rms.size;
  }

  /**
   * 2PC's consistent snapshot reads (`Coordinator.snapshot`) rest on the
   * commit fence, which a 2PC coordinator enters before its commit record;
   * here the decision is chosen by the acceptors and applied by RMs in
   * several processes, and nothing fences that yet. DTX_UNSUPPORTED.
   */
  async snapshot(): Promise<never> {
    throw unsupported(
      'snapshot()',
      'no commit fence is held across Paxos Commit decisions; use tx.read (locking reads) or a 2PC coordinator',
    );
  }

  /**
   * The operator API of a 2PC coordinator (`list`, `show`, `retry`,
   * `resolve`, `abandon`, and `dtx txn`) works on its log; Paxos Commit keeps
   * none here (the decision is on the acceptors), and a branch left in doubt
   * is taken over by any leader after `takeoverMs`. Each is DTX_UNSUPPORTED.
   */
  async list(): Promise<never> {
    throw unsupported('list()', operatorWhy);
  }

  async show(): Promise<never> {
    throw unsupported('show()', operatorWhy);
  }

  async retry(): Promise<never> {
    throw unsupported('retry()', operatorWhy);
  }

  async resolve(): Promise<never> {
    throw unsupported('resolve()', operatorWhy);
  }

  async abandon(): Promise<never> {
    throw unsupported('abandon()', operatorWhy);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.scanTimer !== undefined) clearInterval(this.scanTimer);
    for (const txn of [...this.heldVotes.keys()]) this.dropVotes(txn);
    for (const rm of this.rms.values()) rm.close();
    await this.candidate?.close();
    await this.transport.close();
    await this.hosted?.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

const operatorWhy =
  'the decision is kept by the acceptors, not a coordinator log, and a branch left prepared is taken over by any leader after takeoverMs';

function unsupported(what: string, why: string): DtxError {
  return new DtxError('DTX_UNSUPPORTED', `${what} is not available with protocol paxos-commit: ${why}`);
}

export function isPaxosCommitOptions(o: unknown): o is PaxosCommitCoordinatorOptions {
  return typeof o === 'object' && o !== null && (o as { protocol?: unknown }).protocol === 'paxos-commit';
}
