// One simulated saga or TCC run, from a plain request to its report.
// `runSim` (../run.ts) dispatches here for `workload: 'booking'`. Everything
// in the report but `wallMs` is a function of the request alone.

import { performance } from 'node:perf_hooks';
import type { SagaConfig } from '../../protocol/saga/types.ts';
import type { TccConfig } from '../../protocol/tcc/types.ts';
import { type FaultSettings, networkAndFaults, worldDefaults } from '../kernel.ts';
import { isSagaProtocolName, type SagaProtocolName } from '../protocols.ts';
import { round3, type Summary, summarize } from '../stats.ts';
import { type BankAuditOptions, bankAuditWorkload, type Countermeasure } from './bank-audit.ts';
import { type BookingOptions, bookingWorkload } from './booking.ts';
import type { SagaChecker, SagaClassification, SagaViolation } from './checkers.ts';
import {
  type BranchIsolationReport,
  branchReadsProblem,
  countermeasureViolations,
  type HistoryOp,
  type ReadMode,
} from './isolation.ts';
import { isSagaProtocol, makeSagaProtocol, type SagaProtocol } from './protocols.ts';
import { BranchWorld, type BranchWorldOptions, orchestratorId } from './world.ts';

export interface SagaSimRequest extends FaultSettings {
  protocol: SagaProtocolName | SagaProtocol;
  /** `bank-audit`: transfers between banks with auditors reading every account (./bank-audit.ts). */
  workload: 'booking' | 'bank-audit';
  txns: number;
  seed: number;
  concurrency?: number;
  /** Mean pause of each client between its sagas (exponential); default 0, back to back. */
  thinkMs?: number;
  fsyncMs?: number;
  /** Probability that a forced write fails on the orchestrator. */
  coordinatorFailRate?: number;
  /** Probability that a forced write fails on a service. */
  serviceFailRate?: number;
  /** Booking workload settings (share of short wallets, seats, pending share, ...). */
  booking?: Partial<Omit<BookingOptions, 'concurrency'>>;
  /** bank-audit: the read mode; sagas and TCC have `plain` only (the default). */
  reads?: ReadMode;
  /** bank-audit, sagas: how the handlers write (default `none`). */
  countermeasure?: Countermeasure;
  /** bank-audit settings (banks, accounts, refused share, auditors). */
  bankAudit?: Partial<Omit<BankAuditOptions, 'concurrency' | 'countermeasure'>>;
  /** Orchestrator settings: retry backoff, attempt limits, timeout. */
  orchestratorConfig?: Partial<SagaConfig> | Partial<TccConfig>;
  /** Crash the orchestrator as it is about to log its first decision to compensate; restart after `downtimeMs`. */
  scenario?: { kind: 'coordinator-crash'; downtimeMs: number } | null;
}

/** The run's counts (begun, completed, ... unfinished: see `SagaClassification`), and what was measured. */
export interface SagaReport extends Omit<SagaClassification, 'unfinishedTxns'> {
  protocol: string;
  workload: 'booking' | 'bank-audit';
  seed: number;
  txns: number;
  violations: SagaViolation[];
  violationCount: number;
  /** Every violation counted by checker (`violations` keeps the first 50). */
  violationsByChecker: Partial<Record<SagaChecker, number>>;
  /** Wallets + revenue (+ frozen) at quiescence equal the initial total. */
  conserved: boolean;
  /** Client's BEGIN sent → told `completed`. */
  latencyMs: Summary;
  /** For bookings whose seat was taken and given back: seat taken (durable) → released (durable). */
  inconsistencyWindowMs: Summary;
  /** Failed bookings the window was measured on. */
  inconsistencyWindows: number;
  messagesPerSaga: number;
  forcedWritesPerSaga: number;
  /** Calls the barrier answered from its record without running anything. */
  duplicateCalls: number;
  nullCompensations: number;
  hangingRefused: number;
  crashes: number;
  simulatedMs: number;
  wallMs: number;
  /** bank-audit only: what the auditors saw (./isolation.ts). */
  isolation?: BranchIsolationReport;
}

export const sagaSimDefaults = {
  ...worldDefaults,
  clientOutcomeTimeoutMs: 2_000,
} as const;

export interface SagaSimRun {
  report: SagaReport;
  world: BranchWorld;
  /** bank-audit: the recorded history (Jepsen's list-append form); null otherwise. */
  history: HistoryOp[] | null;
}

/** A request for the saga world: the booking workload, or a saga-world protocol. */
export function isSagaRequest(req: { workload: string; protocol: unknown }): boolean {
  return (
    req.workload === 'booking' ||
    (req.workload === 'bank-audit' && typeof req.protocol === 'string' && isSagaProtocolName(req.protocol)) ||
    isSagaProtocol(req.protocol) ||
    (typeof req.protocol === 'string' && isSagaProtocolName(req.protocol))
  );
}

