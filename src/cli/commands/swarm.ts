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

function swarmCommit(flags: SwarmFlags, bar: ProgressBar): void {
  const summary = runSwarm({
    protocol: flags.protocol as ProtocolName,
    seeds: flags.seeds,
    from: flags.from,
    protocolOptions: protocolOptions(flags),
    onSeed: (done) => bar?.update(done),
  });
  bar?.done();
  printSwarm(
    flags,
    summary,
    (f) => `${f.report.violationCount} violation(s), ${f.report.undecided} undecided`,
    (r) =>
      `${r.protocol}: ${r.seeds} seed(s), ${r.violations} violation(s), ` +
      `${r.undecidedAfterHeal} undecided after heal (${r.wallMs} ms)`,
    true,
  );
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
  printSwarm(
    flags,
    summary,
    (f) => `${f.report.violationCount} violation(s)`,
    (r) =>
      `${r.protocol}: ${r.seeds} seed(s), ${r.violations} violation(s), ` +
      `${r.undecidedAfterHeal} unfinished after heal, ${r.stuck} visibly stuck (${r.wallMs} ms)`,
    false,
  );
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
