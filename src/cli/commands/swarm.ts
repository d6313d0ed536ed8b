// `dtx swarm`: many seeds with random faults, stopping at the first broken
// checker and printing the `dtx sim` line that reproduces it.

import { type Command, InvalidArgumentError } from 'commander';
import type { AcceptorFanout } from '../../protocol/paxos-commit/types.ts';
import type { Countermeasure } from '../../sim/branch/bank-audit.ts';
import { branchRequestProblem, type SagaSimRequest } from '../../sim/branch/run.ts';
import { type IsolationWorkloadName, isIsolationWorkload, type ReadMode } from '../../sim/isolation.ts';
import type { OutboxProtocolName, ProtocolName, SagaProtocolName } from '../../sim/protocols.ts';
import { commitRequestProblem } from '../../sim/run.ts';
import { simFlag } from '../../sim/sim-flags.ts';
import { runSwarmOnWorkers, type SwarmIsolation } from '../../sim/swarm.ts';
import type { SwarmFaultKinds } from '../../sim/swarm-faults.ts';
import { swarmPoolLimits } from '../../sim/swarm-pool.ts';
import { type SimFamily, simFamilyOf } from '../families.ts';
import { progressBar } from '../format.ts';
import { int, simOption, writeJson } from '../options.ts';
import { protocolOptions } from './sim.ts';

export interface SwarmFlags {
  protocol: string;
  seeds: number;
  from: number;
  faults?: number;
  faster?: boolean;
  colocated?: boolean;
  fanout?: AcceptorFanout;
  crashesOnly?: boolean;
  workload?: string;
  reads?: ReadMode;
  clockSkewMs?: number;
  commitWait?: boolean;
  countermeasure?: Countermeasure;
  workers: number;
  json?: boolean;
}

type ProgressBar = ReturnType<typeof progressBar> | null;

const faultKinds = (flags: SwarmFlags): SwarmFaultKinds => (flags.crashesOnly ? 'crash' : 'all');

/** The seeds to run and the progress bar to move: the same for every world's swarm. */
function seedRange(flags: SwarmFlags, bar: ProgressBar) {
  return { seeds: flags.seeds, from: flags.from, onSeed: (done: number) => bar?.update(done) };
}

interface AnySwarmSummary {
  failure: { seed: number; command: string; report: { violations: readonly unknown[] } } | null;
}

/**
 * What every world's swarm prints: the failing seed and its reproduce line on
 * stderr, the summary (`--json`: the summary object) on stdout, exit 1 on a failure.
 * `failed` says what the failing seed broke; `line` is the human summary.
 */
function printSwarm<S extends AnySwarmSummary>(
  flags: SwarmFlags,
  summary: S,
  failed: (failure: NonNullable<S['failure']>) => string,
  line: (rest: Omit<S, 'failure'>) => string,
  firstViolations: boolean,
): void {
  const { failure, ...rest } = summary;
  if (failure !== null) {
    process.stderr.write(
      `seed ${failure.seed} failed: ${failed(failure as NonNullable<S['failure']>)}\n` +
        `reproduce with:\n  ${failure.command}\n`,
    );
  }
  if (flags.json) {
    writeJson({
      ...rest,
      failingSeed: failure?.seed ?? null,
      reproduce: failure?.command ?? null,
      ...(firstViolations ? { firstViolations: failure?.report.violations.slice(0, 5) ?? [] } : {}),
    });
  } else process.stdout.write(`${line(rest)}\n`);
  if (failure !== null) process.exitCode = 1;
}