/** What is wrong with a branch-world request that its types let through, or undefined. */
export function branchRequestProblem(req: SagaSimRequest): string | undefined {
  const name = typeof req.protocol === 'string' ? req.protocol : req.protocol.kind;
  if (req.workload !== 'booking' && req.workload !== 'bank-audit')
    return `${name} runs the booking or bank-audit workload, not ${String(req.workload)}`;
  const audit = req.workload === 'bank-audit';
  if (!audit && (req.reads !== undefined || req.countermeasure !== undefined || req.bankAudit !== undefined))
    return '--reads and --countermeasure are for the bank-audit workload';
  if (req.reads !== undefined) {
    const problem = branchReadsProblem(name, req.reads);
    if (problem !== null) return problem;
  }
  if (req.countermeasure !== undefined && name !== 'saga')
    return `--countermeasure is for sagas: ${name}'s try is already a reservation`;
  if (audit && req.booking !== undefined) return 'booking settings are for the booking workload';
  return undefined;
}

function workloadOf(req: SagaSimRequest): BranchWorldOptions['workload'] {
  const concurrency = req.concurrency !== undefined ? { concurrency: req.concurrency } : {};
  if (req.workload === 'bank-audit')
    return bankAuditWorkload({
      ...req.bankAudit,
      ...concurrency,
      ...(req.countermeasure !== undefined ? { countermeasure: req.countermeasure } : {}),
    });
  return bookingWorkload({ ...req.booking, ...concurrency });
}

export function buildBranchWorld(req: SagaSimRequest): BranchWorld {
  const problem = branchRequestProblem(req);
  if (problem !== undefined) throw new RangeError(problem);
  const protocol =
    typeof req.protocol === 'string'
      ? isSagaProtocolName(req.protocol)
        ? makeSagaProtocol(req.protocol)
        : undefined
      : req.protocol;
  if (protocol === undefined) throw new RangeError(`unknown saga protocol ${String(req.protocol)}`);
  const withConfig: SagaProtocol =
    req.orchestratorConfig === undefined
      ? protocol
      : {
          ...protocol,
          orchestratorConfig: { ...(protocol.orchestratorConfig as object), ...req.orchestratorConfig },
        };
  const { network, faults } = networkAndFaults(req, sagaSimDefaults);
  const options: BranchWorldOptions = {
    protocol: withConfig,
    workload: workloadOf(req),
    seed: req.seed,
    txns: req.txns,
    network: { ...network, lateDupMs: req.lateDupMs ?? 0 },
    faults,
    fsyncMs: req.fsyncMs ?? sagaSimDefaults.fsyncMs,
    lazyFlushMs: sagaSimDefaults.lazyFlushMs,
    failRateOf: (node) => (node === orchestratorId ? req.coordinatorFailRate : req.serviceFailRate) ?? 0,
    scenario: req.scenario ?? null,
    livenessBoundMs: sagaSimDefaults.livenessBoundMs,
    clientOutcomeTimeoutMs: sagaSimDefaults.clientOutcomeTimeoutMs,
    clientThinkMs: req.thinkMs ?? 0,
  };
  return new BranchWorld(options);
}

export function runSagaSim(req: SagaSimRequest): SagaSimRun {
  const started = performance.now();
  const world = buildBranchWorld(req);
  const initialTotal = world.total();
  world.run();
  // The quiescent rows come from replaying every service's log: replay them once, for both uses.
  const rows = world.durableRows();
  const classes = world.judge(initialTotal, rows);
  const c = world.checkers;
  const isolation = world.isolation?.report();
  if (isolation !== undefined) countermeasureViolations(isolation, (...v) => c.flag(...v));
  const m = world.metrics;
  const finalTotal = world.total(rows);
  const windows = c.inconsistencyWindows();
  const per = (x: number) => (classes.begun === 0 ? 0 : round3(x / classes.begun));
  const report: SagaReport = {
    protocol: world.opts.protocol.name,
    workload: req.workload,
    seed: req.seed,
    txns: req.txns,
    begun: classes.begun,
    completed: classes.completed,
    compensated: classes.compensated,
    stuck: classes.stuck,
    rejected: classes.rejected,
    unfinished: classes.unfinished,
    violations: c.violations,
    violationCount: c.violationCount,
    violationsByChecker: { ...c.byChecker },
    conserved: initialTotal === finalTotal,
    latencyMs: summarize(m.latencyMs),
    inconsistencyWindowMs: summarize(windows),
    inconsistencyWindows: windows.length,
    messagesPerSaga: per(m.protocolMessages),
    forcedWritesPerSaga: per(m.forcedWrites),
    duplicateCalls: m.service.duplicates,
    nullCompensations: m.service.nullCompensations,
    hangingRefused: m.service.hangingRefused,
    crashes: m.crashes,
    simulatedMs: round3(world.now),
    wallMs: Math.round(performance.now() - started),
  };
  if (isolation !== undefined) report.isolation = isolation;
  return { report, world, history: world.isolation?.history ?? null };
}
