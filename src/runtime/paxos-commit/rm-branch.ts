// One resource manager of Paxos Commit on a real database: the pure RM core
// (src/protocol/paxos-commit/rm.ts) for one transaction's branch on one
// resource, whose durable log is the database itself.
//
// The RM core forces three records; on a database each one is the database's
// own forced write:
//   `prepared`  → `branch.prepare()`    (PREPARE TRANSACTION / XA PREPARE)
//   `committed` → `commitPrepared(gid)` (COMMIT PREPARED / XA COMMIT)
//   `aborted`   → `rollbackPrepared(gid)`
// so "the vote leaves only once prepared is durable" is the core's
// sendAfterPersist, kept by the one after-persist sequencer
// (src/protocol/common/sequencer.ts), exactly as in the simulator. A NO vote
// (prepare rejected) is a failed `prepared` write: the core hears
// `persistFailed` and votes `aborted` in its place. A commit or rollback that
// fails (the database is down) is a failed write too: the core writes it
// again, after a pause that doubles up to `resolveBackoffMsMax`, until the
// database is back. Writes of one instance run one after another (a log is
// sequential).
//
// A recovered instance (a prepared branch found by `listPrepared`, whose
// process died) is rebuilt by the core's own `recover` from the one record the
// database holds, `prepared`; the participant list and leader come from the
// gid (./gids.ts).
//
// One instance per (resource, transaction): the RM core keeps transactions
// independent, so a state per transaction loses nothing and lets a process
// take over one in-doubt branch without merging states.

import type { Branch, ResourceAdapter } from '../../adapters/types.ts';
import { AfterPersistSequencer, type SequencedWrite } from '../../protocol/common/sequencer.ts';
import type { Effect, Input, NodeId, TxnId } from '../../protocol/common/types.ts';
import { paxosRm, type RmState } from '../../protocol/paxos-commit/rm.ts';
import type {
  PaxosCommitConfig,
  PaxosCommitMsg,
  PaxosCommitRecord,
} from '../../protocol/paxos-commit/types.ts';
import { NamedTimers } from '../timers.ts';

type Fx = Effect<PaxosCommitMsg, PaxosCommitRecord>;

/** Longest pause between two attempts to resolve a branch whose database is down. */
export const resolveBackoffMsMax = 2000;
const resolveBackoffMsMin = 50;

export interface RmBranchPorts {
  send(from: NodeId, to: NodeId, msg: PaxosCommitMsg): void;
  /** The core is done with the transaction here: the branch was committed, rolled back, or given up. */
  finished(rm: RmBranch, action: 'commit' | 'abort' | 'release'): void;
  /** A database call failed (it is retried); for warnings. */
  warn?(message: string): void;
}

export class RmBranch {
  private state: RmState;
  private readonly sequencer = new AfterPersistSequencer<Fx, PaxosCommitRecord>();
  private readonly timers = new NamedTimers();
  private writes: Promise<void> = Promise.resolve();
  private failures = 0;
  private closed = false;
  /** Set once the core applied an outcome (or gave the branch up). */
  done: 'commit' | 'abort' | 'release' | null = null;
  /** When the branch became durably prepared (its vote could leave), for in-doubt measurements. */
  preparedAt: number | null = null;

  private constructor(
    readonly resource: NodeId,
    readonly txn: TxnId,
    readonly gid: string,
    private readonly adapter: ResourceAdapter,
    private branch: Branch | null,
    /** No branch was opened on this resource: the RM votes and applies without a database call. */
    private readonly unusedResource: boolean,
    config: Partial<PaxosCommitConfig>,
    private readonly ports: RmBranchPorts,
    recovered: readonly PaxosCommitRecord[] | null,
  ) {
    if (recovered === null) {
      this.state = paxosRm.init(resource, config);
    } else {
      const r = paxosRm.recover(resource, config, recovered);
      this.state = r.state;
      this.preparedAt = Date.now();
      queueMicrotask(() => this.execute(r.effects));
    }
  }

  /** A live branch: the callback ran its work in `branch`; `leader` will decide. */
  static live(
    resource: NodeId,
    txn: TxnId,
    adapter: ResourceAdapter,
    branch: Branch,
    config: Partial<PaxosCommitConfig>,
    ports: RmBranchPorts,
  ): RmBranch {
    return new RmBranch(resource, txn, branch.gid, adapter, branch, false, config, ports, null);
  }

