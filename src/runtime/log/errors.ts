// The typed errors of the durable log stores. Every log failure is a
// `LogError`: a DtxError with the code of its reason (the DTX_LOG_* codes for
// ownership, existence, identity and corruption, the generic codes for the
// rest, so handling by `code` and `retryable` works) plus the `reason`.

import { DtxError, type DtxErrorCode } from '../../errors.ts';

/**
 * - `corrupt`: a stored row is not JSON or its `decode` rejected it
 *   (`DTX_LOG_CORRUPT`, not retryable). `seq` names the row.
 * - `locked`: another live process (or connection) owns the log: the SQLite
 *   file lock, or the PostgreSQL log's owner lease (`DTX_LOG_BUSY`, retryable:
 *   it may be free once that process exits). The message names the holder.
 * - `notFound`: the log does not exist and `create` was not asked for
 *   (`DTX_LOG_NOT_FOUND`); nothing was created.
 * - `mismatch`: the log belongs to another protocol or coordinator id than
 *   the opener expects, or records no identity at all (`DTX_LOG_MISMATCH`).
 * - `notDurable`: the store was asked for something that is not durable, e.g. a
 *   `:memory:` SQLite database without `unsafeMemory` (`DTX_INVALID_STATE`).
 * - `closed`: the log was closed (`DTX_INVALID_STATE`).
 * - `failed`: a write failed; its records may or may not be durable and the
 *   instance refuses every later call. Close, reopen and recover
 *   (`DTX_RESOURCE_UNAVAILABLE`, retryable in that sense only).
 * - `fenced`: the PostgreSQL log's owner lease is held by someone else, so
 *   nothing was written and the instance refuses every later call: another
 *   coordinator has taken over this owner (`DTX_LOG_FENCED`, not retryable).
 * - `unavailable`: a read or a lease operation could not reach the store
 *   (`DTX_RESOURCE_UNAVAILABLE`, retryable).
 */
export type LogErrorReason =
  | 'corrupt'
  | 'locked'
  | 'notFound'
  | 'mismatch'
  | 'notDurable'
  | 'closed'
  | 'failed'
  | 'fenced'
  | 'unavailable';

const codeByReason: Readonly<Record<LogErrorReason, { code: DtxErrorCode; retryable: boolean }>> = {
  corrupt: { code: 'DTX_LOG_CORRUPT', retryable: false },
  locked: { code: 'DTX_LOG_BUSY', retryable: true },
  notFound: { code: 'DTX_LOG_NOT_FOUND', retryable: false },
  mismatch: { code: 'DTX_LOG_MISMATCH', retryable: false },
  notDurable: { code: 'DTX_INVALID_STATE', retryable: false },
  closed: { code: 'DTX_INVALID_STATE', retryable: false },
  failed: { code: 'DTX_RESOURCE_UNAVAILABLE', retryable: true },
  fenced: { code: 'DTX_LOG_FENCED', retryable: false },
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
