// The outbox world: the deterministic simulator for the transactional outbox
// and the idempotent inbox (docs/outbox.md). A producer commits a business
// change (a debit) with its outbox row in one local transaction; relays claim
// unsent rows, publish each with the row's id as the message id, wait for the
// broker's ack and mark the row sent; a JetStream-like broker drops a message
// id it saw within its duplicate window, stores the rest durably and delivers
// them at least once to a durable consumer (again after an ack wait); the
// consumer commits the inbox row and the effect (a credit) together, skips an
// id its inbox has, and acks after the commit.
//
// It is a third world on the kernel (../kernel.ts), shaped like the branch
// world (../branch/world.ts): the kernel gives virtual time, the seeded PRNG,
// the lossy, duplicating, reordering network with partitions, timers, crashes
// at a random point among a step's actions, and the two-phase run (faults,
// then healed). What the relay decides — which rows to claim, which to
// publish in what chains, how long to back off — is the pure code the runtime
// relay runs (../../protocol/outbox/plan.ts). There is no protocol core with
// a log here: each process's durable state is its database (producer,
// consumer) or its stream (broker), kept below as plain data that a crash does
// not touch, while everything else a process holds is lost with it.
//
// Simplification: a relay reads and writes the producer's database directly
// (a database round trip of `rttMs` between its scan and its claim, so that
// its plan can be stale); the database is down while the producer is.

import { assert } from '../../protocol/common/assert.ts';
import { AfterPersistSequencer, type SequencedWrite } from '../../protocol/common/sequencer.ts';
import type { Input, NodeId } from '../../protocol/common/types.ts';
import { backoffMs, type OutboxCandidate, planClaim, publishChains } from '../../protocol/outbox/plan.ts';
import { type FaultOptions, type KernelNode, type NetworkOptions, SimKernel } from '../kernel.ts';

/** How the producer and the consumer use their databases; the real ones, or a deliberately broken variant (./broken.ts). */
export interface OutboxProtocol {
  /** Tells an outbox-world protocol from the other worlds' (../protocols.ts). */
  world: 'outbox';
  name: string;
  /**
   * `same-transaction`: the outbox row commits with the business change;
   * `after-commit`: in a transaction of its own, after it;
   * `before-commit`: in a transaction of its own, before the business transaction decides.
   */
  producer: 'same-transaction' | 'after-commit' | 'before-commit';
  /**
   * `inbox`: inbox row and effect in one transaction, ack after its commit;
   * `ack-before-commit`: the ack leaves before that commit;
   * `separate-inbox-transaction`: the effect commits, then the inbox row in a transaction of its own.
   */
  consumer: 'inbox' | 'ack-before-commit' | 'separate-inbox-transaction';
  /**
   * `plan`: claims and chains as planClaim and publishChains decide;
   * `all-at-once`: every claimed row published at once, not a key's rows one after another's ack;
   * `past-held-rows`: claims every row no other relay holds, also behind a key's row another relay holds.
   */
  relay: 'plan' | 'all-at-once' | 'past-held-rows';
}

export function isOutboxProtocol(p: unknown): p is OutboxProtocol {
  return typeof p === 'object' && p !== null && (p as { world?: unknown }).world === 'outbox';
}

export const outboxProtocol: OutboxProtocol = {
  world: 'outbox',
  name: 'outbox',
  producer: 'same-transaction',
  consumer: 'inbox',
  relay: 'plan',
};

/** Timings of the simulated processes, scaled to the kernel's 1 ms network (the runtime's are seconds). */
export interface OutboxTimings {
  /** A relay's claim lasts this long. */
  leaseMs: number;
  /** A relay gives up waiting for the broker's ack after this. */
  publishTimeoutMs: number;
  /** An idle relay scans again after this. */
  pollMs: number;
  relayBackoffBaseMs: number;
  relayBackoffMaxMs: number;
  /** Rows a relay claims per round (it scans four times as many, as the runtime relay does). */
  batch: number;
  /** The broker redelivers an unacked message after this. */
  ackWaitMs: number;
  /** The broker drops a message whose id it stored less than this ago; longer than lease + publish timeout. */
  dedupWindowMs: number;
}

export const outboxTimingDefaults: OutboxTimings = {
  leaseMs: 300,
  publishTimeoutMs: 50,
  pollMs: 20,
  relayBackoffBaseMs: 10,
  relayBackoffMaxMs: 500,
  batch: 8,
  ackWaitMs: 100,
  dedupWindowMs: 2_000,
};

