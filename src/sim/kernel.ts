// The part of a simulated world that every protocol family shares: virtual
// time and the event loop, one seeded PRNG, the network, partitions, protocol
// timers, and the two-phase run (a safety phase under faults until every
// client is done, then a liveness phase with every fault healed).
//
// Three worlds build on it: the commit world (./commit-world.ts: clients execute
// work at participants under locks, then ask a coordinator to commit), the
// branch world (./branch/world.ts: clients hand an orchestrator a whole
// definition) and the outbox world (./outbox/world.ts: a producer, relays, a
// broker and a consumer, whose durable state is their databases and stream
// rather than a protocol log). Each keeps its own nodes, disk model and clients; what they
// share is here, so that a fault means the same thing in both — including how
// a step's effects are carried out under the after-persist rule
// (../protocol/common/sequencer.ts) and where a crash may land among them.
//
// Events are pooled records, not closures: a run schedules some thirty
// events per transaction, and allocating a closure and its context for each
// was most of the simulator's garbage. The frequent kinds (a message arriving,
// a protocol timer firing) are handled here; a world adds its own kinds
// (`fireOwn`), and `at(time, run)` takes a closure for the rare ones.

import type { AfterPersistSequencer, SequencedEffect, SequencedWrite } from '../protocol/common/sequencer.ts';
import type { Input, NodeId } from '../protocol/common/types.ts';
import { Prng } from './prng.ts';
import { EventQueue } from './queue.ts';

export interface NetworkOptions {
  /** Round-trip time between any two nodes; a message takes half of it, plus jitter. */
  rttMs: number;
  /** Mean of the exponential extra delay each message gets (this is what reorders messages). */
  jitterMs: number;
  /** Probability that a message is lost. */
  loss: number;
  /** Probability that a message is delivered twice. */
  dup: number;
  /**
   * Mean extra delay (exponential) of the second copy of a duplicated
   * message, so that it can arrive long after the first. None when undefined.
   */
  lateDupMs?: number;
}

export interface FaultOptions {
  /** Partitions (symmetric and one-way) that start and heal during the safety phase. */
  partitions: boolean;
  partitionEveryMs: number;
  partitionMeanMs: number;
  /** Probability that a node crashes while carrying out the effects of any one step. */
  crashRate: number;
  /**
   * At most this many acceptor nodes down at once during the safety phase (a
   * random crash that would exceed it does not happen): the fault bound a
   * consensus protocol is built for. Unbounded when undefined.
   */
  acceptorsDownMax?: number;
  /** Mean time a crashed node stays down. */
  downtimeMeanMs: number;
}

/** The network and fault settings of a request, as every world's request spells them. */
export interface FaultSettings {
  loss?: number;
  dup?: number;
  /** Mean extra delay of a duplicate's second copy, so that it can arrive after its transaction ended. */
  lateDupMs?: number;
  partitions?: boolean;
  crashRate?: number;
  downtimeMeanMs?: number;
  rttMs?: number;
  jitterMs?: number;
}

export interface FaultDefaults {
  rttMs: number;
  jitterMs: number;
  downtimeMeanMs: number;
  partitionEveryMs: number;
  partitionMeanMs: number;
}

/**
 * The network, disk and fault defaults the worlds share (a 1 ms network, a
 * 1 ms fsync, crashed nodes down 200 ms on average, partitions every 300 ms
 * lasting 150 ms, and a minute of healed time for the liveness phase), each
 * world adding its clients' timeouts.
 */
export const worldDefaults = {
  rttMs: 1,
  jitterMs: 0.1,
  fsyncMs: 1,
  lazyFlushMs: 5,
  downtimeMeanMs: 200,
  partitionEveryMs: 300,
  partitionMeanMs: 150,
  livenessBoundMs: 60_000,
} as const;

/** A request's settings over a world's defaults; no loss, duplication, partitions or crashes unless asked. */
export function networkAndFaults(
  req: FaultSettings,
  defaults: FaultDefaults,
): { network: NetworkOptions; faults: FaultOptions } {
  return {
    network: {
      rttMs: req.rttMs ?? defaults.rttMs,
      jitterMs: req.jitterMs ?? defaults.jitterMs,
      loss: req.loss ?? 0,
      dup: req.dup ?? 0,
      // 0 is the same run as none: a reproduce command leaves a 0 out.
      ...(req.lateDupMs ? { lateDupMs: req.lateDupMs } : {}),
    },
    faults: {
      partitions: req.partitions ?? false,
      partitionEveryMs: defaults.partitionEveryMs,
      partitionMeanMs: defaults.partitionMeanMs,
      crashRate: req.crashRate ?? 0,
      downtimeMeanMs: req.downtimeMeanMs ?? defaults.downtimeMeanMs,
    },
  };
}

