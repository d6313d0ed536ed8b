// The typed errors of the durable log stores. src/errors.ts has no log codes
// and is not this module's to extend, so every log failure is a `LogError`: a
// DtxError carrying the closest existing code (so generic handling by `code`
// and `retryable` keeps working) plus a `reason` that tells log failures apart.

import { DtxError, type DtxErrorCode } from '../../errors.ts';

/**
 * - `corrupt`: a stored row is not JSON or its `decode` rejected it
 *   (`DTX_INVALID_STATE`, not retryable). `seq` names the row.
 * - `locked`: another process (or connection) has the SQLite log open
 *   (`DTX_LOCK_CONFLICT`, retryable: it may be free once that process exits).
 * - `notDurable`: the store was asked for something that is not durable, e.g. a
 *   `:memory:` SQLite database without `unsafeMemory` (`DTX_INVALID_STATE`).
 * - `closed`: the log was closed (`DTX_INVALID_STATE`).
 * - `failed`: a write failed; its records may or may not be durable and the
 *   instance refuses every later call. Close, reopen and recover
 *   (`DTX_RESOURCE_UNAVAILABLE`, retryable in that sense only).
 * - `fenced`: the PostgreSQL log's fencing lease is held by someone else, so
 *   nothing was written and the instance refuses every later call: another
 *   coordinator has taken over this owner (`DTX_LOCK_CONFLICT`, not retryable).
 * - `unavailable`: a read or a lease operation could not reach the store
 *   (`DTX_RESOURCE_UNAVAILABLE`, retryable).
 */
export type LogErrorReason =
  | 'corrupt'
  | 'locked'
  | 'notDurable'
  | 'closed'
  | 'failed'
  | 'fenced'
  | 'unavailable';

const codeByReason: Readonly<Record<LogErrorReason, { code: DtxErrorCode; retryable: boolean }>> = {
  corrupt: { code: 'DTX_INVALID_STATE', retryable: false },
  locked: { code: 'DTX_LOCK_CONFLICT', retryable: true },
  notDurable: { code: 'DTX_INVALID_STATE', retryable: false },
  closed: { code: 'DTX_INVALID_STATE', retryable: false },
  failed: { code: 'DTX_RESOURCE_UNAVAILABLE', retryable: true },
  fenced: { code: 'DTX_LOCK_CONFLICT', retryable: false },
  unavailable: { code: 'DTX_RESOURCE_UNAVAILABLE', retryable: true },
};

export class LogError extends DtxError {
  override name = 'LogError';
  readonly reason: LogErrorReason;
  /** The row's sequence number, for `corrupt`. */
  readonly seq: string | undefined;

  constructor(reason: LogErrorReason, message: string, options: { cause?: unknown; seq?: string } = {}) {
    const { code, retryable } = codeByReason[reason];
    super(code, message, { retryable, cause: options.cause });
    this.reason = reason;
    this.seq = options.seq;
  }
}

/** True when `error` is a `LogError`, and has `reason` if one is given. */
export function isLogError(error: unknown, reason?: LogErrorReason): error is LogError {
  return error instanceof LogError && (reason === undefined || error.reason === reason);
}
