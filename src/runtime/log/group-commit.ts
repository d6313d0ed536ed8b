// Group commit, shared by every store: the queue that turns concurrent
// `append`/`checkpoint`/`load` calls into as few durable write transactions as
// possible while keeping call order. A store (./sqlite.ts, ./postgres.ts)
// supplies only a `LogBackend` — "write this batch in one transaction, durably",
// "read every row", "release" — and never sees two operations at once.
//
// How batching happens: the first call that needs a write schedules the
// writer on `setImmediate`, so every call made in the same event-loop turn
// (and in the microtasks it spawns) lands in the queue first. The writer then
// takes the whole queue as ONE batch. While that write is in flight (PostgreSQL)
// new calls queue up; when it finishes, the writer resolves the batch's
// promises, yields one turn (so the callers it just woke can queue their next
// appends) and takes everything queued as the next batch. One fsync therefore
// serves every append that waited for it. better-sqlite3 is synchronous, so
// for SQLite "while in flight" means "in the same turn"; a closed-loop caller
// (await append, append again) still batches, because the woken callers append
// within the turn the writer yields.
//
// Lazy appends resolve at once and wait in the queue for the next write, or
// for `lazyFlushDelayMs` if none comes. Every write is durable, so there is no
// separate "sync" step to order.

import '../../dispose.ts';
import { lazyFlushDelayMsDefault } from '../limits.ts';
import { notify, type Observer } from '../observe.ts';
import { LogError } from './errors.ts';
import type { DurableLog, LogIdentity, LogOptions, LogStats } from './types.ts';

/** One write transaction: delete everything first when `replace` (a checkpoint), then insert `texts` in order. */
export interface WriteBatch {
  replace: boolean;
  /** Serialized records, in append order. */
  texts: string[];
}

export interface StoredRow {
  /** The row's position in the log, for error messages. */
  seq: string;
  /** The record's JSON text as stored. */
  text: string;
  /** When it was appended (ms since the epoch); undefined for rows written before dtx kept times. */
  atMs?: number | undefined;
}

/** What a store knows about the log beyond its rows. */
export interface LogMeta {
  identity: LogIdentity;
  /** Set by a store whose ownership can be lost (see DurableLog.lost). */
  lost?: Promise<LogError>;
}

/** What a store provides. `GroupCommitLog` calls it one operation at a time, never concurrently. */
export interface LogBackend {
  /** Human-readable name for messages ("SQLite log /var/lib/dtx/coord.db"). */
  readonly description: string;
  /**
   * Applies `batch` in ONE transaction and resolves once it is on stable
   * storage. Throws when it may not be (the outcome is then unknown). May throw
   * a `LogError` (e.g. reason `fenced`); any other error is reported as `failed`.
   */
  write(batch: WriteBatch): Promise<void>;
  /**
   * True when `write` applies its batch before its first await and only then
   * waits for stable storage, and when that wait also covers every batch
   * applied before it (one file, synced): a later `write` may then start
   * while earlier ones are still syncing. SQLite on the main thread.
   */
  readonly overlapsSyncs?: boolean;
  /** Every row since the last checkpoint, in order. Errors other than `LogError` are reported as `unavailable`. */
  read(): Promise<StoredRow[]>;
  /** Releases resources. `broken` when a write failed, so a connection should be discarded rather than reused. */
  close(broken: boolean): Promise<void>;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
}

type Op<R> =
  | { kind: 'append'; texts: string[]; waiter: Waiter<void> | undefined }
  | { kind: 'checkpoint'; texts: string[]; waiter: Waiter<void> }
  | { kind: 'load'; waiter: Waiter<R[]>; timed?: Waiter<{ at: Date; record: R }[]> };

/**
 * How many writes may be in flight at once (`GroupCommitLog`'s `syncsInFlight`),
 * for a backend that `overlapsSyncs`. With one, a record that arrives while a
 * write is syncing waits for that sync and then for its own; with more, its own
 * sync starts at once. Batches still resolve in order, and a batch resolves
 * only when it and every batch before it are durable.
 */
export const syncsInFlightMax = 16;

export function checkSyncsInFlight(value: number): number {
  if (!Number.isSafeInteger(value) || value < 1 || value > syncsInFlightMax) {
    throw new RangeError(`syncsInFlight must be an integer from 1 to ${syncsInFlightMax}, got ${value}`);
  }
  return value;
}

/** Characters PostgreSQL's jsonb refuses, checked for every store so that records are portable. */
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