/** `--workload bank-audit|append` and `--reads`: a swarm of a workload that reads, instead of the bank's transfers. */
function readingWorkload(flags: SwarmFlags): {
  workload?: IsolationWorkloadName;
  reads?: ReadMode;
  clockSkewMs?: number;
  commitWait?: boolean;
} {
  if (flags.countermeasure !== undefined)
    throw new InvalidArgumentError(`--countermeasure is for sagas, not ${flags.protocol}`);
  if (flags.workload === undefined) {
    if (flags.reads !== undefined || flags.clockSkewMs !== undefined || flags.commitWait)
      throw new InvalidArgumentError('--reads goes with --workload bank-audit or append');
    return {};
  }
  if (!isIsolationWorkload(flags.workload))
    throw new InvalidArgumentError(
      `the swarm's --workload is bank-audit or append (the bank is the default)`,
    );
  const reading = {
    workload: flags.workload,
    reads: flags.reads ?? 'plain',
    ...(flags.clockSkewMs !== undefined ? { clockSkewMs: flags.clockSkewMs } : {}),
    ...(flags.commitWait ? { commitWait: true } : {}),
  };
  // The same rules as `dtx sim`'s, on the first seed's request.
  const problem = commitRequestProblem({
    protocol: flags.protocol as ProtocolName,
    txns: 1,
    seed: flags.from,
    ...reading,
  });
  if (problem !== undefined) throw new InvalidArgumentError(problem);
  return reading;
}

async function swarmCommit(flags: SwarmFlags, bar: ProgressBar): Promise<void> {
  const summary = await runSwarmOnWorkers(
    {
      protocol: flags.protocol as ProtocolName,
      ...seedRange(flags, bar),
      protocolOptions: protocolOptions(flags),
      faultKinds: faultKinds(flags),
      ...readingWorkload(flags),
    },
    flags.workers,
  );
  bar?.done();
  printSwarm(
    flags,
    summary,
    (f) => `${f.report.violationCount} violation(s), ${f.report.undecided} undecided`,
    (r) =>
      `${r.protocol}: ${r.seeds} seed(s), ${r.violations} violation(s), ` +
      `${r.undecidedAfterHeal} undecided after heal, ${r.committed} committed / ${r.aborted} aborted / ${r.partial} partial ` +
      `(committed share ${r.committedShare})${isolationLine(r.isolation)} (${r.wallMs} ms)`,
    true,
  );
}

function isolationLine(i: SwarmIsolation | undefined): string {
  if (i === undefined) return '';
  const classes = Object.entries(i.anomalySeeds)
    .map(([type, seeds]) => `${type} ${seeds}`)
    .join(', ');
  return (
    `; ${i.reads} reads: ${i.inconsistentAudits} of ${i.audits} audits inconsistent (${i.inconsistentShare}), ` +
    `${i.seedsWithAnomalies} seed(s) with anomalies${classes === '' ? '' : ` (${classes})`}`
  );
}

/** The outbox world has no reading workloads and no countermeasures. */
function refuseReadingWorkload(flags: SwarmFlags): void {
  refuseClocks(flags);
  if (flags.workload !== undefined || flags.reads !== undefined || flags.countermeasure !== undefined)
    throw new InvalidArgumentError(
      `--workload, --reads and --countermeasure do not apply to ${flags.protocol}`,
    );
}

/** Clocks are the commit world's (timestamp reads); sagas and the outbox read none. */
function refuseClocks(flags: SwarmFlags): void {
  if (flags.clockSkewMs !== undefined || flags.commitWait)
    throw new InvalidArgumentError(`--clock-skew-ms and --commit-wait do not apply to ${flags.protocol}`);
}

