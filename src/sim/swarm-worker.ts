// The body of one swarm worker thread (./swarm-pool.ts starts them): it runs
// the seeds it is sent, in order, and posts back every report. It decides
// nothing; the main thread tallies the reports in seed order, so a swarm on K
// workers prints what it prints on one.

import { parentPort } from 'node:worker_threads';
import { runSagaSim } from './branch/run.ts';
import { sagaSwarmRequest } from './branch/swarm.ts';
import { isSagaProtocolName } from './protocols.ts';
import { runSim } from './run.ts';
import { swarmRequest } from './swarm.ts';
import type { SeedChunk, SeedChunkResult } from './swarm-pool.ts';

function reportFor(chunk: SeedChunk, seed: number): unknown {
  const { protocol, protocolOptions } = chunk.job;
  if (isSagaProtocolName(protocol)) return runSagaSim(sagaSwarmRequest(protocol, seed)).report;
  return runSim(swarmRequest(protocol, seed, protocolOptions)).report;
}

const port = parentPort;
if (port === null) throw new Error('swarm-worker.ts runs as a worker thread (see swarm-pool.ts)');
port.on('message', (chunk: SeedChunk) => {
  const reports: unknown[] = [];
  for (let i = 0; i < chunk.count; i++) reports.push(reportFor(chunk, chunk.from + i));
  const result: SeedChunkResult = { from: chunk.from, reports };
  port.postMessage(result);
});
