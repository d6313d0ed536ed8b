// `dtx txn`: the operator's commands on the transactions a dtx log knows —
// list, show, retry, and (with an explicit --force and a --reason, both
// recorded in the log) resolve or abandon. For 2PC, sagas and TCC alike.
//
// `list` and `show` only read: they open the log exclusively (so they fail
// with DTX_LOG_BUSY, naming the holder, while a coordinator runs on it — that
// coordinator answers the same questions through its own API), compute the
// views offline from the records (`twoPcTxnViews`, `sagaTxnViews`,
// `tccTxnViews`) and change nothing. `retry`, `resolve` and `abandon` start
// the log's coordinator or orchestrator on the databases given with --db
// (which runs recovery first, exactly as `dtx recover` does), act through its
// operator API — which refuses anything that would contradict a durable
// decision — and print the transaction as the log then shows it.
//
// `--log` means what it means for `dtx bench` and `dtx recover`; the log's
// protocol is read from the log itself (docs/operations.md).

import { type Command, InvalidArgumentError, Option } from 'commander';
import { DtxError } from '../../errors.ts';
import { twoPcRecordCodec } from '../../protocol/twopc/codec.ts';
import { sagaTxnViews, tccTxnViews } from '../../runtime/branch/views.ts';
import { type TimedRecord, timedRecords } from '../../runtime/log/timed.ts';
import { type TxnDetail, type TxnState, txnStates } from '../../runtime/operator.ts';
import { decodeSagaRecord } from '../../runtime/saga/orchestrator.ts';
import { decodeTccRecord } from '../../runtime/tcc/orchestrator.ts';
import { twoPcTxnViews } from '../../runtime/twopc-views.ts';
import type { BenchLogLocation, LogProtocol } from '../bench.ts';
import { writeJson } from '../options.ts';

/** What `--outcome` may say, per protocol (the outcomes each operator API takes). */
export const resolveOutcomes: Readonly<Record<LogProtocol, readonly string[]>> = {
  '2pc': ['committed', 'aborted'],
  saga: ['completed', 'compensated'],
  tcc: ['confirmed', 'cancelled'],
};

/** How long `retry` waits for the transaction to leave its state before printing it. */
const retryWatchMs = 5_000;
/** How long an action's start-up recovery waits for re-driven commits (a dead participant must not stall it). */
const actionRecoveryWaitMs = 5_000;

interface LogFlags {
  log?: string;
  protocol?: LogProtocol;
  id?: string;
  json?: boolean;
}

interface ActionFlags extends LogFlags {
  db: string[];
  force?: boolean;
  reason?: string;
  outcome?: string;
}

/** Every transaction the log holds, computed from its records; the log is opened, read and closed. */
async function readLog(flags: LogFlags): Promise<{ protocol: LogProtocol; views: TxnDetail[] }> {
  const { findBenchLog } = await import('../bench.ts');
  const found = await findBenchLog(flags.log, flags.protocol, flags.id);
  const views = await readViews(found.protocol, found.where);
  return { protocol: found.protocol, views };
}

async function readViews(protocol: LogProtocol, where: BenchLogLocation): Promise<TxnDetail[]> {
  switch (protocol) {
    case '2pc':
      return viewsOf(where, protocol, (v) => twoPcRecordCodec.check(v), twoPcTxnViews);
    case 'saga':
      return viewsOf(where, protocol, decodeSagaRecord, sagaTxnViews);
    case 'tcc':
      return viewsOf(where, protocol, decodeTccRecord, tccTxnViews);
  }
}

/** Opens the log with its protocol's decoder, reads every record with its time, and closes it. */
async function viewsOf<R>(
  where: BenchLogLocation,
  protocol: LogProtocol,
  decode: (value: unknown) => R,
  views: (records: TimedRecord<R>[]) => TxnDetail[],
): Promise<TxnDetail[]> {
  // Loaded here, not at start-up: `dtx sim` and `dtx --help` need none of it.
  const { openBenchLog } = await import('../bench.ts');
  const log = await openBenchLog(where, protocol, decode);
  try {
    return views(await timedRecords(log));
  } finally {
    await log.close();
  }
}

function find(views: readonly TxnDetail[], id: string, protocol: LogProtocol): TxnDetail {
  const view = views.find((v) => v.id === id);
  if (view === undefined) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `the ${protocol} log has no transaction ${JSON.stringify(id)}` +
        (protocol === '2pc' ? ' (under presumed abort an aborted transaction leaves no record)' : ''),
    );
  }
  return view;
}

