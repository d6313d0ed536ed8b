// `dtx verify`: check the books bench left on real databases.

import type { Command } from 'commander';
import { collect, writeJson } from '../options.ts';

export function registerVerifyCommand(program: Command): void {
  program
    .command('verify')
    .description(
      'check the books: conservation, transfers everywhere or nowhere, no dtx branch left prepared',
    )
    .requiredOption('--db <url>', 'the databases bench used, in the same order', collect)
    .option(
      '--log <path|url>',
      "count only this bench log's prepared branches (default: every dtx branch on the servers)",
      collect,
    )
    .option('--json', 'print one JSON object on stdout')
    .action(async (flags: { db: string[]; log?: string[]; json?: boolean }) => {
      const { runVerify } = await import('../bench.ts');
      const report = await runVerify(flags.db, flags.log === undefined ? {} : { logs: flags.log });
      if (flags.json) writeJson(report);
      else {
        process.stdout.write(
          `${report.ok ? 'ok' : 'NOT OK'}: total ${report.total} (expected ${report.expectedTotal}), ` +
            `${report.committedTransfers} transfers on every database, ${report.partialTransfers} partial, ` +
            `${report.auditRows} audit rows, ${report.preparedLeft} branches left prepared, ` +
            `${report.holdsLeft} TCC holds left\n`,
        );
      }
      if (!report.ok) process.exitCode = 1;
    });
}
