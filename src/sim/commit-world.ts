// The deterministic commit world: on the kernel's virtual time, network and
// partitions (./kernel.ts), disks with fsync latency, group commit and failing
// writes, nodes that crash (losing volatile state and unflushed writes) and
// restart from their durable log, simulated clients, and a resource model per
// participant. It drives the very protocol cores the runtime drives, through
// the same `Role` port, and executes their effects under the ordering rule of
// ../protocol/common/types.ts, kept by the after-persist sequencer
// (../protocol/common/sequencer.ts). What a durable write releases runs as an
// event of its own, so a crash can land between the two.
//
// Everything that happens is decided by the seed: a run is reproducible byte
// for byte (only wall-clock time differs). Checkers (./checkers.ts) watch
// every state change; metrics are measured here.
//
// Reads (workloads bank-audit and append, `--reads`): plain and locking reads
// are the resource model's (./resource.ts). With snapshot reads, a
// transaction that only reads takes no part in the commit protocol: its client
// takes the commit fence (./commit-fence.ts), opens a snapshot on each
// participant (the committed values at that moment), lets the fence go and
// reads; read-write transactions read with locks, and none of their branches
// leaves at PREPARE, so that their read locks last until the outcome (strict
// two-phase locking: a read lock released at PREPARE would let a writer
// commit, and a snapshot see it, before the reader's own writes commit).
//
// Timestamp reads (`--reads timestamp`, 2PC): every node has a physical clock,
// virtual time plus an offset drawn from the seed within ±`clockSkewMs`, and a
// hybrid logical clock (../protocol/common/hlc.ts) that every message between
// nodes carries. A participant's prepare timestamp is its clock when its
// prepared record is durable, stamped on its YES; the coordinator core takes
// the latest as the commit timestamp, into its commit record and its COMMITs;
// rows keep versions by commit timestamp (./resource.ts). A read-only
// transaction takes a snapshot timestamp from the clock of its first
// participant's node (where its client runs) and reads each participant's
// versions at it, without locks, waiting only for prepared writers at or
// before it. With `commitWait`, the coordinator acknowledges a commit only
// once its clock is past the commit timestamp plus the uncertainty (twice the
// skew), and a read-only transaction returns only once its node's clock is
// past its snapshot timestamp plus the same (Spanner's commit wait, and its
// reads' wait for safe time): then whatever completed before a transaction
// began has a timestamp below the one it takes. Without it, a client can be
// told of a commit that a reader on a slower clock then does not see.

import { assert } from '../protocol/common/assert.ts';
import { type Hlc, hlcNow, hlcUpdate, hlcZero } from '../protocol/common/hlc.ts';
import { AfterPersistSequencer, type SequencedWrite } from '../protocol/common/sequencer.ts';
import type { Effect, Input, NodeId, Outcome } from '../protocol/common/types.ts';
import { Checkers } from './checkers.ts';
import { SimCommitFence } from './commit-fence.ts';
import type { HistoryOp, ReadMode } from './isolation.ts';
import {
  clientId,
  type FaultOptions,
  firstOwnEventKind,
  incarnationConfig,
  type NetworkOptions,
  type SimEvent,
  SimKernel,
} from './kernel.ts';
import type { NodeSpec, SimProtocol } from './protocols.ts';
import { type Op, type ReadResult, ResourceModel, writes } from './resource.ts';
import type { Workload } from './workloads.ts';

export type { FaultOptions, NetworkOptions } from './kernel.ts';

export interface Scenario {
  kind: 'coordinator-crash';
  /** Virtual time the coordinator stays down. */
  downtimeMs: number;
}

export interface CommitWorldOptions {
  protocol: SimProtocol;
  workload: Workload;
  seed: number;
  txns: number;
  network: NetworkOptions;
  faults: FaultOptions;
  /** Latency of a flush that includes a forced write. */
  fsyncMs: number;
  /** Latency of a flush of lazy writes only. */
  lazyFlushMs: number;
  /** Probability that a forced write on that participant fails. */
  failRates: ReadonlyMap<NodeId, number>;
  scenario: Scenario | null;
  /** How long after the faults heal every transaction must be final. */
  livenessBoundMs: number;
  clientExecTimeoutMs: number;
  clientOutcomeTimeoutMs: number;
  /**
   * Mean pause (exponential) of each client between the end of one
   * transaction and the start of its next; 0: back to back (a saturated,
   * closed-loop load).
   */
  clientThinkMs: number;
  /** When set, every event worth drawing is appended here (for space-time pictures). */
  trace: TraceEvent[] | null;
  /** What reads do (workloads that read; plain otherwise). */
  reads: ReadMode;
  /** Per-node clocks and commit timestamps (timestamp reads), or null: no clock is drawn or read. */
  clocks: ClockOptions | null;
}

export interface ClockOptions {
  /** Each node's clock is virtual time plus an offset drawn uniformly in [-skew, skew). */
  skewMs: number;
  /** Acknowledge a commit (and return a read-only transaction) only once the clock is past its timestamp plus twice the skew. */
  commitWait: boolean;
}

