// What a Paxos Commit log must keep (the checkpoint the simulator and the
// runtime's log stores apply to long logs). Recovery reads: an RM's
// `prepared` records without an outcome (it is in doubt); an acceptor's last
// `acc` record per instance (its promise and acceptance, which it must never
// forget); a candidate's highest `round` (so that no ballot is used twice).
// Nothing else is needed, and this function keeps exactly that, so `recover`
// rebuilds the same state from the compacted log as from the full one. Take
// it only once the work of every `committed` and `aborted` record being
// dropped has been applied: an RM's recovery re-applies the outcomes it still
// finds in its log, and one dropped too early would leave its branch prepared.
//
// Acceptor state is kept for every instance ever touched: forgetting it
// safely needs to know that every RM learned the outcome, which Paxos Commit
// does not track (see docs/protocols/paxos-commit.md, "Limits").

import type { PaxosCommitRecord } from './types.ts';

export function compactPaxosCommitLog(log: readonly PaxosCommitRecord[]): PaxosCommitRecord[] {
  let round: PaxosCommitRecord | null = null;
  const acc = new Map<string, PaxosCommitRecord>();
  const open = new Map<string, PaxosCommitRecord>();
  for (const r of log) {
    switch (r.type) {
      case 'round':
        if (round === null || (round.type === 'round' && r.round > round.round)) round = r;
        break;
      case 'acc':
        acc.set(`${r.txn}|${r.ins}`, r);
        break;
      case 'prepared':
        open.set(r.txn, r);
        break;
      case 'committed':
      case 'aborted':
        open.delete(r.txn);
        break;
    }
  }
  return [...(round === null ? [] : [round]), ...acc.values(), ...open.values()];
}
