// What a three-phase commit log must keep at a checkpoint. Recovery
// (participant.recover) reads the `prepared` (and `precommitted`) records of
// transactions without an outcome, and every logged outcome: a participant
// answers a termination protocol from them, and answering `unknown` about a
// transaction it committed and forgot could make the others abort it. So
// outcomes are never dropped; only the records they supersede are.

import type { TxnId } from '../common/types.ts';
import type { ThreePcRecord } from './types.ts';

export function compactThreePcLog(log: readonly ThreePcRecord[]): ThreePcRecord[] {
  const open = new Map<TxnId, ThreePcRecord[]>();
  const outcomes: ThreePcRecord[] = [];
  for (const r of log) {
    if (r.type === 'prepared') open.set(r.txn, [r]);
    else if (r.type === 'precommitted') open.get(r.txn)?.push(r);
    else {
      open.delete(r.txn);
      outcomes.push(r);
    }
  }
  return [...outcomes, ...[...open.values()].flat()];
}
