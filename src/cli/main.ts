// The `dtx` command. Its flags and JSON shapes are a contract other tools rely
// on: with --json, stdout carries exactly one JSON object and everything else
// (progress, logs) goes to stderr. Exit codes: 0 the run completed (for swarm:
// and found nothing), 1 a check or the run failed, 2 the command line was wrong.
// A failure prints `error: CODE: message` (and `fix: ...` when there is one)
// on stderr, never a stack unless --verbose or DEBUG=dtx (./errors.ts).

import { writeFileSync } from 'node:fs';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { renderTraceHtml, renderTraceSvg, traceFileFor } from '../render/trace.ts';
import type { SagaSimRequest } from '../sim/branch/run.ts';
import {
  isProtocolName,
  isSagaProtocolName,
  type ProtocolOptions,
  protocolNames,
  sagaProtocolNames,
} from '../sim/protocols.ts';
import { runSim, type SimRequest } from '../sim/run.ts';
import { runSwarm, simCommand } from '../sim/swarm.ts';
import { workloadNames } from '../sim/workloads.ts';
import type { HeuristicView } from './bench.ts';
import type { RealDemoRound } from './demo-real.ts';
import {
  debugEnabled,
  describeFailure,
  formatFailure,
  formatStack,
  redactStream,
  secretsIn,
} from './errors.ts';
import { registerTxnCommand } from './txn.ts';

// Commands load their modules when they run, so that `dtx --help` and the
// simulator do not pay for the database drivers and adapters at start-up.
const crashPoints = ['prepared-some', 'prepared-all', 'decided', 'between-commits'] as const;

import { formatSimReport, progressBar } from './format.ts';

function int(name: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (value: string): number => {
    if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError(`${name} must be an integer, got "${value}"`);
    const n = Number(value);
    if (n < min || n > max)
      throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

function num(name: string, min: number, max: number) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n))
      throw new InvalidArgumentError(`${name} must be a number, got "${value}"`);
    if (n < min || n > max)
      throw new InvalidArgumentError(`${name} must be between ${min} and ${max}, got ${n}`);
    return n;
  };
}

function rates(value: string): number[] {
  const parse = num('each fail rate', 0, 1);
  return value.split(',').map((v) => parse(v.trim()));
}

function writeJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

interface SimFlags {
  protocol: string;
  workload?: 'toy' | 'bank' | 'booking';
  lateDupMs?: number;
  shortShare?: number;
  seats?: number;
  txns: number;
  seed: number;
  participants?: number;
  concurrency?: number;
  thinkMs?: number;
  failRates?: number[];
  loss?: number;
  dup?: number;
  jitterMs?: number;
  rttMs?: number;
  fsyncMs?: number;
  partitions?: boolean;
  crashRate?: number;
  downtimeMeanMs?: number;
  scenario?: string;
  downtimeMs?: number;
  faults?: number;
  faster?: boolean;
  colocated?: boolean;
  trace?: string;
  traceTxn?: string;
  json?: boolean;
}

interface SwarmFlags {
  protocol: string;
  seeds: number;
  from: number;
  faults?: number;
  faster?: boolean;
  colocated?: boolean;
  json?: boolean;
}

function protocolOptions(flags: {
  protocol: string;
  faults?: number;
  faster?: boolean;
  colocated?: boolean;
}) {
  const o: ProtocolOptions = {};
  if (flags.faults !== undefined) o.faults = flags.faults;
  if (flags.faster) o.faster = true;
  if (flags.colocated) o.colocated = true;
  if (Object.keys(o).length > 0 && flags.protocol !== 'paxos-commit') {
    throw new InvalidArgumentError('--faults, --faster and --colocated are Paxos Commit options');
  }
  return o;
}

const commonSettingNames = [
  'concurrency',
  'thinkMs',
  'loss',
  'dup',
  'jitterMs',
  'rttMs',
  'fsyncMs',
  'crashRate',
  'downtimeMeanMs',
] as const;

