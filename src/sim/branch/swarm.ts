// Swarm testing for sagas and TCC, in the manner of ../swarm.ts: per seed,
// draw the faults at random as the commit swarm does (../swarm-faults.ts:
// loss, duplication with late second copies, jitter, partitions, crash rates,
// downtimes, failing writes of the orchestrator and the services), then the
// concurrency and the share of short wallets; run, and stop at the
// first seed whose run breaks a checker or leaves a saga unfinished after the
// faults healed. A visibly stuck saga is a legal outcome and is counted.
// `runSwarm` (../swarm.ts) dispatches here for saga-world protocols.

import { Prng } from '../prng.ts';
import type { SagaProtocolName } from '../protocols.ts';
import { runLoop, type SwarmLoop, share } from '../seeds.ts';
import { simCommand } from '../sim-flags.ts';
import { drawFaults, type SwarmFaultKinds } from '../swarm-faults.ts';
import { runLoopOnWorkers } from '../swarm-pool.ts';
import type { Countermeasure } from './bank-audit.ts';
import type { SagaProtocol } from './protocols.ts';
import { runSagaSim, type SagaReport, type SagaSimRequest } from './run.ts';

export interface SagaSwarmOptions {
  protocol: SagaProtocolName | SagaProtocol;
  seeds: number;
  from: number;
  /** The faults drawn (default: all); `crash` for crashes alone. */
  faultKinds?: SwarmFaultKinds;
  /** `bank-audit`: transfers with auditors; the summary then counts what the audits saw. */
  workload?: 'booking' | 'bank-audit';
  /** bank-audit, sagas: the countermeasure every seed runs with. */
  countermeasure?: Countermeasure;
  onSeed?: (done: number, report: SagaReport) => void;
}

export interface SagaSwarmFailure {
  seed: number;
  report: SagaReport;
  request: SagaSimRequest;
  command: string;
}

export interface SagaSwarmSummary {
  protocol: string;
  seeds: number;
  violations: number;
  /** Same name as the commit swarm's: sagas neither finished nor visibly stuck after the heal. */
  undecidedAfterHeal: number;
  begun: number;
  completed: number;
  compensated: number;
  stuck: number;
  /** completed / (completed + compensated), as the commit swarm's `committedShare`. */
  committedShare: number;
  failure: SagaSwarmFailure | null;
  wallMs: number;
  /** bank-audit only: what the auditors of every seed saw. */
  isolation?: SagaSwarmIsolation;
}

export interface SagaSwarmIsolation {
  countermeasure: Countermeasure | null;
  audits: number;
  inconsistentAudits: number;
  /** inconsistentAudits / audits. */
  inconsistentShare: number;
  auditsRetried: number;
  dirtyReads: number;
  lostUpdates: number;
  /** Per anomaly type the history checker found: in how many seeds. */
  seedsWithAnomaly: Record<string, number>;
}

/** The run a seed stands for. Everything here is drawn from the seed alone. */
export function sagaSwarmRequest(
  protocol: SagaProtocolName | SagaProtocol,
  seed: number,
  faultKinds: SwarmFaultKinds = 'all',
  audit: Pick<SagaSwarmOptions, 'workload' | 'countermeasure'> = {},
): SagaSimRequest {
  const rng = new Prng(seed);
  const txns = 20 + rng.int(41);
  const concurrency = 1 + rng.int(6);
  const faults = drawFaults(rng, faultKinds);
  const request: SagaSimRequest = {
    protocol,
    workload: audit.workload ?? 'booking',
    seed,
    txns,
    concurrency,
    ...faults.settings,
    coordinatorFailRate: faults.failRate(),
    serviceFailRate: faults.failRate(),
  };
  // bank-audit takes only what `dtx sim` flags can say, so that the reproduce line is the run.
  if (request.workload === 'bank-audit')
    return audit.countermeasure === undefined
      ? request
      : { ...request, countermeasure: audit.countermeasure };
  return { ...request, booking: { shortShare: rng.pick([0.04, 0.04, 0.2]), seats: rng.pick([50, 1000]) } };
}

export function runSagaSwarm(options: SagaSwarmOptions): SagaSwarmSummary {
  return runLoop(sagaSwarmLoop(options), options);
}

/** `runSagaSwarm` on `workers` threads (../swarm-pool.ts), for a protocol given by name. */
export function runSagaSwarmOnWorkers(
  options: SagaSwarmOptions & { protocol: SagaProtocolName },
  workers: number,
): Promise<SagaSwarmSummary> {
  const { onSeed: _onSeed, ...job } = options;
  return runLoopOnWorkers(sagaSwarmLoop(options), options, job, workers);
}

/** The saga swarm's loop; ../swarm-worker.ts builds it too, to run seeds. */
export function sagaSwarmLoop(
  options: SagaSwarmOptions,
): SwarmLoop<SagaSimRequest, SagaReport, SagaSwarmSummary> {
  const started = performance.now();
  const summary: SagaSwarmSummary = {
    protocol: typeof options.protocol === 'string' ? options.protocol : options.protocol.name,
    seeds: 0,
    violations: 0,
    undecidedAfterHeal: 0,
    begun: 0,
    completed: 0,
    compensated: 0,
    stuck: 0,
    committedShare: 0,
    failure: null,
    wallMs: 0,
  };
  const isolation: SagaSwarmIsolation | null =
    options.workload === 'bank-audit'
      ? {
          countermeasure: options.countermeasure ?? null,
          audits: 0,
          inconsistentAudits: 0,
          inconsistentShare: 0,
          auditsRetried: 0,
          dirtyReads: 0,
          lostUpdates: 0,
          seedsWithAnomaly: {},
        }
      : null;
  return {
    request: (seed) => sagaSwarmRequest(options.protocol, seed, options.faultKinds, options),
    run: (req) => runSagaSim(req).report,
    tally: (report) => {
      summary.seeds++;
      summary.violations += report.violationCount;
      summary.undecidedAfterHeal += report.unfinished;
      summary.begun += report.begun;
      summary.completed += report.completed;
      summary.compensated += report.compensated;
      summary.stuck += report.stuck;
      const seen = report.isolation;
      if (isolation !== null && seen !== undefined) {
        isolation.audits += seen.audits;
        isolation.inconsistentAudits += seen.inconsistentAudits;
        isolation.auditsRetried += seen.auditsRetried;
        isolation.dirtyReads += seen.dirtyReads;
        isolation.lostUpdates += seen.lostUpdates;
        for (const t of seen.anomalyTypes)
          isolation.seedsWithAnomaly[t] = (isolation.seedsWithAnomaly[t] ?? 0) + 1;
      }
      return report.violationCount > 0 || report.unfinished > 0;
    },
    finish: (failed) => {
      summary.committedShare = share(summary.completed, summary.compensated);
      if (isolation !== null) {
        isolation.inconsistentShare =
          isolation.audits === 0
            ? 0
            : Math.round((isolation.inconsistentAudits / isolation.audits) * 1e4) / 1e4;
        summary.isolation = isolation;
      }
      if (failed !== null) {
        const { seed, request, report } = failed;
        summary.failure = { seed, report, request, command: simCommand(request) };
      }
      summary.wallMs = Math.round(performance.now() - started);
      return summary;
    },
  };
}