export type TraceEvent =
  | { t: number; kind: 'send'; from: NodeId; to: NodeId; msg: string; arrive: number | null; dup: boolean }
  | { t: number; kind: 'persist'; node: NodeId; record: string; force: boolean; ok: boolean }
  | { t: number; kind: 'crash' | 'restart'; node: NodeId }
  | { t: number; kind: 'lock'; node: NodeId; txn: string; heldFrom: number }
  | { t: number; kind: 'rm'; node: NodeId; txn: string; state: string }
  | { t: number; kind: 'outcome'; txn: string; outcome: Outcome }
  /** A transaction's reads at one participant (or its snapshot there): what it saw. */
  | { t: number; kind: 'read'; node: NodeId; txn: string; values: string };

type AnyEffect = Effect<unknown, unknown>;

type PendingWrite = SequencedWrite<unknown>;

interface SimNode {
  spec: NodeSpec;
  index: number;
  up: boolean;
  epoch: number;
  state: unknown;
  timers: Map<string, number>;
  durable: unknown[];
  /** When each transaction's prepared record became durable here (for `inDoubtMs`). */
  preparedAt: Map<string, number>;
  /** A flush for lazy writes alone is scheduled. */
  lazyFlushArmed: boolean;
  /** Compact the log when it reaches this length (a checkpoint). */
  compactAt: number;
  queued: PendingWrite[];
  flushing: PendingWrite[] | null;
  sequencer: AfterPersistSequencer<AnyEffect>;
  releaseArmed: boolean;
  failRate: number;
  resource: ResourceModel | null;
  /** A restart is already scheduled (by the scenario or a random crash). */
  restartAt: number;
  pinnedRestart: boolean;
  /** Its physical clock's offset from virtual time (0 without clocks). */
  clockOffsetMs: number;
  /** Its hybrid logical clock (timestamp reads). Kept over a crash, as a node would persist an upper bound. */
  hlc: Hlc;
  /** Timestamp reads waiting here for a prepared writer's outcome (volatile). */
  waitingReads: Extract<AppMsg, { type: 'readAt' }>[];
}

interface ClientTxn {
  id: string;
  age: number;
  ops: Map<NodeId, Op[]>;
  participants: NodeId[];
  pendingExec: Set<NodeId>;
  failed: boolean;
  commitRequestedAt: number;
  done: boolean;
  /** Every op reads (an audit, a read-only append transaction). */
  readOnly: boolean;
  /** What its reads returned so far. */
  reads: ReadResult[];
  /** With snapshot reads, a read-only transaction's fence request (-1: none). */
  snapshotRequest: number;
  /** With timestamp reads, a read-only transaction's snapshot timestamp and the node whose clock gave it. */
  snapshotTs?: { ts: Hlc; node: SimNode };
  startedAt: number;
}

type AppMsg =
  | {
      type: 'exec';
      txn: string;
      age: number;
      ops: Op[];
      coordinator: NodeId;
      /** False: a branch of a transaction that writes elsewhere, which must not leave at PREPARE. */
      mayLeave?: false;
    }
  | { type: 'execReply'; txn: string; node: NodeId; ok: boolean; reads?: readonly ReadResult[] }
  | { type: 'openSnapshot'; txn: string; ops: Op[] }
  | { type: 'snapshot'; txn: string; node: NodeId; reads: ReadResult[] }
  /** Timestamp reads: read `ops` here at snapshot timestamp `ts`. */
  | { type: 'readAt'; txn: string; ops: Op[]; ts: Hlc }
  | { type: 'abandon'; txn: string }
  | { type: 'begin'; txn: string; participants: NodeId[] }
  | { type: 'outcome'; txn: string; outcome: Outcome };

// This world's own event kinds (see SimKernel): pooled records, like the
// kernel's, for the frequent ones.
const evFlush = firstOwnEventKind;
const evExecuted = firstOwnEventKind + 1;
const evClientExecTimeout = firstOwnEventKind + 2;
const evClientOutcomeTimeout = firstOwnEventKind + 3;
/** Records a log holds before the first checkpoint; later ones come when it doubles. */
const logCompactionMin = 4096;

/** What the reading workloads measured. */
export interface IsolationTally {
  audits: number;
  inconsistentAudits: number;
  /** The first few inconsistent audits, for reports: transaction and total seen. */
  wrongAudits: { txn: string; total: number }[];
  /** The recorded history (append), or null. */
  history: HistoryOp[] | null;
}

export interface CommitWorldMetrics {
  commitLatencyMs: number[];
  lockHeldMs: number[];
  inDoubtMs: number[];
  queuedBehindLocks: number;
  lockWaitMs: number[];
  protocolMessages: number;
  ackMessages: number;
  forcedWrites: number;
  crashes: number;
  events: number;
}

export class CommitWorld extends SimKernel<SimNode, AnyEffect> {
  readonly checkers: Checkers;
  readonly metrics: CommitWorldMetrics;
  readonly coordinator: NodeId;
  private readonly clientTxns = new Map<string, ClientTxn>();
  private txnsStarted = 0;
  private scenarioFired = false;
  readonly opts: CommitWorldOptions;
  /** The commit fence, with snapshot reads. */
  readonly fence: SimCommitFence | null;
  readonly isolation: IsolationTally;
  /** The conserved total the audits compare with. */
  private readonly initialTotal: number;
  /** Timestamp reads: the HLC each message between nodes carries. */
  private readonly stamps = new WeakMap<object, Hlc>();
  /** Timestamp reads: the commit timestamp of each transaction a coordinator logged a commit for. */
  private readonly commitTsOf = new Map<string, Hlc>();
  /** Read-only transactions' latency (snapshot and timestamp reads), and how long acknowledgements waited for the clock. */
  readonly clockMetrics = { readOnlyLatencyMs: [] as number[], commitWaitMs: [] as number[] };

