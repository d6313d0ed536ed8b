// Swarm testing in the manner of TigerBeetle's VOPR: for every seed, draw the
// fault parameters at random (loss, duplication with late second copies,
// delay, partitions, crash rates, failing writes on every role: see
// ./swarm-faults.ts; then cluster size, concurrency, read-only branches), run
// a safety phase with the faults on and
// a liveness phase with them healed, and stop at the first seed whose run
// breaks a checker or leaves a transaction undecided. Each seed maps to one
// `dtx sim` command line that reproduces its run exactly.

import { isSagaProtocol } from './branch/protocols.ts';
import {
  runSagaSwarm,
  runSagaSwarmOnWorkers,
  type SagaSwarmOptions,
  type SagaSwarmSummary,
} from './branch/swarm.ts';
import type { IsolationWorkloadName, ReadMode } from './isolation.ts';
import { type OutboxSwarmOptions, type OutboxSwarmSummary, runOutboxSwarm } from './outbox/swarm.ts';
import { isOutboxProtocol } from './outbox/world.ts';
import { Prng } from './prng.ts';
import type { ProtocolName, ProtocolOptions, SagaProtocolName, SimProtocol } from './protocols.ts';
import { isOutboxProtocolName, isSagaProtocolName, makeProtocol } from './protocols.ts';
import { runSim, type SimReport, type SimRequest } from './run.ts';
import { runLoop, type SwarmLoop, share } from './seeds.ts';
import { simCommand } from './sim-flags.ts';
import { drawFaults, type SwarmFaultKinds } from './swarm-faults.ts';
import { runLoopOnWorkers } from './swarm-pool.ts';

export interface SwarmOptions {
  protocol: ProtocolName | SimProtocol;
  seeds: number;
  from: number;
  protocolOptions?: ProtocolOptions;
  /** The faults drawn (default: all); `crash` for crashes alone. */
  faultKinds?: SwarmFaultKinds;
  /** A workload that reads instead of the bank's transfers, with its read mode (default plain). */
  workload?: IsolationWorkloadName;
  reads?: ReadMode;
  /** Timestamp reads: clock skew and commit wait (see SimRequest). */
  clockSkewMs?: number;
  commitWait?: boolean;
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
  /** Transactions committed at some participants and aborted at others: naive commit's expected result. */
  partial: number;
  /** committed / (committed + aborted): how well the swarm samples the commit paths. */
  committedShare: number;
  /** With a reading workload: the audits, the wrong ones, the seeds whose history had anomalies, and their classes. */
  isolation?: SwarmIsolation;
  failure: SwarmFailure | null;
  wallMs: number;
}

export interface SwarmIsolation {
  reads: ReadMode;
  audits: number;
  inconsistentAudits: number;
  /** inconsistentAudits / audits, to four decimals. */
  inconsistentShare: number;
  seedsWithAnomalies: number;
  /** Each anomaly class found, and in how many seeds. */
  anomalySeeds: Record<string, number>;
}

/** A swarm of a workload that reads: its read mode, and with timestamp reads the clocks' settings. */
export interface SwarmReading {
  workload: IsolationWorkloadName;
  reads: ReadMode;
  clockSkewMs?: number;
  commitWait?: boolean;
}