function checkString(text: string, where: string): void {
  if (text.includes('\u0000')) throw new TypeError(`a log record may not contain NUL characters (${where})`);
  if (loneSurrogate.test(text))
    throw new TypeError(`a log record may not contain lone surrogates (${where})`);
}

/** Nesting that `plainRecord` walks; records are a few levels deep. */
const plainDepthMax = 32;

/** Any surrogate: a string with one (an emoji, or a lone one) is left to the replacer's exact check. */
const hasSurrogate = /[\uD800-\uDFFF]/;

function cleanString(text: string): boolean {
  return !text.includes('\u0000') && !hasSurrogate.test(text);
}

/**
 * True when `value` is plain data that `serializeRecord` accepts as is:
 * clean strings, finite numbers, booleans, null, arrays and plain objects of
 * those. False when unsure (anything else, even what would be accepted).
 * Far cheaper than a replacer, which JSON.stringify calls for every value.
 */
function plainRecord(value: unknown, depth = 0): boolean {
  // A cycle (or data this deep) is left to JSON.stringify, which refuses a cycle with a TypeError.
  if (depth > plainDepthMax) return false;
  switch (typeof value) {
    case 'string':
      return cleanString(value);
    case 'number':
      return Number.isFinite(value);
    case 'boolean':
      return true;
    case 'object': {
      if (value === null) return true;
      if (Array.isArray(value)) return value.every((item) => plainRecord(item, depth + 1));
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      for (const key of Object.keys(value)) {
        const field = (value as Record<string, unknown>)[key];
        if (!cleanString(key) || field === undefined || !plainRecord(field, depth + 1)) return false;
      }
      return true;
    }
    default:
      return false;
  }
}

/**
 * The JSON text of `record`. Throws a TypeError when the record is not plain
 * JSON that every store can keep exactly: `undefined`, functions, bigints,
 * non-finite numbers, and strings with NUL characters or lone surrogates
 * (PostgreSQL's jsonb rejects both) are refused instead of silently altered.
 */
export function serializeRecord(record: unknown): string {
  // Plain data (every protocol's records) is checked by a walk and
  // serialized without a replacer; the replacer below is the general rule.
  if (plainRecord(record)) return JSON.stringify(record);
  const text = JSON.stringify(record, (key: string, value: unknown) => {
    checkString(key, 'in a key');
    if (typeof value === 'string') checkString(value, `in ${key === '' ? 'the record' : `field ${key}`}`);
    else if (typeof value === 'number' && !Number.isFinite(value)) {
      throw new TypeError(`a log record may not contain ${value} (field ${key})`);
    }
    return value;
  });
  if (text === undefined) throw new TypeError(`a log record must be a JSON value, got ${typeof record}`);
  return text;
}

function serializeRecords(records: readonly unknown[]): string[] {
  if (!Array.isArray(records)) throw new TypeError('records must be an array');
  return records.map(serializeRecord);
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function checkDelay(value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`lazyFlushDelayMs must be a non-negative integer, got ${value}`);
  }
  return value;
}

export class GroupCommitLog<R> implements DurableLog<R>, AsyncDisposable {
  readonly stats: LogStats = { flushes: 0, records: 0 };
  readonly #backend: LogBackend;
  readonly #syncsInFlight: number;
  /** Writes started and not yet settled, oldest first; each resolves true when its batch resolved. */
  #inFlight: Promise<boolean>[] = [];
  readonly #decode: (value: unknown) => R;
  readonly #lazyFlushDelayMs: number;
  readonly #observer: Pick<Observer, 'logFlushed'> | undefined;
  #queue: Op<R>[] = [];
  /** True from the moment the writer is scheduled until it has drained what it wants. */
  #running = false;
  #lazyDue = false;
  #lazyTimer: NodeJS.Timeout | undefined;
  #failure: LogError | undefined;
  #closing: Promise<void> | undefined;
  readonly identity: LogIdentity | undefined;
  readonly lost: Promise<LogError> | undefined;

  constructor(
    backend: LogBackend,
    options: LogOptions<R> = {},
    meta?: LogMeta,
    overlap: { syncsInFlight?: number } = {},
  ) {
    this.#backend = backend;
    const syncsInFlight = checkSyncsInFlight(overlap.syncsInFlight ?? 1);
    if (syncsInFlight > 1 && backend.overlapsSyncs !== true) {
      throw new RangeError(`${backend.description} cannot have more than one sync in flight`);
    }
    this.#syncsInFlight = syncsInFlight;
    this.identity = meta?.identity === undefined ? undefined : Object.freeze({ ...meta.identity });
    this.lost = meta?.lost;
    this.#decode = options.decode ?? ((value) => value as R);
    this.#lazyFlushDelayMs = checkDelay(options.lazyFlushDelayMs ?? lazyFlushDelayMsDefault);
    this.#observer = options.observer;
  }