  /** A resource the transaction did not use: it votes `prepared` (nothing to prepare) and applies nothing. */
  static unused(
    resource: NodeId,
    txn: TxnId,
    gid: string,
    adapter: ResourceAdapter,
    config: Partial<PaxosCommitConfig>,
    ports: RmBranchPorts,
  ): RmBranch {
    return new RmBranch(resource, txn, gid, adapter, null, true, config, ports, null);
  }

  /** A branch found prepared in the database: in doubt, it asks `leader` (then the other candidates). */
  static recovered(
    resource: NodeId,
    txn: TxnId,
    gid: string,
    adapter: ResourceAdapter,
    participants: NodeId[],
    leader: NodeId,
    client: NodeId,
    config: Partial<PaxosCommitConfig>,
    ports: RmBranchPorts,
  ): RmBranch {
    const record: PaxosCommitRecord = { type: 'prepared', txn, participants, leader, client };
    return new RmBranch(resource, txn, gid, adapter, null, false, config, ports, [record]);
  }

  input(input: Input<PaxosCommitMsg>): void {
    if (this.closed) return;
    this.execute(paxosRm.step(this.state, input).effects);
  }

  private execute(effects: readonly Fx[]): void {
    const plan = this.sequencer.step(effects);
    for (const a of plan.actions) {
      if (a.kind === 'write') this.persist(a.write);
      else this.apply(a.effect);
    }
    for (const e of plan.afterPersist) this.apply(e);
    this.checkDone();
  }

  private persist(write: SequencedWrite<PaxosCommitRecord>): void {
    this.writes = this.writes.then(async () => {
      // A failure of an earlier write failed this one with it: it must not run.
      if (this.closed || !this.sequencer.isPending(write.seq)) return;
      try {
        await this.write(write.record);
      } catch (error) {
        this.onWriteFailed(write, error);
        return;
      }
      this.failures = 0;
      if (write.record.type === 'prepared') this.preparedAt = Date.now();
      this.sequencer.durable(write.seq);
      for (const e of this.sequencer.release()) this.apply(e);
      this.checkDone();
    });
  }

  /** The record as the database's own forced write. */
  private async write(r: PaxosCommitRecord): Promise<void> {
    if (this.unusedResource) return;
    switch (r.type) {
      case 'prepared':
        // A recovered branch is prepared already: the core never asks again.
        if (this.branch !== null) await this.branch.prepare();
        return;
      case 'committed':
        await this.adapter.commitPrepared(this.gid);
        return;
      case 'aborted':
        await this.adapter.rollbackPrepared(this.gid);
        return;
      default:
        throw new Error(`an RM writes no ${r.type} record`);
    }
  }

  private onWriteFailed(write: SequencedWrite<PaxosCommitRecord>, error: unknown): void {
    const failure = this.sequencer.failed(write.seq);
    for (const e of this.sequencer.release()) this.apply(e);
    if (write.record.type === 'prepared') {
      // A NO vote: the core votes `aborted` at once.
      for (const i of failure.inputs) this.input(i);
      return;
    }
    // The database is unreachable: the core will write the outcome again; give it a moment.
    const delayMs = Math.min(resolveBackoffMsMax, resolveBackoffMsMin * 2 ** this.failures++);
    this.ports.warn?.(
      `${this.resource} ${this.gid}: ${(error as Error)?.message ?? String(error)}; retrying`,
    );
    this.timers.set(`retry:${write.seq}`, delayMs, () => {
      for (const i of failure.inputs) this.input(i);
    });
  }

  private apply(e: Fx): void {
    switch (e.type) {
      case 'send':
      case 'sendAfterPersist':
        this.ports.send(this.resource, e.to, e.msg);
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
        // Prepared work was committed or rolled back by the record's write;
        // unvoted work is only rolled back here.
        if (this.branch !== null && this.branch.state === 'active')
          void this.branch.rollback().catch(() => {});
        this.done = e.action;
        return;
      case 'reportOutcome':
      case 'persist':
        return;
    }
  }

  private checkDone(): void {
    if (this.done === null || this.closed || !this.sequencer.idle) return;
    this.close();
    this.ports.finished(this, this.done);
  }

  /** Stops timers; in-flight database calls complete on their own. */
  close(): void {
    this.closed = true;
    this.timers.clear();
  }
}
