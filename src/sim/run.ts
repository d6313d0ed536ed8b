// One simulated run, from a plain request (what `dtx sim` parses) to the
// report it prints. Everything in the report but `wallMs` is a function of the
// request alone.

import { performance } from 'node:perf_hooks';
import { checkHistoryOps } from '../history/check.ts';
import type { NodeId } from '../protocol/common/types.ts';
import { isSagaRequest, runSagaSim, type SagaSimRequest, type SagaSimRun } from './branch/run.ts';
import type { Violation } from './checkers.ts';
import { CommitWorld, type CommitWorldOptions, type TraceEvent } from './commit-world.ts';
import type { HistoryOp, IsolationReport, ReadMode } from './isolation.ts';
import { type FaultSettings, networkAndFaults, worldDefaults } from './kernel.ts';
import { isOutboxRequest, type OutboxSimRequest, type OutboxSimRun, runOutboxSim } from './outbox/run.ts';
import {
  makeProtocol,
  type ProtocolName,
  type ProtocolOptions,
  type SimProtocol,
  timeScale,
} from './protocols.ts';
import { round3, type Summary, summarize } from './stats.ts';
import {
  appendWorkload,
  bankAuditWorkload,
  bankWorkload,
  defaultBankOptions,
  toyWorkload,
  type Workload,
  type WorkloadName,
} from './workloads.ts';

export interface SimRequest extends FaultSettings {
  protocol: ProtocolName | SimProtocol;
  /** Protocol settings (Paxos Commit: faults F, faster, colocated); ignored with a SimProtocol object. */
  protocolOptions?: ProtocolOptions;
  workload: WorkloadName;
  txns: number;
  seed: number;
  /** Participants: accounts are spread over them (bank), or every transaction runs on all of them (toy, default 3). */
  participants?: number;
  /** Bank workload: every transaction writes at every participant, not only at two. */
  everyParticipant?: boolean;
  /** Per-participant probability that a forced write fails, in participant order (one per participant). */
  failRates?: number[];
  /** Probability that a forced write fails on the coordinator (Paxos Commit: its leader). */
  coordinatorFailRate?: number;
  /** Probability that a forced write fails on a Paxos Commit acceptor (the leader's node excepted). */
  acceptorFailRate?: number;
  /** Bank workload: the share of transfers that only read, and of transactions that also read elsewhere. */
  readOnlyShare?: number;
  /** bank-audit and append: what a read does (default plain). */
  reads?: ReadMode;
  /** Timestamp reads: each node's clock is off by up to this much either way (default 0: exact clocks). */
  clockSkewMs?: number;
  /** Timestamp reads: commit wait (acknowledge once every clock is past the commit timestamp). */
  commitWait?: boolean;
  fsyncMs?: number;
  concurrency?: number;
  /** Mean pause of each client between its transactions (exponential); default 0, back to back. */
  thinkMs?: number;
  /** Crash the coordinator when it is about to make its decision durable; restart after `downtimeMs`. */
  scenario?: { kind: 'coordinator-crash'; downtimeMs: number } | null;
  trace?: boolean;
}

export interface SimReport {
  protocol: string;
  workload: WorkloadName;
  seed: number;
  txns: number;
  committed: number;
  aborted: number;
  partial: number;
  undecided: number;
  violations: Violation[];
  violationCount: number;
  /** Conserved total at quiescence equals the initial one. */
  conserved: boolean;
  /** Workloads that read (bank-audit, append) only. */
  isolation?: IsolationReport;
  latencyMs: Summary;
  lockHeldMs: Summary;
  inDoubtMs: Summary;
  queuedBehindLocks: number;
  /** Time lock requests spent queued behind a held lock. */
  lockWaitMs: Summary;
  /** Protocol messages sent (acknowledgements and retransmissions included) per committed transaction. */
  messagesPerCommit: number;
  /** Of those, acknowledgements of the decision (2PC's ACK). */
  ackMessagesPerCommit: number;
  forcedWritesPerCommit: number;
  crashes: number;
  simulatedMs: number;
  wallMs: number;
}

export const simDefaults = {
  ...worldDefaults,
  clientExecTimeoutMs: 1_000,
  clientOutcomeTimeoutMs: 1_000,
} as const;