const relayScanFactor = 4;

export interface OutboxWorldOptions {
  protocol: OutboxProtocol;
  seed: number;
  txns: number;
  /** Producer threads running local transactions at once. */
  concurrency: number;
  /** Mean pause (exponential) of each producer thread between its transactions; 0: back to back. */
  thinkMs: number;
  relays: number;
  /** Ordering keys the rows spread over; 0: no keys. */
  keys: number;
  /**
   * After a commit, a producer thread waits (at most this long) until the
   * consumer has applied the change before its next transaction, as a caller
   * that reads its own write downstream would: this paces the producer by the
   * whole pipeline, so that the faults (which heal when the producer is done)
   * act on relays, broker and consumer while they work.
   */
  producerWaitMs: number;
  /** Share of producer transactions that roll back (the business check fails). */
  rollbackShare: number;
  network: NetworkOptions;
  faults: FaultOptions;
  /** A local transaction's commit (and the broker's store) takes this long. */
  fsyncMs: number;
  timings: OutboxTimings;
  livenessBoundMs: number;
}

type NodeKind = 'producer' | 'relay' | 'broker' | 'consumer';

/** A relay's round, all of it lost when the relay crashes. */
interface RelayRound {
  round: number;
  planned: OutboxCandidate[];
  untilMs: number;
  claimed: number[];
  release: number[];
  chains: { rows: OutboxRow[]; pos: number }[];
  open: number;
  acked: number[];
  failed: boolean;
}

interface OutboxNode extends KernelNode {
  id: NodeId;
  kind: NodeKind;
  /** Relay: its name in claims, new at every start (a restarted relay does not own its predecessor's claims). */
  name: string;
  rounds: number;
  failures: number;
  round: RelayRound | null;
  /** Consumer: messages received and not yet handled (one at a time). */
  queue: DeliverMsg[];
  busy: boolean;
}

export interface OutboxRow {
  seq: number;
  id: string;
  txn: string;
  key: string | null;
  amount: number;
  claimedBy: string | null;
  claimUntilMs: number | null;
  sentMs: number | null;
}

interface StreamEntry {
  streamSeq: number;
  msgId: string;
  txn: string;
  key: string | null;
  amount: number;
  deliveries: number;
  acked: boolean;
}

type PubMsg = {
  type: 'PUB';
  msgId: string;
  txn: string;
  key: string | null;
  amount: number;
  round: number;
  chain: number;
};
type PubAckMsg = { type: 'PUBACK'; msgId: string; duplicate: boolean; round: number; chain: number };
type DeliverMsg = {
  type: 'MSG';
  streamSeq: number;
  msgId: string;
  txn: string;
  amount: number;
  deliveries: number;
};
type AckMsg = { type: 'ACK'; streamSeq: number };
type WireMsg = PubMsg | PubAckMsg | DeliverMsg | AckMsg;

/** What happened to a producer transaction. */
export interface ProducerTxn {
  txn: string;
  key: string | null;
  amount: number;
  /** The business change committed (durable). */
  committed: boolean;
  /** The outbox row exists. */
  rowWritten: boolean;
  committedAt: number;
}

export interface OutboxWorldMetrics {
  crashes: number;
  events: number;
  protocolMessages: number;
  /** Broker stores of a message id (a copy after the window counts again). */
  published: number;
  /** Publishes the broker dropped as duplicates within its window. */
  dedupSuppressed: number;
  /** Deliveries the consumer skipped because its inbox had the id. */
  inboxSuppressed: number;
  /** Deliveries after the first. */
  redeliveries: number;
  /** Producer commit → consumer commit of the effect, for effects applied once. */
  latencyMs: number[];
}

const producerId = 'producer';
const brokerId = 'broker';
const consumerId = 'consumer';

export class OutboxWorld extends SimKernel<OutboxNode> {
  readonly opts: OutboxWorldOptions;
  readonly metrics: OutboxWorldMetrics;
  // Durable state: survives every crash.
  readonly txns = new Map<string, ProducerTxn>();
  readonly outbox: OutboxRow[] = [];
  readonly stream: StreamEntry[] = [];
  private readonly dedup = new Map<string, number>();
  readonly inbox = new Set<string>();
  /** Consumer: how many times each transaction's credit committed, and when it first did. */
  readonly applied = new Map<string, { count: number; firstAt: number }>();
  private txnsStarted = 0;
  /** Every outbox row before this index is sent. */
  private firstUnsent = 0;
  /** Producer threads waiting for their committed change to be applied. */
  private readonly waitingThreads = new Set<string>();

