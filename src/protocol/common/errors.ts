// The code-bearing base of dtx's typed errors: `DtxError`, its `code` (one of
// `DtxErrorCode`) and `retryable` flag. It lives here, inside the pure layer,
// so that a protocol module can raise a coded error too — the codec's
// `CodecError` (./codec.ts) is a `DtxError` with code DTX_BAD_MESSAGE — without
// importing anything outside src/protocol. The subclasses for the boundary
// with real resources, and `isDtxError`, are in ../../errors.ts, which
// re-exports everything here.
//
// May not touch: I/O, clocks, anything outside src/protocol (pure code).

/**
 * Every error code dtx raises.
 *
 * - `DTX_INVALID_GID`: a global transaction id (or a gid prefix) failed the
 *   allow-list or length check. Nothing was sent to any server. Not retryable.
 * - `DTX_INVALID_STATE`: a method was called in a state that forbids it (a query
 *   on a branch that is already prepared, any call on a closed adapter). A
 *   programming error. Not retryable.
 * - `DTX_PREPARED_TXNS_DISABLED`: the PostgreSQL server runs with
 *   `max_prepared_transactions = 0`, so it cannot take part in two-phase commit.
 *   Fix the server configuration and restart it. Not retryable.
 * - `DTX_UNSUPPORTED_SERVER`: the server cannot keep its promises as a
 *   participant (a MariaDB older than 10.5 rolls prepared XA branches back
 *   when their connection closes). Not retryable.
 * - `DTX_DUPLICATE_GID`: the gid is already used by another prepared branch on
 *   this resource. Not retryable.
 * - `DTX_BRANCH_NOT_FOUND`: the resource no longer knows a branch it must know
 *   to go on (for example MariaDB answered `XAER_NOTA` while preparing). The
 *   branch is gone, i.e. rolled back. Not retryable.
 * - `DTX_BRANCH_BUSY`: the prepared branch exists but another session holds it
 *   right now (it is being committed or rolled back elsewhere, or its MariaDB
 *   session has not detached yet). Retryable.
 * - `DTX_LOCK_CONFLICT`: a lock the work needs is held by another transaction
 *   (lock timeout, deadlock, or a key locked by a prepared SQLite branch). The
 *   branch was rolled back. Retryable (as a new transaction).
 * - `DTX_SERIALIZATION_FAILURE`: the resource could not serialize the
 *   transaction (PostgreSQL SQLSTATE 40001, or a SQLite branch whose reads
 *   changed before prepare). The branch was rolled back. Retryable.
 * - `DTX_TIMEOUT`: a statement exceeded its time limit (PostgreSQL
 *   `statement_timeout`, MariaDB `max_statement_time`). The branch was rolled
 *   back. Retryable.
 * - `DTX_RESOURCE_UNAVAILABLE`: the resource could not be reached or the
 *   connection broke. If it broke during `prepare()`, the branch may or may not
 *   be prepared (`inDoubt`): resolve it by gid later. Retryable.
 * - `DTX_HEURISTIC`: a branch ended differently from the decision (for example
 *   MariaDB reported a branch as rolled back when asked to commit it). Needs a
 *   human or an application-level compensation. Not retryable.
 * - `DTX_QUERY_FAILED`: the resource rejected a statement for a reason dtx does
 *   not classify (syntax error, constraint violation...). The branch was rolled
 *   back; `cause` holds the driver's error. Not retryable.
 * - `DTX_ABORTED`: the coordinator decided to abort the transaction (a
 *   participant voted NO, a vote did not come in time, the decision could not
 *   be made durable). Nothing was committed anywhere. `cause` holds the first
 *   participant's error when there was one. Retryable as a new transaction,
 *   unless the cause says otherwise.
 * - `DTX_OUTCOME_UNKNOWN`: the caller stopped waiting (timeout, coordinator
 *   shut down) after the transaction was handed to the protocol and before its
 *   outcome was known. It will be committed or aborted everywhere, atomically;
 *   ask the coordinator (or run recovery) to learn which. Not retryable: a
 *   retry could apply the work twice.
 * - `DTX_INVALID_ARGUMENT`: a caller passed something dtx cannot use (an
 *   unknown resource name, a bad option). Not retryable.
 * - `DTX_BRANCH_REFUSED`: a saga action or TCC try refused for a business
 *   reason (insufficient funds, sold out). The saga compensates; the same call
 *   gets the same answer, so it is never retried. Not retryable.
 * - `DTX_BRANCH_HANGING`: the barrier refused an action or try that arrived
 *   after its compensation or cancel was recorded (a delayed or duplicated
 *   call); nothing was written. Not retryable.
 * - `DTX_LOG_BUSY`: the coordinator log is owned by another live process (the
 *   SQLite file lock, or the PostgreSQL log's owner lease): recovery and
 *   operator commands refuse to touch anything while it runs. The message
 *   names the holder. Retryable once that process has stopped.
 * - `DTX_LOG_NOT_FOUND`: the log (or a SQLite participant file) named does not
 *   exist, and nothing asked to create it. Nothing was created. Not retryable.
 * - `DTX_LOG_MISMATCH`: the log belongs to another protocol or another
 *   coordinator id than the one opening it. Nothing was touched. Not retryable.
 * - `DTX_LOG_FENCED`: this coordinator lost ownership of its log (another one
 *   took the lease over); nothing more was written. Not retryable.
 * - `DTX_LOG_CORRUPT`: a stored log row is not a valid record. Not retryable.
 * - `DTX_BAD_MESSAGE`: a message or log record is malformed (not JSON, an
 *   unknown type, a missing, extra or ill-typed field, a bad id): the codec's
 *   `CodecError`. A stored record that fails to decode reaches the caller as
 *   DTX_LOG_CORRUPT with this error as its `cause`. Not retryable.
 * - `DTX_LEADERSHIP_LOST`: the coordinator lost its log lease while the
 *   transaction was undecided; its work was rolled back, nothing committed.
 *   Retryable (on the new leader).
 * - `DTX_CANCELLED`: the caller's AbortSignal ended the transaction before
 *   its decision; every branch was rolled back. Not retryable.
 * - `DTX_DECIDED_NOT_APPLIED`: the commit decision is durable but not every
 *   branch has been committed yet (a participant is unreachable) and the
 *   caller's deadline passed: the transaction WILL commit everywhere (the
 *   coordinator or recovery keeps retrying). Not retryable: the work is done.
 * - `DTX_BAD_HISTORY`: a history given to the isolation checker cannot be
 *   read (not JSON, a field missing or ill-typed, an invocation without its
 *   completion's shape, a value written twice). The message names the line.
 *   Not retryable.
 * - `DTX_NOT_FOUND`: the transaction (or other thing) asked about is not
 *   known: never begun, or forgotten past its retention. Not retryable.
 * - `DTX_UNAUTHORIZED`: a request to `dtx serve` came without the right
 *   bearer token. Nothing was done. Not retryable.
 * - `DTX_UNSUPPORTED`: a request asks for a mode dtx does not offer (for
 *   `dtx serve`'s DTM-compatible API: XA, workflow, gRPC). Not retryable.
 * - `DTX_NOT_OWNER`: with several `dtx serve` servers on one store, the
 *   transaction named is run by another server (the message names it), or
 *   by one that is down and not yet taken over. Nothing was done. Retryable:
 *   on the server named, or after the takeover.
 */
