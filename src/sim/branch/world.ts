// The branch world: the deterministic simulator for sagas and TCC. The commit
// world (../commit-world.ts) is shaped by 2PC — clients execute work at participants
// under locks, then ask a coordinator to commit — which a saga does not fit:
// here a client hands the orchestrator a whole definition, the orchestrator
// calls services, and services own their data. So this is a second world on
// the same kernel (../kernel.ts):
//
// - shared: virtual time and the event loop, the seeded PRNG, the network
//   (loss, duplication, delay, reordering, partitions; client requests over
//   a connection), protocol timers, the two-phase run (safety with faults,
//   then liveness with every fault healed);
// - the same rules, kept here: a disk per node with fsync latency and group
//   commit; the after-persist ordering rule of ../../protocol/common/types.ts
//   (through the same sequencer, ../../protocol/common/sequencer.ts, with
//   what a durable write releases run as an event of its own); crashes at a
//   random point among a step's effects, or among what a write released,
//   that lose volatile state, timers and unflushed writes, and restarts that
//   rebuild a node from its durable log;
// - new: late duplicates (a duplicated call's second copy can be held back,
//   to arrive after its compensation), services whose log is their database,
//   and the booking checkers (./checkers.ts).
//
// A forced write fails with its node's rate (`failRateOf`), as a failed
// fsync: every write of its flush, and every one queued behind it, is lost,
// so that the log stays the prefix the cores expect
// (../../protocol/branch/service.ts); what waited on them is dropped, and the
// core is told of each lost write (`persistFailed`), in issue order.

import type {
  ServiceConfig,
  ServiceRecord,
  ServiceState,
  ServiceStats,
} from '../../protocol/branch/service.ts';
import type { BranchMsg, ReportSaga, SagaOutcome } from '../../protocol/branch/types.ts';
import { assert } from '../../protocol/common/assert.ts';
import {
  AfterPersistSequencer,
  isAfterPersist,
  type SequencedWrite,
} from '../../protocol/common/sequencer.ts';
import type { Effect, Input, NodeId } from '../../protocol/common/types.ts';
import type { SagaPlan } from '../../protocol/saga/types.ts';
import type { TccPlan } from '../../protocol/tcc/types.ts';
import type { Scenario } from '../commit-world.ts';
import {
  clientId,
  type FaultOptions,
  firstOwnEventKind,
  incarnationConfig,
  type NetworkOptions,
  type SimEvent,
  SimKernel,
} from '../kernel.ts';
import type { Prng } from '../prng.ts';
import type { BankAuditWorkload, Transfer } from './bank-audit.ts';
import type { Booking } from './booking.ts';
import { type Quiescence, SagaCheckers, type SagaClassification } from './checkers.ts';
import { BranchIsolation } from './isolation.ts';
import type { SagaProtocol } from './protocols.ts';

/** One transaction a workload made up: its id (the saga's txn) and number. */
export interface BranchTxn {
  id: string;
  num: number;
}

/**
 * What the world needs of a workload: the booking one (./booking.ts) or
 * bank-audit (./bank-audit.ts). `T`: the transactions it makes up; `S`: its
 * services; `O`: its options.
 */
export interface BranchWorkload<
  T extends BranchTxn = BranchTxn,
  S extends string = string,
  O extends { concurrency: number } = { concurrency: number },
> {
  name: 'booking' | 'bank-audit';
  options: O;
  services: readonly S[];
  next(rng: Prng, seq: number): T;
  sagaDefinition(t: T): SagaPlan;
  tccDefinition(t: T): TccPlan;
  /** Handlers and initial rows of `service` for protocol `kind`. */
  serviceConfig(kind: 'saga' | 'tcc', service: S): ServiceConfig;
  /** What no transaction may create or destroy, summed over one service's rows. */
  conservedTotal(rows: ReadonlyMap<string, number>): number;
}

export interface SagaNetworkOptions extends NetworkOptions {
  lateDupMs: number;
}

