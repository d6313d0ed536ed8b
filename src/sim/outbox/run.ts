// One simulated outbox/inbox run, from a plain request to its report.
// `runSim` (../run.ts) dispatches here for outbox-world protocols. Everything
// in the report but `wallMs` is a function of the request alone.

import { performance } from 'node:perf_hooks';
import { type FaultSettings, networkAndFaults, worldDefaults } from '../kernel.ts';
import { isOutboxProtocolName, type OutboxProtocolName } from '../protocols.ts';
import { round3, type Summary, summarize } from '../stats.ts';
import { judgeOutbox, type OutboxChecker, type OutboxViolation } from './checkers.ts';
import {
  isOutboxProtocol,
  type OutboxProtocol,
  OutboxWorld,
  outboxProtocol,
  outboxTimingDefaults,
} from './world.ts';

export interface OutboxSimRequest extends FaultSettings {
  protocol: OutboxProtocolName | OutboxProtocol;
  txns: number;
  seed: number;
  /** Producer threads running local transactions at once (default 4). */
  concurrency?: number;
  /** Mean pause of each producer thread between its transactions (exponential); default 0. */
  thinkMs?: number;
  /** Relays on the one outbox (default 1). */
  relays?: number;
  /** Ordering keys the rows spread over (default 4; 0: no keys). */
  keys?: number;
  fsyncMs?: number;
}

export interface OutboxReport {
  protocol: string;
  seed: number;
  txns: number;
  committed: number;
  rolledBack: number;
  /** Outbox rows written. */
  produced: number;
  /** Messages the broker stored (a copy after the duplicate window counts again). */
  published: number;
  /** Effects applied exactly once. */
  applied: number;
  violations: OutboxViolation[];
  violationCount: number;
  violationsByChecker: Partial<Record<OutboxChecker, number>>;
  /** Committed transactions whose message was still under way when the run ended. */
  undelivered: number;
  undeliveredTxns: string[];
  /** Publishes the broker dropped within its duplicate window. */
  duplicatesSuppressedByDedup: number;
  /** Deliveries the consumer skipped because the id was in its inbox. */
  duplicatesSuppressedByInbox: number;
  redeliveries: number;
  /** Producer commit → consumer commit of the effect. */
  latencyMs: Summary;
  crashes: number;
  simulatedMs: number;
  wallMs: number;
}

export const outboxSimDefaults = {
  ...worldDefaults,
  concurrency: 4,
  relays: 1,
  keys: 4,
  rollbackShare: 0.2,
  producerWaitMs: 2_000,
} as const;

export interface OutboxSimRun {
  report: OutboxReport;
  world: OutboxWorld;
}

export function isOutboxRequest(req: { protocol: unknown }): boolean {
  return (
    isOutboxProtocol(req.protocol) || (typeof req.protocol === 'string' && isOutboxProtocolName(req.protocol))
  );
}

export function buildOutboxWorld(req: OutboxSimRequest): OutboxWorld {
  const protocol = typeof req.protocol === 'string' ? outboxProtocol : req.protocol;
  const { network, faults } = networkAndFaults(req, outboxSimDefaults);
  return new OutboxWorld({
    protocol,
    seed: req.seed,
    txns: req.txns,
    concurrency: req.concurrency ?? outboxSimDefaults.concurrency,
    thinkMs: req.thinkMs ?? 0,
    relays: req.relays ?? outboxSimDefaults.relays,
    keys: req.keys ?? outboxSimDefaults.keys,
    rollbackShare: outboxSimDefaults.rollbackShare,
    producerWaitMs: outboxSimDefaults.producerWaitMs,
    network,
    faults,
    fsyncMs: req.fsyncMs ?? outboxSimDefaults.fsyncMs,
    timings: outboxTimingDefaults,
    livenessBoundMs: outboxSimDefaults.livenessBoundMs,
  });
}

export function runOutboxSim(req: OutboxSimRequest): OutboxSimRun {
  const started = performance.now();
  const world = buildOutboxWorld(req);
  world.run();
  const verdict = judgeOutbox(world);
  const m = world.metrics;
  const latency: number[] = [];
  for (const [txn, a] of world.applied) {
    const t = world.txns.get(txn);
    if (a.count === 1 && t?.committed) latency.push(a.firstAt - t.committedAt);
  }
  const report: OutboxReport = {
    protocol: world.opts.protocol.name,
    seed: req.seed,
    txns: req.txns,
    committed: verdict.committed,
    rolledBack: verdict.rolledBack,
    produced: world.outbox.length,
    published: m.published,
    applied: verdict.applied,
    violations: verdict.violations,
    violationCount: verdict.violationCount,
    violationsByChecker: verdict.violationsByChecker,
    undelivered: verdict.undelivered,
    undeliveredTxns: verdict.undeliveredTxns,
    duplicatesSuppressedByDedup: m.dedupSuppressed,
    duplicatesSuppressedByInbox: m.inboxSuppressed,
    redeliveries: m.redeliveries,
    latencyMs: summarize(latency),
    crashes: m.crashes,
    simulatedMs: round3(world.now),
    wallMs: Math.round(performance.now() - started),
  };
  return { report, world };
}