  constructor(opts: OutboxWorldOptions) {
    const metrics: OutboxWorldMetrics = {
      crashes: 0,
      events: 0,
      protocolMessages: 0,
      published: 0,
      dedupSuppressed: 0,
      inboxSuppressed: 0,
      redeliveries: 0,
      latencyMs: [],
    };
    const specs: { id: NodeId; kind: NodeKind }[] = [
      { id: producerId, kind: 'producer' },
      ...Array.from({ length: opts.relays }, (_, i) => ({ id: `relay-${i + 1}`, kind: 'relay' as const })),
      { id: brokerId, kind: 'broker' },
      { id: consumerId, kind: 'consumer' },
    ];
    super(opts.seed, opts.network, opts.faults, specs.length, metrics);
    this.opts = opts;
    this.metrics = metrics;
    specs.forEach((s, index) => {
      this.nodes.set(s.id, {
        ...s,
        index,
        up: true,
        epoch: 0,
        timers: new Map(),
        restartAt: -1,
        pinnedRestart: false,
        sequencer: new AfterPersistSequencer(),
        releaseArmed: false,
        name: `${s.id}#0`,
        rounds: 0,
        failures: 0,
        round: null,
        queue: [],
        busy: false,
      });
    });
  }

  run(): void {
    for (const node of this.nodes.values()) if (node.kind === 'relay') this.setTimer(node, 'poll', 0);
    this.runPhases(this.opts.concurrency, this.opts.livenessBoundMs);
  }

  private node(id: NodeId): OutboxNode {
    return this.nodes.get(id)!;
  }

  /**
   * Carry out `actions` in order, the crash model possibly stopping the node
   * before any of them (or after all): a process dies between two commits,
   * or between a commit and the message that follows it. False if it crashed.
   */
  private actions(node: OutboxNode, actions: readonly (() => void)[]): boolean {
    const crashAt = this.crashPoint(node, actions.length);
    for (let i = 0; i < actions.length; i++) {
      if (i === crashAt) {
        this.crash(node);
        return false;
      }
      actions[i]!();
    }
    if (crashAt === actions.length) {
      this.crash(node);
      return false;
    }
    return true;
  }

  // ------------------------------------------------------------ the producer

  /** A producer thread starts its next local transaction (waiting while the producer is down). */
  protected startClient(): void {
    if (this.txnsStarted >= this.opts.txns) {
      this.clientsActive--;
      return;
    }
    const producer = this.node(producerId);
    if (!producer.up) {
      this.at(Math.max(this.now, producer.restartAt) + 1, () => this.startClient());
      return;
    }
    const txn: ProducerTxn = {
      txn: `t${++this.txnsStarted}`,
      key: this.opts.keys > 0 ? `k${this.rng.int(this.opts.keys)}` : null,
      amount: 1 + this.rng.int(100),
      committed: false,
      rowWritten: false,
      committedAt: -1,
    };
    this.txns.set(txn.txn, txn);
    const rollback = this.rng.chance(this.opts.rollbackShare);
    if (
      this.opts.protocol.producer === 'before-commit' &&
      !this.actions(producer, [() => this.writeOutboxRow(txn)])
    ) {
      return this.nextThread();
    }
    const epoch = producer.epoch;
    this.at(this.now + this.opts.fsyncMs, () => {
      // The producer crashed while the transaction was open: it never committed.
      if (producer.epoch === epoch && !rollback) this.commitProducerTxn(producer, txn);
      if (!txn.committed) return this.nextThread();
      this.waitingThreads.add(txn.txn);
      this.at(this.now + this.opts.producerWaitMs, () => this.threadDone(txn.txn));
    });
  }

  private threadDone(txn: string): void {
    if (this.waitingThreads.delete(txn)) this.nextThread();
  }

  private nextThread(): void {
    this.nextClient(this.opts.thinkMs, this.txnsStarted < this.opts.txns);
  }