export interface BranchWorldOptions {
  protocol: SagaProtocol;
  workload: BranchWorkload;
  seed: number;
  txns: number;
  network: SagaNetworkOptions;
  faults: FaultOptions;
  fsyncMs: number;
  lazyFlushMs: number;
  /** Probability that a forced write on that node fails. */
  failRateOf(node: NodeId): number;
  /** `coordinator-crash`: the orchestrator dies as it is about to log its first decision to compensate. */
  scenario: Scenario | null;
  livenessBoundMs: number;
  clientOutcomeTimeoutMs: number;
  /** Mean pause (exponential) of each client between its sagas; 0: back to back. */
  clientThinkMs: number;
}

type AnyEffect = Effect<unknown, unknown> | ReportSaga;

interface AnyRole {
  init(self: NodeId, config: unknown): unknown;
  recover(self: NodeId, config: unknown, log: readonly unknown[]): { state: unknown; effects: AnyEffect[] };
  step(state: unknown, input: Input<unknown>): { state: unknown; effects: AnyEffect[] };
}

type PendingWrite = SequencedWrite<unknown>;

interface SimNode {
  id: NodeId;
  index: number;
  service: string | null;
  role: AnyRole;
  config: unknown;
  up: boolean;
  epoch: number;
  state: unknown;
  timers: Map<string, number>;
  durable: unknown[];
  queued: PendingWrite[];
  flushing: PendingWrite[] | null;
  sequencer: AfterPersistSequencer<AnyEffect>;
  releaseArmed: boolean;
  failRate: number;
  /** The core is being told of lost writes: its answers wait to go as one batch (see `loseWrites`). */
  tellingLost: boolean;
  /** After-persist effects of those answers that nothing held back: released once every rewrite is durable. */
  heldAfterLoss: AnyEffect[];
  restartAt: number;
  pinnedRestart: boolean;
}

type ClientMsg = { type: 'OUTCOME'; txn: string; outcome: SagaOutcome };

export const orchestratorId = 'orch';

// This world's own event kind (see SimKernel): a flush completing is frequent
// enough to be a pooled record rather than a closure.
const evFlush = firstOwnEventKind;

export interface BranchWorldMetrics {
  latencyMs: number[];
  protocolMessages: number;
  forcedWrites: number;
  crashes: number;
  events: number;
  service: ServiceStats;
}

export class BranchWorld extends SimKernel<SimNode, AnyEffect> {
  readonly checkers = new SagaCheckers();
  readonly metrics: BranchWorldMetrics;
  readonly bookings = new Map<string, BranchTxn>();
  /** The auditors and what they saw: the bank-audit workload only. */
  readonly isolation: BranchIsolation | null;
  readonly opts: BranchWorldOptions;
  private txnsStarted = 0;
  private readonly waitingClients = new Map<string, number>();
  private scenarioFired = false;
  /** Sagas whose report the orchestrator lost in a crash (see answerFromLog). */
  private readonly lostReports = new Set<string>();
  /** How many lost reports were answered from the log (a crash landed after an `end` was durable). */
  reportsReadFromLog = 0;

  constructor(opts: BranchWorldOptions) {
    const p = opts.protocol;
    const specs: { id: NodeId; service: string | null; role: AnyRole; config: unknown }[] = [
      { id: orchestratorId, service: null, role: p.orchestrator as AnyRole, config: p.orchestratorConfig },
      ...opts.workload.services.map((s) => ({
        id: s,
        service: s,
        role: p.serviceRole as AnyRole,
        config: p.serviceConfig(opts.workload.serviceConfig(p.kind, s)),
      })),
    ];
    const metrics: BranchWorldMetrics = {
      latencyMs: [],
      protocolMessages: 0,
      forcedWrites: 0,
      crashes: 0,
      events: 0,
      service: { duplicates: 0, nullCompensations: 0, hangingRefused: 0 },
    };
    super(opts.seed, opts.network, opts.faults, specs.length, metrics);
    this.metrics = metrics;
    this.opts = opts;
    this.isolation =
      opts.workload.name === 'bank-audit'
        ? new BranchIsolation(
            p.kind,
            opts.workload as BankAuditWorkload,
            {
              rng: this.rng,
              now: () => this.now,
              at: (time, run) => this.at(time, run),
              hopMs: () => opts.network.rttMs / 2 + this.rng.exp(opts.network.jitterMs),
              isUp: (service) => this.nodes.get(service)!.up,
              running: () => this.clientsActive > 0,
            },
            opts.txns,
          )
        : null;
    specs.forEach((s, index) => {
      this.nodes.set(s.id, {
        ...s,
        index,
        up: true,
        epoch: 0,
        state: s.role.init(s.id, incarnationConfig(s.config, 0)),
        timers: new Map(),
        durable: [],
        queued: [],
        flushing: null,
        sequencer: new AfterPersistSequencer(),
        releaseArmed: false,
        failRate: opts.failRateOf(s.id),
        tellingLost: false,
        heldAfterLoss: [],
        restartAt: -1,
        pinnedRestart: false,
      });
    });
  }

