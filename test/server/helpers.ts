// Helpers for `dtx serve` tests: a real node:http branch service that counts
// calls per idempotency key (dtx's Idempotency-Key header, or DTM's
// gid/branch_id/op query parameters) and answers by a rule, and a server
// started in-process on a temporary SQLite store.

import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { type RunningServer, startServer } from '../../src/server/index.ts';

/** A JSON answer, read field by field by the tests (each read is asserted). */
// biome-ignore lint/suspicious/noExplicitAny: the tests assert on the fields they read
export type Answer = any;

export interface BranchCallSeen {
  path: string;
  key: string;
  op: string;
  body: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
}

export interface BranchService {
  url: string;
  calls: BranchCallSeen[];
  /** Calls per key (`<gid>:<branch>:<op>`). */
  count(key: string): number;
  close(): Promise<void>;
}

/** Answer of the service: an HTTP status and a body. */
export type Rule = (
  call: BranchCallSeen,
  nth: number,
) => { status: number; body?: string } | Promise<{ status: number; body?: string }>;

export async function branchService(
  rule: Rule = () => ({ status: 200, body: '{"dtm_result":"SUCCESS"}' }),
): Promise<BranchService> {
  const calls: BranchCallSeen[] = [];
  const counts = new Map<string, number>();
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', async () => {
      const u = new URL(req.url ?? '/', 'http://x');
      const q = u.searchParams;
      const key =
        typeof req.headers['idempotency-key'] === 'string'
          ? req.headers['idempotency-key']
          : `${q.get('gid')}:${q.get('branch_id')}:${q.get('op')}`;
      const op = q.get('op') ?? String(req.headers['dtx-op'] ?? '');
      const call = { path: u.pathname, key, op, body, query: q, headers: req.headers };
      calls.push(call);
      const n = (counts.get(key) ?? 0) + 1;
      counts.set(key, n);
      const a = await rule(call, n);
      res.writeHead(a.status, { 'content-type': 'application/json' });
      res.end(a.body ?? '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    count: (key) => counts.get(key) ?? 0,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        // Keep-alive connections would hold close() open.
        server.closeAllConnections();
      }),
  };
}

/** Fast retries, so tests do not wait on the runtime's production backoff. */
export const fastTiming = { retryBaseMs: 20, retryCapMs: 200 };

export async function serve(storePath: string, token?: string): Promise<RunningServer> {
  return startServer({
    listen: '127.0.0.1:0',
    store: { sqlite: storePath },
    timing: fastTiming,
    httpTimeoutMs: 2000,
    ...(token === undefined ? {} : { token }),
  });
}

export async function call(
  base: string,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; json: Answer; type: string }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: unknown = text;
  try {
    json = JSON.parse(text);
  } catch {
    // keep the text
  }
  return { status: res.status, json, type: res.headers.get('content-type') ?? '' };
}

/** Polls `GET /v1/transactions/:id` until `done(view)` or the deadline. */
export async function until(
  base: string,
  id: string,
  done: (v: Answer) => boolean,
  ms = 20_000,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await call(base, 'GET', `/v1/transactions/${id}`, undefined, headers);
    if (r.status === 200 && done(r.json)) return r.json;
    if (Date.now() > deadline)
      throw new Error(`${id} did not get there: ${JSON.stringify(r.json).slice(0, 600)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const bin = fileURLToPath(new URL('../../bin/dtx.js', import.meta.url));

/**
 * Starts `dtx serve --listen 127.0.0.1:0 ARGS...` as a child process; resolves
 * once it listens. `fromSource` (default true) runs src/ through tsx, else
 * dist/ (benchmarks); `nodeArgs` go to node before the script (`--cpu-prof`).
 * Its stdout is read only until it listens, then drained.
 */
export async function startServe(
  args: string[],
  options: { fromSource?: boolean; nodeArgs?: readonly string[] } = {},
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(
    process.execPath,
    [...(options.nodeArgs ?? []), bin, 'serve', '--listen', '127.0.0.1:0', ...args],
    {
      env: options.fromSource === false ? process.env : { ...process.env, DTX_FROM_SOURCE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (d: Buffer) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m === null) return;
      child.stdout!.off('data', onData);
      child.stdout!.resume();
      resolve(m[1]!);
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => reject(new Error(`dtx serve exited ${code}: ${err}`)));
  });
  // A server that dies on its own says why in the test's output.
  child.once('exit', (code) => {
    if (code !== null && code !== 0) process.stderr.write(`dtx serve ${url} exited ${code}: ${err}\n`);
  });
  return { child, url };
}

/** Sends `signal` to a child and waits for it to exit. */
export async function kill(child: ChildProcess, signal: NodeJS.Signals): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill(signal);
  await exited;
}
