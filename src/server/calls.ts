// The branch calls this server process made, per transaction, with the time
// each left and the time its answer came (or the call failed): what the
// dashboard's timeline draws between the log's records. The logs hold a
// call's `start` and `result` records only, not the failed attempts in
// between, which are exactly what an operator looking at a stuck saga wants
// to see.
//
// In memory only and bounded: a restart forgets every call (the records stay
// in the log); per transaction the first and the latest attempts are kept,
// and the transactions seen longest ago are forgotten first.

import { isDtxError } from '../errors.ts';
import type { BranchCall } from '../runtime/branch/orchestrator.ts';

/** One branch call attempt. Times are epoch milliseconds from this process' clock. */
export interface CallSeen {
  branch: string;
  /** The op the branch was told (`action`, `compensation`, DTM's `compensate`, `confirm`...). */
  op: string;
  url: string;
  sentAtMs: number;
  /** When the answer came or the call failed; null while it is out. */
  answeredAtMs: number | null;
  /** `success`, `failure` (a refusal) or `retry` (no usable answer); null while out. */
  result: 'success' | 'failure' | 'retry' | null;
  /** The answer in a few words: the HTTP status or the error. */
  detail: string;
}

export const callJournalLimits = {
  /** Transactions whose calls are kept: the newest. */
  txnsMax: 2_000,
  /** Attempts kept per transaction: the first `headKept` and the latest ones. */
  callsPerTxnMax: 64,
  headKept: 8,
} as const;

export class CallJournal {
  private readonly byTxn = new Map<string, { calls: CallSeen[]; dropped: number }>();

  /** Records a call leaving now; the returned function records its answer. */
  begin(
    txn: string,
    call: { branch: string; op: string; url: string },
    now: () => number = Date.now,
  ): (result: 'success' | 'failure' | 'retry', detail: string) => void {
    let entry = this.byTxn.get(txn);
    if (entry === undefined) {
      entry = { calls: [], dropped: 0 };
      if (this.byTxn.size >= callJournalLimits.txnsMax) {
        const oldest = this.byTxn.keys().next().value;
        if (oldest !== undefined) this.byTxn.delete(oldest);
      }
    } else {
      this.byTxn.delete(txn); // re-inserted below: newest last
    }
    this.byTxn.set(txn, entry);
    const seen: CallSeen = { ...call, sentAtMs: now(), answeredAtMs: null, result: null, detail: '' };
    entry.calls.push(seen);
    if (entry.calls.length > callJournalLimits.callsPerTxnMax) {
      entry.calls.splice(callJournalLimits.headKept, 1);
      entry.dropped++;
    }
    return (result, detail) => {
      seen.answeredAtMs = now();
      seen.result = result;
      seen.detail = detail.slice(0, 200);
    };
  }

  /** The calls kept for `txn`, oldest first, and how many in the middle were forgotten. */
  of(txn: string): { calls: readonly CallSeen[]; dropped: number } {
    const entry = this.byTxn.get(txn);
    return entry === undefined ? { calls: [], dropped: 0 } : { calls: entry.calls, dropped: entry.dropped };
  }
}

/** What a step's payload says about its call (the fields of the engine's StepInput read here). */
interface StepTargets {
  action: { url: string; op: string };
  compensation: { url: string; op: string } | null;
  forward: boolean;
  actionAttemptsMax: number | null;
}

/**
 * Runs the engine's branch call `call`, recording it in `journal`: success
 * when it returns, `failure` when it refuses (DTX_BRANCH_REFUSED), `retry`
 * otherwise. An action given up before any request leaves (past its attempts)
 * is not a call and is not recorded.
 */
export async function journalled<C extends BranchCall<'action' | 'compensation'>>(
  journal: CallJournal,
  ctx: C,
  call: (ctx: C) => Promise<unknown>,
): Promise<unknown> {
  const s = ctx.input as StepTargets;
  const target = ctx.op === 'action' ? s.action : s.compensation;
  const givenUp =
    ctx.op === 'action' && !s.forward && s.actionAttemptsMax !== null && ctx.attempt > s.actionAttemptsMax;
  if (target === null || givenUp) return call(ctx);
  const answered = journal.begin(ctx.sagaId, { branch: ctx.branchId, op: target.op, url: target.url });
  try {
    const result = await call(ctx);
    answered('success', 'success');
    return result;
  } catch (error) {
    answered(
      isDtxError(error, 'DTX_BRANCH_REFUSED') ? 'failure' : 'retry',
      error instanceof Error ? error.message : String(error),
    );
    throw error;
  }
}