  constructor(opts: CommitWorldOptions) {
    const extra = opts.protocol.nodes(opts.workload.participants);
    assert(extra.length > 0, 'a protocol needs at least one node that takes client requests');
    // A protocol may run its coordinator on a participant's node (Paxos
    // Commit's co-located leader): that node is the participant, once.
    const specs: NodeSpec[] = [
      ...extra.filter((e) => !opts.workload.participants.includes(e.id)),
      ...opts.workload.participants.map(
        (id): NodeSpec => ({
          id,
          kind: 'participant',
          role: opts.protocol.participantRole,
          config: opts.protocol.participantConfig,
        }),
      ),
    ];
    const metrics: CommitWorldMetrics = {
      commitLatencyMs: [],
      lockHeldMs: [],
      inDoubtMs: [],
      queuedBehindLocks: 0,
      lockWaitMs: [],
      protocolMessages: 0,
      ackMessages: 0,
      forcedWrites: 0,
      crashes: 0,
      events: 0,
    };
    super(opts.seed, opts.network, opts.faults, specs.length, metrics);
    this.metrics = metrics;
    this.opts = opts;
    const F = opts.protocol.acceptorFaultsTolerated;
    this.checkers = new Checkers(opts.protocol.atomic, F === undefined ? Infinity : F + 1);
    this.coordinator = extra[0]!.id;
    const trace = opts.trace;
    if (trace !== null) {
      this.onSend = (from, to, msg, arrive, dup) =>
        trace.push({ t: this.now, kind: 'send', from, to, msg: describe(msg), arrive, dup });
    }
    specs.forEach((spec, index) => {
      const node: SimNode = {
        spec,
        index,
        up: true,
        epoch: 0,
        state: spec.role.init(spec.id, incarnationConfig(spec.config, 0)),
        timers: new Map(),
        durable: [],
        compactAt: logCompactionMin,
        lazyFlushArmed: false,
        preparedAt: new Map(),
        queued: [],
        flushing: null,
        sequencer: new AfterPersistSequencer(),
        releaseArmed: false,
        failRate: opts.failRates.get(spec.id) ?? 0,
        resource: null,
        restartAt: -1,
        pinnedRestart: false,
        clockOffsetMs: 0,
        hlc: hlcZero,
        waitingReads: [],
      };
      if (spec.kind === 'participant') {
        node.resource = new ResourceModel(
          opts.workload.initialRows(spec.id),
          {
            now: () => this.now,
            wound: (txn) => this.at(this.now, () => this.step(node, { type: 'wounded', txn })),
            lockReleased: (txn, heldMs) => {
              this.metrics.lockHeldMs.push(heldMs);
              if (this.opts.trace)
                this.opts.trace.push({
                  t: this.now,
                  kind: 'lock',
                  node: spec.id,
                  txn,
                  heldFrom: this.now - heldMs,
                });
            },
            queued: () => this.metrics.queuedBehindLocks++,
            waited: (ms) => this.metrics.lockWaitMs.push(ms),
          },
          opts.reads === 'plain' ? 'plain' : 'locking',
          opts.reads === 'timestamp',
        );
      }
      this.nodes.set(spec.id, node);
    });
    this.fence = opts.reads === 'snapshot' ? new SimCommitFence((run) => this.at(this.now, run)) : null;
    assert((opts.reads === 'timestamp') === (opts.clocks !== null), 'clocks go with timestamp reads');
    assert(
      opts.clocks === null || opts.protocol.timestamps !== undefined,
      'timestamp reads need commit timestamps',
    );
    // Drawn only with clocks, and then before anything else, so that runs without them draw what they always drew.
    const skew = opts.clocks?.skewMs ?? 0;
    if (skew > 0) for (const node of this.nodes.values()) node.clockOffsetMs = this.rng.between(-skew, skew);
    this.isolation = {
      audits: 0,
      inconsistentAudits: 0,
      wrongAudits: [],
      history: opts.workload.name === 'append' ? [] : null,
    };
    this.initialTotal = this.total();
  }

  // ------------------------------------------------------------------ steps

  protected override send(from: NodeId, to: NodeId, msg: unknown, protocol: boolean): void {
    // Acknowledgements of a decision, counted apart as Gray & Lamport do.
    if (protocol && (msg as { type?: string }).type === 'ACK') this.metrics.ackMessages++;
    if (this.opts.clocks !== null && from !== clientId && typeof msg === 'object' && msg !== null)
      this.stamps.set(msg, this.tick(this.nodes.get(from)!));
    super.send(from, to, msg, protocol);
  }

  protected receive(node: SimNode, from: NodeId, msg: unknown, protocol: boolean): void {
    if (this.opts.clocks !== null) this.onStamped(node, msg, protocol);
    if (protocol) this.step(node, { type: 'receive', from, msg });
    else this.onAppMessage(node, from, msg as AppMsg);
  }

  // ----------------------------------------------------------------- clocks

  /** The node's physical clock: virtual time plus its offset. */
  private physicalMs(node: SimNode): number {
    return this.now + node.clockOffsetMs;
  }

