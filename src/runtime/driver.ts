// The runtime driver: executes a protocol core's effects for real, with
// wall-clock timers, a durable log and a transport. It is the runtime twin of
// the simulator's worlds (src/sim/commit-world.ts, src/sim/branch/world.ts),
// and follows the same ordering rule (src/protocol/common/types.ts), kept by
// the same after-persist sequencer (src/protocol/common/sequencer.ts): an
// after-persist effect runs only once every write this node issued so far is
// durable. Appends may settle out of order; the sequencer waits for all of
// them up to the step's last.
//
// A failed log write is different here from the simulator's failing disk: a
// real store cannot say whether the records reached stable storage (see
// log/types.ts), so telling the core `persistFailed` — which lets a
// coordinator abort — could contradict a commit record that did land. The
// driver therefore fails stop, like a crash: it halts, drops everything that
// waited on the write, and reports the error; recovery from the log on the
// next start decides what happened.
//
// Owns: one node's core state, its timers and its in-flight writes. It does not
// know any protocol; the transport decides what a message to another node
// means (for the 2PC coordinator: a call on a database adapter).

import type { ReportSaga, SagaEffect, SagaRole } from '../protocol/branch/types.ts';
import { AfterPersistSequencer, type SequencedWrite } from '../protocol/common/sequencer.ts';
import type { Input, NodeId, Outcome, TxnId } from '../protocol/common/types.ts';
import type { DurableLog } from './log/types.ts';
import { NamedTimers } from './timers.ts';

export interface DriverPorts<M, R> {
  log: DurableLog<R>;
  /** Deliver `msg` to node `to`. Must not throw; failures are the transport's to handle (or to drop, like a network). */
  send(to: NodeId, msg: M): void;
  /** The core decided how a transaction ends for its client. */
  outcome(txn: TxnId, client: NodeId, outcome: Outcome): void;
  /** The core applied or gave up local work (participant roles only). */
  resource?(txn: TxnId, action: 'commit' | 'abort' | 'release'): void;
  /** The log failed: the driver has halted, as if the process had crashed. */
  halted(err: unknown): void;
  /** A saga or TCC core reported how a saga ended (`reportSaga`); ignored when absent. */
  saga?(report: ReportSaga): void;
}

/** The common effects plus the saga cores' `reportSaga` (a plain `Role` never emits it). */
type AnyEffect<M, R> = SagaEffect<M, R>;

export class Driver<S, M, R, C> {
  private state: S | undefined;
  private readonly timers = new NamedTimers();
  /** Which writes to issue, and the after-persist effects waiting for them. */
  private readonly sequencer = new AfterPersistSequencer<AnyEffect<M, R>, R>();
  private halted = false;
  private idle: (() => void)[] = [];
  private closed = false;

  constructor(
    // A `Role` is a `SagaRole` whose effects never include `reportSaga`.
    private readonly role: SagaRole<S, M, R, C>,
    readonly self: NodeId,
    private readonly config: C,
    private readonly ports: DriverPorts<M, R>,
  ) {}

  /**
   * Rebuild the node from its log (recovery) and carry out what recovery asks
   * for. `onRecovered` sees the rebuilt state before any of that starts.
   */
  async start(onRecovered?: (state: S) => void): Promise<void> {
    const log = await this.ports.log.load();
    const { state, effects } = this.role.recover(this.self, this.config, log);
    this.state = state;
    onRecovered?.(state);
    this.execute(effects);
  }

  /** Read-only access for status pages and tests. */
  peek(): S {
    if (this.state === undefined) throw new Error('driver not started');
    return this.state;
  }

  input(input: Input<M>): void {
    if (this.closed || this.state === undefined) return;
    const { state, effects } = this.role.step(this.state, input);
    this.state = state;
    this.execute(effects);
  }

  private execute(effects: readonly AnyEffect<M, R>[]): void {
    const plan = this.sequencer.step(effects);
    for (const a of plan.actions) {
      if (a.kind === 'write') this.persist(a.write);
      else this.apply(a.effect);
    }
    for (const e of plan.afterPersist) this.apply(e);
  }

  /**
   * Stops the driver as a failed append does, for a log write it did not
   * issue itself (a checkpoint): a store that failed refuses every later
   * call, so carrying on would only fail later and less clearly.
   */
  fail(err: unknown): void {
    this.halt(err);
  }

  /** True once a log failure stopped the driver. */
  get failed(): boolean {
    return this.halted;
  }

  private persist(write: SequencedWrite<R>): void {
    this.ports.log.append([write.record], write.force).then(
      () => this.settle(write.seq),
      (err: unknown) => this.halt(err),
    );
  }

  private settle(seq: number): void {
    if (this.halted) return;
    this.sequencer.durable(seq);
    // No crash window to model here: what the write released runs at once.
    for (const e of this.sequencer.release()) if (!this.closed) this.apply(e);
    if (this.sequencer.idle) for (const resolve of this.idle.splice(0)) resolve();
  }

  private halt(err: unknown): void {
    if (this.halted) return;
    this.halted = true;
    this.closed = true;
    this.timers.clear();
    this.sequencer.crash();
    for (const resolve of this.idle.splice(0)) resolve();
    this.ports.halted(err);
  }

  private apply(e: AnyEffect<M, R>): void {
    switch (e.type) {
      case 'send':
      case 'sendAfterPersist':
        this.ports.send(e.to, e.msg);
        return;
      case 'setTimer': {
        const timer = e.timer;
        this.timers.set(timer, e.delayMs, () => this.input({ type: 'timeout', timer }));
        return;
      }
      case 'cancelTimer':
        this.timers.cancel(e.timer);
        return;
      case 'resource':
        this.ports.resource?.(e.txn, e.action);
        return;
      case 'reportOutcome':
        this.ports.outcome(e.txn, e.client, e.outcome);
        return;
      case 'reportSaga':
        this.ports.saga?.(e);
        return;
      case 'persist':
        throw new Error('persist effects are carried out by execute()');
    }
  }

  /** Wait until every write issued so far has settled. */
  settled(): Promise<void> {
    if (this.halted || this.sequencer.idle) return Promise.resolve();
    return new Promise((resolve) => this.idle.push(resolve));
  }

  /** Stop timers and stop stepping; in-flight writes still complete in the log. */
  async close(): Promise<void> {
    this.closed = true;
    this.timers.clear();
    await this.settled();
  }
}