function pad(text: string, width: number): string {
  return text.length >= width ? `${text} ` : text.padEnd(width + 1);
}

function formatList(views: readonly TxnDetail[]): string {
  if (views.length === 0) return 'no transactions\n';
  const idWidth = Math.max(2, ...views.map((v) => v.id.length));
  const lines = [`${pad('id', idWidth)}${pad('state', 12)}${pad('started', 24)}reason`];
  for (const v of views) {
    lines.push(`${pad(v.id, idWidth)}${pad(v.state, 12)}${pad(v.startedAt ?? '-', 24)}${v.reason ?? ''}`);
  }
  return `${lines.join('\n')}\n`;
}

function formatDetail(view: TxnDetail): string {
  const lines = [
    `${view.id} (${view.protocol}): ${view.state}${view.reason === null ? '' : ` — ${view.reason}`}`,
    `started: ${view.startedAt ?? 'unknown'}`,
  ];
  const branches = Object.entries(view.branches);
  if (branches.length > 0) {
    lines.push('branches:');
    for (const [name, state] of branches) lines.push(`  ${name}: ${state}`);
  }
  lines.push('records:');
  for (const r of view.records) lines.push(`  ${r.at ?? '-'}  ${JSON.stringify(r.record)}`);
  return `${lines.join('\n')}\n`;
}

/** An operator's forced action needs `--force` and a non-empty `--reason`: both are recorded. */
function forced(flags: ActionFlags, action: string): { force: true; reason: string } {
  if (flags.force !== true) {
    throw new InvalidArgumentError(
      `${action} changes how a transaction ends: give --force and --reason TEXT`,
    );
  }
  const reason = flags.reason?.trim() ?? '';
  if (reason === '')
    throw new InvalidArgumentError(`${action} needs --reason TEXT (it is recorded in the log)`);
  return { force: true, reason };
}

/**
 * Starts the log's coordinator or orchestrator on `--db`, runs `act` through
 * its operator API, and returns the transaction as the log shows it after.
 */
async function act(
  id: string,
  flags: ActionFlags,
  action: (protocol: LogProtocol) => {
    twoPc: (c: import('../../runtime/coordinator.ts').Coordinator) => Promise<unknown>;
    branch: (o: import('../bench-saga.ts').BenchOrchestratorActions) => Promise<unknown>;
  },
): Promise<{ protocol: LogProtocol; view: TxnDetail; result: unknown }> {
  const { findBenchLog } = await import('../bench.ts');
  const found = await findBenchLog(flags.log, flags.protocol, flags.id);
  // Refuse an unknown id before anything is started or touched.
  find(await readViews(found.protocol, found.where), id, found.protocol);
  const run = action(found.protocol);
  let result: unknown;
  if (found.protocol === '2pc') {
    const { withBenchCoordinator } = await import('../bench.ts');
    result = await withBenchCoordinator(
      { dbs: flags.db, where: found.where, recoveryWaitMs: actionRecoveryWaitMs },
      (c) => run.twoPc(c),
    );
  } else {
    const { withBenchOrchestrator } = await import('../bench-saga.ts');
    result = await withBenchOrchestrator(
      { dbs: flags.db, protocol: found.protocol, where: found.where },
      (o) => run.branch(o),
    );
  }
  const view = find(await readViews(found.protocol, found.where), id, found.protocol);
  return { protocol: found.protocol, view, result };
}

