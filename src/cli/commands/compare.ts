// `dtx compare`: the cost-model table, measured in the simulator for every
// protocol (latency, blocking, messages, forced writes, violations).

import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { int, num, writeJson } from '../options.ts';

export function registerCompareCommand(program: Command): void {
  program
    .command('compare')
    .description('the cost-model table, measured: latency, blocking, messages, forced writes, violations')
    .option('--participants <n>', 'participants per transaction', int('--participants', 2, 16), 3)
    .option('--faults <f>', 'Paxos Commit: acceptor failures tolerated', int('--faults', 0, 5), 1)
    .option('--rtt-ms <ms>', 'network round trip (try 80 for cross-region)', num('--rtt-ms', 0.01, 10_000), 1)
    .option('--fsync-ms <ms>', 'latency of a forced write', num('--fsync-ms', 0, 10_000), 1)
    .option(
      '--takeover-ms <ms>',
      'how long the crashed coordinator stays down (2PC standby takeover)',
      num('--takeover-ms', 0, 3_600_000),
      30_000,
    )
    .option('--txns <n>', 'transactions per healthy run', int('--txns', 10, 1_000_000), 400)
    .option(
      '--seeds <n>',
      'swarm seeds per protocol for the violation count',
      int('--seeds', 0, 100_000),
      150,
    )
    .option('--seed <s>', 'first seed', int('--seed', 0), 1)
    .option('--svg <file>', 'also write a latency chart')
    .option('--json', 'print one JSON object on stdout')
    .action(
      async (flags: {
        participants: number;
        faults: number;
        rttMs: number;
        fsyncMs: number;
        takeoverMs: number;
        txns: number;
        seeds: number;
        seed: number;
        svg?: string;
        json?: boolean;
      }) => {
        const { runCompare } = await import('../../sim/compare.ts');
        const { formatCompareTable } = await import('../compare.ts');
        const { renderCompareSvg } = await import('../../render/compare-chart.ts');
        const report = runCompare({
          participants: flags.participants,
          faults: flags.faults,
          rttMs: flags.rttMs,
          fsyncMs: flags.fsyncMs,
          takeoverMs: flags.takeoverMs,
          txns: flags.txns,
          swarmSeeds: flags.seeds,
          seed: flags.seed,
        });
        if (flags.svg !== undefined) {
          writeFileSync(flags.svg, renderCompareSvg(report));
          process.stderr.write(`chart written to ${flags.svg}\n`);
        }
        if (flags.json) writeJson(report);
        else process.stdout.write(formatCompareTable(report));
      },
    );
}