/** What is wrong with a commit-world request that its types let through, or undefined. */
export function commitRequestProblem(req: SimRequest): string | undefined {
  const participants = req.participants ?? (req.workload === 'toy' ? 3 : defaultBankOptions.participants);
  if (req.failRates !== undefined && req.failRates.length !== participants)
    return `--fail-rates needs one rate per participant: ${participants}, got ${req.failRates.length}`;
  if (req.workload === 'toy' && req.readOnlyShare !== undefined)
    return '--read-only-share is for the bank workload (every toy transaction writes on every node)';
  const reading = req.workload === 'bank-audit' || req.workload === 'append';
  if (reading && req.readOnlyShare !== undefined)
    return `--read-only-share is for the bank workload (${req.workload} has reads of its own: --reads)`;
  if (req.workload === 'append' && req.everyParticipant)
    return '--every-participant is for the bank and bank-audit workloads';
  if (req.reads !== undefined && !reading)
    return `--reads is for the bank-audit and append workloads (${req.workload} does not read)`;
  if (req.reads === 'snapshot' && req.protocolOptions?.faster)
    return '--reads snapshot cannot fence Faster Paxos Commit: its participants learn the outcome from the acceptors, past the leader';
  if (
    req.reads === 'timestamp' &&
    req.protocol !== '2pc' &&
    (typeof req.protocol === 'string' || req.protocol.timestamps === undefined)
  )
    return `--reads timestamp needs commit timestamps, which only 2pc assigns (its coordinator takes the latest prepare timestamp); ${typeof req.protocol === 'string' ? req.protocol : req.protocol.name} has none`;
  if (req.clockSkewMs !== undefined && !(Number.isFinite(req.clockSkewMs) && req.clockSkewMs >= 0))
    return `--clock-skew-ms must be a number >= 0, got ${req.clockSkewMs}`;
  if (req.clockSkewMs !== undefined && req.reads !== 'timestamp')
    return '--clock-skew-ms goes with --reads timestamp (no other read mode reads a clock)';
  if (req.commitWait && req.reads !== 'timestamp')
    return '--commit-wait goes with --reads timestamp (it waits out the uncertainty of commit timestamps)';
  return undefined;
}

/** Each node's rate of failing forced writes: participants in order, then the other nodes by kind. */
function failRatesOf(req: SimRequest, protocol: SimProtocol, workload: Workload): Map<NodeId, number> {
  const rates = req.failRates ?? workload.defaultFailRates;
  const failRates = new Map<NodeId, number>();
  for (const node of protocol.nodes(workload.participants)) {
    if (node.kind === 'coordinator') failRates.set(node.id, req.coordinatorFailRate ?? 0);
    else if (node.kind === 'acceptor') failRates.set(node.id, req.acceptorFailRate ?? 0);
  }
  workload.participants.forEach((p, i) => {
    failRates.set(p, rates[i] ?? 0);
  });
  return failRates;
}

export function buildWorld(req: SimRequest): CommitWorld {
  const problem = commitRequestProblem(req);
  if (problem !== undefined) throw new RangeError(problem);
  const protocol =
    typeof req.protocol === 'string'
      ? makeProtocol(req.protocol, { rttMs: req.rttMs ?? simDefaults.rttMs, ...req.protocolOptions })
      : req.protocol;
  const sized = {
    ...(req.participants !== undefined ? { participants: req.participants } : {}),
    ...(req.concurrency !== undefined ? { concurrency: req.concurrency } : {}),
  };
  const workload =
    req.workload === 'toy'
      ? toyWorkload(req.participants)
      : req.workload === 'append'
        ? appendWorkload(sized)
        : req.workload === 'bank-audit'
          ? bankAuditWorkload({ ...sized, ...(req.everyParticipant ? { everyParticipant: true } : {}) })
          : bankWorkload({
              ...sized,
              ...(req.everyParticipant ? { everyParticipant: true } : {}),
              ...(req.readOnlyShare !== undefined ? { readOnlyShare: req.readOnlyShare } : {}),
            });
  if (req.workload === 'toy' && req.concurrency !== undefined) workload.concurrency = req.concurrency;
  const failRates = failRatesOf(req, protocol, workload);
  const { network, faults } = networkAndFaults(req, simDefaults);
  if (protocol.acceptorFaultsTolerated !== undefined)
    faults.acceptorsDownMax = protocol.acceptorFaultsTolerated;
  const options: CommitWorldOptions = {
    protocol,
    workload,
    seed: req.seed,
    txns: req.txns,
    network,
    faults,
    fsyncMs: req.fsyncMs ?? simDefaults.fsyncMs,
    lazyFlushMs: simDefaults.lazyFlushMs,
    failRates,
    scenario: req.scenario ?? null,
    livenessBoundMs: simDefaults.livenessBoundMs,
    // Client patience scales with the network like the protocols' timeouts.
    clientExecTimeoutMs: simDefaults.clientExecTimeoutMs * timeScale(req),
    clientOutcomeTimeoutMs: simDefaults.clientOutcomeTimeoutMs * timeScale(req),
    clientThinkMs: req.thinkMs ?? 0,
    trace: req.trace ? [] : null,
    reads: req.reads ?? 'plain',
    clocks:
      req.reads === 'timestamp'
        ? { skewMs: req.clockSkewMs ?? 0, commitWait: req.commitWait === true }
        : null,
  };
  return new CommitWorld(options);
}