  /** A local event or a send at `node`: its next HLC timestamp. */
  private tick(node: SimNode): Hlc {
    node.hlc = hlcNow(node.hlc, this.physicalMs(node));
    return node.hlc;
  }

  private observe(node: SimNode, ts: Hlc): void {
    node.hlc = hlcUpdate(node.hlc, ts, this.physicalMs(node));
  }

  /** A message arrived: the clock takes in its timestamp; a COMMIT tells a participant its commit timestamp. */
  private onStamped(node: SimNode, msg: unknown, protocol: boolean): void {
    const stamp = typeof msg === 'object' && msg !== null ? this.stamps.get(msg) : undefined;
    if (stamp !== undefined) this.observe(node, stamp);
    if (!protocol || node.resource === null) return;
    const ts = this.opts.protocol.timestamps!.commitTs(msg);
    if (ts === undefined) return;
    this.observe(node, ts);
    node.resource.setCommitTs((msg as { txn: string }).txn, ts);
  }

  /**
   * When a clock reading `ts` is safely in the past at `node`: its clock past
   * `ts` plus the uncertainty (any two clocks differ by less than twice the
   * skew), in virtual time. Without commit wait: now.
   */
  private waitedUntil(node: SimNode, ts: Hlc): number {
    const clocks = this.opts.clocks;
    if (clocks === null || !clocks.commitWait) return this.now;
    return Math.max(this.now, ts.wallMs + 2 * clocks.skewMs - node.clockOffsetMs);
  }

  protected step(node: SimNode, input: Input<unknown>): void {
    if (!node.up) return;
    // The cores update their state in place: a step the fence may hold back needs a copy to undo it.
    const before =
      this.fence?.holdsBackCommits() && this.mayTellCommit(node) ? structuredClone(node.state) : undefined;
    const { state, effects } = node.spec.role.step(node.state, input);
    if (this.fence !== null && !this.admit(node, input, effects)) {
      assert(before !== undefined, 'the fence held back a step while it admitted commits');
      node.state = before;
      return;
    }
    node.state = state;
    const scenario = this.opts.scenario;
    if (
      scenario?.kind === 'coordinator-crash' &&
      !this.scenarioFired &&
      node.spec.id === this.coordinator &&
      this.opts.protocol.isDecisionStep(effects)
    ) {
      // Every vote is in and the decision is about to be made durable: crash
      // before any of it happens, and stay down for the scenario's downtime.
      this.scenarioFired = true;
      return this.crash(node, scenario.downtimeMs, true);
    }
    this.execute(node, effects, true);
    if (this.opts.protocol.invariants !== undefined) this.checkInvariants(input);
  }

  /**
   * The commit fence: a step that starts a transaction's commit phase may
   * go on only once the fence admits it; until then it is not taken (the
   * node's state stays as it was), and it is taken again, from the node's
   * state then, when the fence lets commits through.
   */
  private admit(node: SimNode, input: Input<unknown>, effects: readonly AnyEffect[]): boolean {
    const fence = this.fence!;
    const tells = this.opts.protocol.commitTells;
    let starts: string | undefined;
    for (const e of effects) {
      if (e.type !== 'send' && e.type !== 'sendAfterPersist') continue;
      const msg = e.msg as { type?: string; txn?: string };
      if (msg.txn === undefined || !tells.includes(msg.type ?? '')) continue;
      if (msg.txn === starts || fence.isHeld(msg.txn) || !this.checkers.unfinished(msg.txn)) continue;
      assert(starts === undefined, 'one step starts the commit phase of one transaction at most');
      starts = msg.txn;
    }
    if (starts === undefined) return true;
    const epoch = node.epoch;
    return fence.enterCommit(starts, () => {
      if (node.epoch !== epoch || !node.up) return;
      // A timer armed again meanwhile supersedes the expiry that waited.
      if (input.type === 'timeout' && node.timers.has(input.timer)) return;
      this.step(node, input);
    });
  }

  /** Whether the node's core may send a participant what starts a commit phase (see SimProtocol.commitTells). */
  private mayTellCommit(node: SimNode): boolean {
    return (
      node.spec.kind !== 'participant' ||
      node.spec.id === this.coordinator ||
      this.opts.protocol.participantsTellCommit === true
    );
  }

  /** The crash model, but never more than `acceptorsDownMax` acceptors down at once. */
  protected override crashPoint(node: SimNode, count: number): number {
    const at = super.crashPoint(node, count);
    if (node.spec.acceptor && this.acceptorsDown() >= (this.opts.faults.acceptorsDownMax ?? Infinity))
      return -1;
    return at;
  }

  private acceptorsDown(): number {
    let n = 0;
    for (const node of this.nodes.values()) if (node.spec.acceptor && !node.up) n++;
    return n;
  }

  /** The protocol's own invariants (e.g. Paxos acceptor state), over every node that is up. */
  private checkInvariants(input: Input<unknown>): void {
    // The transaction the step concerns: timers are named `<what>:<txn>` by
    // every core (see TimerId), and a failed write concerns the transaction of
    // its record. Without one (a Paxos candidate's `round` record), every
    // transaction is checked.
    const txn =
      input.type === 'receive'
        ? (input.msg as { txn?: string }).txn
        : input.type === 'timeout'
          ? input.timer.slice(input.timer.indexOf(':') + 1)
          : input.type === 'persistFailed'
            ? (input.record as { txn?: string }).txn
            : (input as { txn?: string }).txn;
    const states: unknown[] = [];
    for (const n of this.nodes.values()) if (n.up) states.push(n.state);
    for (const problem of this.opts.protocol.invariants!(states, txn)) {
      this.checkers.invariant(txn ?? '*', problem);
    }
  }

