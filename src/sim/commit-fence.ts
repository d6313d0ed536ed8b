// The commit fence in the simulator: the runtime's design for consistent
// snapshot reads (docs/isolation.md, src/runtime/commit-fence.ts), driven
// over the same pure core (../protocol/isolation/fence.ts), so that the design
// is proven under every fault the simulator injects before it is trusted on
// real databases.
//
// - A commit phase holds the fence shared. It starts at the step in which a
//   node first tells a participant to commit (2PC, Paxos Commit and naive
//   commit: COMMIT; 3PC: PRE_COMMIT, after which participants may commit on
//   their own): that step waits, undone, until the fence admits it, and
//   is then taken again from the node's state at that moment (as if its
//   input had arrived later, which the network allows anyway). The cores
//   update their state in place, so while commits are held back the world
//   copies a node's state before each step, to put it back. The hold ends
//   when every participant of the transaction has applied its outcome.
// - A snapshot holds it exclusively while it opens a snapshot on every
//   participant; a waiting snapshot goes before new commit phases.
//
// Like the runtime's shared fence (`createPostgresCommitFence`), the fence
// is one for the whole world, whichever node decides: a Paxos Commit
// candidate that takes over is fenced like the leader. It is modelled as
// reliable (no faults reach it). One difference from the runtime, on the
// safe side: a hold here outlives a crash of the node that took it, where the
// runtime's ends with the coordinator's session until recovery re-enters it.

import { assert } from '../protocol/common/assert.ts';
import { emptyFence, type FenceInput, type FenceState, stepFence } from '../protocol/isolation/fence.ts';

export class SimCommitFence {
  private state: FenceState = emptyFence;
  private nextId = 1;
  /** Transactions whose commit phase holds the fence, and the request that holds it for them. */
  private readonly holds = new Map<string, number>();
  /** Held steps: request id → the step to take again once the fence admits it. */
  private readonly retries = new Map<number, () => void>();
  /** Waiting snapshots: request id → what opens them. */
  private readonly snapshots = new Map<number, () => void>();
  private openSnapshot = -1;
  /** A grant handed to the step being taken again, until it claims it. */
  private pendingGrant = -1;
  /** How many steps had to wait for a snapshot (commit phases held back). */
  heldBack = 0;

  constructor(
    /** Runs `run` as an event of its own at the current virtual time. */
    private readonly later: (run: () => void) => void,
  ) {}

  /** Whether a commit phase starting now would have to wait (a snapshot waits or is being opened). */
  holdsBackCommits(): boolean {
    if (this.pendingGrant >= 0) return false;
    return this.state.snapshotOpen || this.state.waiting.some((w) => w.kind === 'snapshot');
  }

  isHeld(txn: string): boolean {
    return this.holds.has(txn);
  }

  /**
   * A step is about to start `txn`'s commit phase: true when it may go on
   * (the fence is held for `txn` from now on); false when it must wait, and
   * `retry` takes the step again once the fence admits it.
   */
  enterCommit(txn: string, retry: () => void): boolean {
    assert(!this.holds.has(txn), `fence: ${txn} already holds the fence`);
    if (this.pendingGrant >= 0) {
      this.holds.set(txn, this.pendingGrant);
      this.pendingGrant = -1;
      return true;
    }
    const id = this.nextId++;
    if (this.apply({ type: 'request', id, kind: 'commit' }).includes(id)) {
      this.holds.set(txn, id);
      return true;
    }
    this.heldBack++;
    this.retries.set(id, retry);
    return false;
  }

  /** Every participant of `txn` applied its outcome: its commit phase leaves the fence. */
  finished(txn: string): void {
    if (!this.holds.delete(txn)) return;
    this.apply({ type: 'release', kind: 'commit' });
  }

  /** Asks for the fence to open a snapshot; `open` runs (as an event) once it is held. Returns the request's id. */
  requestSnapshot(open: () => void): number {
    const id = this.nextId++;
    this.snapshots.set(id, open);
    this.apply({ type: 'request', id, kind: 'snapshot' });
    return id;
  }

  /** The snapshot is open everywhere, or given up: its hold ends, or its request is withdrawn. */
  endSnapshot(id: number): void {
    this.snapshots.delete(id);
    if (this.openSnapshot === id) {
      this.openSnapshot = -1;
      this.apply({ type: 'release', kind: 'snapshot' });
    } else this.apply({ type: 'cancel', id });
  }

  private apply(input: FenceInput): number[] {
    const { state, granted } = stepFence(this.state, input);
    this.state = state;
    for (const id of granted) {
      const open = this.snapshots.get(id);
      if (open !== undefined) {
        this.openSnapshot = id;
        this.later(open);
        continue;
      }
      const retry = this.retries.get(id);
      if (retry === undefined) continue; // granted at once: the caller sees it
      this.retries.delete(id);
      this.later(() => {
        this.pendingGrant = id;
        retry();
        // The step, taken again, started no commit phase (or could not be taken): the grant goes back.
        if (this.pendingGrant === id) {
          this.pendingGrant = -1;
          this.apply({ type: 'release', kind: 'commit' });
        }
      });
    }
    return granted;
  }
}