  private commitProducerTxn(producer: OutboxNode, txn: ProducerTxn): void {
    const business = () => {
      txn.committed = true;
      txn.committedAt = this.now;
    };
    const row = () => this.writeOutboxRow(txn);
    switch (this.opts.protocol.producer) {
      case 'same-transaction':
        this.actions(producer, [
          () => {
            business();
            row();
          },
        ]);
        return;
      case 'after-commit':
        this.actions(producer, [business, row]);
        return;
      case 'before-commit':
        this.actions(producer, [business]);
        return;
    }
  }

  private writeOutboxRow(txn: ProducerTxn): void {
    txn.rowWritten = true;
    this.outbox.push({
      seq: this.outbox.length + 1,
      id: `msg-${txn.txn}`,
      txn: txn.txn,
      key: txn.key,
      amount: txn.amount,
      claimedBy: null,
      claimUntilMs: null,
      sentMs: null,
    });
  }

  private databaseUp(): boolean {
    return this.node(producerId).up;
  }

  // --------------------------------------------------------------- the relay

  private pollRelay(relay: OutboxNode): void {
    if (!this.databaseUp()) return this.relayFailed(relay);
    const candidates: OutboxCandidate[] = [];
    const scanMax = this.opts.timings.batch * relayScanFactor;
    // Rows are never un-sent: the scan starts at the oldest unsent row (an index, as the database's).
    while (this.outbox[this.firstUnsent]?.sentMs != null) this.firstUnsent++;
    for (let i = this.firstUnsent; i < this.outbox.length; i++) {
      const row = this.outbox[i]!;
      if (candidates.length >= scanMax) break;
      if (row.sentMs !== null) continue;
      candidates.push({
        seq: row.seq,
        key: row.key,
        claimedBy: row.claimedBy,
        claimUntilMs: row.claimUntilMs,
      });
    }
    if (candidates.length === 0 && !this.faultsOn && this.clientsActive === 0) return; // drained: stop polling
    const plannedSeqs = new Set(
      this.opts.protocol.relay === 'past-held-rows'
        ? candidates
            .filter((c) => c.claimedBy === null || c.claimedBy === relay.name || c.claimUntilMs! <= this.now)
            .slice(0, this.opts.timings.batch)
            .map((c) => c.seq)
        : planClaim(candidates, relay.name, this.now, this.opts.timings.batch),
    );
    if (plannedSeqs.size === 0) return this.setTimer(relay, 'poll', this.opts.timings.pollMs);
    relay.round = {
      round: ++relay.rounds,
      planned: candidates.filter((c) => plannedSeqs.has(c.seq)),
      untilMs: 0,
      claimed: [],
      release: [],
      chains: [],
      open: 0,
      acked: [],
      failed: false,
    };
    // The claim is a second statement, a database round trip after the scan.
    this.setTimer(relay, 'claim', this.network.rttMs);
  }

  private claimRows(relay: OutboxNode, round: RelayRound): void {
    if (!this.databaseUp()) return this.relayFailed(relay);
    const claimed = new Map<number, OutboxRow>();
    const claim = () => {
      round.untilMs = this.now + this.opts.timings.leaseMs;
      for (const c of round.planned) {
        const row = this.outbox[c.seq - 1]!;
        const heldByOther =
          row.claimedBy !== null && row.claimedBy !== relay.name && row.claimUntilMs! > this.now;
        if (row.sentMs !== null || heldByOther) continue;
        row.claimedBy = relay.name;
        row.claimUntilMs = round.untilMs;
        claimed.set(row.seq, row);
      }
      round.claimed = [...claimed.keys()];
    };
    const publish = () => {
      const { chains, release } =
        this.opts.protocol.relay !== 'all-at-once'
          ? publishChains(round.planned, new Set(claimed.keys()))
          : { chains: [...claimed.keys()].map((seq) => [seq]), release: [] };
      round.release = release;
      round.chains = chains.map((seqs) => ({ rows: seqs.map((s) => claimed.get(s)!), pos: 0 }));
      round.open = round.chains.length;
      if (round.open === 0) return this.finishRound(relay, round);
      for (let i = 0; i < round.chains.length; i++) this.publishNext(relay, round, i);
    };
    // A relay can die holding claims it never published: they lapse with the lease.
    this.actions(relay, [claim, publish]);
  }

