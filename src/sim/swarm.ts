// Swarm testing in the manner of TigerBeetle's VOPR: for every seed, draw the
// fault parameters at random (loss, duplication, delay, partitions, crash
// rates, cluster size, concurrency), run a safety phase with the faults on and
// a liveness phase with them healed, and stop at the first seed whose run
// breaks a checker or leaves a transaction undecided. Each seed maps to one
// `dtx sim` command line that reproduces its run exactly.

import { isSagaProtocol } from './branch/protocols.ts';
import { runSagaSwarm, type SagaSwarmOptions, type SagaSwarmSummary } from './branch/swarm.ts';
import { Prng } from './prng.ts';
import type { ProtocolName, ProtocolOptions, SimProtocol } from './protocols.ts';
import { isSagaProtocolName } from './protocols.ts';
import { runSim, type SimReport, type SimRequest } from './run.ts';

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

/** The `dtx sim` command line that reproduces `req`. */
export function simCommand(req: SimRequest): string {
  const name = typeof req.protocol === 'string' ? req.protocol : req.protocol.name;
  const parts = [
    'dtx sim',
    `--protocol ${name}`,
    `--workload ${req.workload}`,
    `--txns ${req.txns}`,
    `--seed ${req.seed}`,
  ];
  if (req.protocolOptions?.faults !== undefined) parts.push(`--faults ${req.protocolOptions.faults}`);
  if (req.protocolOptions?.faster) parts.push('--faster');
  if (req.protocolOptions?.colocated) parts.push('--colocated');
  if (req.participants !== undefined) parts.push(`--participants ${req.participants}`);
  if (req.concurrency !== undefined) parts.push(`--concurrency ${req.concurrency}`);
  if (req.failRates !== undefined) parts.push(`--fail-rates ${req.failRates.join(',')}`);
  if (req.loss) parts.push(`--loss ${req.loss}`);
  if (req.dup) parts.push(`--dup ${req.dup}`);
  if (req.jitterMs !== undefined) parts.push(`--jitter-ms ${req.jitterMs}`);
  if (req.partitions) parts.push('--partitions');
  if (req.crashRate) parts.push(`--crash-rate ${req.crashRate}`);
  if (req.downtimeMeanMs !== undefined) parts.push(`--downtime-mean-ms ${req.downtimeMeanMs}`);
  if (req.scenario) parts.push(`--scenario ${req.scenario.kind} --downtime-ms ${req.scenario.downtimeMs}`);
  return parts.join(' ');
}

/** Sagas and TCC run in their own world: see ./saga/swarm.ts. */
export function runSwarm(options: SagaSwarmOptions): SagaSwarmSummary;
export function runSwarm(options: SwarmOptions): SwarmSummary;
export function runSwarm(options: SwarmOptions | SagaSwarmOptions): SwarmSummary | SagaSwarmSummary {
  const p = options.protocol;
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
  for (let i = 0; i < options.seeds; i++) {
    const seed = options.from + i;
    const req = swarmRequest(options.protocol, seed, options.protocolOptions);
    const { report } = runSim(req);
    summary.seeds++;
    summary.violations += report.violationCount;
    summary.undecidedAfterHeal += report.undecided;
    summary.committed += report.committed;
    summary.aborted += report.aborted;
    options.onSeed?.(i + 1, report);
    if (report.violationCount > 0 || report.undecided > 0) {
      summary.failure = { seed, report, command: simCommand(req) };
      break;
    }
  }
  summary.wallMs = Math.round(performance.now() - started);
  return summary;
}
