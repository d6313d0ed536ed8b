// The lifecycle rules of the ResourceAdapter port (types.ts) that do not depend
// on the database, shared by the adapters: which branch operations a state
// allows and the errors that refuse the others, how a SQL branch holds its one
// pooled connection until it lets go of it, and what an adapter keeps of its
// active branches so that `close()` can roll them back. The SQL that begins,
// prepares, rolls back and resolves a branch stays in each adapter.

import { DtxError, ResourceUnavailableError } from '../errors.ts';
import type { BranchState } from './types.ts';

/** The refusal of `operation` on a branch that is no longer active. */
export function notActiveError(gid: string, operation: string, state: BranchState): DtxError {
  return new DtxError('DTX_INVALID_STATE', `cannot ${operation} branch ${gid}: it is ${state}`, { gid });
}

/**
 * Whether `rollback()` of a branch in `state` has anything to do: false once it
 * is rolled back or finished read-only (rollback is then a no-op), true while
 * it is active. A prepared or in-doubt branch can only be resolved by gid, so
 * that throws DTX_INVALID_STATE.
 */
export function rollbackNeeded(gid: string, state: BranchState): boolean {
  if (state === 'rolledBack' || state === 'readOnly') return false;
  if (state !== 'active') {
    throw new DtxError(
      'DTX_INVALID_STATE',
      `branch ${gid} is ${state}: resolve it with adapter.rollbackPrepared(gid)`,
      { gid },
    );
  }
  return true;
}

/** The refusal of any call on an adapter after `close()`. */
export function adapterClosedError(name: string): DtxError {
  return new DtxError('DTX_INVALID_STATE', `the ${name} adapter is closed`);
}

/** How an adapter holds one pooled connection of its driver. */
export interface ConnectionHandling<C> {
  /** Starts listening for the connection's asynchronous errors; returns the function that stops it. */
  watch(connection: C, onError: () => void): () => void;
  /** Gives the connection back to its pool, or destroys it when its session is unusable. */
  release(connection: C, destroy: boolean): void;
}

/**
 * A SQL branch's state and the pooled connection it runs on, from `begin` until
 * the branch lets go of the connection. An error event on the connection marks
 * it lost: the server rolls back the unprepared work of a session that closes,
 * so the branch's next operation detaches it as rolled back and is refused.
 */
export class BranchConnection<C> {
  readonly #gid: string;
  readonly #handling: ConnectionHandling<C>;
  readonly #onDetach: () => void;
  #state: BranchState = 'active';
  #connection: C | undefined;
  #lost = false;
  #unwatch: () => void;

  /** `onDetach` runs when the branch ends and gives the connection up (the adapter forgets it). */
  constructor(gid: string, connection: C, handling: ConnectionHandling<C>, onDetach: () => void) {
    this.#gid = gid;
    this.#connection = connection;
    this.#handling = handling;
    this.#onDetach = onDetach;
    this.#unwatch = handling.watch(connection, () => {
      this.#lost = true;
    });
  }

  get state(): BranchState {
    return this.#state;
  }

  /**
   * The connection, for `operation` on an active branch. Throws
   * DTX_INVALID_STATE when the branch is not active, and ResourceUnavailableError
   * (after detaching as rolled back) when its connection was lost.
   */
  active(operation: string): C {
    if (this.#state !== 'active' || this.#connection === undefined) {
      throw notActiveError(this.#gid, operation, this.#state);
    }
    if (this.#lost) {
      this.detach('rolledBack', true);
      throw new ResourceUnavailableError(
        `connection of branch ${this.#gid} was lost; the branch is rolled back`,
        { gid: this.#gid },
      );
    }
    return this.#connection;
  }

  /**
   * Ends the branch locally in `state`: first `rollback` on the connection,
   * unless it is already known to be broken (`broken`, or lost), then detaches.
   * A connection that is broken, or whose `rollback` fails, is destroyed rather
   * than pooled: the server rolls back an open transaction when its connection
   * closes. No-op once the branch has let go of its connection.
   */
  async end(
    state: BranchState,
    broken: boolean,
    rollback?: (connection: C) => Promise<unknown>,
  ): Promise<void> {
    const connection = this.#connection;
    if (connection === undefined) return;
    let destroy = broken || this.#lost;
    if (rollback !== undefined && !destroy) {
      try {
        await rollback(connection);
      } catch {
        destroy = true;
      }
    }
    this.detach(state, destroy);
  }

  /** Ends the branch in `state` at once: its connection goes back to the pool, or is destroyed. */
  detach(state: BranchState, destroy: boolean): void {
    const connection = this.#connection;
    this.#state = state;
    this.#connection = undefined;
    this.#unwatch();
    if (connection !== undefined) this.#handling.release(connection, destroy);
    this.#onDetach();
  }

  /**
   * Ends the branch in `state` without releasing its connection: the caller
   * keeps it from now on, still open and no longer watched. `onDetach` does not
   * run; the new keeper tells the adapter.
   */
  handOver(state: BranchState): void {
    this.#state = state;
    this.#connection = undefined;
    this.#unwatch();
  }
}

/** What an adapter needs of a branch to roll it back when it closes. */
export interface AbandonableBranch {
  /** Rolls the branch back if it is still active; never rejects. */
  abandon(): Promise<void>;
}

/**
 * An adapter's own state: whether it is closed, its active branches (so that
 * `close()` rolls them back), and its one-time prerequisites check.
 */
export class AdapterLifecycle<B extends AbandonableBranch> {
  readonly #name: string;
  readonly #active = new Set<B>();
  #closed = false;
  #prerequisites: Promise<void> | undefined;

  /** `name` is the database's, as the closed error says it: `the <name> adapter is closed`. */
  constructor(name: string) {
    this.#name = name;
  }

  get closed(): boolean {
    return this.#closed;
  }

  checkOpen(): void {
    if (this.#closed) throw adapterClosedError(this.#name);
  }

  /**
   * Runs `check` before the first branch and shares its outcome with every
   * `begin` waiting on it. A failed check is forgotten, so the next `begin`
   * checks again (the server may have been fixed meanwhile).
   */
  prerequisites(check: () => Promise<void>): Promise<void> {
    this.#prerequisites ??= check().catch((error: unknown) => {
      this.#prerequisites = undefined;
      throw error;
    });
    return this.#prerequisites;
  }

  /**
   * Tracks a branch that has just begun. `close()` may have run while the
   * branch was being opened: it is then rolled back at once and the caller gets
   * the closed error, so that no branch outlives its adapter.
   */
  async admit(branch: B): Promise<B> {
    this.#active.add(branch);
    if (this.#closed) {
      await branch.abandon();
      this.checkOpen();
    }
    return branch;
  }

  /** A branch that has finished, or that someone else keeps now. */
  forget(branch: B): void {
    this.#active.delete(branch);
  }

  /**
   * Marks the adapter closed and rolls back its active branches. Resolves false
   * when it was closed already: the caller then has nothing left to release.
   */
  async close(): Promise<boolean> {
    if (this.#closed) return false;
    this.#closed = true;
    await Promise.all([...this.#active].map((branch) => branch.abandon()));
    return true;
  }
}