  // ------------------------------------------------------------------ steps

  protected receive(node: SimNode, from: NodeId, msg: unknown): void {
    this.step(node, { type: 'receive', from, msg });
  }

  protected step(node: SimNode, input: Input<unknown>): void {
    if (!node.up) return;
    const { state, effects } = node.role.step(node.state, input);
    node.state = state;
    const scenario = this.opts.scenario;
    if (
      scenario?.kind === 'coordinator-crash' &&
      !this.scenarioFired &&
      node.id === orchestratorId &&
      this.opts.protocol.isDecisionStep(effects)
    ) {
      this.scenarioFired = true;
      return this.crash(node, scenario.downtimeMs, true);
    }
    this.execute(node, effects, true);
  }

  protected apply(node: SimNode, e: AnyEffect): void {
    if (node.tellingLost && isAfterPersist(e)) {
      node.heldAfterLoss.push(e);
      return;
    }
    switch (e.type) {
      case 'send':
      case 'sendAfterPersist':
        if (node.service === null) this.observeCall(e.msg as BranchMsg);
        this.send(node.id, e.to, e.msg, true);
        return;
      case 'setTimer':
        this.setTimer(node, e.timer, e.delayMs);
        return;
      case 'cancelTimer':
        node.timers.delete(e.timer);
        return;
      case 'reportSaga':
        this.checkers.reported(e.txn, e.outcome);
        this.isolation?.reported(e.txn, e.outcome);
        this.send(node.id, e.client, { type: 'OUTCOME', txn: e.txn, outcome: e.outcome }, false);
        return;
      case 'resource':
      case 'reportOutcome':
        assert(false, `a saga node asked for a 2PC effect: ${e.type}`);
        return;
      case 'persist':
        assert(false, 'persist effects are executed by execute()');
    }
  }

  // ------------------------------------------------------------------- disk

  protected persist(node: SimNode, write: PendingWrite): void {
    if (write.force) this.metrics.forcedWrites++;
    node.queued.push(write);
    // While the core is told of lost writes, its answers gather into one batch (see loseWrites).
    if (node.flushing === null && !node.tellingLost) this.startFlush(node);
  }

  private startFlush(node: SimNode): void {
    const batch = node.queued;
    node.queued = [];
    node.flushing = batch;
    let forced = false;
    for (const w of batch) forced ||= w.force;
    const at = this.now + (forced ? this.opts.fsyncMs : this.opts.lazyFlushMs);
    this.schedule(at, evFlush, node, node.epoch).a = batch;
  }

  protected override fireOwn(ev: SimEvent<SimNode>): void {
    if (ev.kind === evFlush && ev.node!.epoch === ev.epoch) this.flushDone(ev.node!, ev.a as PendingWrite[]);
  }

  private flushDone(node: SimNode, batch: PendingWrite[]): void {
    node.flushing = null;
    // A failed fsync loses every write it covered: the whole batch, and the
    // writes queued behind it, so that the log stays a prefix.
    const failed = this.faultsOn && batch.some((w) => w.force && this.rng.chance(node.failRate));
    if (failed) return this.loseWrites(node, batch[0]!.seq);
    for (const w of batch) {
      node.sequencer.durable(w.seq);
      node.durable.push(w.record);
      this.observeDurable(node, w.record);
    }
    if (node.sequencer.releasable) this.armRelease(node);
    if (node.queued.length > 0) this.startFlush(node);
  }

