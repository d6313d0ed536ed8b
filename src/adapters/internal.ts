// Small helpers shared by the adapters and by nothing else: running one
// branch's operations strictly one after another, reading fields off unknown
// driver errors, the network error codes that mean "the resource is gone", and
// the part of turning a SQL driver's error into a DtxError that every SQL
// adapter does the same way.

import { DtxError, ResourceUnavailableError } from '../errors.ts';

/**
 * Runs async operations one at a time, in call order. A branch uses one so that
 * a `prepare()` issued while a `query()` is in flight starts only after the
 * query settled and can see the state it left (a failed query rolls the branch
 * back; preparing after that must be refused, not sent).
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(operation: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(operation);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

/** `error[field]` when `error` is an object that has it as a string. */
export function stringField(error: unknown, field: string): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const value = (error as Record<string, unknown>)[field];
  return typeof value === 'string' ? value : undefined;
}

/** `error[field]` when `error` is an object that has it as a number. */
export function numberField(error: unknown, field: string): number | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const value = (error as Record<string, unknown>)[field];
  return typeof value === 'number' ? value : undefined;
}

export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message;
  return String(error);
}

/** Node.js system error codes that mean the connection could not be made or was lost. */
export const networkErrorCodes: ReadonlySet<string> = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ENOENT', // a unix socket path that does not exist
]);

/** What a SQL adapter knows about its driver's errors, for `classifyDriverError`. */
export interface DriverErrors {
  /** The database, as messages name it: `PostgreSQL`, `MariaDB`. */
  name: string;
  /** True when the connection could not be made or was lost. */
  isConnectionError(error: unknown): boolean;
  /**
   * The DtxError for a server error that means something in particular, or
   * undefined for a plain rejection (DTX_QUERY_FAILED). `detail` is
   * `<what>: <driver message>`.
   */
  classify(
    error: unknown,
    detail: string,
    base: { cause: unknown; gid: string | undefined },
  ): DtxError | undefined;
}

/**
 * Turns a driver error into a DtxError: a DtxError passes through unchanged; a
 * connection failure becomes ResourceUnavailableError, in doubt when it hit a
 * prepare in flight (`context.inDoubt`); anything else is what `driver`
 * classifies it as, else DTX_QUERY_FAILED.
 */
export function classifyDriverError(
  error: unknown,
  context: { gid?: string; what: string; inDoubt?: boolean },
  driver: DriverErrors,
): DtxError {
  if (error instanceof DtxError) return error;
  const base = { cause: error, gid: context.gid };
  const detail = `${context.what}: ${messageOf(error)}`;
  if (driver.isConnectionError(error)) {
    return new ResourceUnavailableError(`${driver.name} unavailable during ${detail}`, {
      ...base,
      inDoubt: context.inDoubt ?? false,
    });
  }
  return (
    driver.classify(error, detail, base) ??
    new DtxError('DTX_QUERY_FAILED', `${driver.name} rejected ${detail}`, base)
  );
}

export function sleep(durationMs: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, durationMs));
}

export function checkNonNegativeInteger(value: number | undefined, name: string): void {
  if (value === undefined) return;
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} must be a non-negative integer, got ${value}`);
  }
}

/**
 * The SQL of a locking read: `sql` with `lockClause` appended. Only one plain
 * SELECT is accepted (no `;`, no locking clause of its own), so that the
 * clause lands on that statement and nowhere else; anything else is
 * DTX_INVALID_ARGUMENT before a byte reaches the server.
 */
export function lockingReadSql(sql: string, lockClause: string): string {
  const text = sql.trim();
  if (!/^select\b/i.test(text) || text.includes(';')) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'a locking read takes one SELECT statement, without ";" (the shared lock is added to it)',
    );
  }
  if (/\bfor\s+(update|share|no\s+key\s+update|key\s+share)\b|\block\s+in\s+share\s+mode\b/i.test(text)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'a locking read adds its own lock clause: give the SELECT without FOR UPDATE/FOR SHARE/LOCK IN SHARE MODE',
    );
  }
  return `${text} ${lockClause}`;
}