async function swarmBranch(flags: SwarmFlags, bar: ProgressBar): Promise<void> {
  // Commander has no per-protocol flags: the Paxos Commit ones are refused here as in sim.
  protocolOptions(flags);
  refuseClocks(flags);
  const workload = flags.workload ?? 'booking';
  const problem = branchRequestProblem({
    protocol: flags.protocol as SagaProtocolName,
    workload: workload as SagaSimRequest['workload'],
    txns: 1,
    seed: 0,
    ...(flags.reads !== undefined ? { reads: flags.reads } : {}),
    ...(flags.countermeasure !== undefined ? { countermeasure: flags.countermeasure } : {}),
  });
  if (problem !== undefined) throw new InvalidArgumentError(problem);
  const summary = await runSwarmOnWorkers(
    {
      protocol: flags.protocol as SagaProtocolName,
      ...seedRange(flags, bar),
      faultKinds: faultKinds(flags),
      ...(workload === 'bank-audit' ? { workload } : {}),
      ...(flags.countermeasure !== undefined ? { countermeasure: flags.countermeasure } : {}),
    },
    flags.workers,
  );
  bar?.done();
  printSwarm(
    flags,
    summary,
    (f) => `${f.report.violationCount} violation(s)`,
    (r) =>
      `${r.protocol}: ${r.seeds} seed(s), ${r.violations} violation(s), ` +
      `${r.undecidedAfterHeal} unfinished after heal, ${r.stuck} visibly stuck, ` +
      `${r.completed} completed / ${r.compensated} compensated (committed share ${r.committedShare}) ` +
      `(${r.wallMs} ms)` +
      (r.isolation === undefined
        ? ''
        : `\n  audits: ${r.isolation.inconsistentAudits} of ${r.isolation.audits} inconsistent ` +
          `(${r.isolation.inconsistentShare}), ${r.isolation.auditsRetried} retried; dirty reads ${r.isolation.dirtyReads}, ` +
          `lost updates ${r.isolation.lostUpdates}; history anomalies (seeds): ` +
          (Object.entries(r.isolation.seedsWithAnomaly)
            .map(([t, n]) => `${t} ${n}`)
            .join(', ') || 'none')),
    false,
  );
}

async function swarmOutbox(flags: SwarmFlags, bar: ProgressBar): Promise<void> {
  protocolOptions(flags);
  refuseReadingWorkload(flags);
  if (flags.crashesOnly) throw new InvalidArgumentError('--crashes-only is for the commit and branch swarms');
  const summary = await runSwarmOnWorkers(
    {
      protocol: flags.protocol as OutboxProtocolName,
      ...seedRange(flags, bar),
    },
    flags.workers,
  );
  bar?.done();
  printSwarm(
    flags,
    summary,
    (f) => `${f.report.violationCount} violation(s), ${f.report.undelivered} undelivered`,
    (r) =>
      `${r.protocol}: ${r.seeds} seed(s), ${r.violations} violation(s), ` +
      `${r.undecidedAfterHeal} undelivered after heal; duplicates dropped ${r.duplicatesSuppressedByDedup} by the broker, ` +
      `${r.duplicatesSuppressedByInbox} by the inbox (${r.wallMs} ms)`,
    true,
  );
}

const swarm: Readonly<Record<SimFamily, (flags: SwarmFlags, bar: ProgressBar) => Promise<void>>> = {
  commit: swarmCommit,
  branch: swarmBranch,
  outbox: swarmOutbox,
};

export function registerSwarmCommand(program: Command): void {
  program
    .command('swarm')
    .description('run many seeds with random faults; stop at the first broken checker')
    .addOption(simOption(simFlag('--protocol')))
    .requiredOption('--seeds <n>', 'how many seeds', int('--seeds', 1, 100_000_000))
    .option('--from <s>', 'first seed', int('--from', 0), 1)
    .addOption(simOption(simFlag('--faults')))
    .addOption(simOption(simFlag('--faster')))
    .addOption(simOption(simFlag('--colocated')))
    .addOption(simOption(simFlag('--fanout')))
    .addOption(simOption(simFlag('--workload')))
    .addOption(simOption(simFlag('--reads')))
    .addOption(simOption(simFlag('--clock-skew-ms')))
    .addOption(simOption(simFlag('--commit-wait')))
    .option(
      '--crashes-only',
      'draw node crashes alone: no loss, partitions or failing writes, jitter at most 1 ms',
    )
    .addOption(simOption(simFlag('--countermeasure')))
    .option(
      '--workers <k>',
      'run the seeds on k worker threads (same output as one; the outbox world runs on one)',
      int('--workers', 1, swarmPoolLimits.workersMax),
      1,
    )
    .option('--json', 'print one JSON object on stdout')
    .action(async (flags: SwarmFlags) => {
      const family = simFamilyOf(flags.protocol);
      const bar = process.stderr.isTTY ? progressBar(flags.seeds) : null;
      await swarm[family](flags, bar);
    });
}
