// Swarm testing in the manner of TigerBeetle's VOPR: for every seed, draw the
// fault parameters at random (loss, duplication, delay, partitions, crash
// rates, cluster size, concurrency), run a safety phase with the faults on and
// a liveness phase with them healed, and stop at the first seed whose run
// breaks a checker or leaves a transaction undecided. Each seed maps to one
// `dtx sim` command line that reproduces its run exactly.

import { isSagaProtocol } from './branch/protocols.ts';
import { runSagaSwarm, type SagaSwarmOptions, type SagaSwarmSummary } from './branch/swarm.ts';
import { type OutboxSwarmOptions, type OutboxSwarmSummary, runOutboxSwarm } from './outbox/swarm.ts';
import { isOutboxProtocol } from './outbox/world.ts';
import { Prng } from './prng.ts';
import type { ProtocolName, ProtocolOptions, SimProtocol } from './protocols.ts';
import { isOutboxProtocolName, isSagaProtocolName } from './protocols.ts';
import { runSim, type SimReport, type SimRequest } from './run.ts';
import { firstFailingSeed } from './seeds.ts';
import { simCommand } from './sim-flags.ts';

export interface SwarmOptions {
  protocol: ProtocolName | SimProtocol;
  seeds: number;
  from: number;
  protocolOptions?: ProtocolOptions;
  /** Called after each seed, for progress bars. */
  onSeed?: (done: number, report: SimReport) => void;
}

export interface SwarmFailure {
  seed: number;
  report: SimReport;
  command: string;
}

export interface SwarmSummary {
  protocol: string;
  seeds: number;
  violations: number;
  undecidedAfterHeal: number;
  committed: number;
  aborted: number;
  failure: SwarmFailure | null;
  wallMs: number;
}

/** The run a seed stands for. Everything here is drawn from the seed alone. */
export function swarmRequest(
  protocol: ProtocolName | SimProtocol,
  seed: number,
  protocolOptions: ProtocolOptions = {},
): SimRequest {
  const rng = new Prng(seed);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    protocol,
    ...(Object.keys(protocolOptions).length > 0 ? { protocolOptions } : {}),
    workload: 'bank',
    seed,
    txns: 20 + rng.int(41),
    participants: 2 + rng.int(4),
    concurrency: 1 + rng.int(6),
    loss: round(rng.between(0, 0.3)),
    dup: round(rng.between(0, 0.5)),
    jitterMs: round(rng.pick([0.1, 1, 5, 20])),
    partitions: rng.chance(0.5),
    crashRate: round(rng.pick([0, 0.005, 0.02, 0.05])),
    downtimeMeanMs: round(rng.pick([20, 200, 1000])),
  };
}

export { simCommand } from './sim-flags.ts';

/** Sagas and TCC run in their own world (./branch/swarm.ts), and so does the outbox (./outbox/swarm.ts). */
export function runSwarm(options: SagaSwarmOptions): SagaSwarmSummary;
export function runSwarm(options: OutboxSwarmOptions): OutboxSwarmSummary;
export function runSwarm(options: SwarmOptions): SwarmSummary;
export function runSwarm(
  options: SwarmOptions | SagaSwarmOptions | OutboxSwarmOptions,
): SwarmSummary | SagaSwarmSummary | OutboxSwarmSummary {
  const p = options.protocol;
  if (typeof p === 'string' ? isOutboxProtocolName(p) : isOutboxProtocol(p)) {
    return runOutboxSwarm(options as OutboxSwarmOptions);
  }
  if (typeof p === 'string' ? isSagaProtocolName(p) : isSagaProtocol(p)) {
    return runSagaSwarm(options as SagaSwarmOptions);
  }
  return runCommitSwarm(options as SwarmOptions);
}

function runCommitSwarm(options: SwarmOptions): SwarmSummary {
  const started = performance.now();
  const summary: SwarmSummary = {
    protocol: typeof options.protocol === 'string' ? options.protocol : options.protocol.name,
    seeds: 0,
    violations: 0,
    undecidedAfterHeal: 0,
    committed: 0,
    aborted: 0,
    failure: null,
    wallMs: 0,
  };
  const failed = firstFailingSeed(
    options,
    (seed) => swarmRequest(options.protocol, seed, options.protocolOptions),
    (req) => runSim(req).report,
    (report) => {
      summary.seeds++;
      summary.violations += report.violationCount;
      summary.undecidedAfterHeal += report.undecided;
      summary.committed += report.committed;
      summary.aborted += report.aborted;
      return report.violationCount > 0 || report.undecided > 0;
    },
  );
  if (failed !== null) {
    summary.failure = { seed: failed.seed, report: failed.report, command: simCommand(failed.request) };
  }
  summary.wallMs = Math.round(performance.now() - started);
  return summary;
}
