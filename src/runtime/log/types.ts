// The durable-log port of the runtime: what a protocol core's `persist` effects
// (../../protocol/common/types.ts) are executed against. A store (./sqlite.ts,
// ./postgres.ts) implements it; the runtime only sees this interface, so a
// coordinator can move between an embedded file and a shared database without
// touching protocol code. The semantics every store must keep are written here,
// next to the signatures, and in docs/log.md.

import type { Observer } from '../observe.ts';

import type { LogError } from './errors.ts';

/**
 * An append-only log of JSON records with checkpoints.
 *
 * Ordering: `append`, `checkpoint` and `load` take effect in call order, as if
 * run one after another; a `load` sees every `append` and `checkpoint` called
 * before it. Writes are group-committed: every call waiting while a write is in
 * flight goes into the next write, so one fsync serves many appends.
 *
 * Failure: if a write fails (disk error, lost connection, lost lease), its
 * records may or may not have reached stable storage. The log then refuses
 * every later call with the same `LogError` (reason `failed` or `fenced`):
 * the caller must treat the node as crashed — close the log, reopen it and
 * recover from `load()` — never retry the append on the same instance.
 */
export interface DurableLog<R> {
  /**
   * Appends records. `force = true` resolves only once they (and every record
   * appended before them) are on stable storage (fsync / synchronous commit).
   * `force = false` resolves once buffered; lazy records become durable with
   * the next write at the latest, or after `lazyFlushDelayMs`. Records are
   * serialized at call time, so mutating them afterwards changes nothing.
   * Rejects with a TypeError (and writes nothing) when a record is not plain
   * JSON (see `serializeRecord`).
   */
  append(records: readonly R[], force: boolean): Promise<void>;
  /** Every record since the last checkpoint, in append order, passed through the store's `decode`. */
  load(): Promise<R[]>;
  /**
   * Atomically replaces the log's contents with `keep` (a checkpoint computed by
   * the caller, e.g. `compactTwoPcLog`). Serialized with appends in call order:
   * it replaces exactly the records of the appends called before it, so `keep`
   * must account for all of them (compute it from the same in-memory sequence
   * the appends came from, right before calling); appends called after it are
   * kept after `keep`. Durable (forced) when it resolves.
   */
  checkpoint(keep: readonly R[]): Promise<void>;
  /** Flushes buffered (lazy) records and releases resources; later calls reject with reason `closed`. */
  close(): Promise<void>;
  /** Counters for benchmarks and tests: durable writes (fsyncs / synchronous commits) done, records appended. */
  readonly stats: LogStats;
  /**
   * What the log belongs to, as recorded when it was created (see
   * `LogIdentity`). Every store sets it; wrappers pass it through. Optional so
   * that test doubles of the port need not invent one.
   */
  readonly identity?: LogIdentity;
  /**
   * Every record since the last checkpoint with the time it was appended, in
   * the order of `load()`. For operators (`dtx txn show`); recovery uses `load()`.
   */
  history?(): Promise<{ at: Date; record: R }[]>;
  /**
   * Resolves (never rejects) with a `LogError` of reason `fenced` once this
   * instance lost exclusive ownership of the log (the PostgreSQL log's owner
   * lease was taken over or could not be renewed in time). Never resolves for
   * a store whose ownership cannot be lost (SQLite's file lock dies only with
   * its process). Every write after that point fails.
   */
  readonly lost?: Promise<LogError>;
}

/**
 * The protocols a log can belong to. `server`: `dtx serve`'s log of
 * transactions it holds before any branch call (prepared TCC and message
 * transactions; src/server/store.ts). `paxos-acceptor`: a Paxos Commit
 * acceptor's instances (src/runtime/paxos-commit/acceptor-server.ts).
 */
export type LogProtocol = '2pc' | 'saga' | 'tcc' | 'server' | 'paxos-acceptor';
export const logProtocols: readonly LogProtocol[] = ['2pc', 'saga', 'tcc', 'server', 'paxos-acceptor'];

/**
 * What a log belongs to, written once when it is created and kept by every
 * checkpoint: the protocol whose records it holds, the id of the coordinator
 * (or orchestrator) that owns it — part of every gid and transaction id it
 * makes, so that recovery never touches another deployment's branches — and
 * when it was created (ISO 8601).
 */
export interface LogIdentity {
  protocol: LogProtocol;
  coordinatorId: string;
  createdAt: string;
}

export interface LogStats {
  /** Write transactions committed to stable storage: one fsync (SQLite) or one synchronous COMMIT (PostgreSQL). */
  flushes: number;
  /** Records written by `append` (not counting records rewritten by `checkpoint`). */
  records: number;
}

/** Options every store takes. */
export interface LogOptions<R> {
  /**
   * Turns a stored JSON value back into a record; throw to reject it. `load()`
   * reports a rejected (or unparsable) row as a `LogError` with reason
   * `corrupt` instead of handing it to recovery. Default: no check (the value
   * is cast to R). For 2PC: `twoPcRecordCodec.check`.
   */
  decode?: (value: unknown) => R;
  /** Told of every flush (one durable write) with its batch size: for metrics (../observe.ts). */
  observer?: Pick<Observer, 'logFlushed'>;
  /** How long lazy records may wait for a write when no forced append comes along. Default 10. */
  lazyFlushDelayMs?: number;
  /**
   * Create the log when it does not exist (and, for a log written by a dtx
   * that recorded no identity, adopt one). Default false: a missing log is a
   * `LogError` of reason `notFound` and nothing is created — no file, no
   * directory, no table — so that a mistyped path can never look like an empty
   * log to recovery.
   */
  create?: boolean;
  /**
   * The identity a created log gets. `protocol` defaults to `'2pc'`;
   * `coordinatorId` defaults to a fresh random id (10 characters, `[a-z0-9]`).
   * When the log exists, a given field must match what it records (else
   * reason `mismatch`).
   */
  identity?: { protocol?: LogProtocol; coordinatorId?: string };
  /** Refuse (reason `mismatch`, nothing touched) a log whose identity differs in a given field. */
  expect?: { protocol?: LogProtocol; coordinatorId?: string };
}