  protected apply(node: SimNode, e: AnyEffect): void {
    switch (e.type) {
      case 'send':
      case 'sendAfterPersist':
        if (this.opts.protocol.votes !== undefined)
          for (const v of this.opts.protocol.votes(e.msg)) this.checkers.voted(node.spec.id, v);
        this.send(node.spec.id, e.to, this.opts.clocks === null ? e.msg : this.stampVote(node, e.msg), true);
        return;
      case 'setTimer':
        this.setTimer(node, e.timer, e.delayMs);
        return;
      case 'cancelTimer':
        node.timers.delete(e.timer);
        return;
      case 'resource':
        this.applyResource(node, e.txn, e.action);
        return;
      case 'reportOutcome': {
        const ts = e.outcome === 'committed' ? this.commitTsOf.get(e.txn) : undefined;
        const until = ts === undefined ? this.now : this.waitedUntil(node, ts);
        if (ts !== undefined && this.opts.clocks?.commitWait)
          this.clockMetrics.commitWaitMs.push(until - this.now);
        if (until <= this.now) return this.reportOutcome(node, e);
        // Commit wait: the client hears of the commit once no clock can still read before its timestamp.
        const epoch = node.epoch;
        this.at(until, () => {
          if (node.epoch === epoch) this.reportOutcome(node, e);
        });
        return;
      }
      case 'persist':
        assert(false, 'persist effects are executed by execute()');
    }
  }

  private reportOutcome(node: SimNode, e: Extract<AnyEffect, { type: 'reportOutcome' }>): void {
    this.commitTsOf.delete(e.txn);
    this.checkers.outcome(e.txn, e.outcome);
    this.send(node.spec.id, e.client, { type: 'outcome', txn: e.txn, outcome: e.outcome }, false);
  }

  /** A participant's YES carries its prepare timestamp (the core has no clock). */
  private stampVote(node: SimNode, msg: unknown): unknown {
    const timestamps = this.opts.protocol.timestamps!;
    const txn = node.resource === null ? undefined : timestamps.yesVote(msg);
    if (txn === undefined) return msg;
    return timestamps.withPrepareTs(msg, node.resource!.prepareTsOf(txn) ?? this.tick(node));
  }

  private applyResource(node: SimNode, txn: string, action: 'commit' | 'abort' | 'release'): void {
    const model = node.resource;
    assert(model !== null, `${node.spec.id} has no resource manager`);
    const applied = action === 'commit' ? model.commit(txn) : model.abort(txn);
    if (!applied) return;
    const state = action === 'commit' ? 'committed' : action === 'abort' ? 'aborted' : 'left';
    this.observeRm(node, txn, state);
  }

  private observeRm(
    node: SimNode,
    txn: string,
    state: 'working' | 'prepared' | 'committed' | 'aborted' | 'left',
  ): void {
    if (state === 'prepared') node.preparedAt.set(txn, this.now);
    else if (state !== 'working') {
      const since = node.preparedAt.get(txn);
      if (since !== undefined) {
        this.metrics.inDoubtMs.push(this.now - since);
        node.preparedAt.delete(txn);
      }
    }
    if (this.opts.trace) this.opts.trace.push({ t: this.now, kind: 'rm', node: node.spec.id, txn, state });
    this.checkers.rm(txn, node.spec.id, state);
    if (this.fence !== null && state !== 'working' && state !== 'prepared' && !this.checkers.unfinished(txn))
      this.fence.finished(txn);
    // A writer's outcome may be what a timestamp read waits for.
    if (node.waitingReads.length > 0 && state !== 'working' && state !== 'prepared') {
      const epoch = node.epoch;
      this.at(this.now, () => {
        if (node.epoch !== epoch) return;
        const waiting = node.waitingReads;
        node.waitingReads = [];
        for (const msg of waiting) this.serveReadAt(node, msg);
      });
    }
  }

  // ------------------------------------------------------------------- disk

  /**
   * A forced write starts a flush at once (or joins the next one, if a flush
   * is under way: group commit). A lazy write only waits in the buffer: it
   * goes out with the next flush, or on its own after `lazyFlushMs`.
   */
  protected persist(node: SimNode, write: PendingWrite): void {
    if (write.force) this.metrics.forcedWrites++;
    if (this.opts.clocks !== null) {
      const ts = this.opts.protocol.timestamps!.commitTs(write.record);
      if (ts !== undefined) this.commitTsOf.set((write.record as { txn: string }).txn, ts);
    }
    node.queued.push(write);
    if (node.flushing !== null) return;
    if (write.force) this.startFlush(node);
    else this.armLazyFlush(node);
  }

  private armLazyFlush(node: SimNode): void {
    if (node.lazyFlushArmed) return;
    node.lazyFlushArmed = true;
    const epoch = node.epoch;
    this.at(this.now + this.opts.lazyFlushMs, () => {
      if (node.epoch !== epoch) return;
      node.lazyFlushArmed = false;
      if (node.flushing === null && node.queued.length > 0) this.startFlush(node);
    });
  }

