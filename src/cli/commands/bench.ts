// `dtx bench`: transfers across real databases, through the commit family
// (naive commit or 2PC: ../bench.ts) or the branch family (saga or TCC:
// ../bench-saga.ts), chosen once by the protocol's family.

import { type Command, InvalidArgumentError, Option } from 'commander';
import type { AuditReads } from '../audit.ts';
import type { BenchLoad } from '../bench.ts';
import { type CrashPoint, crashPoints } from '../crash-points.ts';
import {
  type DbFamily,
  dbFamilyOf,
  type OutboxPart,
  outboxBenchStreamDefault,
  outboxParts,
} from '../families.ts';
import { printHeuristics } from '../format.ts';
import { collect, int, num, writeJson } from '../options.ts';

export interface BenchFlags {
  db: string[];
  protocol: 'naive' | '2pc' | 'paxos-commit' | 'saga' | 'tcc' | 'outbox';
  acceptors?: string[];
  faults?: number;
  faster?: boolean;
  listen?: string;
  hostAcceptor?: string;
  log?: string;
  refuseShare?: number;
  checkpointEvery?: number;
  accounts: number;
  concurrency: number;
  duration?: number;
  txns?: number;
  init?: boolean;
  lease?: string;
  leaseTtlMs: number;
  acknowledge: 'committed' | 'durable';
  crashAt?: CrashPoint;
  crashAfter?: number;
  orphanGraceMs?: number;
  orphanSweepMs?: number;
  auditors: number;
  reads: AuditReads;
  fence?: string;
  workload: 'transfer' | 'append';
  history?: string;
  keys?: number;
  nats?: string;
  stream?: string;
  abortShare?: number;
  part?: OutboxPart[];
  json?: boolean;
}

/** `--reads`: the modes of ../audit.ts, listed here so that `dtx --help` loads no database code. */
const auditReadChoices: readonly AuditReads[] = ['plain', 'serializable', 'locking', 'snapshot'];

/** The flags both families take, as the bench modules name them. */
function benchLoad(flags: BenchFlags): BenchLoad {
  return {
    dbs: flags.db,
    log: flags.log,
    accounts: flags.accounts,
    concurrency: flags.concurrency,
    durationS: flags.duration,
    txns: flags.txns,
    init: flags.init === true,
    onStart: () => process.stderr.write('dtx bench: transfers started\n'),
  };
}

