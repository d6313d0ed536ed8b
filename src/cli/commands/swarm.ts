// `dtx swarm`: many seeds with random faults, stopping at the first broken
// checker and printing the `dtx sim` line that reproduces it.

import type { Command } from 'commander';
import type { AcceptorFanout } from '../../protocol/paxos-commit/types.ts';
import type { OutboxProtocolName, ProtocolName, SagaProtocolName } from '../../sim/protocols.ts';
import { simFlag } from '../../sim/sim-flags.ts';
import { runSwarm } from '../../sim/swarm.ts';
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
  json?: boolean;
}

type ProgressBar = ReturnType<typeof progressBar> | null;

function swarmCommit(flags: SwarmFlags, bar: ProgressBar): void {
  const summary = runSwarm({
    protocol: flags.protocol as ProtocolName,
    seeds: flags.seeds,
    from: flags.from,
    protocolOptions: protocolOptions(flags),
    onSeed: (done) => bar?.update(done),
  });
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
        `${rest.undecidedAfterHeal} undecided after heal (${rest.wallMs} ms)\n`,
    );
  }
  if (failure !== null) process.exitCode = 1;
}

function swarmBranch(flags: SwarmFlags, bar: ProgressBar): void {
  // Commander has no per-protocol flags: the Paxos Commit ones are refused here as in sim.
  protocolOptions(flags);
  const summary = runSwarm({
    protocol: flags.protocol as SagaProtocolName,
    seeds: flags.seeds,
    from: flags.from,
    onSeed: (done) => bar?.update(done),
  });
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
        `${rest.undecidedAfterHeal} unfinished after heal, ${rest.stuck} visibly stuck (${rest.wallMs} ms)\n`,
    );
  }
  if (failure !== null) process.exitCode = 1;
}

function swarmOutbox(flags: SwarmFlags, bar: ProgressBar): void {
  protocolOptions(flags);
  const summary = runSwarm({
    protocol: flags.protocol as OutboxProtocolName,
    seeds: flags.seeds,
    from: flags.from,
    onSeed: (done) => bar?.update(done),
  });
  bar?.done();
  const { failure, ...rest } = summary;
  if (failure !== null) {
    process.stderr.write(
      `seed ${failure.seed} failed: ${failure.report.violationCount} violation(s), ${failure.report.undelivered} undelivered\n` +
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
        `${rest.undecidedAfterHeal} undelivered after heal; duplicates dropped ${rest.duplicatesSuppressedByDedup} by the broker, ` +
        `${rest.duplicatesSuppressedByInbox} by the inbox (${rest.wallMs} ms)\n`,
    );
  }
  if (failure !== null) process.exitCode = 1;
}

const swarm: Readonly<Record<SimFamily, (flags: SwarmFlags, bar: ProgressBar) => void>> = {
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
    .option('--json', 'print one JSON object on stdout')
    .action((flags: SwarmFlags) => {
      const family = simFamilyOf(flags.protocol);
      const bar = process.stderr.isTTY ? progressBar(flags.seeds) : null;
      swarm[family](flags, bar);
    });
}