/** What the kernel needs of a world's node. */
export interface KernelNode<E extends SequencedEffect = SequencedEffect> {
  /** Position in the world's node list (the client comes after every node). */
  index: number;
  up: boolean;
  /** Bumped at every crash and restart: events scheduled by an earlier incarnation are ignored. */
  epoch: number;
  /** Armed protocol timers: name → the generation whose expiry counts. */
  timers: Map<string, number>;
  /** When a crashed node comes back (-1 while up). */
  restartAt: number;
  /** The restart is the scenario's: healing does not bring the node back early. */
  pinnedRestart: boolean;
  /** Which writes to issue, and which after-persist effects their completion releases. */
  sequencer: AfterPersistSequencer<E>;
  /** An event to carry out released after-persist effects is scheduled. */
  releaseArmed: boolean;
}

export interface KernelMetrics {
  protocolMessages: number;
  events: number;
}

/** Every message sent, for a world that draws space-time pictures. */
export type SendObserver = (
  from: NodeId,
  to: NodeId,
  msg: unknown,
  arrive: number | null,
  dup: boolean,
) => void;

export const clientId = 'client';

/** Event kinds handled by the kernel; a world numbers its own from `firstOwnEventKind`. */
const evRun = 0;
const evDeliver = 1;
const evTimer = 2;
const evClientStart = 3;
const evRelease = 4;
export const firstOwnEventKind = 16;

export class SimEvent<N> {
  kind = evRun;
  /** The node it happens at (null: the client or the world itself). */
  node: N | null = null;
  /** The node's epoch when it was scheduled; a world checks it where a crash voids the event. */
  epoch = 0;
  /** Timer generation, or 1 for a protocol message (0: a client's). */
  gen = 0;
  a: unknown = undefined;
  b: unknown = undefined;
  run: (() => void) | null = null;
}

export abstract class SimKernel<N extends KernelNode<E>, E extends SequencedEffect = SequencedEffect> {
  readonly queue = new EventQueue<SimEvent<N>>();
  readonly rng: Prng;
  now = 0;
  readonly nodes = new Map<NodeId, N>();
  protected loss: number;
  protected dup: number;
  protected faultsOn = true;
  /** blocked[from * n + to]: messages from `from` to `to` are dropped. */
  private blocked: Uint8Array;
  private readonly eventPool: SimEvent<N>[] = [];
  /** Identifies each arming of a timer, so that a re-armed or cancelled timer's old expiry is ignored. */
  private timerSeq = 0;
  protected clientsActive = 0;
  protected onSend: SendObserver | null = null;

  constructor(
    seed: number,
    protected readonly network: NetworkOptions,
    protected readonly faults: FaultOptions,
    /** Nodes, the client not counted. */
    private readonly nodeSlots: number,
    private readonly kernelMetrics: KernelMetrics,
  ) {
    this.rng = new Prng(seed);
    this.loss = network.loss;
    this.dup = network.dup;
    this.blocked = new Uint8Array((nodeSlots + 1) * (nodeSlots + 1));
  }

  // ------------------------------------------------------------- the world's part

  /** Carry out one input at a node: the protocol core's step and its effects. */
  protected abstract step(node: N, input: Input<unknown>): void;
  /** A message from the network reached an up node of the epoch it was sent to. */
  protected abstract receive(node: N, from: NodeId, msg: unknown, protocol: boolean): void;
  protected abstract onClientMessage(msg: unknown): void;
  /** Bring a crashed node back from its durable log. */
  protected abstract restart(node: N): void;
  /** A client starts its next transaction, or retires when all are started. */
  protected abstract startClient(): void;
  /** A world's own event kinds. */
  protected fireOwn(_ev: SimEvent<N>): void {}
  /** Queue `write` on the node's disk. */
  protected abstract persist(node: N, write: SequencedWrite<unknown>): void;
  /** Carry out one effect that is not a write. */
  protected abstract apply(node: N, effect: E): void;
  /**
   * Crash `node` (volatile state, timers, unflushed writes and waiting
   * effects lost); `taken`: effects it had taken to carry out and had not yet.
   */
  protected abstract crash(node: N, downtimeMs?: number, pinned?: boolean, taken?: readonly E[]): void;

  // --------------------------------------------------------- carrying out effects

  /**
   * Where the crash model stops `node` among `count` effects it is carrying
   * out: before the effect at that index (`count`: after all of them), or -1
   * when it does not crash.
   */
  protected crashPoint(_node: N, count: number): number {
    if (!this.faultsOn || this.faults.crashRate <= 0 || !this.rng.chance(this.faults.crashRate)) return -1;
    return this.rng.int(count + 1);
  }