  private publishNext(relay: OutboxNode, round: RelayRound, chain: number): void {
    const c = round.chains[chain]!;
    const row = c.rows[c.pos];
    // Like the runtime relay: no publish that could outlast the claim.
    if (row === undefined || this.now + this.opts.timings.publishTimeoutMs >= round.untilMs) {
      return this.chainDone(relay, round);
    }
    const msg: PubMsg = {
      type: 'PUB',
      msgId: row.id,
      txn: row.txn,
      key: row.key,
      amount: row.amount,
      round: round.round,
      chain,
    };
    this.send(relay.id, brokerId, msg, true);
    this.setTimer(relay, `pub:${chain}`, this.opts.timings.publishTimeoutMs);
  }

  private onPubAck(relay: OutboxNode, msg: PubAckMsg): void {
    const round = relay.round;
    if (round === null || round.round !== msg.round) return;
    const c = round.chains[msg.chain]!;
    const row = c.rows[c.pos];
    const timer = `pub:${msg.chain}`;
    if (row === undefined || row.id !== msg.msgId || !relay.timers.has(timer)) return;
    relay.timers.delete(timer);
    round.acked.push(row.seq);
    c.pos++;
    this.publishNext(relay, round, msg.chain);
  }

  private chainDone(relay: OutboxNode, round: RelayRound): void {
    if (--round.open === 0) this.finishRound(relay, round);
  }

  /** Mark what the broker acked, hand back the rest, and schedule the next round. */
  private finishRound(relay: OutboxNode, round: RelayRound): void {
    relay.round = null;
    if (!this.databaseUp()) return this.relayFailed(relay);
    const acked = new Set(round.acked);
    const mark = () => {
      for (const seq of round.acked) {
        const row = this.outbox[seq - 1]!;
        if (row.sentMs === null) row.sentMs = this.now;
      }
    };
    const release = () => {
      for (const seq of [...round.release, ...round.claimed.filter((s) => !acked.has(s))]) {
        const row = this.outbox[seq - 1]!;
        if (row.claimedBy === relay.name) {
          row.claimedBy = null;
          row.claimUntilMs = null;
        }
      }
    };
    if (!this.actions(relay, [mark, release])) return;
    if (round.failed) return this.relayFailed(relay);
    relay.failures = 0;
    this.setTimer(relay, 'poll', round.claimed.length > 0 ? 0 : this.opts.timings.pollMs);
  }

  private relayFailed(relay: OutboxNode): void {
    relay.round = null;
    relay.failures++;
    const t = this.opts.timings;
    this.setTimer(relay, 'poll', backoffMs(relay.failures, t.relayBackoffBaseMs, t.relayBackoffMaxMs));
  }

  // -------------------------------------------------------------- the broker

  private onPublish(broker: OutboxNode, from: NodeId, msg: PubMsg): void {
    const epoch = broker.epoch;
    // Stored (fsync) before the ack leaves.
    this.at(this.now + this.opts.fsyncMs, () => {
      if (broker.epoch !== epoch) return;
      const seen = this.dedup.get(msg.msgId);
      const duplicate = seen !== undefined && this.now - seen < this.opts.timings.dedupWindowMs;
      const store = () => {
        if (duplicate) {
          this.metrics.dedupSuppressed++;
          return;
        }
        this.metrics.published++;
        this.dedup.set(msg.msgId, this.now);
        const entry: StreamEntry = {
          streamSeq: this.stream.length + 1,
          msgId: msg.msgId,
          txn: msg.txn,
          key: msg.key,
          amount: msg.amount,
          deliveries: 0,
          acked: false,
        };
        this.stream.push(entry);
        this.deliver(broker, entry);
      };
      const ack = () => {
        const reply: PubAckMsg = {
          type: 'PUBACK',
          msgId: msg.msgId,
          duplicate,
          round: msg.round,
          chain: msg.chain,
        };
        this.send(brokerId, from, reply, true);
      };
      this.actions(broker, [store, ack]);
    });
  }

  /** Push a message to the durable consumer and wait `ackWaitMs` for its ack. */
  private deliver(broker: OutboxNode, entry: StreamEntry): void {
    if (entry.deliveries > 0) this.metrics.redeliveries++;
    entry.deliveries++;
    const msg: DeliverMsg = {
      type: 'MSG',
      streamSeq: entry.streamSeq,
      msgId: entry.msgId,
      txn: entry.txn,
      amount: entry.amount,
      deliveries: entry.deliveries,
    };
    this.send(brokerId, consumerId, msg, true);
    this.setTimer(broker, `redeliver:${entry.streamSeq}`, this.opts.timings.ackWaitMs);
  }

