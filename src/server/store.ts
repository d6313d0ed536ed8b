// Where `dtx serve` keeps its state: two durable logs in one place.
//
// - The saga log (protocol `saga`): every transaction that has begun calling
//   branches — a saga, a submitted message, a TCC transaction's confirms or
//   cancels — run by the saga orchestrator of src/runtime/saga, named by its
//   caller's gid.
// - The server log (protocol `server`): what the server holds before any
//   branch call: a prepared TCC or message transaction, its registered
//   branches, and the submit or abort decision, forced before the saga that
//   carries it out begins (so a restart between the two begins it again; the
//   start is idempotent by gid). Transactions that end without a single branch
//   call (a message aborted while prepared) end here.
//
// `--store sqlite:PATH` puts the saga log at PATH and the server log at
// PATH.server; `--store postgres://...` uses the tables `dtx_serve_saga` and
// `dtx_serve_server`, owner `dtx-serve:<server id>` (several servers share
// the tables, each with its own owner: ./cluster.ts). Both are created on
// first use.

import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DtxError } from '../errors.ts';
import type { SagaRecord } from '../protocol/saga/types.ts';
import { recordDecoder } from '../runtime/branch/orchestrator.ts';
import { openLog } from '../runtime/log/open.ts';
import type { DurableLog } from '../runtime/log/types.ts';
import type { Observer } from '../runtime/observe.ts';
import { decodeSagaRecord } from '../runtime/saga/orchestrator.ts';

/** Where the store is: `sqlite:PATH` or a `postgres://` (or `postgresql://`) URL. */
export type StoreLocation = { sqlite: string } | { postgres: string };

/** The embedded store's default path, relative to the working directory. */
export const defaultStorePath = '.dtx/serve.sqlite';

export function parseStore(spec: string | undefined): StoreLocation {
  const s = spec ?? `sqlite:${defaultStorePath}`;
  if (/^postgres(ql)?:\/\//.test(s)) return { postgres: s };
  if (s.startsWith('sqlite:') && s.length > 'sqlite:'.length) return { sqlite: s.slice('sqlite:'.length) };
  throw new DtxError('DTX_INVALID_ARGUMENT', `--store must be sqlite:PATH or postgres://..., got ${s}`);
}

/** A branch of a TCC transaction, as registered. */
export interface TccBranchSpec {
  branch: string;
  confirm: string;
  cancel: string;
  /** The body sent with confirm and cancel (DTM: the branch's `data`). */
  body: string;
}

/** A step of a message transaction. */
export interface MsgStepSpec {
  branch: string;
  url: string;
  body: string;
}

/** What a prepared transaction keeps until its decision. */
export interface PreparedRequest {
  style: 'dtm' | 'dtx';
  /** How long it may stay prepared: then a TCC aborts, a message is checked with `queryPrepared`. */
  preparedTimeoutMs: number;
  queryPrepared: string | null;
  headers: Record<string, string>;
  requestTimeoutMs: number | null;
  /** A message's steps, when its prepare carried them. */
  steps: MsgStepSpec[];
}

export type ServerRecord =
  | {
      type: 'prepare';
      txn: string;
      transType: 'tcc' | 'msg';
      hash: string;
      request: PreparedRequest;
      /** The prepare request's trace headers (W3C), the parent of the span of the run that carries out its decision. */
      trace?: Record<string, string>;
    }
  | { type: 'branch'; txn: string; branch: TccBranchSpec }
  | { type: 'decide'; txn: string; decision: 'submit' | 'abort'; reason: string; steps?: MsgStepSpec[] }
  /** The saga log now has it: the records above can go. */
  | { type: 'started'; txn: string }
  /** Ended without a branch call. */
  | { type: 'end'; txn: string; transType: 'tcc' | 'msg'; outcome: 'succeed' | 'failed'; reason: string };

/** The `decode` of server logs: rejects rows that are not server records. */
export const decodeServerRecord = recordDecoder<ServerRecord>(
  ['prepare', 'branch', 'decide', 'started', 'end'],
  'server',
);

export interface ServeStores {
  saga: DurableLog<SagaRecord> & AsyncDisposable;
  server: DurableLog<ServerRecord> & AsyncDisposable;
  describe: string;
}

/** The PostgreSQL owner of server `serverId`'s logs. */
export function serveOwner(serverId: string): string {
  return `dtx-serve:${serverId}`;
}

/** Flush observers of the two logs (for metrics). */
export type StoreObservers = Record<'saga' | 'server', Pick<Observer, 'logFlushed'>>;

/** Whose logs to open in a PostgreSQL store, and how to take their owner leases. */
export interface StoreOwnership {
  owner: string;
  /** The lease holder id: `<server id>/<random>`, so that others can tell which server holds a log. */
  holder: string;
  leaseTtlMs: number;
  /** Wait for the leases instead of failing `locked` (the owner's logs are being handed back). */
  waitForLease: boolean;
}

/**
 * Opens (creating on first use) both logs; each is held exclusively (file
 * lock, owner lease). `ownership` is for a PostgreSQL store (the default: the
 * owner `dtx-serve`, as before servers had ids); `observers` see each log's
 * flushes.
 */
export async function openStores(
  where: StoreLocation,
  options: { ownership?: StoreOwnership | undefined; observers?: StoreObservers | undefined } = {},
): Promise<ServeStores> {
  const { ownership, observers } = options;
  const observe = (log: 'saga' | 'server') => (observers === undefined ? {} : { observer: observers[log] });
  if ('sqlite' in where) {
    mkdirSync(dirname(where.sqlite), { recursive: true });
    const saga = await openLog(
      { sqlite: where.sqlite, create: true, ...observe('saga') },
      decodeSagaRecord,
      'saga',
    );
    try {
      const server = await openLog(
        { sqlite: `${where.sqlite}.server`, create: true, ...observe('server') },
        decodeServerRecord,
        'server',
      );
      return { saga, server, describe: `sqlite:${where.sqlite}` };
    } catch (error) {
      await saga.close();
      throw error;
    }
  }
  const owner = ownership?.owner ?? 'dtx-serve';
  const lease =
    ownership === undefined
      ? {}
      : {
          leaseHolder: ownership.holder,
          leaseTtlMs: ownership.leaseTtlMs,
          waitForLease: ownership.waitForLease,
        };
  // The saga log first, always: two servers adopting one owner at once race
  // for its saga lease, and the loser never reaches the server log's.
  const saga = await openLog(
    { postgres: where.postgres, owner, table: 'dtx_serve_saga', create: true, ...lease, ...observe('saga') },
    decodeSagaRecord,
    'saga',
  );
  try {
    const server = await openLog(
      {
        postgres: where.postgres,
        owner,
        table: 'dtx_serve_server',
        create: true,
        ...lease,
        ...observe('server'),
      },
      decodeServerRecord,
      'server',
    );
    return {
      saga,
      server,
      describe: `postgres (tables dtx_serve_saga, dtx_serve_server, owner ${owner})`,
    };
  } catch (error) {
    await saga.close();
    throw error;
  }
}
