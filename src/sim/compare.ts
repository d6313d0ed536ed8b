// `dtx compare`: the usual cost model of commit protocols (2PC: 2 RTT, locks
// held from PREPARE to COMMIT, blocked while the coordinator is down; Paxos
// Commit: a Paxos round more, never blocked; sagas: fastest, least locking,
// not atomic; see docs/compare.md), measured in the simulator rather than
// asserted. Every protocol runs the same bank transfers
// over the same simulated network and disks:
//
// - healthy: commit latency as the client sees it, lock hold time, messages
//   and forced writes per committed transaction;
// - message delays: a run with no fsync cost and no jitter, so the latency is
//   a whole number of one-way delays (client request and answer included);
// - coordinator failure: the coordinator (Paxos Commit: the leader) crashes
//   with every vote in and its decision not yet durable, and stays down for
//   the 2PC takeover time; we measure how long participants stay in doubt and
//   hold their locks;
// - the swarm's faults: a fixed set of seeds with random loss, duplication,
//   partitions and crashes; atomicity violations counted (for naive commit, its
//   partial commits);
// - paper vs measured: Paxos Commit's messages and forced writes per commit in
//   the failure-free normal case, Gray & Lamport's formulas next to what the
//   simulator sends and forces (./paper-costs.ts);
// - clocks or a single serialisation point: 2PC's read-only transactions
//   through the commit fence (snapshot reads) against timestamp reads with
//   skewed clocks, without and with commit wait, on the append workload: commit
//   and read-only latency, and in how many seeds the strict-serializable
//   history checker finds a real-time violation.

import { checkHistoryOps } from '../history/check.ts';
import type { AcceptorFanout } from '../protocol/paxos-commit/types.ts';
import { sagaSwarmRequest } from './branch/swarm.ts';
import { type PaperCostRow, paperCostRows } from './paper-costs.ts';
import type { ProtocolName } from './protocols.ts';
import { runSim, type SimReport, type SimRequest } from './run.ts';
import { type Summary, summarize } from './stats.ts';
import { swarmRequest } from './swarm.ts';

export interface CompareOptions {
  participants: number;
  /** Paxos Commit's F. */
  faults: number;
  /** Paxos Commit: RMs send their votes to F+1 acceptors (`quorum`) or to all 2F+1. */
  fanout: AcceptorFanout;
  rttMs: number;
  fsyncMs: number;
  /** How long the 2PC coordinator stays down (its standby's takeover time); the same crash for every protocol. */
  takeoverMs: number;
  txns: number;
  seed: number;
  swarmSeeds: number;
  protocols: CompareEntry[];
  /** Timestamp reads: each node's clock is off by up to this much either way. */
  clockSkewMs: number;
  /** Seeds (healthy runs of the append workload) per read-only row. */
  clockSeeds: number;
}

/** One row of the table: a protocol, and for Paxos Commit its configuration. */
export interface CompareEntry {
  label: string;
  protocol: ProtocolName;
  options?: { faster?: boolean; colocated?: boolean };
}

export const defaultCompareOptions: CompareOptions = {
  participants: 3,
  faults: 1,
  fanout: 'quorum',
  rttMs: 1,
  fsyncMs: 1,
  takeoverMs: 30_000,
  txns: 400,
  seed: 1,
  swarmSeeds: 150,
  clockSkewMs: 5,
  clockSeeds: 20,
  protocols: [
    { label: 'naive', protocol: 'naive' },
    { label: '2pc', protocol: '2pc' },
    { label: '3pc', protocol: '3pc' },
    { label: 'paxos-commit', protocol: 'paxos-commit' },
    { label: 'paxos-commit colocated', protocol: 'paxos-commit', options: { colocated: true } },
    { label: 'faster paxos-commit', protocol: 'paxos-commit', options: { faster: true } },
  ],
};

export interface CompareRow {
  protocol: string;
  healthy: { latencyMs: Summary; lockHeldMs: Summary; committed: number; txns: number };
  messageDelays: number;
  messagesPerCommit: number;
  ackMessagesPerCommit: number;
  forcedWritesPerCommit: number;
  coordinatorFailure: {
    latencyMs: Summary;
    inDoubtMs: Summary;
    lockHeldMs: Summary;
    committed: number;
    aborted: number;
    undecided: number;
  };
  swarm: { seeds: number; atomicityViolations: number; otherViolations: number; undecidedAfterHeal: number };
}