export type DtxErrorCode =
  | 'DTX_INVALID_GID'
  | 'DTX_INVALID_STATE'
  | 'DTX_PREPARED_TXNS_DISABLED'
  | 'DTX_UNSUPPORTED_SERVER'
  | 'DTX_DUPLICATE_GID'
  | 'DTX_BRANCH_NOT_FOUND'
  | 'DTX_BRANCH_BUSY'
  | 'DTX_LOCK_CONFLICT'
  | 'DTX_SERIALIZATION_FAILURE'
  | 'DTX_TIMEOUT'
  | 'DTX_RESOURCE_UNAVAILABLE'
  | 'DTX_HEURISTIC'
  | 'DTX_QUERY_FAILED'
  | 'DTX_ABORTED'
  | 'DTX_OUTCOME_UNKNOWN'
  | 'DTX_INVALID_ARGUMENT'
  | 'DTX_BRANCH_REFUSED'
  | 'DTX_BRANCH_HANGING'
  | 'DTX_LOG_BUSY'
  | 'DTX_LOG_NOT_FOUND'
  | 'DTX_LOG_MISMATCH'
  | 'DTX_LOG_FENCED'
  | 'DTX_LOG_CORRUPT'
  | 'DTX_BAD_MESSAGE'
  | 'DTX_LEADERSHIP_LOST'
  | 'DTX_CANCELLED'
  | 'DTX_DECIDED_NOT_APPLIED'
  | 'DTX_BAD_HISTORY'
  | 'DTX_NOT_FOUND'
  | 'DTX_UNAUTHORIZED'
  | 'DTX_UNSUPPORTED'
  | 'DTX_NOT_OWNER';

/** Whether each code is worth retrying, unless the thrower says otherwise. */
export const retryableByCode: Readonly<Record<DtxErrorCode, boolean>> = {
  DTX_INVALID_GID: false,
  DTX_INVALID_STATE: false,
  DTX_PREPARED_TXNS_DISABLED: false,
  DTX_UNSUPPORTED_SERVER: false,
  DTX_DUPLICATE_GID: false,
  DTX_BRANCH_NOT_FOUND: false,
  DTX_BRANCH_BUSY: true,
  DTX_LOCK_CONFLICT: true,
  DTX_SERIALIZATION_FAILURE: true,
  DTX_TIMEOUT: true,
  DTX_RESOURCE_UNAVAILABLE: true,
  DTX_HEURISTIC: false,
  DTX_QUERY_FAILED: false,
  DTX_ABORTED: true,
  DTX_OUTCOME_UNKNOWN: false,
  DTX_INVALID_ARGUMENT: false,
  DTX_BRANCH_REFUSED: false,
  DTX_BRANCH_HANGING: false,
  DTX_LOG_BUSY: true,
  DTX_LOG_NOT_FOUND: false,
  DTX_LOG_MISMATCH: false,
  DTX_LOG_FENCED: false,
  DTX_LOG_CORRUPT: false,
  DTX_BAD_MESSAGE: false,
  DTX_LEADERSHIP_LOST: true,
  DTX_CANCELLED: false,
  DTX_DECIDED_NOT_APPLIED: false,
  DTX_BAD_HISTORY: false,
  DTX_NOT_FOUND: false,
  DTX_UNAUTHORIZED: false,
  DTX_UNSUPPORTED: false,
  DTX_NOT_OWNER: true,
};

export interface DtxErrorOptions {
  /** Overrides the code's default from `retryableByCode`. */
  retryable?: boolean;
  /** The underlying error (a driver error, a system error). */
  cause?: unknown;
  /** The global transaction id concerned, when there is one. */
  gid?: string;
}

export class DtxError extends Error {
  override name = 'DtxError';
  readonly code: DtxErrorCode;
  readonly retryable: boolean;
  readonly gid: string | undefined;

  constructor(code: DtxErrorCode, message: string, options: DtxErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? retryableByCode[code];
    this.gid = options.gid;
  }
}
