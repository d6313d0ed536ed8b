// `dtx verify`: check the books bench left on real databases.

import { type Command, InvalidArgumentError } from 'commander';
import { collect, num, writeJson } from '../options.ts';

interface VerifyFlags {
  db: string[];
  log?: string[];
  live?: boolean;
  fence?: string;
  duration: number;
  json?: boolean;
}

/** `dtx verify --live`: snapshot audits from this process while bench runs elsewhere. */
async function verifyLive(flags: VerifyFlags): Promise<void> {
  if (flags.fence === undefined) {
    throw new InvalidArgumentError(
      '--live needs --fence postgres://... (the commit fence the running coordinators share)',
    );
  }
  const { runLiveVerify } = await import('../bench.ts');
  const { auditLine } = await import('../audit.ts');
  const report = await runLiveVerify(flags.db, { fence: flags.fence, durationS: flags.duration });
  if (flags.json) writeJson(report);
  else process.stdout.write(`${report.ok ? 'ok' : 'NOT OK'}: ${auditLine(report)}\n`);
  if (!report.ok) process.exitCode = 1;
}

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
    .option(
      '--live',
      'audit while transfers run: sum the accounts over consistent snapshots (needs --fence) for --duration seconds',
    )
    .option('--fence <url>', "the commit fence's postgres:// database, as bench --fence had it")
    .option('--duration <s>', 'with --live: how long to audit', num('--duration', 0.1, 86_400), 5)
    .option('--json', 'print one JSON object on stdout')
    .action(async (flags: VerifyFlags) => {
      if (flags.live === true) return verifyLive(flags);
      if (flags.fence !== undefined) throw new InvalidArgumentError('--fence needs --live');
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