/**
 * Sagas and TCC are not atomic, so they get their own rows: on the booking
 * workload, the latency of a completed booking, the inconsistency window (how
 * long a failed booking's seat stayed unavailable) healthy and with the
 * orchestrator crashed for the takeover time, and the swarm's violations of
 * the saga checkers (barrier rules, conservation, nothing half-done).
 */
export interface SagaCompareRow {
  protocol: 'saga' | 'tcc';
  latencyMs: Summary;
  inconsistencyWindowMs: Summary;
  inconsistencyWindowOnCrashMs: Summary;
  messagesPerSaga: number;
  forcedWritesPerSaga: number;
  swarm: { seeds: number; violations: number; unfinishedAfterHeal: number };
}

/**
 * 2PC's read-only transactions, one consistent cut without locks, two ways:
 * a single serialisation point (the commit fence, `--reads snapshot`) or
 * clocks (`--reads timestamp`), without and with commit wait. Latencies are
 * over every seed's run together; the last column counts the seeds whose
 * history has a cycle through real-time order (strict-serializable check).
 */
export interface ReadCompareRow {
  reads: 'snapshot' | 'timestamp' | 'timestamp + commit wait';
  latencyMs: Summary;
  readOnlyLatencyMs: Summary;
  /** How long acknowledgements waited for the clock (commit wait only; zeros otherwise). */
  commitWaitMs: Summary;
  /** Commits held back while snapshots opened (the fence only; 0 otherwise). */
  heldBackCommits: number;
  committed: number;
  readOnly: number;
  seeds: number;
  realtimeViolationSeeds: number;
  /** Seeds with any other anomaly class: none is expected in any row. */
  otherAnomalySeeds: number;
}

export interface CompareReport {
  options: CompareOptions;
  rows: CompareRow[];
  sagaRows: SagaCompareRow[];
  readRows: ReadCompareRow[];
  /** Paxos Commit, failure-free normal case: the paper's counts and the measured ones (N = 3, 5; F = 1, 2). */
  paper: PaperCostRow[];
  wallMs: number;
}

/** A Paxos Commit row's protocol settings; other protocols take none. */
function paxosOptions(entry: CompareEntry, o: CompareOptions) {
  return entry.protocol === 'paxos-commit' ? { faults: o.faults, fanout: o.fanout, ...entry.options } : {};
}

function base(entry: CompareEntry, o: CompareOptions): SimRequest {
  return {
    protocol: entry.protocol,
    ...(entry.protocol === 'paxos-commit' ? { protocolOptions: paxosOptions(entry, o) } : {}),
    workload: 'bank',
    participants: o.participants,
    concurrency: 4,
    txns: o.txns,
    seed: o.seed,
    rttMs: o.rttMs,
    fsyncMs: o.fsyncMs,
  };
}

