// What a two-phase commit log must keep. Recovery (coordinator.recover and
// participant.recover) reads only two things: `commit` records without an
// `end` (the coordinator re-drives them) and `prepared` records without an
// outcome (the participant is in doubt). Everything else can be dropped at a
// checkpoint; this function is that checkpoint, shared by the simulator and
// the runtime's log stores. Take it only once the work of every `committed`
// record being dropped has been applied (a participant's recovery re-applies
// the commits it still finds in its log).

import type { TxnId } from '../common/types.ts';
import type { TwoPcRecord } from './types.ts';

//
// One exception: a commit that an operator ended (an `end` with `operator`)
// keeps both records, so that recovery still knows the decision was COMMIT
// and never presumes the branches the operator must settle aborted.
export function compactTwoPcLog(log: readonly TwoPcRecord[]): TwoPcRecord[] {
  const open = new Map<TxnId, TwoPcRecord[]>();
  for (const r of log) {
    if (r.type === 'commit' || r.type === 'prepared') open.set(r.txn, [r]);
    else if (r.type === 'end' && r.operator !== undefined && open.get(r.txn)?.[0]?.type === 'commit') {
      open.get(r.txn)!.push(r);
    } else open.delete(r.txn);
  }
  return [...open.values()].flat();
}