  /**
   * Carry out a step's effects in order (the node's sequencer says which
   * writes to issue and holds back what must wait for them). With
   * `mayCrash`, the crash model may stop the node among them, so that some
   * happen and the rest are lost.
   */
  protected execute(node: N, effects: readonly E[], mayCrash: boolean): void {
    const epoch = node.epoch;
    const plan = node.sequencer.step(effects);
    const crashAt = mayCrash ? this.crashPoint(node, plan.actions.length) : -1;
    for (let i = 0; i < plan.actions.length; i++) {
      if (i === crashAt) return this.crash(node, undefined, false, plan.afterPersist);
      if (node.epoch !== epoch) return;
      const a = plan.actions[i]!;
      if (a.kind === 'write') this.persist(node, a.write);
      else this.apply(node, a.effect);
    }
    if (crashAt === plan.actions.length) return this.crash(node, undefined, false, plan.afterPersist);
    for (const e of plan.afterPersist) this.apply(node, e);
  }

  /**
   * Writes became durable and released after-persist effects: they are
   * carried out by an event of their own (at the same virtual time), so that
   * the crash model can land between "the record is durable" and "what
   * waited for it is done", as a process can die right after fsync returns.
   */
  protected armRelease(node: N): void {
    if (node.releaseArmed) return;
    node.releaseArmed = true;
    this.schedule(this.now, evRelease, node, node.epoch);
  }

  private release(node: N): void {
    node.releaseArmed = false;
    if (!node.up) return;
    const effects = node.sequencer.release();
    if (effects.length === 0) return;
    const crashAt = this.crashPoint(node, effects.length);
    for (let i = 0; i < effects.length; i++) {
      if (i === crashAt) return this.crash(node, undefined, false, effects.slice(i));
      this.apply(node, effects[i]!);
    }
    if (crashAt === effects.length) this.crash(node);
  }

  // ------------------------------------------------------------------ events

  at(time: number, run: () => void): void {
    this.schedule(time, evRun, null, 0).run = run;
  }

  protected schedule(time: number, kind: number, node: N | null, epoch: number): SimEvent<N> {
    const ev = this.eventPool.pop() ?? new SimEvent<N>();
    ev.kind = kind;
    ev.node = node;
    ev.epoch = epoch;
    ev.gen = 0;
    this.queue.push(time, ev);
    return ev;
  }

  private runOne(): boolean {
    const ev = this.queue.pop();
    if (ev === undefined) return false;
    this.now = this.queue.lastTime;
    this.kernelMetrics.events++;
    this.fire(ev);
    ev.node = null;
    ev.a = undefined;
    ev.b = undefined;
    ev.run = null;
    this.eventPool.push(ev);
    return true;
  }

  private fire(ev: SimEvent<N>): void {
    const node = ev.node;
    switch (ev.kind) {
      case evRun:
        return ev.run!();
      case evDeliver: {
        if (node === null) return this.onClientMessage(ev.a);
        if (!node.up || (ev.epoch >= 0 && node.epoch !== ev.epoch)) return;
        return this.receive(node, ev.b as NodeId, ev.a, ev.gen === 1);
      }
      case evTimer: {
        const timer = ev.a as string;
        if (node!.epoch !== ev.epoch || node!.timers.get(timer) !== ev.gen) return;
        node!.timers.delete(timer);
        return this.step(node!, { type: 'timeout', timer });
      }
      case evClientStart:
        return this.startClient();
      case evRelease:
        if (node!.epoch === ev.epoch) this.release(node!);
        return;
      default:
        return this.fireOwn(ev);
    }
  }

  // ----------------------------------------------------------------- network

  private indexOf(id: NodeId): number {
    return id === clientId ? this.nodeSlots : this.nodes.get(id)!.index;
  }

  /**
   * Protocol messages are datagrams: lost, duplicated, delayed and reordered
   * at will. A client's requests travel over a connection instead (as a
   * client library's would): they may be lost or delayed, but are never
   * duplicated and never reach a later incarnation of the node than the one
   * they were sent to — a restart breaks the connection.
   */
  protected send(from: NodeId, to: NodeId, msg: unknown, protocol: boolean): void {
    if (protocol) this.kernelMetrics.protocolMessages++;
    const blocked = this.blocked[this.indexOf(from) * (this.nodeSlots + 1) + this.indexOf(to)] === 1;
    const lost = blocked || this.rng.chance(this.loss);
    const connection = from === clientId;
    const copies = lost ? 0 : !connection && this.rng.chance(this.dup) ? 2 : 1;
    if (copies === 0) this.onSend?.(from, to, msg, null, false);
    const target = to === clientId ? null : this.nodes.get(to)!;
    const epoch = connection && target !== null ? target.epoch : -1;
    const net = this.network;
    for (let i = 0; i < copies; i++) {
      const late = i > 0 && net.lateDupMs !== undefined ? this.rng.exp(net.lateDupMs) : 0;
      const arrive = this.now + net.rttMs / 2 + this.rng.exp(net.jitterMs) + late;
      this.onSend?.(from, to, msg, arrive, i > 0);
      const ev = this.schedule(arrive, evDeliver, target, epoch);
      ev.a = msg;
      ev.b = from;
      ev.gen = protocol ? 1 : 0;
    }
  }

