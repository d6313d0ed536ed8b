// Swarm testing for the outbox world, in the manner of ../swarm.ts: per seed,
// draw the faults at random (loss, duplication, jitter, partitions, crash
// rates of every process, downtimes, producer threads, relays, keys), run,
// and stop at the first seed whose run breaks a checker or leaves a committed
// transaction's message undelivered after the faults healed.
// `runSwarm` (../swarm.ts) dispatches here for outbox-world protocols.

import { Prng } from '../prng.ts';
import type { OutboxProtocolName } from '../protocols.ts';
import { firstFailingSeed } from '../seeds.ts';
import { simCommand } from '../sim-flags.ts';
import { type OutboxReport, type OutboxSimRequest, runOutboxSim } from './run.ts';
import type { OutboxProtocol } from './world.ts';

export interface OutboxSwarmOptions {
  protocol: OutboxProtocolName | OutboxProtocol;
  seeds: number;
  from: number;
  onSeed?: (done: number, report: OutboxReport) => void;
}

export interface OutboxSwarmFailure {
  seed: number;
  report: OutboxReport;
  request: OutboxSimRequest;
  command: string;
}

export interface OutboxSwarmSummary {
  protocol: string;
  seeds: number;
  violations: number;
  /** Same name as the other swarms': committed transactions whose effect never arrived, faults healed. */
  undecidedAfterHeal: number;
  committed: number;
  rolledBack: number;
  applied: number;
  duplicatesSuppressedByDedup: number;
  duplicatesSuppressedByInbox: number;
  failure: OutboxSwarmFailure | null;
  wallMs: number;
}

/** The run a seed stands for. Everything here is drawn from the seed alone. */
export function outboxSwarmRequest(
  protocol: OutboxProtocolName | OutboxProtocol,
  seed: number,
): OutboxSimRequest {
  const rng = new Prng(seed);
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return {
    protocol,
    seed,
    txns: 20 + rng.int(41),
    concurrency: 1 + rng.int(6),
    relays: 1 + rng.int(3),
    keys: rng.pick([0, 1, 4, 16]),
    loss: round(rng.between(0, 0.3)),
    dup: round(rng.between(0, 0.5)),
    jitterMs: round(rng.pick([0.1, 1, 5, 20])),
    partitions: rng.chance(0.5),
    crashRate: round(rng.pick([0, 0.005, 0.02, 0.05])),
    downtimeMeanMs: round(rng.pick([20, 200, 1000])),
  };
}

export function runOutboxSwarm(options: OutboxSwarmOptions): OutboxSwarmSummary {
  const started = performance.now();
  const summary: OutboxSwarmSummary = {
    protocol: typeof options.protocol === 'string' ? options.protocol : options.protocol.name,
    seeds: 0,
    violations: 0,
    undecidedAfterHeal: 0,
    committed: 0,
    rolledBack: 0,
    applied: 0,
    duplicatesSuppressedByDedup: 0,
    duplicatesSuppressedByInbox: 0,
    failure: null,
    wallMs: 0,
  };
  const failed = firstFailingSeed(
    options,
    (seed) => outboxSwarmRequest(options.protocol, seed),
    (req) => runOutboxSim(req).report,
    (report) => {
      summary.seeds++;
      summary.violations += report.violationCount;
      summary.undecidedAfterHeal += report.undelivered;
      summary.committed += report.committed;
      summary.rolledBack += report.rolledBack;
      summary.applied += report.applied;
      summary.duplicatesSuppressedByDedup += report.duplicatesSuppressedByDedup;
      summary.duplicatesSuppressedByInbox += report.duplicatesSuppressedByInbox;
      return report.violationCount > 0 || report.undelivered > 0;
    },
  );
  if (failed !== null) {
    const { seed, request, report } = failed;
    summary.failure = { seed, report, request, command: simCommand(request) };
  }
  summary.wallMs = Math.round(performance.now() - started);
  return summary;
}