  /**
   * Writes from `lost[0]` on are gone. What waited on them is dropped, as the
   * ordering rule says, and the core is told of each lost write in issue
   * order. Its answers (each write again, and the effects that wait on it)
   * form one batch whose effects all wait for the whole of it: an effect of
   * an early answer may depend on a write lost behind the one it answers (a
   * confirm re-sent when a `tried` record is reported lost depends on the
   * decision lost after it, which the core is told of only afterwards).
   */
  private loseWrites(node: SimNode, from: number): void {
    // The sequencer fails this write and every later pending one (the rest of
    // the flush and the writes queued behind it) and drops what waited on them.
    const failure = node.sequencer.failed(from);
    node.queued = [];
    if (node.sequencer.releasable) this.armRelease(node);
    node.tellingLost = true;
    for (const input of failure.inputs) if (node.up) this.step(node, input);
    node.tellingLost = false;
    const held = node.heldAfterLoss;
    node.heldAfterLoss = [];
    if (!node.up) return;
    // The answers go as one batch: the rewrites in one flush, and what the
    // answers sent after persisting waits for all of them (a confirm re-sent
    // for a rewritten `tried` must not leave before the rewritten decision).
    if (held.length > 0) for (const e of node.sequencer.step(held).afterPersist) this.apply(node, e);
    if (node.queued.length > 0) this.startFlush(node);
  }

  /** What the orchestrator sends: the checkers see every call as it leaves. */
  private observeCall(msg: BranchMsg): void {
    if (msg.type === 'CALL') this.checkers.called(msg.txn, msg.branch, msg.op);
  }

  private observeDurable(node: SimNode, record: unknown): void {
    if (node.service !== null) {
      this.checkers.local(node.service, record as ServiceRecord, this.now);
      this.isolation?.durable(node.service, record as ServiceRecord);
      return;
    }
    const r = record as {
      type: string;
      txn: string;
      def?: unknown;
      branch?: string;
      op?: string;
      decision?: unknown;
    };
    if (r.type === 'begin') this.checkers.begin(r.txn, r.def);
    else if (r.type === 'start') this.checkers.started(r.txn, r.branch!, r.op!);
    else if (r.type === 'decision') this.checkers.decided(r.txn, r.decision as 'confirm' | 'cancel');
  }

  // ------------------------------------------------------- crash and restart

  /** `taken`: effects the node had taken to carry out and had not yet; lost with it. */
  crash(node: SimNode, downtimeMs?: number, pinned = false, taken: readonly AnyEffect[] = []): void {
    if (!node.up) return;
    this.metrics.crashes++;
    this.collectStats(node);
    this.markDown(node);
    node.state = null;
    node.queued = [];
    node.flushing = null;
    for (const e of [...taken, ...node.sequencer.crash().effects])
      if (e.type === 'reportSaga') this.lostReports.add(e.txn);
    node.releaseArmed = false;
    this.scheduleRestart(node, downtimeMs, pinned);
  }

  protected restart(node: SimNode): void {
    if (!this.markUp(node)) return;
    const { state, effects } = node.role.recover(
      node.id,
      incarnationConfig(node.config, node.epoch),
      node.durable,
    );
    node.state = state;
    this.execute(node, effects, false);
    if (node.id === orchestratorId) this.answerFromLog(node);
  }

  /**
   * A report lost with the orchestrator's crash, of a saga whose `end` is
   * durable, is read from the log once the orchestrator is back, as a
   * runtime caller does with `result()` (src/runtime/branch/orchestrator.ts);
   * recovery does not report a saga that has ended. A report whose `end` was
   * lost too is the recovered run's to make again.
   */
  private answerFromLog(node: SimNode): void {
    if (this.lostReports.size === 0) return;
    const ends = new Map<string, SagaOutcome>();
    for (const r of node.durable as { type: string; txn: string; outcome?: SagaOutcome }[]) {
      if (!this.lostReports.has(r.txn)) continue;
      if (r.type === 'end') ends.set(r.txn, r.outcome!);
      else if (r.type === 'begin') ends.delete(r.txn);
    }
    this.lostReports.clear();
    for (const [txn, outcome] of ends) {
      this.reportsReadFromLog++;
      this.checkers.reported(txn, outcome);
      this.isolation?.reported(txn, outcome);
      this.send(node.id, clientId, { type: 'OUTCOME', txn, outcome }, false);
    }
  }