  // ------------------------------------------------------------------ timers

  protected setTimer(node: N, timer: string, delayMs: number): void {
    const gen = ++this.timerSeq;
    node.timers.set(timer, gen);
    const ev = this.schedule(this.now + delayMs, evTimer, node, node.epoch);
    ev.gen = gen;
    ev.a = timer;
  }

  // ----------------------------------------------------------------- clients

  /**
   * A client whose transaction ended starts its next one (while `more` are
   * to start), after a pause of `thinkMs` on average (exponential; 0: at once).
   */
  protected nextClient(thinkMs: number, more: boolean): void {
    if (thinkMs > 0 && more) this.schedule(this.now + this.rng.exp(thinkMs), evClientStart, null, 0);
    else this.startClient();
  }

  // ------------------------------------------------------- crash and restart

  /** A crash: the node is down, its timers gone, and every event of its incarnation void. */
  protected markDown(node: N): void {
    node.up = false;
    node.epoch++;
    node.timers.clear();
  }

  /** A restart: the node is up in a new incarnation. False (and nothing changes) if it was up. */
  protected markUp(node: N): boolean {
    if (node.up) return false;
    node.up = true;
    node.epoch++;
    node.restartAt = -1;
    node.pinnedRestart = false;
    return true;
  }

  /** Bring a crashed node back after `downtimeMs` (drawn when undefined). */
  protected scheduleRestart(node: N, downtimeMs: number | undefined, pinned: boolean): void {
    node.restartAt = this.now + (downtimeMs ?? this.rng.exp(this.faults.downtimeMeanMs));
    node.pinnedRestart = pinned;
    const epoch = node.epoch;
    this.at(node.restartAt, () => {
      if (node.epoch === epoch) this.restart(node);
    });
  }

  // -------------------------------------------------------------- partitions

  private schedulePartition(): void {
    const f = this.faults;
    const n = this.nodeSlots + 1;
    this.at(this.now + this.rng.exp(f.partitionEveryMs), () => {
      if (!this.faultsOn) return;
      // Split the nodes (the client included) in two random non-empty sides;
      // a third of the time only one direction is cut.
      const side = new Uint8Array(n);
      for (let i = 0; i < n; i++) side[i] = this.rng.int(2);
      side[this.rng.int(n)] = 1 - side[0]!;
      const oneWay = this.rng.chance(1 / 3);
      const cut: number[] = [];
      for (let a = 0; a < n; a++) {
        for (let b = 0; b < n; b++) {
          if (side[a] === 0 && side[b] === 1) cut.push(a * n + b);
          if (!oneWay && side[a] === 1 && side[b] === 0) cut.push(a * n + b);
        }
      }
      for (const i of cut) this.blocked[i] = 1;
      this.at(this.now + this.rng.exp(f.partitionMeanMs), () => {
        for (const i of cut) this.blocked[i] = 0;
      });
      this.schedulePartition();
    });
  }

  // --------------------------------------------------------------------- run

  /**
   * The safety phase (faults on) until every one of `concurrency` clients has
   * finished its transactions; then every fault heals and every node is
   * restarted, and the run goes on until the queue empties or
   * `livenessBoundMs` has passed (counted from the last scheduled restart).
   */
  protected runPhases(concurrency: number, livenessBoundMs: number): void {
    if (this.faults.partitions) this.schedulePartition();
    this.clientsActive = concurrency;
    for (let i = 0; i < concurrency; i++) this.at(0, () => this.startClient());
    while (this.clientsActive > 0 && this.runOne()) {}
    this.heal();
    let bound = this.now + livenessBoundMs;
    for (const node of this.nodes.values())
      if (!node.up) bound = Math.max(bound, node.restartAt + livenessBoundMs);
    while (this.queue.peekTime() <= bound && this.runOne()) {}
  }

  private heal(): void {
    this.faultsOn = false;
    this.loss = 0;
    this.dup = 0;
    this.blocked.fill(0);
    for (const node of this.nodes.values()) {
      if (!node.up && !node.pinnedRestart) {
        node.epoch++;
        this.restart(node);
      }
    }
  }
}

/** Every start of a node gets an incarnation name no earlier start had (cores may not draw randomness). */
export function incarnationConfig(config: unknown, epoch: number): unknown {
  return { ...(config as object), incarnation: String(epoch) };
}
