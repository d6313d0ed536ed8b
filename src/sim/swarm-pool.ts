// Swarm seeds on worker threads (`dtx swarm --workers K`). The workers only
// run seeds (./swarm-worker.ts) and post back their reports; this thread
// tallies the reports strictly in seed order with the swarm's own `tally`, and
// stops at the first failing seed in that order. So K workers print exactly
// what one prints (wallMs aside): the same counts, and the smallest failing
// seed, never whichever worker happened to finish first.
//
// A protocol reaches a worker by name: protocol objects (the deliberately
// broken variants the tests build) hold functions, which cannot cross threads.

import { Worker } from 'node:worker_threads';
import type { SagaSwarmOptions } from './branch/swarm.ts';
import type { ProtocolName, SagaProtocolName } from './protocols.ts';
import type { SeedRange, SeedRun, SwarmLoop } from './seeds.ts';
import type { SwarmOptions } from './swarm.ts';

/**
 * What every worker of one swarm runs: the swarm's own options, but for the
 * progress callback, so that a worker draws each seed's run exactly as
 * `runSwarm` does (./swarm-worker.ts builds the same loop from them).
 */
export type SwarmJob =
  | (Omit<SwarmOptions, 'onSeed' | 'protocol'> & { protocol: ProtocolName })
  | (Omit<SagaSwarmOptions, 'onSeed' | 'protocol'> & { protocol: SagaProtocolName });

/** Seeds `from` .. `from + count - 1`, sent to one worker. */
export interface SeedChunk {
  job: SwarmJob;
  from: number;
  count: number;
}

export interface SeedChunkResult {
  from: number;
  /** One report per seed from `from` on; fewer than asked when a run threw. */
  reports: unknown[];
  /** The run of seed `from + reports.length` threw this (a core's assertion, say). */
  thrown?: { name: string; message: string; stack: string | undefined };
}

export const swarmPoolLimits = {
  /** Seeds per message: enough to make the message cost nothing beside the runs, few enough to waste little past a failure. */
  chunkSeedsMax: 64,
  /**
   * Chunks a worker may run ahead of the oldest one not yet tallied. Reports
   * wait in memory until every earlier seed is tallied; this bounds them when
   * one chunk is much slower than the others.
   */
  chunksAheadMax: 32,
  /** No point in more threads than this on any machine dtx runs on. */
  workersMax: 256,
} as const;

/** Young generation per worker, as bin/dtx.js gives the main thread (short-lived simulator objects). */
const youngGenerationMb = 192;

function startWorker(): Worker {
  const here = import.meta.url;
  const options = { resourceLimits: { maxYoungGenerationSizeMb: youngGenerationMb } };
  if (!here.endsWith('.ts')) return new Worker(new URL('./swarm-worker.js', here), options);
  // Running the TypeScript sources (DTX_FROM_SOURCE=1, the tests): a worker
  // does not inherit a loader registered at run time, so it registers tsx
  // itself before it loads its body, as bin/dtx.js does.
  const tsx = import.meta.resolve('tsx/esm/api');
  const body = new URL('./swarm-worker.ts', here).href;
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(body)}); });`;
  return new Worker(boot, { ...options, eval: true });
}

/**
 * Runs `loop` over `range` on `workers` threads, each running `job` for the
 * seeds it is sent. Same result as `runLoop(loop, range)` on this thread.
 */
export function runLoopOnWorkers<Req, Report, Summary>(
  loop: SwarmLoop<Req, Report, Summary>,
  range: SeedRange<Report>,
  job: SwarmJob,
  workers: number,
): Promise<Summary> {
  if (!Number.isInteger(workers) || workers < 1 || workers > swarmPoolLimits.workersMax)
    throw new RangeError(
      `workers must be an integer from 1 to ${swarmPoolLimits.workersMax}, got ${workers}`,
    );
  if (range.seeds === 0) return Promise.resolve(loop.finish(null));
  const end = range.from + range.seeds;
  const chunkSeeds = Math.max(
    1,
    Math.min(swarmPoolLimits.chunkSeedsMax, Math.ceil(range.seeds / (workers * 8))),
  );
  const pool = Array.from({ length: Math.min(workers, Math.ceil(range.seeds / chunkSeeds)) }, startWorker);
  const waiting = new Map<number, SeedChunkResult>();
  const idle: Worker[] = [];
  let nextToSend = range.from;
  let nextToTally = range.from;
  let done = 0;
  let settled = false;

  return new Promise<Summary>((resolve, reject) => {
    const settle = (outcome: { failed: SeedRun<Req, Report> | null } | { error: unknown }) => {
      if (settled) return;
      settled = true;
      for (const w of pool) void w.terminate();
      if ('error' in outcome) reject(outcome.error);
      else resolve(loop.finish(outcome.failed));
    };
    const send = (w: Worker) => {
      const ahead = nextToSend - nextToTally >= chunkSeeds * swarmPoolLimits.chunksAheadMax;
      if (nextToSend >= end || ahead) {
        idle.push(w);
        return;
      }
      const chunk: SeedChunk = { job, from: nextToSend, count: Math.min(chunkSeeds, end - nextToSend) };
      nextToSend += chunk.count;
      w.postMessage(chunk);
    };
    // Tallies every chunk that is next in seed order; true once the loop is over.
    const tallyInOrder = (): boolean => {
      for (let chunk = waiting.get(nextToTally); chunk !== undefined; chunk = waiting.get(nextToTally)) {
        waiting.delete(nextToTally);
        for (const [i, report] of (chunk.reports as Report[]).entries()) {
          const seed = nextToTally + i;
          const failed = loop.tally(report);
          range.onSeed?.(++done, report);
          if (failed) {
            settle({ failed: { seed, request: loop.request(seed), report } });
            return true;
          }
        }
        if (chunk.thrown !== undefined) {
          // As on one thread: the run that throws ends the swarm, once every earlier seed is tallied.
          const error = new Error(chunk.thrown.message);
          error.name = chunk.thrown.name;
          error.stack = chunk.thrown.stack;
          settle({ error });
          return true;
        }
        nextToTally += chunk.reports.length;
      }
      if (nextToTally < end) return false;
      settle({ failed: null });
      return true;
    };
    for (const w of pool) {
      w.on('message', (result: SeedChunkResult) => {
        if (settled) return;
        waiting.set(result.from, result);
        if (tallyInOrder()) return;
        send(w);
        for (let n = idle.length; n > 0; n--) send(idle.shift()!);
      });
      w.on('error', (error) => settle({ error }));
      w.on('exit', (code) =>
        settle({ error: new Error(`a swarm worker exited (code ${code}) before the swarm ended`) }),
      );
      send(w);
    }
  });
}