  private startFlush(node: SimNode): void {
    const batch = node.queued;
    node.queued = [];
    node.flushing = batch;
    this.schedule(this.now + this.opts.fsyncMs, evFlush, node, node.epoch).a = batch;
  }

  private flushDone(node: SimNode, batch: PendingWrite[]): void {
    node.flushing = null;
    const failures: Input<unknown>[] = [];
    for (const w of batch) {
      // An earlier write of this node failed and took this one with it.
      const taken = !node.sequencer.isPending(w.seq);
      // Failing writes are a fault like the others: they stop when the faults heal.
      const ok = !taken && !(w.force && this.faultsOn && this.rng.chance(node.failRate));
      if (this.opts.trace) {
        this.opts.trace.push({
          t: this.now,
          kind: 'persist',
          node: node.spec.id,
          record: describe(w.record),
          force: w.force,
          ok,
        });
      }
      if (!ok) {
        if (!taken) failures.push(...node.sequencer.failed(w.seq).inputs);
        continue;
      }
      node.sequencer.durable(w.seq);
      node.durable.push(w.record);
      if (node.durable.length >= node.compactAt) {
        node.durable = this.opts.protocol.compact(node.spec.kind, node.durable);
        node.compactAt = 2 * node.durable.length + logCompactionMin;
      }
      const info = this.opts.protocol.recordInfo(w.record);
      if (info.prepared && node.resource !== null) {
        // Work that was given up while its prepared record was in flight (an
        // ABORT overtook the write) stays given up: the record is moot.
        const txn = (w.record as { txn: string }).txn;
        if (node.resource.has(txn)) {
          node.resource.markPrepared(txn, this.opts.clocks === null ? undefined : this.tick(node));
          this.observeRm(node, txn, 'prepared');
        }
      }
    }
    if (failures.length > 0) node.queued = node.queued.filter((w) => node.sequencer.isPending(w.seq));
    if (node.sequencer.releasable) this.armRelease(node);
    // Writes that queued behind this flush go next; lazy ones alone wait for their timer.
    if (node.queued.length > 0) {
      if (node.queued.some((w) => w.force)) this.startFlush(node);
      else this.armLazyFlush(node);
    }
    for (const input of failures) this.step(node, input);
  }

  // ------------------------------------------------------- crash and restart

  /** Crash `node`: volatile state, timers and unflushed writes are lost; the durable log survives. */
  crash(node: SimNode, downtimeMs?: number, pinned = false): void {
    if (!node.up) return;
    this.metrics.crashes++;
    this.markDown(node);
    node.state = null;
    node.queued = [];
    node.flushing = null;
    node.lazyFlushArmed = false;
    node.sequencer.crash();
    node.releaseArmed = false;
    node.waitingReads = [];
    if (this.opts.trace) this.opts.trace.push({ t: this.now, kind: 'crash', node: node.spec.id });
    if (node.resource !== null) {
      for (const txn of node.resource.crash()) this.observeRm(node, txn, 'aborted');
    }
    this.scheduleRestart(node, downtimeMs, pinned);
  }

  restart(node: SimNode): void {
    if (!this.markUp(node)) return;
    if (this.opts.trace) this.opts.trace.push({ t: this.now, kind: 'restart', node: node.spec.id });
    const config = incarnationConfig(node.spec.config, node.epoch);
    const { state, effects } = node.spec.role.recover(node.spec.id, config, node.durable);
    node.state = state;
    if (node.spec.kind === 'participant')
      this.checkers.recovered(node.spec.id, this.opts.protocol.inDoubt(state));
    this.execute(node, effects, false);
  }

  // ----------------------------------------------------------------- client

  protected startClient(): void {
    if (this.txnsStarted >= this.opts.txns) {
      this.clientsActive--;
      return;
    }
    const seq = ++this.txnsStarted;
    const id = `t${seq}`;
    const ops = this.opts.workload.next(this.rng);
    const participants = [...ops.keys()];
    const reading = this.opts.workload.reads === true;
    const readOnly = reading && [...ops.values()].every((list) => list.every((op) => op.read === true));
    const t: ClientTxn = {
      id,
      age: seq,
      ops,
      participants,
      pendingExec: new Set(participants),
      failed: false,
      commitRequestedAt: -1,
      done: false,
      readOnly,
      reads: [],
      snapshotRequest: -1,
      startedAt: this.now,
    };
    this.clientTxns.set(id, t);
    this.recordHistory(t, 'invoke');
    this.schedule(this.now + this.opts.clientExecTimeoutMs, evClientExecTimeout, null, 0).a = t;
    if (readOnly && this.fence !== null) return this.startSnapshot(t);
    if (readOnly && this.opts.clocks !== null) return this.startTimestampRead(t);
    this.checkers.register(id, participants);
    for (const p of participants) {
      this.send(
        clientId,
        p,
        {
          type: 'exec',
          txn: id,
          age: seq,
          ops: ops.get(p)!,
          coordinator: this.coordinator,
          ...(reading && !readOnly ? { mayLeave: false as const } : {}),
        },
        false,
      );
    }
  }

  /** Snapshot reads: take the fence, open a snapshot on every participant, let the fence go. */
  private startSnapshot(t: ClientTxn): void {
    t.snapshotRequest = this.fence!.requestSnapshot(() => {
      if (t.done) return;
      for (const p of t.participants)
        this.send(clientId, p, { type: 'openSnapshot', txn: t.id, ops: t.ops.get(p)! }, false);
    });
  }