/** The run a seed stands for. Everything here is drawn from the seed alone. */
export function swarmRequest(
  protocol: ProtocolName | SimProtocol,
  seed: number,
  protocolOptions: ProtocolOptions = {},
  faultKinds: SwarmFaultKinds = 'all',
  reading: SwarmReading | null = null,
): SimRequest {
  const rng = new Prng(seed);
  const txns = 20 + rng.int(41);
  const participants = 2 + rng.int(4);
  const concurrency = 1 + rng.int(6);
  const faults = drawFaults(rng, faultKinds);
  const failRates = Array.from({ length: participants }, faults.failRate);
  const coordinatorFailRate = faults.failRate();
  const acceptorFailRate = faults.failRate();
  const core = typeof protocol === 'string' ? makeProtocol(protocol, protocolOptions) : protocol;
  const readOnlyShare = rng.pick([0, 0.1, 0.3]);
  return {
    protocol,
    ...(Object.keys(protocolOptions).length > 0 ? { protocolOptions } : {}),
    workload: reading?.workload ?? 'bank',
    ...(reading !== null ? { reads: reading.reads } : {}),
    ...(reading?.clockSkewMs !== undefined ? { clockSkewMs: reading.clockSkewMs } : {}),
    ...(reading?.commitWait ? { commitWait: true } : {}),
    seed,
    txns,
    participants,
    concurrency,
    ...faults.settings,
    failRates,
    coordinatorFailRate,
    // Only protocols with acceptors take the flag; the draw is made for every protocol alike.
    ...(core.acceptorFaultsTolerated !== undefined ? { acceptorFailRate } : {}),
    // A core without read-only votes would only prepare reads like writes (see SimProtocol.readOnlyVotes);
    // a reading workload has reads of its own. The share is drawn all the same, so that the draws stay put.
    ...(core.readOnlyVotes && reading === null ? { readOnlyShare } : {}),
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
  if (isOutboxSwarm(options)) return runOutboxSwarm(options);
  if (isSagaSwarm(options)) return runSagaSwarm(options);
  return runLoop(commitSwarmLoop(options), options);
}

/**
 * `runSwarm` on `workers` threads (./swarm-pool.ts): the same summary, wallMs
 * aside, and the same first failing seed. With more than one worker the
 * protocol must be given by name.
 */
export function runSwarmOnWorkers(options: SagaSwarmOptions, workers: number): Promise<SagaSwarmSummary>;
export function runSwarmOnWorkers(options: OutboxSwarmOptions, workers: number): Promise<OutboxSwarmSummary>;
export function runSwarmOnWorkers(options: SwarmOptions, workers: number): Promise<SwarmSummary>;
export async function runSwarmOnWorkers(
  options: SwarmOptions | SagaSwarmOptions | OutboxSwarmOptions,
  workers: number,
): Promise<SwarmSummary | SagaSwarmSummary | OutboxSwarmSummary> {
  // The outbox world's swarm runs on this thread only (it has no worker loop yet).
  if (isOutboxSwarm(options)) return runOutboxSwarm(options);
  // One worker is this thread: no thread to start, no report to copy.
  if (workers === 1) return runSwarm(options as SwarmOptions);
  if (typeof options.protocol !== 'string')
    throw new TypeError('a swarm on worker threads takes its protocol by name, not as an object');
  if (isSagaSwarm(options))
    return runSagaSwarmOnWorkers({ ...options, protocol: options.protocol as SagaProtocolName }, workers);
  const { onSeed: _onSeed, ...job } = { ...options, protocol: options.protocol as ProtocolName };
  return runLoopOnWorkers(commitSwarmLoop(options), options, job, workers);
}

function isOutboxSwarm(
  options: SwarmOptions | SagaSwarmOptions | OutboxSwarmOptions,
): options is OutboxSwarmOptions {
  const p = options.protocol;
  return typeof p === 'string' ? isOutboxProtocolName(p) : isOutboxProtocol(p);
}

function isSagaSwarm(
  options: SwarmOptions | SagaSwarmOptions | OutboxSwarmOptions,
): options is SagaSwarmOptions {
  const p = options.protocol;
  return typeof p === 'string' ? isSagaProtocolName(p) : isSagaProtocol(p);
}

/** The commit swarm's loop; ./swarm-worker.ts builds it too, to run seeds. */
export function commitSwarmLoop(options: SwarmOptions): SwarmLoop<SimRequest, SimReport, SwarmSummary> {
  const started = performance.now();
  const summary: SwarmSummary = {
    protocol: typeof options.protocol === 'string' ? options.protocol : options.protocol.name,
    seeds: 0,
    violations: 0,
    undecidedAfterHeal: 0,
    committed: 0,
    aborted: 0,
    partial: 0,
    committedShare: 0,
    failure: null,
    wallMs: 0,
  };
  const reading: SwarmReading | null =
    options.workload === undefined
      ? null
      : {
          workload: options.workload,
          reads: options.reads ?? 'plain',
          ...(options.clockSkewMs !== undefined ? { clockSkewMs: options.clockSkewMs } : {}),
          ...(options.commitWait ? { commitWait: true } : {}),
        };
  const isolation: SwarmIsolation | undefined =
    reading === null
      ? undefined
      : {
          reads: reading.reads,
          audits: 0,
          inconsistentAudits: 0,
          inconsistentShare: 0,
          seedsWithAnomalies: 0,
          anomalySeeds: {},
        };
  if (isolation !== undefined) summary.isolation = isolation;
  return {
    request: (seed) =>
      swarmRequest(options.protocol, seed, options.protocolOptions, options.faultKinds, reading),
    run: (req) => runSim(req).report,
    tally: (report) => {
      summary.seeds++;
      if (isolation !== undefined && report.isolation !== undefined) {
        const seen = report.isolation;
        isolation.audits += seen.audits;
        isolation.inconsistentAudits += seen.inconsistentAudits;
        if (seen.anomalyTypes.length > 0) isolation.seedsWithAnomalies++;
        for (const type of seen.anomalyTypes)
          isolation.anomalySeeds[type] = (isolation.anomalySeeds[type] ?? 0) + 1;
      }
      summary.violations += report.violationCount;
      summary.undecidedAfterHeal += report.undecided;
      summary.committed += report.committed;
      summary.aborted += report.aborted;
      summary.partial += report.partial;
      return report.violationCount > 0 || report.undecided > 0;
    },
    finish: (failed) => {
      summary.committedShare = share(summary.committed, summary.aborted);
      if (isolation !== undefined)
        isolation.inconsistentShare =
          isolation.audits === 0
            ? 0
            : Math.round((isolation.inconsistentAudits / isolation.audits) * 10_000) / 10_000;
      if (failed !== null) {
        summary.failure = { seed: failed.seed, report: failed.report, command: simCommand(failed.request) };
      }
      summary.wallMs = Math.round(performance.now() - started);
      return summary;
    },
  };
}
