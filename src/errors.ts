// dtx's typed errors: one shallow hierarchy for every failure a caller may want
// to tell apart, each with a stable `code` (safe to match on, logged, never
// reworded) and a `retryable` flag (true when running the same operation, or the
// whole transaction, again may succeed). The original driver error, when there
// is one, stays reachable as `cause`.
//
// Expected protocol outcomes (a NO vote, a timeout seen by a protocol core) are
// not errors; these are for the boundary where dtx talks to real resources.
// The base class, the codes and their documentation are in
// ./protocol/common/errors.ts, so that the pure codec can raise a `DtxError`
// too; they are re-exported here, the module callers import.

import {
  DtxError,
  type DtxErrorCode,
  type DtxErrorOptions,
  retryableByCode,
} from './protocol/common/errors.ts';

export { DtxError, type DtxErrorCode, type DtxErrorOptions, retryableByCode };

/** `DTX_INVALID_GID`. `reason` says which rule the gid broke. */
export class InvalidGidError extends DtxError {
  override name = 'InvalidGidError';
  readonly reason: string;

  constructor(reason: string, options: DtxErrorOptions = {}) {
    super('DTX_INVALID_GID', `invalid gid: ${reason}`, { ...options, retryable: false });
    this.reason = reason;
  }
}

/** `DTX_LOCK_CONFLICT`. `key` and `holderGid` are known for SQLite branches. */
export class LockConflictError extends DtxError {
  override name = 'LockConflictError';
  readonly key: string | undefined;
  readonly holderGid: string | undefined;

  constructor(message: string, options: DtxErrorOptions & { key?: string; holderGid?: string } = {}) {
    super('DTX_LOCK_CONFLICT', message, options);
    this.key = options.key;
    this.holderGid = options.holderGid;
  }
}

/**
 * `DTX_RESOURCE_UNAVAILABLE`. `inDoubt` is true when the connection broke while
 * a prepare was in flight: the branch may be prepared, so the coordinator must
 * resolve it by gid (`rollbackPrepared` under presumed abort) once the resource
 * is reachable again.
 */
export class ResourceUnavailableError extends DtxError {
  override name = 'ResourceUnavailableError';
  readonly inDoubt: boolean;

  constructor(message: string, options: DtxErrorOptions & { inDoubt?: boolean } = {}) {
    super('DTX_RESOURCE_UNAVAILABLE', message, options);
    this.inDoubt = options.inDoubt ?? false;
  }
}

/** `DTX_PREPARED_TXNS_DISABLED`, with a message that says how to fix the server. */
export class PreparedTxnsDisabledError extends DtxError {
  override name = 'PreparedTxnsDisabledError';

  constructor(options: DtxErrorOptions = {}) {
    super(
      'DTX_PREPARED_TXNS_DISABLED',
      'PostgreSQL has prepared transactions disabled (max_prepared_transactions = 0), so it cannot take ' +
        'part in two-phase commit. Set max_prepared_transactions to a value > 0 (at least max_connections ' +
        'is a safe choice) in postgresql.conf or with ALTER SYSTEM, then restart the server: the setting ' +
        'only takes effect at server start.',
      { ...options, retryable: false },
    );
  }
}

/** One branch whose outcome contradicts the decision, as a HeuristicError lists it. */
export interface HeuristicBranch {
  /** The resource (participant) name, when the coordinator knows it. */
  resource?: string;
  gid: string;
  /**
   * What was found: `rolledBack`/`committed` when the resource could tell how
   * the branch ended; `unknown` when it was gone and the resource keeps no
   * evidence of how (see docs/adapters.md, "Heuristic outcomes").
   */
  found: 'committed' | 'rolledBack' | 'unknown';
}

/**
 * `DTX_HEURISTIC`: a branch's actual outcome differs from the decision. One
 * error may list several branches of one transaction (`branches`); `outcome`
 * and `gid` are the first one's, for callers that look at a single branch.
 */
export class HeuristicError extends DtxError {
  override name = 'HeuristicError';
  readonly decision: 'commit' | 'rollback';
  readonly outcome: 'committed' | 'rolledBack' | 'unknown';
  /** The transaction, when known. */
  readonly txn: string | undefined;
  /** Every contradicting branch: at least one. */
  readonly branches: readonly HeuristicBranch[];

  constructor(
    message: string,
    options: DtxErrorOptions & {
      decision: 'commit' | 'rollback';
      outcome: 'committed' | 'rolledBack' | 'unknown';
      txn?: string;
      branches?: readonly HeuristicBranch[];
    },
  ) {
    super('DTX_HEURISTIC', message, { ...options, retryable: false });
    this.decision = options.decision;
    this.outcome = options.outcome;
    this.txn = options.txn;
    this.branches = options.branches ?? [{ gid: options.gid ?? '', found: options.outcome }];
  }

  /** One error for a whole transaction, listing each branch, the decision and what was found. */
  static ofTransaction(
    txn: string,
    decision: 'commit' | 'rollback',
    found: readonly HeuristicError[],
  ): HeuristicError {
    const branches = found.flatMap((e) => e.branches);
    const first = branches[0];
    const list = branches
      .map(
        (b) =>
          `${b.resource ?? '?'} (${b.gid}): ${b.found === 'unknown' ? 'already resolved, outcome unknown' : b.found}`,
      )
      .join('; ');
    return new HeuristicError(
      `transaction ${txn} was decided ${decision === 'commit' ? 'COMMIT' : 'ROLLBACK'} but ${branches.length} ` +
        `branch(es) contradict it: ${list}. Someone resolved them outside dtx; reconcile the data by hand ` +
        '(see docs/operations.md, "Heuristic outcomes")',
      {
        decision,
        outcome: first?.found ?? 'unknown',
        txn,
        branches,
        ...(first === undefined ? {} : { gid: first.gid }),
      },
    );
  }
}

/** True when `error` is a `DtxError`, and has `code` if one is given. */
export function isDtxError(error: unknown, code?: DtxErrorCode): error is DtxError {
  return error instanceof DtxError && (code === undefined || error.code === code);
}