  /** Timestamp reads: the snapshot timestamp is the clock of the node the client runs on (its first participant's). */
  private startTimestampRead(t: ClientTxn): void {
    const node = this.nodes.get(t.participants[0]!)!;
    const ts = this.tick(node);
    t.snapshotTs = { ts, node };
    for (const p of t.participants)
      this.send(clientId, p, { type: 'readAt', txn: t.id, ops: t.ops.get(p)!, ts }, false);
  }

  /** Every participant answered a timestamp read: done, once its timestamp is safely past (commit wait). */
  private finishTimestampRead(t: ClientTxn, snapshot: { ts: Hlc; node: SimNode }): void {
    const until = this.waitedUntil(snapshot.node, snapshot.ts);
    const done = () => {
      this.clockMetrics.readOnlyLatencyMs.push(this.now - t.startedAt);
      this.finishClientTxn(t, 'ok');
    };
    if (until <= this.now) return done();
    t.commitRequestedAt = this.now; // its reads are in: no longer abandoned for being slow
    this.at(until, done);
  }

  /** A timestamp read at this participant: served now, or once no prepared writer at or before it remains. */
  private serveReadAt(node: SimNode, msg: Extract<AppMsg, { type: 'readAt' }>): void {
    const reads = node.resource!.readAt(msg.ops, msg.ts);
    if (reads === null) {
      node.waitingReads.push(msg);
      return;
    }
    this.traceReads(node, msg.txn, reads);
    this.send(node.spec.id, clientId, { type: 'snapshot', txn: msg.txn, node: node.spec.id, reads }, false);
  }

  private abandon(t: ClientTxn): void {
    t.failed = true;
    t.done = true;
    if (t.snapshotRequest >= 0) this.fence!.endSnapshot(t.snapshotRequest);
    else for (const p of t.participants) this.send(clientId, p, { type: 'abandon', txn: t.id }, false);
    this.recordHistory(t, 'fail');
    this.clientTxns.delete(t.id);
    this.nextClientTxn();
  }

  /** What a reading workload records when a transaction ends: the audit's verdict, the history's completion. */
  private recordHistory(t: ClientTxn, type: HistoryOp['type']): void {
    if (type === 'ok' && t.readOnly && this.opts.workload.name === 'bank-audit') {
      let total = 0;
      for (const r of t.reads) total += r.value;
      const iso = this.isolation;
      iso.audits++;
      if (total !== this.initialTotal) {
        iso.inconsistentAudits++;
        if (iso.wrongAudits.length < 5) iso.wrongAudits.push({ txn: t.id, total });
      }
    }
    const history = this.isolation.history;
    if (history === null) return;
    const ops: Op[] = [];
    for (const list of t.ops.values()) ops.push(...list);
    ops.sort((a, b) => a.seq! - b.seq!);
    const value: HistoryOp['value'] = ops.map((op) => {
      if (op.append !== undefined) return ['append', Number(op.key), op.append];
      const read = type === 'ok' ? t.reads.find((r) => r.seq === op.seq) : undefined;
      return ['r', Number(op.key), read === undefined ? null : read.list.slice()];
    });
    history.push({ index: history.length, process: t.age, type, value });
  }

  private finishClientTxn(t: ClientTxn, type: 'ok' | 'fail' | 'info'): void {
    if (t.done) return;
    this.recordHistory(t, type);
    t.done = true;
    this.clientTxns.delete(t.id);
    this.nextClientTxn();
  }

  private nextClientTxn(): void {
    this.nextClient(this.opts.clientThinkMs, this.txnsStarted < this.opts.txns);
  }

  protected onClientMessage(message: unknown): void {
    const msg = message as AppMsg;
    const t = this.clientTxns.get(msg.txn);
    if (t === undefined || t.done) return;
    if (msg.type === 'snapshot') {
      if (!t.pendingExec.delete(msg.node)) return;
      t.reads.push(...msg.reads);
      if (t.pendingExec.size > 0) return;
      if (t.snapshotTs !== undefined) return this.finishTimestampRead(t, t.snapshotTs);
      this.fence!.endSnapshot(t.snapshotRequest);
      this.clockMetrics.readOnlyLatencyMs.push(this.now - t.startedAt);
      this.finishClientTxn(t, 'ok');
    } else if (msg.type === 'execReply') {
      if (!msg.ok) return this.abandon(t);
      if (msg.reads !== undefined && t.pendingExec.has(msg.node)) t.reads.push(...msg.reads);
      t.pendingExec.delete(msg.node);
      if (t.pendingExec.size > 0 || t.commitRequestedAt >= 0) return;
      t.commitRequestedAt = this.now;
      this.send(
        clientId,
        this.coordinator,
        { type: 'begin', txn: t.id, participants: t.participants.slice() },
        false,
      );
      this.schedule(this.now + this.opts.clientOutcomeTimeoutMs, evClientOutcomeTimeout, null, 0).a = t;
    } else if (msg.type === 'outcome') {
      if (t.commitRequestedAt < 0) return;
      if (msg.outcome === 'committed') this.metrics.commitLatencyMs.push(this.now - t.commitRequestedAt);
      if (this.opts.trace)
        this.opts.trace.push({ t: this.now, kind: 'outcome', txn: t.id, outcome: msg.outcome });
      this.finishClientTxn(
        t,
        msg.outcome === 'committed' ? 'ok' : msg.outcome === 'aborted' ? 'fail' : 'info',
      );
    }
  }

