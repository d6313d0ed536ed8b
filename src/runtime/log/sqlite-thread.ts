// The SQLite log's worker thread: the log's connection lives here, so that a
// write's fsync blocks this thread instead of the event loop serving the
// transactions in flight. This module is both sides:
//
// - in the calling thread, `startSqliteWorker` starts a worker on this same
//   file and returns a group-commit backend (./group-commit.ts) that sends
//   each operation to it and resolves with its answer;
// - in the worker, the connection is opened and set up exactly as on the main
//   thread (./sqlite.ts: same pragmas, synchronous = FULL, the same exclusive
//   lock, taken by this worker's connection for the log's life), and each
//   operation runs on it, one at a time, in the order sent.
//
// Nothing about durability changes: a write is answered only once SQLite's
// COMMIT (and its fsync) returned. A worker that dies fails every operation
// in flight, which the group-commit log reports as reason `failed` (outcome
// unknown), exactly as a failed write on the main thread.

import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { LogError, type LogErrorReason } from './errors.ts';
import type { LogBackend, StoredRow, WriteBatch } from './group-commit.ts';
import { openSqliteDatabase, type SqliteWorkerOptions, sqliteBackend } from './sqlite.ts';
import type { LogIdentity } from './types.ts';

type Request =
  | { id: number; op: 'write'; batch: WriteBatch }
  | { id: number; op: 'read' }
  | { id: number; op: 'close'; broken: boolean };

/** An error as it crosses threads: a LogError keeps its reason, anything else its message and code. */
interface WireError {
  reason?: LogErrorReason;
  message: string;
  code?: string;
}

/** A request before it is numbered (each member of the union without its `id`). */
type Unnumbered<T> = T extends unknown ? Omit<T, 'id'> : never;

type Reply = { id: number; ok: true; rows?: StoredRow[] } | { id: number; ok: false; error: WireError };

type Opened = { type: 'opened'; identity: LogIdentity } | { type: 'failed'; error: WireError };

interface Start {
  dtxSqliteLog: true;
  path: string;
  options: SqliteWorkerOptions;
}

function toWire(error: unknown): WireError {
  if (error instanceof LogError) return { reason: error.reason, message: error.message };
  const code = (error as { code?: unknown } | null)?.code;
  return {
    message: error instanceof Error ? error.message : String(error),
    ...(typeof code === 'string' ? { code } : {}),
  };
}

function fromWire(wire: WireError): Error {
  if (wire.reason !== undefined) return new LogError(wire.reason, wire.message);
  return Object.assign(new Error(wire.message), wire.code === undefined ? {} : { code: wire.code });
}

/** The worker's side: open, then serve operations until `close`. */
async function serve(port: NonNullable<typeof parentPort>, start: Start): Promise<void> {
  let backend: LogBackend;
  try {
    const { db, identity, description } = await openSqliteDatabase(start.path, start.options);
    backend = sqliteBackend(db, description);
    port.postMessage({ type: 'opened', identity } satisfies Opened);
  } catch (error) {
    port.postMessage({ type: 'failed', error: toWire(error) } satisfies Opened);
    return;
  }
  port.on('message', (request: Request) => {
    // better-sqlite3 is synchronous, so each operation completes before the next message is taken.
    const answer = async (): Promise<Reply> => {
      switch (request.op) {
        case 'write':
          await backend.write(request.batch);
          return { id: request.id, ok: true };
        case 'read':
          return { id: request.id, ok: true, rows: await backend.read() };
        case 'close':
          await backend.close(request.broken);
          return { id: request.id, ok: true };
      }
    };
    answer().then(
      (reply) => {
        port.postMessage(reply);
        if (request.op === 'close') port.close();
      },
      (error: unknown) =>
        port.postMessage({ id: request.id, ok: false, error: toWire(error) } satisfies Reply),
    );
  });
}

if (!isMainThread && (workerData as Partial<Start> | null)?.dtxSqliteLog === true && parentPort !== null) {
  void serve(parentPort, workerData as Start);
}

/**
 * The worker runs this file. From TypeScript sources it must first register
 * tsx's loader in the new thread (hooks registered in this one do not carry
 * over), which a small bootstrap does before importing this file.
 */
function newWorker(start: Start): Worker {
  const self = import.meta.url;
  if (!self.endsWith('.ts')) return new Worker(new URL(self), { workerData: start });
  const bootstrap =
    `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})` +
    `.then((tsx) => { tsx.register(); return import(${JSON.stringify(self)}); })`;
  return new Worker(bootstrap, { eval: true, workerData: start });
}

/**
 * Starts the worker for the log at `path` and waits until it has opened it
 * (or failed to, with the same errors as opening on the main thread).
 */
export async function startSqliteWorker(
  path: string,
  options: SqliteWorkerOptions,
  description: string,
): Promise<{ backend: LogBackend; identity: LogIdentity }> {
  const worker = newWorker({ dtxSqliteLog: true, path, options });
  const pending = new Map<
    number,
    { resolve(reply: Extract<Reply, { ok: true }>): void; reject(error: unknown): void }
  >();
  let nextId = 0;
  let gone: Error | undefined;
  const fail = (error: Error) => {
    gone ??= error;
    for (const p of pending.values()) p.reject(gone);
    pending.clear();
  };

  const identity = await new Promise<LogIdentity>((resolve, reject) => {
    const onError = (error: Error) => reject(new LogError('unavailable', `${description}: ${error.message}`));
    worker.once('error', onError);
    worker.once('message', (opened: Opened) => {
      worker.removeListener('error', onError);
      if (opened.type === 'opened') resolve(opened.identity);
      else {
        void worker.terminate();
        reject(fromWire(opened.error));
      }
    });
  });
  // Idle, the worker must not keep the process alive; with an operation in flight it must.
  worker.unref();
  worker.on('message', (reply: Reply) => {
    const p = pending.get(reply.id);
    if (p === undefined) return;
    pending.delete(reply.id);
    if (pending.size === 0) worker.unref();
    if (reply.ok) p.resolve(reply);
    else p.reject(fromWire(reply.error));
  });
  worker.on('error', (error) =>
    fail(new Error(`${description}: its worker thread failed: ${error.message}`)),
  );
  worker.on('exit', (code) => fail(new Error(`${description}: its worker thread exited (code ${code})`)));

  const call = (request: Unnumbered<Request>): Promise<Extract<Reply, { ok: true }>> => {
    if (gone !== undefined) return Promise.reject(gone);
    return new Promise((resolve, reject) => {
      const id = ++nextId;
      pending.set(id, { resolve, reject });
      if (pending.size === 1) worker.ref();
      worker.postMessage({ ...request, id });
    });
  };

  const backend: LogBackend = {
    description,
    async write(batch) {
      await call({ op: 'write', batch });
    },
    async read() {
      return (await call({ op: 'read' })).rows ?? [];
    },
    async close(broken) {
      try {
        if (gone === undefined) await call({ op: 'close', broken });
      } finally {
        await worker.terminate();
      }
    },
  };
  return { backend, identity };
}
