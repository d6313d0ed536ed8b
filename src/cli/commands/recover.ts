// `dtx recover`: finish what a killed bench left in doubt, from its log. The
// log says which protocol it holds; its family picks how to resolve it.

import { type Command, InvalidArgumentError, Option } from 'commander';
import type { BenchLogLocation } from '../bench.ts';
import { type DbFamily, dbFamilyOf, familyOf, outboxBenchStreamDefault } from '../families.ts';
import { printHeuristics } from '../format.ts';
import { collect, writeJson } from '../options.ts';

export interface RecoverFlags {
  db: string[];
  log?: string;
  protocol?: '2pc' | 'saga' | 'tcc' | 'outbox';
  id?: string;
  nats?: string;
  stream?: string;
  json?: boolean;
}

/** 2PC: commit what the log decided, roll back prepared branches it never decided (presumed abort). */
async function recoverCommit(flags: RecoverFlags, found: { where: BenchLogLocation }): Promise<void> {
  const { runRecover, heuristicViews } = await import('../bench.ts');
  const report = await runRecover({ dbs: flags.db, where: found.where });
  const out = {
    recommitted: report.recommitted,
    stillInDoubt: report.stillInDoubt,
    rolledBack: report.rolledBack,
    unreachable: report.unreachable,
    heuristics: heuristicViews(report.heuristics),
  };
  if (flags.json) writeJson(out);
  else {
    process.stdout.write(
      `recovered: ${out.recommitted.length} transaction(s) committed from the log, ` +
        `${out.rolledBack.length} prepared branch(es) rolled back (presumed abort), ` +
        `${out.heuristics.length} heuristic outcome(s)\n`,
    );
    for (const t of out.recommitted) process.stdout.write(`  commit   ${t}\n`);
    for (const t of out.stillInDoubt) {
      process.stdout.write(`  IN DOUBT ${t}: committed in the log, a branch could not be reached yet\n`);
    }
    for (const g of out.rolledBack) process.stdout.write(`  rollback ${g}\n`);
    for (const r of out.unreachable) {
      process.stdout.write(`  UNREACHABLE ${r}: its prepared branches were not swept; run recover again\n`);
    }
    printHeuristics(out.heuristics);
  }
  // Still in doubt: decided, not yet applied everywhere; run recover again
  // once the participant is back (or see docs/operations.md).
  if (out.heuristics.length + out.stillInDoubt.length + out.unreachable.length > 0) process.exitCode = 1;
}

/** Saga and TCC: drive every unfinished transfer forward or back from the orchestrator's log. */
async function recoverBranch(
  flags: RecoverFlags,
  found: { protocol: string; where: BenchLogLocation },
): Promise<void> {
  const { runSagaRecover } = await import('../bench-saga.ts');
  const r = await runSagaRecover({
    dbs: flags.db,
    protocol: found.protocol as 'saga' | 'tcc',
    where: found.where,
  });
  if (flags.json) writeJson(r);
  else {
    process.stdout.write(
      `recovered (${r.protocol}): ${r.completed.length} completed, ${r.compensated.length} compensated, ` +
        `${r.stuck.length} stuck\n`,
    );
    for (const t of r.completed) process.stdout.write(`  completed   ${t}\n`);
    for (const t of r.compensated) process.stdout.write(`  compensated ${t}\n`);
    for (const t of r.stuck) process.stdout.write(`  STUCK       ${t.id}: ${t.reason}\n`);
  }
  if (r.stuck.length > 0) process.exitCode = 1;
}

/** The outbox: relay every unsent row and consume until the stream is drained (../bench-outbox.ts). */
async function recoverOutbox(flags: RecoverFlags): Promise<void> {
  for (const [name, v] of [
    ['--log', flags.log],
    ['--id', flags.id],
  ] as const) {
    if (v !== undefined) throw new InvalidArgumentError(`${name} does not apply to outbox`);
  }
  const { runOutboxRecover } = await import('../bench-outbox.ts');
  const r = await runOutboxRecover({
    dbs: flags.db,
    nats: flags.nats ?? 'nats://127.0.0.1:4222',
    stream: flags.stream ?? outboxBenchStreamDefault,
    log: (line) => process.stderr.write(`${line}\n`),
  });
  if (flags.json) writeJson(r);
  else {
    process.stdout.write(
      `recovered (outbox): ${r.relayed} row(s) relayed (${r.duplicatesDropped} already in the stream), ` +
        `${r.applied} applied, ${r.skipped} redelivery(ies) skipped, ${r.deadLettered} dead-lettered; the stream is drained\n`,
    );
  }
}

/** Those that keep a coordinator log find it and take the protocol from it. */
function fromLog(
  handlers: Readonly<
    Record<
      'commit' | 'branch',
      (flags: RecoverFlags, found: { protocol: string; where: BenchLogLocation }) => Promise<void>
    >
  >,
) {
  return async (flags: RecoverFlags): Promise<void> => {
    const { findBenchLog } = await import('../bench.ts');
    // The log says which protocol it holds; --protocol and --id only confirm it.
    const found = await findBenchLog(
      flags.log,
      flags.protocol as '2pc' | 'saga' | 'tcc' | undefined,
      flags.id,
    );
    await handlers[familyOf(found.protocol)](flags, found);
  };
}

const withLog = fromLog({ commit: recoverCommit, branch: recoverBranch });

const recover: Readonly<Record<DbFamily, (flags: RecoverFlags) => Promise<void>>> = {
  commit: withLog,
  branch: withLog,
  outbox: recoverOutbox,
};

export function registerRecoverCommand(program: Command): void {
  program
    .command('recover')
    .description(
      'resolve everything a killed coordinator left in doubt, from its log (outbox: relay what is unsent, consume until drained)',
    )
    .requiredOption('--db <url>', 'the databases, in the same order as for bench', collect)
    .option('--log <path|url>', 'the log bench used (never created: a missing log is an error)')
    .addOption(
      new Option(
        '--protocol <name>',
        "the protocol bench ran; default: read from the databases' tables (outbox) or the log",
      ).choices(['2pc', 'saga', 'tcc', 'outbox']),
    )
    .option('--nats <url>', 'outbox: the NATS server (default nats://127.0.0.1:4222)')
    .option('--stream <name>', 'outbox: the stream bench used (default DTX_BENCH)')
    .option('--id <coordinator-id>', 'refuse the log unless it belongs to this coordinator id')
    .option('--json', 'print one JSON object on stdout')
    .action(async (flags: RecoverFlags) => {
      let protocol = flags.protocol;
      if (protocol === undefined && flags.log === undefined) {
        const { isOutboxBench } = await import('../bench-outbox.ts');
        if (await isOutboxBench(flags.db)) protocol = 'outbox';
      }
      // Without --protocol, a log-keeping family: fromLog reads which one from the log.
      await recover[dbFamilyOf(protocol ?? '2pc')](flags);
    });
}