/** The network and fault settings both simulators take, for the flags that were given. */
function commonSettings(
  flags: SimFlags,
): Partial<Pick<SimRequest, (typeof commonSettingNames)[number] | 'partitions'>> {
  const out: Partial<Pick<SimRequest, (typeof commonSettingNames)[number] | 'partitions'>> = {};
  for (const name of commonSettingNames) if (flags[name] !== undefined) out[name] = flags[name];
  if (flags.partitions) out.partitions = true;
  return out;
}

/** The saga world's request (saga, tcc on the booking workload). */
function sagaRequest(flags: SimFlags): SagaSimRequest {
  if (flags.workload !== undefined && flags.workload !== 'booking') {
    throw new InvalidArgumentError(`${flags.protocol} runs the booking workload, not ${flags.workload}`);
  }
  for (const flag of ['participants', 'failRates', 'faults', 'faster', 'colocated', 'trace'] as const) {
    if (flags[flag] !== undefined)
      throw new InvalidArgumentError(`--${flag} does not apply to ${flags.protocol}`);
  }
  const req: SagaSimRequest = {
    protocol: flags.protocol as 'saga' | 'tcc',
    workload: 'booking',
    txns: flags.txns,
    seed: flags.seed,
  };
  Object.assign(req, commonSettings(flags));
  if (flags.lateDupMs !== undefined) req.lateDupMs = flags.lateDupMs;
  const booking: NonNullable<SagaSimRequest['booking']> = {};
  if (flags.shortShare !== undefined) booking.shortShare = flags.shortShare;
  if (flags.seats !== undefined) booking.seats = flags.seats;
  if (Object.keys(booking).length > 0) req.booking = booking;
  if (flags.scenario === 'coordinator-crash') {
    req.scenario = { kind: 'coordinator-crash', downtimeMs: flags.downtimeMs ?? 30_000 };
  } else if (flags.downtimeMs !== undefined) {
    throw new InvalidArgumentError('--downtime-ms goes with --scenario coordinator-crash');
  }
  return req;
}

function simRequest(flags: SimFlags): SimRequest {
  if (!isProtocolName(flags.protocol)) throw new InvalidArgumentError(`unknown protocol "${flags.protocol}"`);
  if ((flags.workload ?? 'toy') === 'toy' && flags.participants !== undefined && flags.participants !== 3) {
    throw new InvalidArgumentError('the toy workload always has three participants (A, B, C)');
  }
  if (flags.scenario === undefined && flags.downtimeMs !== undefined) {
    throw new InvalidArgumentError('--downtime-ms goes with --scenario coordinator-crash');
  }
  if (flags.workload === 'booking')
    throw new InvalidArgumentError('the booking workload is for saga and tcc');
  const req: SimRequest = {
    protocol: flags.protocol,
    workload: flags.workload ?? 'toy',
    txns: flags.txns,
    seed: flags.seed,
  };
  const options = protocolOptions(flags);
  if (Object.keys(options).length > 0) req.protocolOptions = options;
  if (flags.participants !== undefined) req.participants = flags.participants;
  Object.assign(req, commonSettings(flags));
  if (flags.failRates !== undefined) req.failRates = flags.failRates;
  if (flags.scenario === 'coordinator-crash') {
    req.scenario = { kind: 'coordinator-crash', downtimeMs: flags.downtimeMs ?? 30_000 };
  }
  return req;
}