  private execReply(
    node: SimNode,
    epoch: number,
    to: NodeId,
    txn: string,
    ok: boolean,
    reads?: readonly ReadResult[],
  ): void {
    if (node.epoch !== epoch) return;
    const msg: AppMsg = { type: 'execReply', txn, ok, node: node.spec.id };
    if (reads !== undefined && reads.length > 0) {
      msg.reads = reads;
      this.traceReads(node, txn, reads);
    }
    this.send(node.spec.id, to, msg, false);
  }

  private traceReads(node: SimNode, txn: string, reads: readonly ReadResult[]): void {
    if (this.opts.trace === null) return;
    // An audit's reads are drawn as their sum; list reads as the lists.
    const values = reads.every((r) => r.list.length === 0)
      ? `sum ${reads.reduce((sum, r) => sum + r.value, 0)}`
      : reads.map((r) => `${r.key}=[${r.list.join(',')}]`).join(' ');
    this.opts.trace.push({ t: this.now, kind: 'read', node: node.spec.id, txn, values });
  }

  private executed(node: SimNode, epoch: number, from: NodeId, msg: Extract<AppMsg, { type: 'exec' }>): void {
    if (node.epoch !== epoch || !node.resource!.has(msg.txn)) return;
    this.observeRm(node, msg.txn, 'working');
    // A branch that changes nothing is read-only; a core that votes read-only lets it leave at PREPARE.
    const readOnly = msg.ops.every((op) => !writes(op)) && msg.mayLeave !== false;
    const reads = node.resource!.readsOf(msg.txn);
    this.step(node, { type: 'executed', txn: msg.txn, coordinator: msg.coordinator, readOnly });
    this.execReply(node, epoch, from, msg.txn, true, reads);
  }

  private onAppMessage(node: SimNode, from: NodeId, msg: AppMsg): void {
    switch (msg.type) {
      case 'exec': {
        const model = node.resource;
        if (model === null) return;
        const epoch = node.epoch;
        model.execute(
          msg.txn,
          msg.age,
          msg.ops,
          () => {
            // Granted work reaches the core as an event of its own, never
            // inside the step that released the lock.
            const ev = this.schedule(this.now, evExecuted, node, epoch);
            ev.a = msg;
            ev.b = from;
          },
          () => this.execReply(node, epoch, from, msg.txn, false),
        );
        return;
      }
      case 'abandon': {
        const model = node.resource;
        if (model === null || !model.has(msg.txn)) return;
        model.fail(msg.txn);
        // Work already done here is the core's to give up, like a wound.
        if (model.has(msg.txn)) this.step(node, { type: 'wounded', txn: msg.txn });
        return;
      }
      case 'begin':
        this.step(node, { type: 'begin', txn: msg.txn, participants: msg.participants, client: from });
        return;
      case 'readAt': {
        if (node.resource === null) return;
        // The participant's clock passes the snapshot: whatever prepares here from now on gets a later timestamp.
        this.observe(node, msg.ts);
        this.serveReadAt(node, msg);
        return;
      }
      case 'openSnapshot': {
        const model = node.resource;
        if (model === null) return;
        // The snapshot is the committed state now; the reads may come any time later and see just this.
        const reads = msg.ops.map(
          (op): ReadResult => ({ key: op.key, seq: op.seq ?? 0, ...model.committed(op.key) }),
        );
        this.traceReads(node, msg.txn, reads);
        this.send(node.spec.id, from, { type: 'snapshot', txn: msg.txn, node: node.spec.id, reads }, false);
        return;
      }
      default:
        return;
    }
  }

  // -------------------------------------------------------------------- run

  /** Runs the workload under faults, then heals everything and waits for every transaction to end. */
  run(): void {
    this.runPhases(this.opts.workload.concurrency, this.opts.livenessBoundMs);
  }

  protected override fireOwn(ev: SimEvent<SimNode>): void {
    const node = ev.node;
    switch (ev.kind) {
      case evFlush:
        if (node!.epoch === ev.epoch) this.flushDone(node!, ev.a as PendingWrite[]);
        return;
      case evExecuted:
        return this.executed(node!, ev.epoch, ev.b as NodeId, ev.a as Extract<AppMsg, { type: 'exec' }>);
      case evClientExecTimeout: {
        const t = ev.a as ClientTxn;
        if (t.commitRequestedAt < 0 && !t.done) this.abandon(t);
        return;
      }
      case evClientOutcomeTimeout:
        return this.finishClientTxn(ev.a as ClientTxn, 'info');
    }
  }

  /** Sum of the conserved rows over every participant. */
  total(): number {
    let sum = 0;
    for (const node of this.nodes.values()) {
      if (node.resource !== null) sum += node.resource.total((k) => this.opts.workload.conserved(k));
    }
    return sum;
  }
}

function describe(value: unknown): string {
  const v = value as { type?: string; txn?: string; vote?: string };
  if (v === null || typeof v !== 'object') return String(value);
  return [v.type, v.txn, v.vote].filter((x) => x !== undefined).join(' ');
}
