// The body of one swarm worker thread (./swarm-pool.ts starts them): it runs
// the seeds it is sent, in order, and posts back every report (and what a run
// threw, if one did, instead of the rest). It decides nothing; the main thread tallies the reports in seed order, so a swarm on K
// workers prints what it prints on one.

import { parentPort } from 'node:worker_threads';
import { sagaSwarmLoop } from './branch/swarm.ts';
import { isSagaProtocolName } from './protocols.ts';
import { commitSwarmLoop } from './swarm.ts';
import type { SeedChunk, SeedChunkResult, SwarmJob } from './swarm-pool.ts';

/** Runs one seed of `job`, as the swarm's own loop does. */
function runnerFor(job: SwarmJob): (seed: number) => unknown {
  if (isSagaProtocolName(job.protocol)) {
    const loop = sagaSwarmLoop(job as Parameters<typeof sagaSwarmLoop>[0]);
    return (seed) => loop.run(loop.request(seed));
  }
  const loop = commitSwarmLoop(job as Parameters<typeof commitSwarmLoop>[0]);
  return (seed) => loop.run(loop.request(seed));
}

const port = parentPort;
if (port === null) throw new Error('swarm-worker.ts runs as a worker thread (see swarm-pool.ts)');
let run: ((seed: number) => unknown) | null = null;
port.on('message', (chunk: SeedChunk) => {
  // Every chunk of one worker carries the same job.
  run ??= runnerFor(chunk.job);
  const result: SeedChunkResult = { from: chunk.from, reports: [] };
  try {
    for (let i = 0; i < chunk.count; i++) result.reports.push(run(chunk.from + i));
  } catch (err) {
    // Not thrown here: an earlier seed, on another worker, may fail first.
    const e = err instanceof Error ? err : new Error(String(err));
    result.thrown = { name: e.name, message: e.message, stack: e.stack };
  }
  port.postMessage(result);
});
