// The commit fence's state: a shared/exclusive gate between commit phases
// (shared: any number at once) and the opening of consistent snapshots
// (exclusive: only while no commit phase is running). A snapshot opened on
// every database while the gate is held exclusively can never see a
// transaction committed on one database and not yet on another, because no
// transaction is between its first and its last commit at that moment.
//
// Snapshot requests take precedence: once one waits, new commit phases queue
// behind it, so a steady stream of commits cannot starve it; the snapshot
// waits only for the commit phases already running, and holds the gate only
// while it opens its snapshots (milliseconds), so commits are held back that
// long and no longer. Requests of one kind are granted in arrival order.
//
// Pure and synchronous: the runtime (src/runtime/commit-fence.ts) turns
// grants into resolved promises and cancels what waited too long.

import { assert } from '../common/assert.ts';

/** What the gate is asked for: a commit phase (shared) or the opening of snapshots (exclusive). */
export type FenceKind = 'commit' | 'snapshot';

export interface FenceState {
  /** Commit phases running now. */
  readonly commitPhases: number;
  /** Whether snapshots are being opened now (the exclusive hold). */
  readonly snapshotOpen: boolean;
  /** Requests not granted yet, oldest first. */
  readonly waiting: readonly { readonly id: number; readonly kind: FenceKind }[];
}

export type FenceInput =
  | { type: 'request'; id: number; kind: FenceKind }
  | { type: 'release'; kind: FenceKind }
  /** A waiting request given up (its caller's wait ended); unknown ids are ignored. */
  | { type: 'cancel'; id: number };

export const emptyFence: FenceState = { commitPhases: 0, snapshotOpen: false, waiting: [] };

/** Applies one input; `granted` lists the request ids that now hold the gate, in grant order. */
export function stepFence(state: FenceState, input: FenceInput): { state: FenceState; granted: number[] } {
  let next: FenceState;
  switch (input.type) {
    case 'request':
      next = { ...state, waiting: [...state.waiting, { id: input.id, kind: input.kind }] };
      break;
    case 'release':
      if (input.kind === 'commit') {
        assert(state.commitPhases > 0, 'fence: release of a commit phase that never entered');
        next = { ...state, commitPhases: state.commitPhases - 1 };
      } else {
        assert(state.snapshotOpen, 'fence: release of a snapshot hold that is not held');
        next = { ...state, snapshotOpen: false };
      }
      break;
    case 'cancel':
      next = { ...state, waiting: state.waiting.filter((w) => w.id !== input.id) };
      break;
  }
  return grant(next);
}

/** Grants what the rules allow: the oldest snapshot request once no commit runs; commits while no snapshot opens or waits. */
function grant(state: FenceState): { state: FenceState; granted: number[] } {
  if (state.snapshotOpen) return { state, granted: [] };
  const firstSnapshot = state.waiting.find((w) => w.kind === 'snapshot');
  if (firstSnapshot !== undefined) {
    if (state.commitPhases > 0) return { state, granted: [] };
    return {
      state: { ...state, snapshotOpen: true, waiting: state.waiting.filter((w) => w !== firstSnapshot) },
      granted: [firstSnapshot.id],
    };
  }
  const commits = state.waiting.filter((w) => w.kind === 'commit');
  if (commits.length === 0) return { state, granted: [] };
  return {
    state: { ...state, commitPhases: state.commitPhases + commits.length, waiting: [] },
    granted: commits.map((w) => w.id),
  };
}