export function runCompare(options: Partial<CompareOptions> = {}): CompareReport {
  const o: CompareOptions = { ...defaultCompareOptions, ...options };
  const started = performance.now();
  const rows: CompareRow[] = [];
  for (const entry of o.protocols) {
    const protocol = entry.protocol;
    const healthy = runSim(base(entry, o)).report;
    // One transaction at a time, no disk cost, no jitter: latency / one-way delay
    // is the number of sequential message delays a commit takes.
    const bare = runSim({ ...base(entry, o), txns: 20, concurrency: 1, fsyncMs: 0, jitterMs: 0 }).report;
    const crashed = runSim({
      ...base(entry, o),
      txns: 50,
      concurrency: 1,
      scenario: { kind: 'coordinator-crash', downtimeMs: o.takeoverMs },
    }).report;
    const swarm = { seeds: o.swarmSeeds, atomicityViolations: 0, otherViolations: 0, undecidedAfterHeal: 0 };
    for (let i = 0; i < o.swarmSeeds; i++) {
      const req = swarmRequest(protocol, o.seed + i, paxosOptions(entry, o));
      const r: SimReport = runSim(req).report;
      const atomicity = r.violations.filter((v) => v.checker === 'atomicity').length;
      swarm.atomicityViolations += protocol === 'naive' ? r.partial : atomicity;
      swarm.otherViolations += r.violationCount - atomicity;
      swarm.undecidedAfterHeal += r.undecided;
    }
    rows.push({
      protocol: entry.label,
      healthy: {
        latencyMs: healthy.latencyMs,
        lockHeldMs: healthy.lockHeldMs,
        committed: healthy.committed,
        txns: healthy.txns,
      },
      messageDelays: Math.round(bare.latencyMs.p50 / (o.rttMs / 2)),
      messagesPerCommit: healthy.messagesPerCommit,
      ackMessagesPerCommit: healthy.ackMessagesPerCommit,
      forcedWritesPerCommit: healthy.forcedWritesPerCommit,
      coordinatorFailure: {
        latencyMs: crashed.latencyMs,
        inDoubtMs: crashed.inDoubtMs,
        lockHeldMs: crashed.lockHeldMs,
        committed: crashed.committed,
        aborted: crashed.aborted,
        undecided: crashed.undecided,
      },
      swarm,
    });
  }
  const sagaRows: SagaCompareRow[] = (['saga', 'tcc'] as const).map((protocol) => {
    const net = { rttMs: o.rttMs, fsyncMs: o.fsyncMs };
    const healthy = runSim({ protocol, workload: 'booking', txns: o.txns, seed: o.seed, ...net }).report;
    const crashed = runSim({
      protocol,
      workload: 'booking',
      txns: o.txns,
      seed: o.seed,
      ...net,
      scenario: { kind: 'coordinator-crash', downtimeMs: o.takeoverMs },
    }).report;
    const swarm = { seeds: o.swarmSeeds, violations: 0, unfinishedAfterHeal: 0 };
    for (let i = 0; i < o.swarmSeeds; i++) {
      const r = runSim(sagaSwarmRequest(protocol, o.seed + i)).report;
      swarm.violations += r.violationCount;
      swarm.unfinishedAfterHeal += r.unfinished;
    }
    return {
      protocol,
      latencyMs: healthy.latencyMs,
      inconsistencyWindowMs: healthy.inconsistencyWindowMs,
      inconsistencyWindowOnCrashMs: crashed.inconsistencyWindowMs,
      messagesPerSaga: healthy.messagesPerSaga,
      forcedWritesPerSaga: healthy.forcedWritesPerSaga,
      swarm,
    };
  });
  const paper = paperCostRows(o.fanout);
  const readRows = (['snapshot', 'timestamp', 'timestamp + commit wait'] as const).map((reads) =>
    readCompareRow(reads, o),
  );
  return { options: o, rows, sagaRows, readRows, paper, wallMs: Math.round(performance.now() - started) };
}

function readCompareRow(reads: ReadCompareRow['reads'], o: CompareOptions): ReadCompareRow {
  const latency: number[] = [];
  const readOnly: number[] = [];
  const commitWait: number[] = [];
  let heldBackCommits = 0;
  let committed = 0;
  let realtimeViolationSeeds = 0;
  let otherAnomalySeeds = 0;
  for (let i = 0; i < o.clockSeeds; i++) {
    const req: SimRequest = {
      protocol: '2pc',
      workload: 'append',
      participants: o.participants,
      concurrency: 8,
      txns: o.txns,
      seed: o.seed + i,
      rttMs: o.rttMs,
      fsyncMs: o.fsyncMs,
      reads: reads === 'snapshot' ? 'snapshot' : 'timestamp',
      ...(reads === 'snapshot' ? {} : { clockSkewMs: o.clockSkewMs }),
      ...(reads === 'timestamp + commit wait' ? { commitWait: true } : {}),
    };
    const { world, report, history } = runSim(req);
    latency.push(...world.metrics.commitLatencyMs);
    readOnly.push(...world.clockMetrics.readOnlyLatencyMs);
    commitWait.push(...world.clockMetrics.commitWaitMs);
    heldBackCommits += world.fence?.heldBack ?? 0;
    committed += report.committed;
    const types = checkHistoryOps(history ?? [], 'the run', {
      model: 'list-append',
      consistency: 'strict-serializable',
    }).anomalyTypes;
    if (types.some((t) => t.endsWith('-realtime'))) realtimeViolationSeeds++;
    if (types.some((t) => !t.endsWith('-realtime'))) otherAnomalySeeds++;
  }
  return {
    reads,
    latencyMs: summarize(latency),
    readOnlyLatencyMs: summarize(readOnly),
    commitWaitMs: summarize(commitWait),
    heldBackCommits,
    committed,
    readOnly: readOnly.length,
    seeds: o.clockSeeds,
    realtimeViolationSeeds,
    otherAnomalySeeds,
  };
}