/** Waits up to `ms` for `view(id)` to leave `state`. */
async function watch(read: () => Promise<TxnDetail | undefined>, state: TxnState, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const now = await read();
    if (now === undefined || now.state !== state) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

function printActed(flags: ActionFlags, what: string, acted: { view: TxnDetail; result: unknown }): void {
  if (flags.json) writeJson({ action: what, result: acted.result ?? null, transaction: acted.view });
  else process.stdout.write(formatDetail(acted.view));
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

function logOptions(command: Command): Command {
  return command
    .option('--log <path|url>', 'the log (as for dtx bench and dtx recover); never created')
    .addOption(
      new Option(
        '--protocol <name>',
        'confirm the log holds this protocol (default: read from the log)',
      ).choices(['2pc', 'saga', 'tcc']),
    )
    .option('--id <coordinator-id>', 'refuse the log unless it belongs to this coordinator id')
    .option('--json', 'print one JSON object on stdout');
}

function actionOptions(command: Command): Command {
  return logOptions(command).requiredOption(
    '--db <url>',
    'the databases, in the same order as for bench (the coordinator recovers on them first)',
    collect,
  );
}

export function registerTxnCommand(program: Command): void {
  const txn = program
    .command('txn')
    .description('operate on the transactions of a dtx log: list, show, retry, resolve, abandon');
  registerReads(txn);
  registerRetry(txn);
  registerResolve(txn);
  registerAbandon(txn);
}

/** `list` and `show`: read the log, change nothing. */
function registerReads(txn: Command): void {
  logOptions(
    txn
      .command('list')
      .description('the transactions the log knows, with their state (reads the log only)')
      .addOption(new Option('--state <state>', 'only those in this state').choices([...txnStates])),
  ).action(async (flags: LogFlags & { state?: TxnState }) => {
    const { views } = await readLog(flags);
    const shown = flags.state === undefined ? views : views.filter((v) => v.state === flags.state);
    if (flags.json) writeJson(shown.map(({ records: _records, ...summary }) => summary));
    else process.stdout.write(formatList(shown));
  });

  logOptions(
    txn.command('show').description('one transaction: its state, branches and every record with its time'),
  )
    .argument('<id>', 'the transaction id')
    .action(async (id: string, flags: LogFlags) => {
      const { protocol, views } = await readLog(flags);
      const view = find(views, id, protocol);
      if (flags.json) writeJson(view);
      else process.stdout.write(formatDetail(view));
    });
}

/** `retry`: now, not at the next back-off. */
function registerRetry(txn: Command): void {
  actionOptions(
    txn
      .command('retry')
      .description('retry now what waits for its next attempt (phase two, a stuck branch call)'),
  )
    .argument('<id>', 'the transaction id')
    .action(async (id: string, flags: ActionFlags) => {
      let before: TxnState | undefined;
      const acted = await act(id, flags, () => ({
        twoPc: async (c) => {
          before = (await c.show(id)).state;
          if (before !== 'in-doubt') return { state: before };
          await c.retry(id);
          await watch(
            async () => (await c.list()).find((s) => s.id === id) as TxnDetail,
            'in-doubt',
            retryWatchMs,
          );
          return null;
        },
        branch: async (o) => {
          await o.retry(id);
          // Let the retried call run before the orchestrator closes.
          await new Promise((r) => setTimeout(r, retryWatchMs / 5));
          return null;
        },
      }));
      printActed(flags, 'retry', acted);
    });
}

/** `resolve`: an outcome the operator states, never one that contradicts the log. */
function registerResolve(txn: Command): void {
  actionOptions(
    txn
      .command('resolve')
      .description(
        'end a transaction with an outcome you state (with --force and --reason, recorded in the log)',
      )
      .requiredOption(
        '--outcome <outcome>',
        '2pc: committed|aborted; saga: completed|compensated; tcc: confirmed|cancelled',
      )
      .option('--force', 'yes, end it this way')
      .option('--reason <text>', 'why (recorded in the log)'),
  )
    .argument('<id>', 'the transaction id')
    .action(async (id: string, flags: ActionFlags) => {
      const options = forced(flags, 'resolve');
      const acted = await act(id, flags, (protocol) => {
        const outcome = flags.outcome ?? '';
        if (!resolveOutcomes[protocol].includes(outcome)) {
          throw new InvalidArgumentError(
            `--outcome for a ${protocol} transaction is one of ${resolveOutcomes[protocol].join(', ')}, got ${JSON.stringify(outcome)}`,
          );
        }
        return {
          twoPc: (c) => c.resolve(id, { ...options, outcome: outcome as 'committed' | 'aborted' }),
          branch: (o) => o.resolve(id, { ...options, outcome }),
        };
      });
      printActed(flags, 'resolve', acted);
    });
}

/** `abandon`: stop retrying; what is left is the operator's. */
function registerAbandon(txn: Command): void {
  actionOptions(
    txn
      .command('abandon')
      .description('stop retrying a transaction and leave what is left to you (with --force and --reason)')
      .option('--force', 'yes, stop it')
      .option('--reason <text>', 'why (recorded in the log)'),
  )
    .argument('<id>', 'the transaction id')
    .action(async (id: string, flags: ActionFlags) => {
      const options = forced(flags, 'abandon');
      const acted = await act(id, flags, () => ({
        twoPc: (c) => c.abandon(id, options),
        branch: (o) => o.abandon(id, options),
      }));
      printActed(flags, 'abandon', acted);
    });
}
