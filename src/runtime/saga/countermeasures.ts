// Saga countermeasures, as step builders: sagas give no isolation (a step's
// write is visible, and can be overwritten, before the saga ends), and these
// are two of the classic remedies (Richardson, "Microservices Patterns" ch. 4,
// after Frank & Zahle 1998), each shown in the simulator to remove the anomaly
// it targets (`dtx sim --workload bank-audit --countermeasure ...`,
// docs/isolation.md):
//
// - a semantic lock (`lockedStep` + `releaseLocksStep`): the step flags the
//   resource in the same local transaction as its write; the flag goes with
//   the step's compensation or with the saga's last step. Others respect it
//   (../../adapters/semantic-lock.ts). Removes dirty reads of steps that are
//   later compensated, and lost updates by other sagas' steps.
// - commutative updates (`commutativeUpdate`): the step and its compensation
//   are increments, `SET c = c + delta`, never a value computed from an
//   earlier read or put back from an undo image, so a compensation cannot
//   erase what another saga wrote in between. Removes lost updates.
//
// Every builder writes through the branch barrier (../../adapters/barrier.ts):
// idempotent, null compensations and hanging calls handled.

import { type BarrierDb, withBarrier } from '../../adapters/barrier.ts';
import { queryOn, type SemanticLocks } from '../../adapters/semantic-lock.ts';
import { DtxError } from '../../errors.ts';
import { barrierTablePattern } from '../limits.ts';
import { type BranchContext, type BranchFn, refuse } from './orchestrator.ts';

const keyOf = (ctx: BranchContext) => ({ sagaId: ctx.sagaId, branchId: ctx.branchId, op: ctx.op });

/**
 * A step whose write is flagged until the saga ends. `resource` names what the
 * step changes (a row: `account:alice`); `work` is the step's write and
 * `undo` its compensation's, each run on the barrier's transaction. The
 * action flags the resource (another saga's flag: `SemanticLockError`,
 * retryable, so the orchestrator retries the action and past its limit
 * compensates), then writes; the compensation undoes and clears this step's
 * flag, in one local transaction each. End the saga with `releaseLocksStep`
 * on every database a locked step wrote to.
 */
export function lockedStep<Tx>(
  barrier: BarrierDb<Tx>,
  locks: SemanticLocks<Tx>,
  resource: string | ((ctx: BranchContext) => string),
  work: (tx: Tx, ctx: BranchContext) => Promise<unknown>,
  undo: (tx: Tx, ctx: BranchContext) => Promise<unknown>,
): { action: BranchFn; compensation: BranchFn } {
  const nameOf = typeof resource === 'string' ? () => resource : resource;
  return {
    action: async (ctx) => {
      await locks.ensureTable();
      await withBarrier(barrier, keyOf(ctx), async (tx) => {
        await locks.acquire(tx, { sagaId: ctx.sagaId, branchId: ctx.branchId }, nameOf(ctx));
        await work(tx, ctx);
      });
    },
    compensation: async (ctx) => {
      await locks.ensureTable();
      // A null compensation (the action never ran here) writes nothing: no flag to clear.
      await withBarrier(barrier, keyOf(ctx), async (tx) => {
        await undo(tx, ctx);
        await locks.release(tx, ctx.sagaId, ctx.branchId);
      });
    },
  };
}

/**
 * The action of a saga's last step (`compensation: null`, so the definition
 * orders it after every step that can be undone): clears every flag the saga
 * holds in `barrier`'s database. It runs only once every step succeeded.
 */
export function releaseLocksStep<Tx>(barrier: BarrierDb<Tx>, locks: SemanticLocks<Tx>): BranchFn {
  return async (ctx) => {
    await locks.ensureTable();
    await withBarrier(barrier, keyOf(ctx), async (tx) => {
      await locks.release(tx, ctx.sagaId);
    });
  };
}

export interface CommutativeTarget {
  /** Table and columns: plain lower-case identifiers (validated; they reach SQL). */
  table: string;
  keyColumn: string;
  column: string;
  key: string | number;
  /** Added by the action, subtracted by the compensation: a safe integer, not 0. */
  delta: number;
  /** The action is refused (`refuse()`, the saga compensates) when the column would go below this. */
  min?: number;
}

function checkTarget(t: CommutativeTarget): void {
  for (const [name, v] of [
    ['table', t.table],
    ['keyColumn', t.keyColumn],
    ['column', t.column],
  ] as const) {
    if (typeof v !== 'string' || !barrierTablePattern.test(v))
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `commutative update: ${name} must match ${barrierTablePattern}`,
      );
  }
  if (!Number.isSafeInteger(t.delta) || t.delta === 0)
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'commutative update: delta must be a safe integer other than 0',
    );
  if (t.min !== undefined && !Number.isSafeInteger(t.min))
    throw new DtxError('DTX_INVALID_ARGUMENT', 'commutative update: min must be a safe integer');
  if (typeof t.key !== 'string' && !Number.isSafeInteger(t.key))
    throw new DtxError('DTX_INVALID_ARGUMENT', 'commutative update: key must be a string or a safe integer');
}

/**
 * An action and its compensation as increments of one column of one row:
 * `SET column = column + delta` and `- delta`, each with its barrier row in
 * one local transaction. With `min`, the action's bound is checked in the same
 * statement (no read first, so no value can change between the check and the
 * write); a row missing, or a bound the increment would cross, refuses the
 * action. The compensation has no bound: it must succeed.
 */
export function commutativeUpdate<Tx>(
  barrier: BarrierDb<Tx>,
  target: CommutativeTarget,
): { action: BranchFn; compensation: BranchFn } {
  checkTarget(target);
  const { table, keyColumn, column, key, delta, min } = target;
  const add = (tx: Tx, d: number, bound: number | undefined) =>
    bound === undefined
      ? queryOn(barrier.kind, tx, `UPDATE ${table} SET ${column} = ${column} + ? WHERE ${keyColumn} = ?`, [
          d,
          key,
        ])
      : queryOn(
          barrier.kind,
          tx,
          `UPDATE ${table} SET ${column} = ${column} + ? WHERE ${keyColumn} = ? AND ${column} + ? >= ?`,
          [d, key, d, bound],
        );
  return {
    action: async (ctx) => {
      await withBarrier(barrier, keyOf(ctx), async (tx) => {
        const { changes } = await add(tx, delta, min);
        if (changes !== 1)
          refuse(
            `${table}.${column} of ${String(key)}: no such row, or ${column} would go below ${min ?? '-'}`,
          );
      });
    },
    compensation: async (ctx) => {
      await withBarrier(barrier, keyOf(ctx), async (tx) => {
        await add(tx, -delta, undefined);
      });
    },
  };
}