export interface SimRun {
  report: SimReport;
  trace: TraceEvent[] | null;
  /** The recorded history (append workload), for `--history FILE`. */
  history: HistoryOp[] | null;
  world: CommitWorld;
}

/** Sagas and TCC (`workload: 'booking'`) run in their own world: see ./saga/run.ts. */
export function runSim(req: SagaSimRequest): SagaSimRun;
export function runSim(req: OutboxSimRequest): OutboxSimRun;
export function runSim(req: SimRequest): SimRun;
export function runSim(
  req: SimRequest | SagaSimRequest | OutboxSimRequest,
): SimRun | SagaSimRun | OutboxSimRun {
  if (isOutboxRequest(req)) return runOutboxSim(req as OutboxSimRequest);
  if (isSagaRequest(req as SagaSimRequest)) return runSagaSim(req as SagaSimRequest);
  return runCommitSim(req as SimRequest);
}

function runCommitSim(req: SimRequest): SimRun {
  const started = performance.now();
  const world = buildWorld(req);
  const initialTotal = world.total();
  world.run();
  const c = world.checkers;
  const classes = c.classify();
  const finalTotal = world.total();
  c.conservation(initialTotal, finalTotal);
  const isolation = world.opts.workload.reads ? isolationOf(world, req.reads ?? 'plain') : undefined;
  const m = world.metrics;
  const per = (x: number) => (classes.committed === 0 ? 0 : round3(x / classes.committed));
  const report: SimReport = {
    protocol: typeof req.protocol === 'string' ? req.protocol : req.protocol.name,
    workload: req.workload,
    seed: req.seed,
    txns: req.txns,
    committed: classes.committed,
    aborted: classes.aborted,
    partial: classes.partial,
    undecided: classes.undecided,
    violations: c.violations,
    violationCount: c.violationCount,
    conserved: initialTotal === finalTotal,
    ...(isolation !== undefined ? { isolation } : {}),
    latencyMs: summarize(m.commitLatencyMs),
    lockHeldMs: summarize(m.lockHeldMs),
    inDoubtMs: summarize(m.inDoubtMs),
    queuedBehindLocks: m.queuedBehindLocks,
    lockWaitMs: summarize(m.lockWaitMs),
    messagesPerCommit: per(m.protocolMessages),
    ackMessagesPerCommit: per(m.ackMessages),
    forcedWritesPerCommit: per(m.forcedWrites),
    crashes: m.crashes,
    simulatedMs: round3(world.now),
    wallMs: Math.round(performance.now() - started),
  };
  return { report, trace: world.opts.trace, history: world.isolation.history, world };
}

/**
 * The audits' tally and the history checker's verdict on the run's history.
 * Reads that promise serializability (locking, snapshot, timestamp) and see
 * anything else are a violation of an atomic protocol's run. Timestamp reads
 * are checked as strict-serializable: a cycle through real-time order (a
 * read that missed a commit acknowledged before it began) is what skewed
 * clocks without commit wait are expected to produce, so it is counted, not
 * failed; with commit wait it is a violation too.
 */
function isolationOf(world: CommitWorld, reads: ReadMode): IsolationReport {
  const tally = world.isolation;
  const clocks = world.opts.clocks;
  const consistency = clocks === null ? 'serializable' : 'strict-serializable';
  const anomalyTypes =
    tally.history === null
      ? []
      : checkHistoryOps(tally.history, 'the run', { model: 'list-append', consistency }).anomalyTypes;
  const expected = (type: string) => clocks !== null && !clocks.commitWait && type.endsWith('-realtime');
  const failing = anomalyTypes.filter((type) => !expected(type));
  if (reads !== 'plain') {
    const first = tally.wrongAudits[0];
    if (first !== undefined)
      world.checkers.isolation(
        first.txn,
        `${tally.inconsistentAudits} of ${tally.audits} audits saw a wrong total (${first.txn}: ${first.total})`,
      );
    if (failing.length > 0) world.checkers.isolation('*', `the history has anomalies: ${failing.join(', ')}`);
  }
  const report: IsolationReport = {
    audits: tally.audits,
    inconsistentAudits: tally.inconsistentAudits,
    anomalyTypes,
  };
  if (clocks !== null)
    report.timestamps = {
      skewMs: clocks.skewMs,
      commitWait: clocks.commitWait,
      readOnlyLatencyMs: summarize(world.clockMetrics.readOnlyLatencyMs),
      commitWaitMs: summarize(world.clockMetrics.commitWaitMs),
    };
  return report;
}