  append(records: readonly R[], force: boolean): Promise<void> {
    const refusal = this.#refusal();
    if (refusal !== undefined) return Promise.reject(refusal);
    let texts: string[];
    try {
      texts = serializeRecords(records);
    } catch (error) {
      return Promise.reject(error);
    }
    if (!force) {
      if (texts.length > 0) {
        this.#queue.push({ kind: 'append', texts, waiter: undefined });
        this.#armLazyTimer();
      }
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ kind: 'append', texts, waiter: { resolve, reject } });
      this.#kick();
    });
  }

  load(): Promise<R[]> {
    const refusal = this.#refusal();
    if (refusal !== undefined) return Promise.reject(refusal);
    return new Promise((resolve, reject) => {
      this.#queue.push({ kind: 'load', waiter: { resolve, reject } });
      this.#kick();
    });
  }

  history(): Promise<{ at: Date; record: R }[]> {
    const refusal = this.#refusal();
    if (refusal !== undefined) return Promise.reject(refusal);
    return new Promise((resolve, reject) => {
      const timed = { resolve, reject };
      this.#queue.push({ kind: 'load', waiter: { resolve: () => {}, reject }, timed });
      this.#kick();
    });
  }

  checkpoint(keep: readonly R[]): Promise<void> {
    const refusal = this.#refusal();
    if (refusal !== undefined) return Promise.reject(refusal);
    let texts: string[];
    try {
      texts = serializeRecords(keep);
    } catch (error) {
      return Promise.reject(error);
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ kind: 'checkpoint', texts, waiter: { resolve, reject } });
      this.#kick();
    });
  }

  /** `await using log = await openSqliteLog(...)` closes it on leaving the block. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    if (
      this.#failure === undefined &&
      (this.#running || this.#queue.length > 0 || this.#inFlight.length > 0)
    ) {
      // A forced, empty append: resolves once everything queued before it (lazy records included) is written.
      await new Promise<void>((resolve) => {
        this.#queue.push({ kind: 'append', texts: [], waiter: { resolve, reject: () => resolve() } });
        this.#kick();
      });
    }
    // Also after a failure: no write may still be syncing when the backend closes its files.
    while (this.#inFlight.length > 0) await this.#inFlight[0];
    clearTimeout(this.#lazyTimer);
    this.#lazyTimer = undefined;
    await this.#backend.close(this.#failure !== undefined);
  }

  #refusal(): LogError | undefined {
    if (this.#failure !== undefined) return this.#failure;
    if (this.#closing !== undefined) return new LogError('closed', `${this.#backend.description} is closed`);
    return undefined;
  }

  #kick(): void {
    if (this.#running) return;
    this.#running = true;
    setImmediate(() => void this.#run());
  }

  #armLazyTimer(): void {
    if (this.#lazyTimer !== undefined || this.#lazyDue) return;
    this.#lazyTimer = setTimeout(() => {
      this.#lazyTimer = undefined;
      this.#lazyDue = true;
      this.#kick();
    }, this.#lazyFlushDelayMs);
  }

  /** Something in the queue must be written (or read) now, rather than wait for more company. */
  #wantsWork(): boolean {
    if (this.#queue.length === 0) return false;
    return this.#lazyDue || this.#queue.some((op) => op.kind !== 'append' || op.waiter !== undefined);
  }

  async #run(): Promise<void> {
    try {
      while (this.#failure === undefined && this.#wantsWork()) {
        const head = this.#queue[0]!;
        if (head.kind === 'load') {
          // A load reads what is durable: every write started before it settles first.
          while (this.#inFlight.length > 0) await this.#inFlight[0];
          if (this.#failure !== undefined) break;
          this.#queue.shift();
          await this.#load(head.waiter, head.timed);
        } else {
          const loadAt = this.#queue.findIndex((op) => op.kind === 'load');
          const batch = this.#queue.splice(0, loadAt < 0 ? this.#queue.length : loadAt);
          if (!this.#queue.some((op) => op.kind === 'append' && op.waiter === undefined)) {
            clearTimeout(this.#lazyTimer);
            this.#lazyTimer = undefined;
            this.#lazyDue = false;
          }
          const written = this.#write(batch, this.#inFlight.at(-1));
          this.#inFlight.push(written);
          void written.then(() => this.#inFlight.splice(this.#inFlight.indexOf(written), 1));
          // With one sync in flight (the default) this waits for the write just started.
          while (this.#inFlight.length >= this.#syncsInFlight) await this.#inFlight[0];
        }
        // Let the callers just woken queue their next calls, so that they share the next write.
        await yieldTurn();
      }
    } finally {
      this.#running = false;
      if (this.#failure !== undefined) {
        const failure = this.#failure;
        for (const op of this.#queue.splice(0)) op.waiter?.reject(failure);
        clearTimeout(this.#lazyTimer);
        this.#lazyTimer = undefined;
      } else if (this.#queue.length > 0) {
        this.#armLazyTimer();
      }
    }
  }

  /**
   * Starts the backend's write of `batch` (it applies the batch before its
   * first await) and settles the batch's callers once it is durable and
   * `before` (the previous write, when still in flight) has settled: true
   * when the batch resolved, false when it was rejected. Never rejects.
   */
  async #write(batch: readonly Op<R>[], before?: Promise<boolean>): Promise<boolean> {
    const write: WriteBatch = { replace: false, texts: [] };
    let appended = 0;
    for (const op of batch) {
      if (op.kind === 'load') continue; // never in a batch; keeps the types narrow
      if (op.kind === 'checkpoint') {
        // A checkpoint replaces everything before it, including earlier records of this batch.
        write.replace = true;
        write.texts = [...op.texts];
      } else {
        for (const text of op.texts) write.texts.push(text);
        appended += op.texts.length;
      }
    }
    let failure: unknown;
    try {
      if (write.replace || write.texts.length > 0) {
        const startedMs = performance.now();
        await this.#backend.write(write);
        this.stats.flushes++;
        notify(this.#observer, 'logFlushed', {
          records: appended,
          durationMs: performance.now() - startedMs,
        });
      }
      this.stats.records += appended;
    } catch (error) {
      failure = error;
      if (before === undefined) {
        // No earlier batch to wait for: this batch's callers hear of the failure first, then what is queued.
        this.#failure ??= this.#asLogError(error);
        for (const op of batch) op.waiter?.reject(this.#failure);
        this.#fail(error);
        return false;
      }
      this.#fail(error);
    }
    // A batch resolves only after every batch before it: it is durable only if they are.
    const earlierResolved = before === undefined || (await before);
    if (failure === undefined && earlierResolved) {
      for (const op of batch) if (op.kind !== 'load') op.waiter?.resolve();
      return true;
    }
    for (const op of batch) op.waiter?.reject(this.#failure);
    return false;
  }

  /**
   * The log is failed from now on: no write starts, and what is queued is
   * rejected (writes in flight reject their batches when they settle).
   */
  #fail(error: unknown): void {
    this.#failure ??= this.#asLogError(error);
    const failure = this.#failure;
    for (const op of this.#queue.splice(0)) op.waiter?.reject(failure);
    clearTimeout(this.#lazyTimer);
    this.#lazyTimer = undefined;
  }

  #asLogError(error: unknown): LogError {
    return error instanceof LogError
      ? error
      : new LogError(
          'failed',
          `${this.#backend.description}: a write failed, so its records may or may not be durable; ` +
            `close the log, reopen it and recover from load(): ${messageOf(error)}`,
          { cause: error },
        );
  }

  async #load(waiter: Waiter<R[]>, timed?: Waiter<{ at: Date; record: R }[]>): Promise<void> {
    let rows: StoredRow[];
    try {
      rows = await this.#backend.read();
    } catch (error) {
      waiter.reject(
        error instanceof LogError
          ? error
          : new LogError('unavailable', `${this.#backend.description}: load failed: ${messageOf(error)}`, {
              cause: error,
            }),
      );
      return;
    }
    const records: R[] = [];
    for (const row of rows) {
      let value: unknown;
      try {
        value = JSON.parse(row.text);
      } catch (error) {
        waiter.reject(
          new LogError('corrupt', `${this.#backend.description}: row ${row.seq} is not JSON`, {
            cause: error,
            seq: row.seq,
          }),
        );
        return;
      }
      try {
        records.push(this.#decode(value));
      } catch (error) {
        waiter.reject(
          new LogError(
            'corrupt',
            `${this.#backend.description}: row ${row.seq} is not a valid record: ${messageOf(error)}`,
            { cause: error, seq: row.seq },
          ),
        );
        return;
      }
    }
    waiter.resolve(records);
    // Rows written before dtx kept times have none: they show as the epoch.
    timed?.resolve(records.map((record, i) => ({ at: new Date(rows[i]!.atMs ?? 0), record })));
  }
}