export function buildProgram(): Command {
  const program = new Command('dtx')
    .description('distributed transactions for TypeScript: protocols, a deterministic simulator, and tools')
    .version('0.1.0')
    .option('--verbose', 'print the stack trace with an error (also DEBUG=dtx)')
    .exitOverride()
    // Parse errors are printed by main(), in the same shape as every other failure.
    .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: () => undefined });

  program
    .command('sim')
    .description('run one deterministic simulation and check it')
    .addOption(
      new Option('--protocol <name>', 'protocol')
        .choices([...protocolNames, ...sagaProtocolNames])
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--workload <name>', 'workload (default: toy; booking for saga and tcc)').choices([
        ...workloadNames,
        'booking',
      ]),
    )
    .requiredOption('--txns <n>', 'transactions to run', int('--txns', 1, 10_000_000))
    .option('--seed <s>', 'PRNG seed; the same seed gives the same run', int('--seed', 0), 1)
    .option('--participants <n>', 'participants (bank workload)', int('--participants', 2, 64))
    .option('--concurrency <n>', 'clients running transactions at once', int('--concurrency', 1, 1000))
    .option(
      '--think-ms <ms>',
      'mean pause of each client between its transactions (exponential; default 0, back to back)',
      num('--think-ms', 0, 3_600_000),
    )
    .option('--fail-rates <r1,r2,...>', 'per-participant probability that a forced write fails', rates)
    .option('--loss <p>', 'message loss probability', num('--loss', 0, 1))
    .option('--dup <p>', 'message duplication probability', num('--dup', 0, 1))
    .option('--jitter-ms <ms>', 'mean extra message delay (exponential)', num('--jitter-ms', 0, 60_000))
    .option('--rtt-ms <ms>', 'network round trip', num('--rtt-ms', 0, 60_000))
    .option('--fsync-ms <ms>', 'latency of a forced write', num('--fsync-ms', 0, 60_000))
    .option('--partitions', 'partitions (symmetric and one-way) start and heal during the run')
    .option(
      '--crash-rate <p>',
      'probability that a node crashes during any one step',
      num('--crash-rate', 0, 1),
    )
    .option(
      '--downtime-mean-ms <ms>',
      'mean downtime of a crashed node',
      num('--downtime-mean-ms', 0, 3_600_000),
    )
    .addOption(new Option('--scenario <name>', 'a scripted fault').choices(['coordinator-crash']))
    .option(
      '--downtime-ms <ms>',
      'coordinator downtime for --scenario coordinator-crash',
      num('--downtime-ms', 0, 3_600_000),
    )
    .option(
      '--faults <f>',
      'Paxos Commit: acceptor failures tolerated (2F+1 acceptors)',
      int('--faults', 0, 10),
    )
    .option('--faster', 'Paxos Commit: acceptors send phase 2b to the RMs directly')
    .option('--colocated', 'Paxos Commit: the leader runs on the first participant')
    .option(
      '--late-dup-ms <ms>',
      'saga/tcc: mean extra delay of duplicated branch calls',
      num('--late-dup-ms', 0, 3_600_000),
    )
    .option(
      '--short-share <p>',
      'booking: share of wallets that lack the balance',
      num('--short-share', 0, 1),
    )
    .option('--seats <n>', 'booking: seats on sale', int('--seats', 1, 100_000_000))
    .option('--trace <file>', 'draw a space-time diagram of the run (.svg or .html)')
    .option('--trace-txn <id>', 'draw only this transaction (with --trace)')
    .option('--json', 'print one JSON object on stdout')
    .action((flags: SimFlags) => {
      if (isSagaProtocolName(flags.protocol)) {
        const run = runSim(sagaRequest(flags));
        if (flags.json) writeJson(run.report);
        else process.stdout.write(`${JSON.stringify(run.report, null, 2)}\n`);
        return;
      }
      const traceKind = flags.trace === undefined ? null : traceFileFor(flags.trace);
      const req = simRequest(flags);
      if (traceKind !== null) req.trace = true;
      const { report, trace } = runSim(req);
      if (traceKind !== null && trace !== null && flags.trace !== undefined) {
        const options = {
          title: simCommand(req),
          ...(flags.traceTxn !== undefined ? { focusTxn: flags.traceTxn } : {}),
        };
        writeFileSync(
          flags.trace,
          traceKind === 'svg' ? renderTraceSvg(trace, options) : renderTraceHtml(trace, options),
        );
        process.stderr.write(`trace written to ${flags.trace}\n`);
      }
      if (flags.json) writeJson(report);
      else process.stdout.write(formatSimReport(report));
    });

  program
    .command('swarm')
    .description('run many seeds with random faults; stop at the first broken checker')
    .addOption(
      new Option('--protocol <name>', 'protocol')
        .choices([...protocolNames, ...sagaProtocolNames])
        .makeOptionMandatory(),
    )
    .requiredOption('--seeds <n>', 'how many seeds', int('--seeds', 1, 100_000_000))
    .option('--from <s>', 'first seed', int('--from', 0), 1)
    .option(
      '--faults <f>',
      'Paxos Commit: acceptor failures tolerated (2F+1 acceptors)',
      int('--faults', 0, 10),
    )
    .option('--faster', 'Paxos Commit: acceptors send phase 2b to the RMs directly')
    .option('--colocated', 'Paxos Commit: the leader runs on the first participant')
    .option('--json', 'print one JSON object on stdout')
    .action((flags: SwarmFlags) => {
      const bar = process.stderr.isTTY ? progressBar(flags.seeds) : null;
      if (isSagaProtocolName(flags.protocol)) {
        const summary = runSwarm({
          protocol: flags.protocol,
          seeds: flags.seeds,
          from: flags.from,
          onSeed: (done) => bar?.update(done),
        });
        bar?.done();
        const { failure, ...rest } = summary;
        if (failure !== null) {
          process.stderr.write(
            `seed ${failure.seed} failed: ${failure.report.violationCount} violation(s)\nreproduce with:\n  ${failure.command}\n`,
          );
        }
        if (flags.json)
          writeJson({ ...rest, failingSeed: failure?.seed ?? null, reproduce: failure?.command ?? null });
        else {
          process.stdout.write(
            `${rest.protocol}: ${rest.seeds} seed(s), ${rest.violations} violation(s), ` +
              `${rest.undecidedAfterHeal} unfinished after heal, ${rest.stuck} visibly stuck (${rest.wallMs} ms)\n`,
          );
        }
        if (failure !== null) process.exitCode = 1;
        return;
      }
      if (!isProtocolName(flags.protocol))
        throw new InvalidArgumentError(`unknown protocol "${flags.protocol}"`);
      const summary = runSwarm({
        protocol: flags.protocol,
        seeds: flags.seeds,
        from: flags.from,
        protocolOptions: protocolOptions(flags),
        onSeed: (done) => bar?.update(done),
      });
      bar?.done();
      const { failure, ...rest } = summary;
      if (failure !== null) {
        process.stderr.write(
          `seed ${failure.seed} failed: ${failure.report.violationCount} violation(s), ${failure.report.undecided} undecided\n` +
            `reproduce with:\n  ${failure.command}\n`,
        );
      }
      if (flags.json) {
        writeJson({
          ...rest,
          failingSeed: failure?.seed ?? null,
          reproduce: failure?.command ?? null,
          firstViolations: failure?.report.violations.slice(0, 5) ?? [],
        });
      } else {
        process.stdout.write(
          `${rest.protocol}: ${rest.seeds} seed(s), ${rest.violations} violation(s), ` +
            `${rest.undecidedAfterHeal} undecided after heal (${rest.wallMs} ms)\n`,
        );
      }
      if (failure !== null) process.exitCode = 1;
    });

  program
    .command('demo')
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
        const { runDemo } = await import('./demo.ts');
        const sim = runDemo(flags);
        if (!flags.json) process.stdout.write(sim.text);
        let real: RealDemoRound[] = [];
        if (flags.real) {
          if (!flags.json) process.stdout.write('\n');
          const { formatRealDemo, runRealDemo } = await import('./demo-real.ts');
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
        const { runCompare } = await import('../sim/compare.ts');
        const { formatCompareTable } = await import('./compare.ts');
        const { renderCompareSvg } = await import('../render/compare-chart.ts');
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

  const collect = (value: string, previous: string[] = []) => [...previous, value];

  program
    .command('bench')
    .description(
      'transfers across real databases: debit on the first, credit on the second, audit on the third',
    )
    .requiredOption('--db <url>', 'postgres://..., mysql://... or sqlite:PATH (give two or three)', collect)
    .addOption(
      new Option('--protocol <name>', 'commit protocol (saga and tcc: two databases)')
        .choices(['naive', '2pc', 'saga', 'tcc'])
        .default('2pc'),
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
    .option('--json', 'print one JSON object on stdout')
    .action(async (flags) => {
      if (flags.duration === undefined && flags.txns === undefined) {
        throw new InvalidArgumentError('give --duration S or --txns N');
      }
      if (flags.protocol === 'saga' || flags.protocol === 'tcc') {
        await benchSaga(flags);
        return;
      }
      for (const [flag, name] of [
        ['refuseShare', '--refuse-share'],
        ['checkpointEvery', '--checkpoint-every'],
      ] as const) {
        if (flags[flag] !== undefined)
          throw new InvalidArgumentError(`${name} applies to --protocol saga or tcc`);
      }
      const { runBench } = await import('./bench.ts');
      const report = await runBench({
        dbs: flags.db,
        protocol: flags.protocol,
        log: flags.log,
        accounts: flags.accounts,
        concurrency: flags.concurrency,
        durationS: flags.duration,
        txns: flags.txns,
        init: flags.init === true,
        acknowledge: flags.acknowledge,
        crashAt: flags.crashAt,
        crashAfter: flags.crashAfter,
        ...(flags.orphanGraceMs === undefined ? {} : { orphanGraceMs: flags.orphanGraceMs }),
        ...(flags.orphanSweepMs === undefined ? {} : { orphanSweepIntervalMs: flags.orphanSweepMs }),
        onStart: () => process.stderr.write('dtx bench: transfers started\n'),
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
        printHeuristics(report.heuristics);
      }
      // A branch that contradicts its decision needs a human: never exit 0 over it.
      if (report.heuristics.length > 0) process.exitCode = 1;
    });

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
      const { runVerify } = await import('./bench.ts');
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

  program
    .command('recover')
    .description('resolve everything a killed coordinator left in doubt, from its log')
    .requiredOption('--db <url>', 'the databases, in the same order as for bench', collect)
    .option('--log <path|url>', 'the log bench used (never created: a missing log is an error)')
    .addOption(
      new Option('--protocol <name>', 'the protocol bench ran; default: read from the log').choices([
        '2pc',
        'saga',
        'tcc',
      ]),
    )
    .option('--id <coordinator-id>', 'refuse the log unless it belongs to this coordinator id')
    .option('--json', 'print one JSON object on stdout')
    .action(
      async (flags: {
        db: string[];
        log?: string;
        protocol?: '2pc' | 'saga' | 'tcc';
        id?: string;
        json?: boolean;
      }) => {
        const { findBenchLog } = await import('./bench.ts');
        // The log says which protocol it holds; --protocol and --id only confirm it.
        const found = await findBenchLog(flags.log, flags.protocol, flags.id);
        if (found.protocol === 'saga' || found.protocol === 'tcc') {
          const { runSagaRecover } = await import('./bench-saga.ts');
          const r = await runSagaRecover({ dbs: flags.db, protocol: found.protocol, where: found.where });
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
          return;
        }
        const { runRecover, heuristicViews } = await import('./bench.ts');
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
            process.stdout.write(
              `  IN DOUBT ${t}: committed in the log, a branch could not be reached yet\n`,
            );
          }
          for (const g of out.rolledBack) process.stdout.write(`  rollback ${g}\n`);
          for (const r of out.unreachable) {
            process.stdout.write(
              `  UNREACHABLE ${r}: its prepared branches were not swept; run recover again\n`,
            );
          }
          printHeuristics(out.heuristics);
        }
        // Still in doubt: decided, not yet applied everywhere; run recover again
        // once the participant is back (or see docs/operations.md).
        if (out.heuristics.length + out.stillInDoubt.length + out.unreachable.length > 0)
          process.exitCode = 1;
      },
    );

  registerTxnCommand(program);
  return program;
}

