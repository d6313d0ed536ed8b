// `dtx compare`: the cost-model table, measured in the simulator for every
// protocol (latency, blocking, messages, forced writes, violations), and
// Paxos Commit's message and write counts next to the paper's formulas.

import { writeFileSync } from 'node:fs';
import { type Command, Option } from 'commander';
import { acceptorFanouts } from '../../protocol/paxos-commit/types.ts';
import type { CompareOptions } from '../../sim/compare.ts';
import { int, num, writeJson } from '../options.ts';

/** The measured settings under the simulator's names; `--seeds` is the swarm's seed count. */
export type CompareFlags = Omit<CompareOptions, 'swarmSeeds' | 'protocols'> & {
  seeds: number;
  svg?: string;
  json?: boolean;
};

export function registerCompareCommand(program: Command): void {
  program
    .command('compare')
    .description('the cost-model table, measured: latency, blocking, messages, forced writes, violations')
    .option('--participants <n>', 'participants per transaction', int('--participants', 2, 16), 3)
    .option('--faults <f>', 'Paxos Commit: acceptor failures tolerated', int('--faults', 0, 5), 1)
    .addOption(
      new Option(
        '--fanout <to>',
        'Paxos Commit: RMs send their votes to F+1 acceptors (quorum) or to all 2F+1',
      )
        .choices(acceptorFanouts)
        .default('quorum'),
    )
    .option('--rtt-ms <ms>', 'network round trip (try 80 for cross-region)', num('--rtt-ms', 0.01, 10_000), 1)
    .option('--fsync-ms <ms>', 'latency of a forced write', num('--fsync-ms', 0, 10_000), 1)
    .addOption(
      new Option('--takeover-ms <ms>', 'how long the crashed coordinator stays down (2PC standby takeover)')
        .argParser(num('--takeover-ms', 0, 3_600_000))
        .default(30_000),
    )
    .option('--txns <n>', 'transactions per healthy run', int('--txns', 10, 1_000_000), 400)
    .option(
      '--clock-skew-ms <ms>',
      "timestamp reads' rows: each node's clock is off by up to this much",
      num('--clock-skew-ms', 0, 60_000),
      5,
    )
    .option(
      '--clock-seeds <n>',
      'healthy runs per read-only row (commit fence, timestamps, commit wait)',
      int('--clock-seeds', 1, 10_000),
      20,
    )
    .addOption(
      new Option('--seeds <n>', 'swarm seeds per protocol for the violation count')
        .argParser(int('--seeds', 0, 100_000))
        .default(150),
    )
    .option('--seed <s>', 'first seed', int('--seed', 0), 1)
    .option('--svg <file>', 'also write a latency chart')
    .option('--json', 'print one JSON object on stdout')
    .action(async (flags: CompareFlags) => {
      const { runCompare } = await import('../../sim/compare.ts');
      const { formatCompareTable } = await import('../compare.ts');
      const { renderCompareSvg } = await import('../../render/compare-chart.ts');
      const { seeds, svg, json, ...options } = flags;
      const report = runCompare({ ...options, swarmSeeds: seeds });
      if (svg !== undefined) {
        writeFileSync(svg, renderCompareSvg(report));
        process.stderr.write(`chart written to ${svg}\n`);
      }
      if (json) writeJson(report);
      else process.stdout.write(formatCompareTable(report));
    });
}
