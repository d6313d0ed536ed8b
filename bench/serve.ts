// `npm run bench:serve`: two-step sagas through `dtx serve`'s HTTP API against
// the same two HTTP calls made directly, without a coordinator, side by side
// in one run (see bench/real.ts for how rounds alternate and what is measured).
//
// Two branch services (node:http, in this process) each own one database and
// run the in-process saga bench's SQL (src/cli/bench-saga.ts): the debit
// service UPDATEs the debited account and INSERTs the transfer's row, the
// credit service the same for the credit, each inside `withBarrier` in one
// local transaction. Rows:
//
//   direct calls   POST the debit service, then POST the credit service, as a
//                  caller without a coordinator would: no log, no recovery.
//   dtx serve      POST /v1/sagas (two steps, debit then credit, with their
//                  compensations) with `wait`, to a `dtx serve` child process
//                  on its embedded SQLite store; the server calls the same two
//                  services under the HTTP branch protocol and answers once the
//                  saga has ended.
//
// The CPU column is this process's (the caller and both services); the server
// process's CPU per saga, read from /proc, is printed after the table. The
// added p50 per saga is the dtx row's p50 minus the direct row's.
//
//   npm run bench:serve -- --seconds 6 --rounds 3 [--json] [--topology pg]

import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { withBarrier } from '../src/adapters/barrier.ts';
import { openSides, prepareSagaBench, type Side } from '../src/cli/bench-saga.ts';
import { call, kill, startServe } from '../test/server/helpers.ts';
import { type BenchFlags, incarnation, type Row, runBenchMain, runTable, type Variant } from './real.ts';

interface BranchCall {
  sagaId: string;
  branchId: string;
  op: 'action' | 'compensation';
  payload: { account: number; amount: number };
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

/**
 * A branch service over one database: POST / runs the step's action or
 * compensation (debit: -amount, credit: +amount) in the barrier's local
 * transaction. Answers 200 on success, 500 with the error otherwise.
 */
async function branchService(side: Side, sign: 1 | -1): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    void (async () => {
      try {
        const call = (await readJson(req)) as BranchCall;
        const { account, amount } = call.payload;
        const delta = call.op === 'action' ? sign * amount : -sign * amount;
        await withBarrier(
          side.barrier,
          { sagaId: call.sagaId, branchId: call.branchId, op: call.op },
          (tx) => {
            const s = side.store(tx);
            return call.op === 'action'
              ? s.adjust(account, delta).then(() => s.putTransfer(call.sagaId, amount))
              : s.adjust(account, delta).then(() => s.deleteTransfer(call.sagaId));
          },
        );
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } catch (error) {
        res.writeHead(500, { 'content-type': 'text/plain' }).end(String(error));
      }
    })();
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** user + system CPU of a process so far, in ms (Linux /proc). */
function processCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  return (ticks * 1000) / 100; // USER_HZ is 100 on Linux
}

/** The dtx row's p50 minus the direct row's, per topology and concurrency. */
function addedP50(rows: Row[]): { topology: string; concurrency: number; addedMs: number }[] {
  const out: { topology: string; concurrency: number; addedMs: number }[] = [];
  for (const r of rows) {
    if (r.variant !== 'dtx serve saga') continue;
    const base = rows.find((b) => b.topology === r.topology && b.concurrency === r.concurrency);
    if (base !== undefined) {
      out.push({
        topology: r.topology,
        concurrency: r.concurrency,
        addedMs: r.latencyMs.p50 - base.latencyMs.p50,
      });
    }
  }
  return out;
}

const serverCpu: { topology: string; cpuMsPerSaga: number; sagas: number }[] = [];

async function benchTopology(
  topology: string,
  urls: string[],
  flags: BenchFlags,
  logDir: string,
): Promise<Row[]> {
  const o = await openSides(urls, 'saga', true);
  const closers: (() => Promise<void>)[] = [() => o.close()];
  try {
    await prepareSagaBench(o, { init: true, accounts: flags.accounts });
    const debit = await branchService(o.debit, -1);
    closers.push(debit.close);
    const credit = await branchService(o.credit, 1);
    closers.push(credit.close);
    // DTX_BENCH_SERVE_NODE_ARGS: node flags for the server process (e.g. `--cpu-prof --cpu-prof-dir=DIR`).
    const nodeArgs = (process.env.DTX_BENCH_SERVE_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
    const server = await startServe(
      ['--store', `sqlite:${join(logDir, topology.replace('+', '-'), 'serve.sqlite')}`],
      {
        fromSource: false,
        nodeArgs,
      },
    );
    closers.push(() => kill(server.child, 'SIGTERM'));
    const pick = () => Math.floor(Math.random() * flags.accounts);
    let n = 0;
    const direct: Variant = {
      name: 'direct HTTP calls',
      async transfer() {
        const sagaId = `direct.${incarnation}.${++n}`;
        const amount = 1 + Math.floor(Math.random() * 100);
        for (const [url, branchId] of [
          [debit.url, 'debit'],
          [credit.url, 'credit'],
        ] as const) {
          const r = await call(url, 'POST', '', {
            sagaId,
            branchId,
            op: 'action',
            payload: { account: pick(), amount },
          });
          if (r.status !== 200) throw new Error(`direct ${branchId}: ${r.status} ${JSON.stringify(r.json)}`);
        }
        return 'committed';
      },
    };
    let sagas = 0;
    const viaServe: Variant = {
      name: 'dtx serve saga',
      async transfer() {
        const id = `serve.${incarnation}.${++n}`;
        const amount = 1 + Math.floor(Math.random() * 100);
        const step = (name: string, url: string) => ({
          name,
          action: { url },
          compensation: { url },
          payload: { account: pick(), amount },
        });
        const r = await call(server.url, 'POST', '/v1/sagas', {
          id,
          steps: [step('debit', debit.url), step('credit', credit.url)],
          wait: { timeoutMs: 60_000 },
        });
        if (r.status !== 200) throw new Error(`dtx serve: ${r.status} ${JSON.stringify(r.json)}`);
        sagas++;
        const { state } = r.json as { state: string };
        return state === 'completed' ? 'committed' : state;
      },
    };
    const cpu0 = processCpuMs(server.child.pid!);
    const rows = await runTable(topology, [direct, viaServe], flags, (line) =>
      process.stderr.write(`${line}\n`),
    );
    const done = sagas;
    serverCpu.push({
      topology,
      sagas: done,
      cpuMsPerSaga: done === 0 ? 0 : (processCpuMs(server.child.pid!) - cpu0) / done,
    });
    return rows;
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
  }
}

// The concurrencies unless told otherwise.
if (!process.argv.includes('--concurrency')) process.argv.push('--concurrency', '8,32');

await runBenchMain(
  'serve',
  2,
  (f) =>
    `Two-step sagas over HTTP, ${f.rounds} alternating rounds of ${f.seconds} s per row; ratios against direct HTTP calls`,
  benchTopology,
  {
    lines: (rows) => [
      ...addedP50(rows).map(
        (a) => `${a.topology} c=${a.concurrency}: p50 added per saga ${a.addedMs.toFixed(2)} ms`,
      ),
      ...serverCpu.map(
        (s) =>
          `${s.topology}: dtx serve process CPU ${s.cpuMsPerSaga.toFixed(3)} ms per saga (${s.sagas} sagas, warm-up included)`,
      ),
    ],
    json: (rows) => ({ addedP50: addedP50(rows), serverCpu }),
  },
);
