// `dtx verify`: check the books bench left on real databases.

import { type Command, InvalidArgumentError, Option } from 'commander';
import { type DbFamily, dbFamilyOf } from '../families.ts';
import { collect, num, writeJson } from '../options.ts';

interface VerifyFlags {
  db: string[];
  protocol?: 'outbox';
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

/** `dtx verify` after `dtx bench --protocol outbox`: every committed debit credited exactly once. */
async function verifyOutbox(flags: VerifyFlags): Promise<void> {
  for (const [name, v] of [
    ['--log', flags.log],
    ['--live', flags.live],
    ['--fence', flags.fence],
  ] as const) {
    if (v !== undefined) throw new InvalidArgumentError(`${name} does not apply to outbox`);
  }
  const { runOutboxVerify } = await import('../bench-outbox.ts');
  const r = await runOutboxVerify(flags.db);
  if (flags.json) writeJson(r);
  else {
    process.stdout.write(
      `${r.ok ? 'ok' : 'NOT OK'}: total ${r.total} (expected ${r.expectedTotal}), ${r.produced} committed debits, ` +
        `${r.applied} credited, ${r.duplicates} credited more than once, ${r.missing} missing, ` +
        `${r.unknown} credits without a debit\n`,
    );
  }
  if (!r.ok) process.exitCode = 1;
}

/** The books bench left: the log-keeping families' (conservation, atomicity) or the outbox's. */
async function verifyBooks(flags: VerifyFlags): Promise<void> {
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
}

const verify: Readonly<Record<DbFamily, (flags: VerifyFlags) => Promise<void>>> = {
  commit: verifyBooks,
  branch: verifyBooks,
  outbox: verifyOutbox,
};

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
    .addOption(
      new Option(
        '--protocol <name>',
        "outbox: verify its books (default: told from the databases' tables)",
      ).choices(['outbox']),
    )
    .action(async (flags: VerifyFlags) => {
      let protocol: string | undefined = flags.protocol;
      if (protocol === undefined && flags.log === undefined && flags.live !== true) {
        const { isOutboxBench } = await import('../bench-outbox.ts');
        if (await isOutboxBench(flags.db)) protocol = 'outbox';
      }
      await verify[dbFamilyOf(protocol ?? '2pc')](flags);
    });
}