  private onAck(broker: OutboxNode, msg: AckMsg): void {
    const entry = this.stream[msg.streamSeq - 1]!;
    entry.acked = true;
    broker.timers.delete(`redeliver:${msg.streamSeq}`);
  }

  // ------------------------------------------------------------ the consumer

  private onDeliver(consumer: OutboxNode, msg: DeliverMsg): void {
    consumer.queue.push(msg);
    if (!consumer.busy) this.handleNext(consumer);
  }

  /** Handle the next message: one local transaction (commit latency `fsyncMs`), then the ack. */
  private handleNext(consumer: OutboxNode): void {
    const msg = consumer.queue.shift();
    if (msg === undefined) {
      consumer.busy = false;
      return;
    }
    consumer.busy = true;
    const epoch = consumer.epoch;
    this.at(this.now + this.opts.fsyncMs, () => {
      if (consumer.epoch !== epoch) return;
      if (this.actions(consumer, this.consumerActions(msg))) this.handleNext(consumer);
    });
  }

  private consumerActions(msg: DeliverMsg): (() => void)[] {
    const ack = () => this.send(consumerId, brokerId, { type: 'ACK', streamSeq: msg.streamSeq }, true);
    if (this.inbox.has(msg.msgId)) {
      this.metrics.inboxSuppressed++;
      return [ack];
    }
    const credit = () => {
      const a = this.applied.get(msg.txn);
      if (a === undefined) this.applied.set(msg.txn, { count: 1, firstAt: this.now });
      else a.count++;
      this.threadDone(msg.txn);
    };
    const inboxRow = () => this.inbox.add(msg.msgId);
    switch (this.opts.protocol.consumer) {
      case 'inbox':
        return [
          () => {
            inboxRow();
            credit();
          },
          ack,
        ];
      case 'ack-before-commit':
        return [
          ack,
          () => {
            inboxRow();
            credit();
          },
        ];
      case 'separate-inbox-transaction':
        return [credit, inboxRow, ack];
    }
  }

  // ------------------------------------------------------- the kernel's part

  protected receive(node: OutboxNode, from: NodeId, message: unknown): void {
    const msg = message as WireMsg;
    switch (msg.type) {
      case 'PUB':
        return this.onPublish(node, from, msg);
      case 'PUBACK':
        return this.onPubAck(node, msg);
      case 'MSG':
        return this.onDeliver(node, msg);
      case 'ACK':
        return this.onAck(node, msg);
    }
  }

  /** A timer fired: relays' `poll`, `claim`, `pub:<chain>`; the broker's `redeliver:<streamSeq>`. */
  protected step(node: OutboxNode, input: Input<unknown>): void {
    if (!node.up || input.type !== 'timeout') return;
    const timer = input.timer;
    if (timer === 'poll') return this.pollRelay(node);
    if (timer === 'claim') return node.round === null ? undefined : this.claimRows(node, node.round);
    if (timer.startsWith('pub:')) {
      const round = node.round;
      if (round === null) return;
      round.failed = true;
      return this.chainDone(node, round);
    }
    if (timer.startsWith('redeliver:')) {
      const entry = this.stream[Number(timer.slice('redeliver:'.length)) - 1]!;
      if (!entry.acked) this.deliver(node, entry);
      return;
    }
    assert(false, `unknown outbox-world timer ${timer}`);
  }

  protected onClientMessage(): void {
    assert(false, 'producer threads run inside the producer: nothing is sent to them');
  }

  protected persist(_node: OutboxNode, _write: SequencedWrite<unknown>): void {
    assert(false, 'the outbox world keeps durable state as data, not as a log');
  }

  protected apply(): void {
    assert(false, 'the outbox world has no protocol effects');
  }

  protected crash(node: OutboxNode, downtimeMs?: number, pinned = false): void {
    this.metrics.crashes++;
    this.markDown(node);
    node.round = null;
    node.queue = [];
    node.busy = false;
    this.scheduleRestart(node, downtimeMs, pinned);
  }

  protected restart(node: OutboxNode): void {
    if (!this.markUp(node)) return;
    node.name = `${node.id}#${node.epoch}`;
    node.failures = 0;
    if (node.kind === 'relay') this.setTimer(node, 'poll', 0);
    // JetStream keeps the stream and the consumer's acks: what was unacked is delivered again.
    if (node.kind === 'broker') for (const e of this.stream) if (!e.acked) this.deliver(node, e);
  }
}