  private collectStats(node: SimNode): void {
    if (node.service === null || node.state === null) return;
    const s = (node.state as ServiceState).stats;
    this.metrics.service.duplicates += s.duplicates;
    this.metrics.service.nullCompensations += s.nullCompensations;
    this.metrics.service.hangingRefused += s.hangingRefused;
  }

  // ----------------------------------------------------------------- client

  protected startClient(): void {
    if (this.txnsStarted >= this.opts.txns) {
      this.clientsActive--;
      return;
    }
    const b = this.opts.workload.next(this.rng, ++this.txnsStarted);
    this.bookings.set(b.id, b);
    this.isolation?.invoked(b as Transfer);
    const w = this.opts.workload;
    const def = this.opts.protocol.kind === 'saga' ? w.sagaDefinition(b) : w.tccDefinition(b);
    this.waitingClients.set(b.id, this.now);
    this.send(
      clientId,
      orchestratorId,
      { type: 'BEGIN', txn: b.id, def, entropy: this.rng.nextU32() },
      false,
    );
    this.at(this.now + this.opts.clientOutcomeTimeoutMs, () => this.finishClient(b.id));
  }

  private finishClient(txn: string): void {
    if (!this.waitingClients.delete(txn)) return;
    this.nextClient(this.opts.clientThinkMs, this.txnsStarted < this.opts.txns);
  }

  protected onClientMessage(message: unknown): void {
    const msg = message as ClientMsg;
    const since = this.waitingClients.get(msg.txn);
    if (since === undefined) return;
    if (msg.outcome === 'completed') this.metrics.latencyMs.push(this.now - since);
    this.finishClient(msg.txn);
  }

  // -------------------------------------------------------------------- run

  run(): void {
    this.isolation?.start();
    this.runPhases(this.opts.workload.options.concurrency, this.opts.livenessBoundMs);
    for (const node of this.nodes.values()) if (node.up) this.collectStats(node);
  }

  /** Rows of every service as its durable log rebuilds them. */
  durableRows(): Map<string, Map<string, number>> {
    const out = new Map<string, Map<string, number>>();
    for (const node of this.nodes.values()) {
      if (node.service === null) continue;
      const { state } = node.role.recover(node.id, incarnationConfig(node.config, node.epoch), node.durable);
      out.set(node.service, (state as ServiceState).rows);
    }
    return out;
  }

  /** The conserved total over every service's durable rows. */
  total(rows = this.durableRows()): number {
    let sum = 0;
    for (const r of rows.values()) sum += this.opts.workload.conservedTotal(r);
    return sum;
  }

  /** Run the checkers over the quiescent state (`rows`: the services' durable rows, if the caller has them). */
  judge(initialTotal: number, rows = this.durableRows()): SagaClassification {
    const orch = this.nodes.get(orchestratorId)!;
    const recovered = orch.role.recover(
      orch.id,
      incarnationConfig(orch.config, orch.epoch),
      orch.durable,
    ).state;
    const q: Quiescence = {
      kind: this.opts.protocol.kind,
      workload: this.opts.workload.name,
      // The booking checks read bookings; they run for the booking workload only.
      bookings: this.bookings as ReadonlyMap<string, unknown> as ReadonlyMap<string, Booking>,
      rows,
      stuckInLog: this.opts.protocol.stuckIn(recovered),
      // Lost updates (bank-audit without a countermeasure) move the conserved total; by what they moved it is measured.
      initialTotal: initialTotal + (this.isolation?.driftTotal ?? 0),
      finalTotal: this.total(rows),
    };
    return this.checkers.finish(q);
  }
}