/** One line per branch that contradicts its transaction's decision, then where to read on. */
function printHeuristics(heuristics: readonly HeuristicView[]): void {
  for (const h of heuristics) {
    process.stdout.write(
      `  HEURISTIC ${h.txn ?? '?'} ${h.resource ?? '?'} ${h.gid}: decided ${h.decision}, found ${h.found}\n`,
    );
  }
  if (heuristics.length > 0) {
    process.stdout.write(
      `${heuristics.length} heuristic outcome(s): reconcile these branches by hand (docs/operations.md, "Heuristic outcomes")\n`,
    );
  }
}

/** `dtx bench --protocol saga|tcc` (./bench-saga.ts). */
async function benchSaga(flags: Record<string, unknown>): Promise<void> {
  for (const [flag, name] of [
    ['lease', '--lease'],
    ['crashAt', '--crash-at'],
  ] as const) {
    if (flags[flag] !== undefined)
      throw new InvalidArgumentError(`${name} does not apply to ${flags.protocol}`);
  }
  const { runSagaBench } = await import('./bench-saga.ts');
  const report = await runSagaBench({
    dbs: flags.db as string[],
    protocol: flags.protocol as 'saga' | 'tcc',
    log: flags.log as string | undefined,
    accounts: flags.accounts as number,
    concurrency: flags.concurrency as number,
    durationS: flags.duration as number | undefined,
    txns: flags.txns as number | undefined,
    init: flags.init === true,
    refuseShare: flags.refuseShare as number | undefined,
    checkpointEvery: flags.checkpointEvery as number | undefined,
    onStart: () => process.stderr.write('dtx bench: transfers started\n'),
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

/** True when the command line or DEBUG asks for stack traces with errors. */
function verboseErrors(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end === -1 ? argv : argv.slice(0, end)).includes('--verbose') || debugEnabled();
}

/**
 * Runs the command in `argv` and returns its exit status. Every failure ends
 * here, whatever threw it and wherever (a flag check, an action, a driver, a
 * stray rejection): one `error: CODE: message` line on stderr, a `fix:` line
 * when there is one, the stack only with --verbose or DEBUG=dtx, and status 2
 * for a usage error, 1 otherwise (./errors.ts).
 */
export async function main(argv: string[]): Promise<number> {
  const secrets = secretsIn(argv);
  redactStream(process.stdout, secrets);
  redactStream(process.stderr, secrets);
  const verbose = verboseErrors(argv);
  const report = (err: unknown): number => {
    const failure = describeFailure(err, secrets);
    process.stderr.write(formatFailure(failure));
    if (verbose) process.stderr.write(formatStack(err, secrets));
    return failure.exitCode;
  };
  // A rejection nobody awaited (a pool's background error, a timer's callback)
  // would otherwise print Node's own multi-line dump with the stack.
  const onStray = (err: unknown) => {
    // A reader that went away (`dtx sim ... | head`) is not a failure to report.
    const closedPipe = (err as { code?: unknown; syscall?: unknown }).code === 'EPIPE';
    process.exitCode = closedPipe ? (process.exitCode ?? 0) : report(err);
    process.exit();
  };
  process.on('uncaughtException', onStray);
  process.on('unhandledRejection', onStray);
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.exitCode === 0)
        return 0;
      // `dtx` alone: commander printed the help on stderr; say why it failed.
      if (err.code === 'commander.help') {
        return report(new InvalidArgumentError('give a command (see the list above)'));
      }
    }
    return report(err);
  }
}
