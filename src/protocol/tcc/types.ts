// Messages, log records and settings of TCC (try-confirm-cancel), the
// reservation protocol of production transaction managers (introduced by
// Atomikos; implemented by dtm-labs/dtm, whose semantics these follow).
// See ../../../docs/protocols/tcc.md. Branch calls, results and the barrier
// are shared with the saga (../branch/types.ts, ../branch/service.ts).

import type { BranchConfig, CommonRecord, RunMsg } from '../branch/types.ts';
import { checkBranchNames, defaultBranchConfig } from '../branch/types.ts';
import { limits } from '../common/limits.ts';
import type { NodeId, TxnId } from '../common/types.ts';

export interface TccPlanBranch {
  branch: string;
  service: NodeId;
  /** Handler names on the service: reserve, make final, release. */
  try: string;
  confirm: string;
  cancel: string;
  payload: string;
}

export interface TccPlan {
  branches: readonly TccPlanBranch[];
  /** Per-transaction timeout overriding `TccConfig.tryTimeoutMs`. */
  timeoutMs?: number;
}

export type TccMsg = RunMsg<TccPlan>;

/**
 * The coordinator's log.
 * - `begin` (forced) before any try leaves: it is the start of every try;
 * - `tried` (lazy) per try answer: the forced `decision` after it carries it
 *   to disk, and if it is lost the try is simply asked again (the barrier
 *   repeats the recorded answer);
 * - `decision` (forced) before any confirm or cancel leaves;
 * - `settled` (lazy) per confirmed or cancelled branch;
 * - `stuck` (forced) before the transaction is reported stuck;
 * - `end` (forced) before it is reported finished.
 */
export type TccRecord =
  | CommonRecord<TccPlan>
  | { type: 'tried'; txn: TxnId; branch: string; result: 'success' | 'failure'; reason: string }
  | { type: 'decision'; txn: TxnId; decision: 'confirm' | 'cancel'; reason: string }
  | { type: 'settled'; txn: TxnId; branch: string };

export interface TccConfig extends BranchConfig {
  /** Attempts of a try without a definitive answer before the transaction cancels. */
  tryAttemptsMax: number;
  /**
   * Attempts of a confirm or cancel before the transaction is hard-stopped as
   * stuck. The runtime sets Infinity and alerts after `stuckAfterAttempts`.
   */
  phaseTwoAttemptsMax: number;
  /** Tries still unanswered after this long: cancel. */
  tryTimeoutMs: number;
}

export const defaultTccConfig: TccConfig = {
  ...defaultBranchConfig,
  tryAttemptsMax: 8,
  phaseTwoAttemptsMax: 16,
  tryTimeoutMs: 30_000,
};

/** Why `def` cannot run, or null when it can. */
export function checkTccPlan(def: TccPlan): string | null {
  if (!Array.isArray(def.branches) || def.branches.length === 0) return 'a TCC transaction needs a branch';
  if (def.branches.length > limits.participantsPerTxnMax)
    return `${def.branches.length} branches, more than ${limits.participantsPerTxnMax}`;
  if (def.timeoutMs !== undefined && !(def.timeoutMs > 0)) return 'timeoutMs must be positive';
  const seen = new Set<string>();
  for (const b of def.branches) {
    const problem = checkBranchNames(b, seen);
    if (problem !== null) return problem;
    for (const h of [b.try, b.confirm, b.cancel]) {
      if (typeof h !== 'string' || h === '') return `${b.branch} lacks a try, confirm or cancel handler`;
    }
  }
  return null;
}
