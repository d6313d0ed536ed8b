// `dtx demo`: naive commit next to two-phase commit, first in the simulator,
// then on real SQLite databases whose coordinator is killed mid-flight.

import { type Command, Option } from 'commander';
import type { RealDemoRound } from '../demo-real.ts';
import type { ChildSpec } from '../nonblocking.ts';
import { collect, int, num, writeJson } from '../options.ts';

interface NonblockingFlags {
  downtimeMs: number;
  dir: string;
  db?: string[];
  json?: boolean;
  child?: string;
}

export function registerDemoCommand(program: Command): void {
  const demo = program.command('demo');
  demo
    .command('nonblocking')
    .description(
      '2PC next to Paxos Commit on real processes: the coordinator / leader SIGKILLed with both branches prepared',
    )
    .option(
      '--downtime-ms <ms>',
      'how long the killed process stays down',
      int('--downtime-ms', 0, 3_600_000),
      5000,
    )
    .option(
      '--dir <path>',
      'where the demo keeps its SQLite files and acceptor directories',
      '.dtx/demo-nonblocking',
    )
    .option(
      '--db <url>',
      'the two participants (debit, credit; given twice): postgres:// (max_prepared_transactions > 0), ' +
        'mysql:// (MariaDB XA) or sqlite:PATH; their dtx_bench books are set up again. Default: two SQLite databases in --dir',
      collect,
    )
    .option('--json', 'print one JSON object on stdout')
    .addOption(new Option('--child <spec>', 'internal: run a killed coordinator or leader').hideHelp())
    .action(async (own: NonblockingFlags, cmd: Command) => {
      // `demo` has options of the same names and parses them first: what was
      // given on the command line sits there.
      const parent = cmd.parent!;
      const given = (name: keyof NonblockingFlags) => parent.getOptionValueSource(name) === 'cli';
      const flags: NonblockingFlags = { ...own };
      for (const name of ['downtimeMs', 'dir', 'json'] as const)
        if (given(name)) Object.assign(flags, { [name]: parent.opts()[name] });
      const nb = await import('../nonblocking.ts');
      if (flags.child !== undefined) return nb.runNonblockingChild(JSON.parse(flags.child) as ChildSpec);
      const report = await nb.runNonblockingDemo({
        dir: flags.dir,
        downtimeMs: flags.downtimeMs,
        ...(flags.db === undefined ? {} : { dbs: flags.db }),
        log: (line) => process.stderr.write(`${line}\n`),
      });
      if (flags.json) writeJson({ '2pc': report['2pc'], 'paxos-commit': report['paxos-commit'] });
      else process.stdout.write(nb.formatNonblocking(report));
      if (!report['2pc'].verifyOk || !report['paxos-commit'].verifyOk) process.exitCode = 1;
    });
  demo
    .description(
      'naive commit next to two-phase commit: in the simulator, then on real SQLite databases killed mid-flight',
    )
    .option(
      '--txns <n>',
      'transactions for the failure-rate comparison',
      int('--txns', 1000, 10_000_000),
      100_000,
    )
    .option(
      '--downtime-ms <ms>',
      'coordinator downtime in the crash scenario',
      num('--downtime-ms', 0, 3_600_000),
      30_000,
    )
    .option('--rounds <n>', 'kill rounds per protocol on the real databases', int('--rounds', 1, 20), 2)
    .option('--dir <path>', 'where the demo keeps its SQLite files', '.dtx/demo')
    .option('--no-real', 'only the simulated part')
    .option('--json', 'print one JSON object on stdout')
    .action(
      async (flags: {
        txns: number;
        downtimeMs: number;
        rounds: number;
        dir: string;
        real: boolean;
        json?: boolean;
      }) => {
        const { runDemo } = await import('../demo.ts');
        const sim = runDemo(flags);
        if (!flags.json) process.stdout.write(sim.text);
        let real: RealDemoRound[] = [];
        if (flags.real) {
          if (!flags.json) process.stdout.write('\n');
          const { formatRealDemo, runRealDemo } = await import('../demo-real.ts');
          real = await runRealDemo({
            dir: flags.dir,
            rounds: flags.rounds,
            log: (line) => process.stderr.write(`${line}\n`),
          });
          if (!flags.json) process.stdout.write(formatRealDemo(real));
        }
        if (flags.json) writeJson({ ...(sim.data as object), realDatabases: real });
      },
    );
}