/** `--lease`, `--refuse-share`, ...: the flags of the other family are usage errors. */
function refuseFlags(flags: BenchFlags, keys: readonly (keyof BenchFlags)[], why: string): void {
  for (const key of keys) {
    const name = `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;
    if (flags[key] !== undefined) throw new InvalidArgumentError(`${name} ${why}`);
  }
}

/** The outbox's flags, refused by the other families. */
const outboxOnly: readonly (keyof BenchFlags)[] = ['nats', 'stream', 'abortShare', 'part'];
/** Paxos Commit's flags, refused by every other protocol. */
const paxosOnly: readonly (keyof BenchFlags)[] = ['acceptors', 'faults', 'faster', 'listen', 'hostAcceptor'];

/** `dtx bench --workload append` (../bench-append.ts): a list-append history, recorded and checked. */
async function benchAppend(flags: BenchFlags): Promise<void> {
  refuseFlags(
    flags,
    ['lease', 'crashAt', 'crashAfter', 'orphanGraceMs', 'orphanSweepMs', 'fence'],
    'does not apply to --workload append',
  );
  const { runAppendBench, appendLine } = await import('../bench-append.ts');
  const report = await runAppendBench({
    dbs: flags.db,
    log: flags.log,
    concurrency: flags.concurrency,
    auditors: flags.auditors,
    reads: flags.reads,
    keys: flags.keys ?? 4,
    durationS: flags.duration,
    txns: flags.txns,
    init: flags.init === true,
    history: flags.history,
    onStart: () => process.stderr.write('dtx bench: append transactions started\n'),
  });
  if (flags.json) writeJson(report);
  else process.stdout.write(`${appendLine(report)}\n`);
}

/** `dtx bench --protocol naive|2pc|paxos-commit` (../bench.ts). */
async function benchCommit(flags: BenchFlags): Promise<void> {
  refuseFlags(flags, ['refuseShare', 'checkpointEvery'], 'applies to --protocol saga or tcc');
  refuseFlags(flags, outboxOnly, 'applies to --protocol outbox');
  if (flags.protocol !== 'paxos-commit') refuseFlags(flags, paxosOnly, 'applies to --protocol paxos-commit');
  if (flags.workload === 'append') return benchAppend(flags);
  refuseFlags(flags, ['history', 'keys'], 'applies to --workload append');
  const { runBench } = await import('../bench.ts');
  const report = await runBench({
    ...benchLoad(flags),
    protocol: flags.protocol as 'naive' | '2pc' | 'paxos-commit',
    ...(flags.acceptors === undefined ? {} : { acceptors: flags.acceptors }),
    ...(flags.faults === undefined ? {} : { faults: flags.faults }),
    ...(flags.faster === undefined ? {} : { faster: flags.faster }),
    ...(flags.listen === undefined ? {} : { listen: flags.listen }),
    ...(flags.hostAcceptor === undefined ? {} : { hostAcceptor: flags.hostAcceptor }),
    acknowledge: flags.acknowledge,
    crashAt: flags.crashAt,
    crashAfter: flags.crashAfter,
    ...(flags.orphanGraceMs === undefined ? {} : { orphanGraceMs: flags.orphanGraceMs }),
    ...(flags.orphanSweepMs === undefined ? {} : { orphanSweepIntervalMs: flags.orphanSweepMs }),
    auditors: flags.auditors,
    reads: flags.reads,
    ...(flags.fence === undefined ? {} : { fence: flags.fence }),
    progress: (line) => process.stderr.write(`dtx bench: ${line}\n`),
    onRecovered: (r) => {
      if (r.recommitted.length + r.rolledBack.length > 0) {
        process.stderr.write(
          `dtx bench: recovered ${r.recommitted.length} commit(s), rolled back ${r.rolledBack.length} branch(es)\n`,
        );
      }
    },
    ...(flags.lease ? { lease: { name: flags.lease, ttlMs: flags.leaseTtlMs } } : {}),
  });
  if (flags.json) writeJson(report);
  else {
    process.stdout.write(
      `${report.protocol}: ${report.committed} committed, ${report.aborted} aborted in ${report.txns} transfers ` +
        `at concurrency ${report.concurrency}: ${report.tps} tps, latency p50 ${report.latencyMs.p50} ms, ` +
        `p99 ${report.latencyMs.p99} ms, max ${report.latencyMs.max} ms\n`,
    );
    if (report.audit !== undefined) {
      const { auditLine } = await import('../audit.ts');
      process.stdout.write(`${auditLine(report.audit)}\n`);
    }
    if (report.costs !== undefined) {
      const { paxosCostLines } = await import('../paxos-costs.ts');
      process.stdout.write(`${paxosCostLines(report.costs).join('\n')}\n`);
    }
    printHeuristics(report.heuristics);
  }
  // A branch that contradicts its decision needs a human: never exit 0 over it.
  if (report.heuristics.length > 0) process.exitCode = 1;
}

/** `dtx bench --protocol saga|tcc` (../bench-saga.ts). */
async function benchBranch(flags: BenchFlags): Promise<void> {
  refuseFlags(flags, ['lease', 'crashAt', 'fence', 'history', 'keys'], `does not apply to ${flags.protocol}`);
  refuseFlags(flags, outboxOnly, 'applies to --protocol outbox');
  refuseFlags(flags, paxosOnly, 'applies to --protocol paxos-commit');
  if (flags.auditors > 0) throw new InvalidArgumentError(`--auditors does not apply to ${flags.protocol}`);
  const { runSagaBench } = await import('../bench-saga.ts');
  const report = await runSagaBench({
    protocol: flags.protocol as 'saga' | 'tcc',
    ...benchLoad(flags),
    refuseShare: flags.refuseShare,
    checkpointEvery: flags.checkpointEvery,
    onRecovered: (r) => {
      const n = r.completed.length + r.compensated.length + r.stuck.length;
      if (n > 0) {
        process.stderr.write(
          `dtx bench: recovered ${n} unfinished transfer(s): ${r.completed.length} completed, ` +
            `${r.compensated.length} compensated, ${r.stuck.length} stuck\n`,
        );
      }
    },
  });
  if (flags.json) writeJson(report);
  else {
    process.stdout.write(
      `${report.protocol}: ${report.committed} committed, ${report.compensated} compensated, ${report.stuck} stuck ` +
        `in ${report.txns} transfers at concurrency ${report.concurrency}: ${report.tps} tps, ` +
        `latency p50 ${report.latencyMs.p50} ms, p99 ${report.latencyMs.p99} ms, max ${report.latencyMs.max} ms\n`,
    );
  }
}

/** `dtx bench --protocol outbox` (../bench-outbox.ts). */
async function benchOutbox(flags: BenchFlags): Promise<void> {
  refuseFlags(
    flags,
    [
      'log',
      'refuseShare',
      'checkpointEvery',
      'lease',
      'crashAt',
      'crashAfter',
      'orphanGraceMs',
      'orphanSweepMs',
      'fence',
      'history',
      'keys',
      ...paxosOnly,
    ],
    'does not apply to outbox',
  );
  if (flags.auditors > 0) throw new InvalidArgumentError('--auditors does not apply to outbox');
  const { runOutboxBench } = await import('../bench-outbox.ts');
  const report = await runOutboxBench({
    dbs: flags.db,
    nats: flags.nats ?? 'nats://127.0.0.1:4222',
    stream: flags.stream ?? outboxBenchStreamDefault,
    accounts: flags.accounts,
    concurrency: flags.concurrency,
    durationS: flags.duration,
    txns: flags.txns,
    init: flags.init === true,
    abortShare: flags.abortShare ?? 0.05,
    parts: flags.part ?? [],
    progress: (line) => process.stderr.write(`dtx bench: ${line}\n`),
  });
  if (flags.json) writeJson(report);
  else if (report.txns > 0) {
    const l = report.latencyMs;
    process.stdout.write(
      `outbox: ${report.committed} committed, ${report.aborted} rolled back, ${report.applied} credited ` +
        `in ${report.txns} transfers at concurrency ${report.concurrency}: ${report.tps} tps` +
        (l === undefined ? '\n' : `, end-to-end latency p50 ${l.p50} ms, p99 ${l.p99} ms, max ${l.max} ms\n`),
    );
  }
}

const bench: Readonly<Record<DbFamily, (flags: BenchFlags) => Promise<void>>> = {
  commit: benchCommit,
  branch: benchBranch,
  outbox: benchOutbox,
};

export function registerBenchCommand(program: Command): void {
  program
    .command('bench')
    .description(
      'transfers across real databases: debit on the first, credit on the second, audit on the third',
    )
    .requiredOption('--db <url>', 'postgres://..., mysql://... or sqlite:PATH (give two or three)', collect)
    .addOption(
      new Option(
        '--protocol <name>',
        'commit protocol (saga, tcc and outbox: two databases; outbox: producer, then consumer)',
      )
        .choices(['naive', '2pc', 'paxos-commit', 'saga', 'tcc', 'outbox'])
        .default('2pc'),
    )
    .option(
      '--acceptors <list>',
      'paxos-commit: the 2F+1 acceptors (dtx acceptor), host:port,host:port,... in the same order everywhere',
      (v: string) => v.split(',').map((a) => a.trim()),
    )
    .option('--faults <f>', 'paxos-commit: acceptor failures tolerated, F (default 1)', int('--faults', 0, 5))
    .option('--faster', 'paxos-commit: Faster Paxos Commit (the acceptors run with --faster too)')
    .option(
      '--listen <host:port>',
      "paxos-commit: where the leader listens for the acceptors' replies (default 127.0.0.1 and a free port)",
    )
    .option(
      '--host-acceptor <dir>',
      'paxos-commit: host one of the acceptors in this process, its data in DIR; --listen must be one of --acceptors',
    )
    .option(
      '--log <path|url>',
      'coordinator log: a SQLite file path or postgres://... (2pc; saga/tcc use PATH.saga.sqlite / PATH.tcc.sqlite)',
    )
    .option(
      '--refuse-share <p>',
      'saga/tcc: share of transfers whose credit is refused, to exercise compensation (default 0.05)',
      num('--refuse-share', 0, 1),
    )
    .option(
      '--checkpoint-every <n>',
      'saga/tcc: checkpoint the orchestrator log every N appends at the least (default 10000)',
      int('--checkpoint-every', 1, 100_000_000),
    )
    .option('--accounts <n>', 'accounts per database (with --init)', int('--accounts', 1, 10_000_000), 1000)
    .option('--concurrency <c>', 'transfers in flight at once', int('--concurrency', 1, 10_000), 8)
    .option('--duration <s>', 'run for this many seconds', num('--duration', 0, 86_400))
    .option('--txns <n>', 'run this many transfers', int('--txns', 1, 100_000_000))
    .option(
      '--init',
      'create the log (when missing), the dtx_bench tables and accounts first (drops existing tables); ' +
        'without it, the log and the databases must exist',
    )
    .option(
      '--lease <name>',
      "standby takeover: wait for the postgres:// log's owner lease instead of failing while another runs",
    )
    .option(
      '--lease-ttl-ms <ms>',
      "how long the log's owner lease lasts without renewal (postgres:// log)",
      int('--lease-ttl-ms', 100, 3_600_000),
      3000,
    )
    .addOption(
      new Option(
        '--acknowledge <when>',
        'answer once every branch committed, or once the decision is durable',
      )
        .choices(['committed', 'durable'])
        .default('committed'),
    )
    .addOption(
      new Option('--crash-at <point>', 'crash tests: SIGKILL this process at a point of a transfer')
        .choices(crashPoints)
        .hideHelp(),
    )
    .addOption(
      new Option('--crash-after <n>', 'crash tests: the transfer whose point kills the process')
        .argParser(int('--crash-after', 1))
        .hideHelp(),
    )
    .addOption(
      new Option(
        '--orphan-grace-ms <ms>',
        'how old a prepared branch of this coordinator must be before the sweep rolls it back (default 30000)',
      )
        .argParser(int('--orphan-grace-ms', 0, 86_400_000))
        .hideHelp(),
    )
    .addOption(
      new Option('--orphan-sweep-ms <ms>', 'how often the orphan sweep runs (default 5000; 0: never)')
        .argParser(int('--orphan-sweep-ms', 0, 86_400_000))
        .hideHelp(),
    )
    .option(
      '--auditors <n>',
      'auditors summing the first two databases while transfers run (reports audits and inconsistentAudits)',
      int('--auditors', 0, 64),
      0,
    )
    .addOption(
      new Option('--reads <mode>', "the auditors' reads (docs/isolation.md)")
        .choices(auditReadChoices)
        .default('plain'),
    )
    .option(
      '--fence <url>',
      'postgres:// database of the commit fence shared with other processes (dtx verify --live --fence)',
    )
    .addOption(
      new Option(
        '--workload <name>',
        'transfer: the transfers above; append: list-append transactions (2pc) recorded as a history and checked (docs/isolation.md)',
      )
        .choices(['transfer', 'append'])
        .default('transfer'),
    )
    .option(
      '--history <file>',
      'append: write the history here (Jepsen JSON, one op per line; dtx check-history reads it)',
    )
    .option('--keys <n>', 'append: keys per database (with --init; default 4)', int('--keys', 1, 100_000))
    .option('--nats <url>', 'outbox: the NATS server with JetStream (default nats://127.0.0.1:4222)')
    .option(
      '--stream <name>',
      `outbox: the JetStream stream, taking <name>.> (default ${outboxBenchStreamDefault}; --init replaces it)`,
    )
    .option(
      '--abort-share <p>',
      'outbox: share of transfers rolled back after writing their event (default 0.05)',
      num('--abort-share', 0, 0.99),
    )
    .addOption(
      new Option('--part <part>', 'kill tests: run only this part here (repeatable); default all three')
        .choices(outboxParts)
        .argParser((v: string, prev: OutboxPart[] = []) => {
          if (!(outboxParts as readonly string[]).includes(v))
            throw new InvalidArgumentError(`--part must be one of ${outboxParts.join(', ')}`);
          return [...prev, v as OutboxPart];
        })
        .hideHelp(),
    )
    .option('--json', 'print one JSON object on stdout')
    .action(async (flags: BenchFlags) => {
      if (flags.duration === undefined && flags.txns === undefined) {
        throw new InvalidArgumentError('give --duration S or --txns N');
      }
      if (flags.workload === 'append' && flags.protocol !== '2pc') {
        throw new InvalidArgumentError(`--workload append runs --protocol 2pc, not ${flags.protocol}`);
      }
      await bench[dbFamilyOf(flags.protocol)](flags);
    });
}
