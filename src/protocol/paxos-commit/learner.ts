// Learning what Paxos Commit chose, from phase 2b messages (PaxosCommit.tla's
// `Decided(rm, v)`: some ballot in which a majority of acceptors accepted v).
// Shared by the leader candidates and, in Faster Paxos Commit, by the RMs.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { assert } from '../common/assert.ts';
import type { NodeId, Outcome, TxnId } from '../common/types.ts';
import type { Ballot, PcValue, Phase2bEntry } from './types.ts';

export interface Learner {
  /** Per instance, per ballot: the value accepted in that ballot and who accepted it. */
  votes: Map<NodeId, Map<Ballot, { val: PcValue; accs: Set<NodeId> }>>;
  /** Per instance, the chosen value once known. */
  chosen: Map<NodeId, PcValue>;
}

export const newLearner = (): Learner => ({ votes: new Map(), chosen: new Map() });

/**
 * Counts `acc`'s phase 2b `entries`. A value is chosen in an instance once
 * `quorum` distinct acceptors accepted it in one ballot. Asserts the two
 * facts Paxos guarantees and the learner can see: one value per (instance,
 * ballot), and one chosen value per instance.
 */
export function learn(
  l: Learner,
  txn: TxnId,
  acceptors: readonly NodeId[],
  quorum: number,
  acc: NodeId,
  entries: readonly Phase2bEntry[],
): void {
  if (!acceptors.includes(acc)) return;
  for (const { ins, bal, val } of entries) {
    let byBallot = l.votes.get(ins);
    if (byBallot === undefined) {
      byBallot = new Map();
      l.votes.set(ins, byBallot);
    }
    let v = byBallot.get(bal);
    if (v === undefined) {
      v = { val, accs: new Set() };
      byBallot.set(bal, v);
    }
    assert(v.val === val, `${txn}/${ins}: ballot ${bal} accepted with ${v.val} and ${val}`);
    v.accs.add(acc);
    if (v.accs.size >= quorum) {
      const before = l.chosen.get(ins);
      assert(before === undefined || before === val, `${txn}/${ins}: chosen ${before}, then ${val}`);
      l.chosen.set(ins, val);
    }
  }
}

/**
 * The transaction's outcome as far as `l` knows: aborted once any instance
 * chose `aborted`; committed once every participant's instance chose
 * `prepared` (which needs the participant list); otherwise not known yet.
 */
export function outcomeOf(l: Learner, participants: readonly NodeId[] | null): Outcome | null {
  for (const v of l.chosen.values()) if (v === 'aborted') return 'aborted';
  if (participants === null || participants.length === 0) return null;
  return participants.every((p) => l.chosen.get(p) === 'prepared') ? 'committed' : null;
}
