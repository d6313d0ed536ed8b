// `dtx swarm`: many seeds with random faults, stopping at the first broken
// checker and printing the `dtx sim` line that reproduces it.

import type { Command } from 'commander';
import type { AcceptorFanout } from '../../protocol/paxos-commit/types.ts';
import type { ProtocolName, SagaProtocolName } from '../../sim/protocols.ts';
import { simFlag } from '../../sim/sim-flags.ts';
import { runSwarmOnWorkers } from '../../sim/swarm.ts';
import type { SwarmFaultKinds } from '../../sim/swarm-faults.ts';
import { swarmPoolLimits } from '../../sim/swarm-pool.ts';
import { type Family, familyOf } from '../families.ts';
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
  workers: number;
  json?: boolean;
}

const faultKinds = (flags: SwarmFlags): SwarmFaultKinds => (flags.crashesOnly ? 'crash' : 'all');

type ProgressBar = ReturnType<typeof progressBar> | null;

async function swarmCommit(flags: SwarmFlags, bar: ProgressBar): Promise<void> {
  const summary = await runSwarmOnWorkers(
    {
      protocol: flags.protocol as ProtocolName,
      seeds: flags.seeds,
      from: flags.from,
      protocolOptions: protocolOptions(flags),
      faultKinds: faultKinds(flags),
      onSeed: (done) => bar?.update(done),
    },
    flags.workers,
  );
  bar?.done();
  const { failure, ...rest } = summary;
  if (failure !== null) {
    process.stderr.write(
      `seed ${failure.seed} failed: ${failure.report.violationCount} violation(s), ${failure.report.undecided} undecided\n` +
        `reproduce with:\n  ${failure.command}\n`,
    );
  }
  if (flags.json) {
    writeJson({
      ...rest,
      failingSeed: failure?.seed ?? null,
      reproduce: failure?.command ?? null,
      firstViolations: failure?.report.violations.slice(0, 5) ?? [],
    });
  } else {
    process.stdout.write(
      `${rest.protocol}: ${rest.seeds} seed(s), ${rest.violations} violation(s), ` +
        `${rest.undecidedAfterHeal} undecided after heal, ${rest.committed} committed / ${rest.aborted} aborted / ${rest.partial} partial ` +
        `(committed share ${rest.committedShare}) (${rest.wallMs} ms)\n`,
    );
  }
  if (failure !== null) process.exitCode = 1;
}

async function swarmBranch(flags: SwarmFlags, bar: ProgressBar): Promise<void> {
  // Commander has no per-protocol flags: the Paxos Commit ones are refused here as in sim.
  protocolOptions(flags);
  const summary = await runSwarmOnWorkers(
    {
      protocol: flags.protocol as SagaProtocolName,
      seeds: flags.seeds,
      from: flags.from,
      faultKinds: faultKinds(flags),
      onSeed: (done) => bar?.update(done),
    },
    flags.workers,
  );
  bar?.done();
  const { failure, ...rest } = summary;
  if (failure !== null) {
    process.stderr.write(
      `seed ${failure.seed} failed: ${failure.report.violationCount} violation(s)\nreproduce with:\n  ${failure.command}\n`,
    );
  }
  if (flags.json)
    writeJson({ ...rest, failingSeed: failure?.seed ?? null, reproduce: failure?.command ?? null });
  else {
    process.stdout.write(
      `${rest.protocol}: ${rest.seeds} seed(s), ${rest.violations} violation(s), ` +
        `${rest.undecidedAfterHeal} unfinished after heal, ${rest.stuck} visibly stuck, ` +
        `${rest.completed} completed / ${rest.compensated} compensated (committed share ${rest.committedShare}) ` +
        `(${rest.wallMs} ms)\n`,
    );
  }
  if (failure !== null) process.exitCode = 1;
}

const swarm: Readonly<Record<Family, (flags: SwarmFlags, bar: ProgressBar) => Promise<void>>> = {
  commit: swarmCommit,
  branch: swarmBranch,
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
    .option(
      '--crashes-only',
      'draw node crashes alone: no loss, partitions or failing writes, jitter at most 1 ms',
    )
    .option(
      '--workers <k>',
      'run the seeds on k worker threads (same output as one)',
      int('--workers', 1, swarmPoolLimits.workersMax),
      1,
    )
    .option('--json', 'print one JSON object on stdout')
    .action(async (flags: SwarmFlags) => {
      const family = familyOf(flags.protocol);
      const bar = process.stderr.isTTY ? progressBar(flags.seeds) : null;
      await swarm[family](flags, bar);
    });
}
