// `dtx sim`: one deterministic simulation, checked. The flags come from the
// simulator's flag table (../../sim/sim-flags.ts), which also writes the
// command line that reproduces a run; the protocol's family picks the world.

import { writeFileSync } from 'node:fs';
import { type Command, InvalidArgumentError } from 'commander';
import type { AcceptorFanout } from '../../protocol/paxos-commit/types.ts';
import { renderTraceHtml, renderTraceSvg, traceFileFor } from '../../render/trace.ts';
import type { Countermeasure } from '../../sim/branch/bank-audit.ts';
import { branchRequestProblem, type SagaSimRequest } from '../../sim/branch/run.ts';
import { historyText, type ReadMode } from '../../sim/isolation.ts';
import type { OutboxSimRequest } from '../../sim/outbox/run.ts';
import type {
  OutboxProtocolName,
  ProtocolName,
  ProtocolOptions,
  SagaProtocolName,
} from '../../sim/protocols.ts';
import { commitRequestProblem, runSim, type SimRequest } from '../../sim/run.ts';
import { flagKey, flagName, simCommand, simFlags } from '../../sim/sim-flags.ts';
import { type SimFamily, simFamilyOf } from '../families.ts';
import { formatOutboxReport, formatSagaReport, formatSimReport } from '../format.ts';
import { simFlagsNotFor, simOption, writeJson } from '../options.ts';

export interface SimFlags {
  protocol: string;
  workload?: 'toy' | 'bank' | 'bank-audit' | 'append' | 'booking';
  reads?: ReadMode;
  clockSkewMs?: number;
  commitWait?: boolean;
  history?: string;
  txns: number;
  seed: number;
  faults?: number;
  faster?: boolean;
  colocated?: boolean;
  fanout?: AcceptorFanout;
  participants?: number;
  everyParticipant?: boolean;
  concurrency?: number;
  thinkMs?: number;
  failRates?: number[];
  coordinatorFailRate?: number;
  acceptorFailRate?: number;
  serviceFailRate?: number;
  readOnlyShare?: number;
  loss?: number;
  dup?: number;
  lateDupMs?: number;
  jitterMs?: number;
  rttMs?: number;
  fsyncMs?: number;
  partitions?: boolean;
  crashRate?: number;
  downtimeMeanMs?: number;
  shortShare?: number;
  seats?: number;
  countermeasure?: Countermeasure;
  relays?: number;
  keys?: number;
  scenario?: string;
  downtimeMs?: number;
  trace?: string;
  traceTxn?: string;
  json?: boolean;
}

/** `--faults`, `--faster`, `--colocated`, `--fanout`, which only Paxos Commit takes. */
export function protocolOptions(flags: {
  protocol: string;
  faults?: number;
  faster?: boolean;
  colocated?: boolean;
  fanout?: AcceptorFanout;
}): ProtocolOptions {
  const o: ProtocolOptions = {};
  if (flags.faults !== undefined) o.faults = flags.faults;
  if (flags.faster) o.faster = true;
  if (flags.colocated) o.colocated = true;
  if (flags.fanout !== undefined) o.fanout = flags.fanout;
  if (Object.keys(o).length > 0 && flags.protocol !== 'paxos-commit') {
    throw new InvalidArgumentError('--faults, --faster, --colocated and --fanout are Paxos Commit options');
  }
  return o;
}

const commonSettingNames = [
  'concurrency',
  'thinkMs',
  'loss',
  'dup',
  'lateDupMs',
  'jitterMs',
  'rttMs',
  'fsyncMs',
  'crashRate',
  'downtimeMeanMs',
  'coordinatorFailRate',
] as const;

type CommonSettings = Partial<Pick<SimRequest, (typeof commonSettingNames)[number] | 'partitions'>>;

/** The network and fault settings both worlds take, for the flags that were given. */
function commonSettings(flags: SimFlags): CommonSettings {
  const out: CommonSettings = {};
  for (const name of commonSettingNames) if (flags[name] !== undefined) out[name] = flags[name];
  if (flags.partitions) out.partitions = true;
  return out;
}

/** A flag the protocol's world does not take is a usage error, not silently ignored. */
function rejectFlagsNotFor(family: SimFamily, flags: SimFlags): void {
  const given = flags as unknown as Record<string, unknown>;
  for (const flag of simFlagsNotFor(family)) {
    if (given[flagKey(flag)] !== undefined)
      throw new InvalidArgumentError(`${flagName(flag)} does not apply to ${flags.protocol}`);
  }
}

function scenarioOf(flags: SimFlags): SimRequest['scenario'] {
  if (flags.scenario === 'coordinator-crash') {
    return { kind: 'coordinator-crash', downtimeMs: flags.downtimeMs ?? 30_000 };
  }
  if (flags.downtimeMs !== undefined) {
    throw new InvalidArgumentError('--downtime-ms goes with --scenario coordinator-crash');
  }
  return undefined;
}

function commitRequest(flags: SimFlags): SimRequest {
  const scenario = scenarioOf(flags);
  if (flags.workload === 'booking')
    throw new InvalidArgumentError('the booking workload is for saga and tcc');
  const req: SimRequest = {
    protocol: flags.protocol as ProtocolName,
    workload: flags.workload ?? 'toy',
    txns: flags.txns,
    seed: flags.seed,
  };
  const options = protocolOptions(flags);
  if (Object.keys(options).length > 0) req.protocolOptions = options;
  if (flags.participants !== undefined) req.participants = flags.participants;
  if (flags.everyParticipant) {
    if (req.workload !== 'bank')
      throw new InvalidArgumentError('--every-participant is for the bank workload');
    req.everyParticipant = true;
  }
  Object.assign(req, commonSettings(flags));
  if (flags.failRates !== undefined) req.failRates = flags.failRates;
  if (flags.acceptorFailRate !== undefined) req.acceptorFailRate = flags.acceptorFailRate;
  if (flags.readOnlyShare !== undefined) req.readOnlyShare = flags.readOnlyShare;
  if (flags.reads !== undefined) req.reads = flags.reads;
  if (flags.clockSkewMs !== undefined) req.clockSkewMs = flags.clockSkewMs;
  if (flags.commitWait) req.commitWait = true;
  if (scenario !== undefined) req.scenario = scenario;
  const problem = commitRequestProblem(req);
  if (problem !== undefined) throw new InvalidArgumentError(problem);
  return req;
}

function branchRequest(flags: SimFlags): SagaSimRequest {
  if (flags.workload !== undefined && flags.workload !== 'booking' && flags.workload !== 'bank-audit') {
    throw new InvalidArgumentError(
      `${flags.protocol} runs the booking or bank-audit workload, not ${flags.workload}`,
    );
  }
  if (flags.trace !== undefined)
    throw new InvalidArgumentError(`--trace does not apply to ${flags.protocol}`);
  const workload = flags.workload ?? 'booking';
  if (flags.history !== undefined && workload !== 'bank-audit')
    throw new InvalidArgumentError('--history records the reads of the bank-audit workload');
  const req: SagaSimRequest = {
    protocol: flags.protocol as SagaProtocolName,
    workload,
    txns: flags.txns,
    seed: flags.seed,
  };
  if (flags.reads !== undefined) req.reads = flags.reads;
  if (flags.countermeasure !== undefined) req.countermeasure = flags.countermeasure;
  Object.assign(req, commonSettings(flags));
  if (flags.serviceFailRate !== undefined) req.serviceFailRate = flags.serviceFailRate;
  const booking: NonNullable<SagaSimRequest['booking']> = {};
  if (flags.shortShare !== undefined) booking.shortShare = flags.shortShare;
  if (flags.seats !== undefined) booking.seats = flags.seats;
  if (Object.keys(booking).length > 0) req.booking = booking;
  const scenario = scenarioOf(flags);
  if (scenario !== undefined) req.scenario = scenario;
  const problem = branchRequestProblem(req);
  if (problem !== undefined) throw new InvalidArgumentError(problem);
  return req;
}

function simulateCommit(flags: SimFlags): void {
  const traceKind = flags.trace === undefined ? null : traceFileFor(flags.trace);
  const req = commitRequest(flags);
  if (traceKind !== null) req.trace = true;
  const { report, trace, history } = runSim(req);
  if (flags.history !== undefined) {
    if (history === null)
      throw new InvalidArgumentError(`--history is for the append workload with ${flags.protocol}`);
    writeFileSync(flags.history, historyText(history));
    process.stderr.write(`history written to ${flags.history}\n`);
  }
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
}

function simulateBranch(flags: SimFlags): void {
  const { report, world } = runSim(branchRequest(flags));
  if (flags.history !== undefined && world.isolation !== null) {
    writeFileSync(flags.history, world.isolation.historyText());
    process.stderr.write(`history written to ${flags.history}\n`);
  }
  if (flags.json) writeJson(report);
  else process.stdout.write(formatSagaReport(report));
}

function outboxRequest(flags: SimFlags): OutboxSimRequest {
  if (flags.trace !== undefined)
    throw new InvalidArgumentError(`--trace does not apply to ${flags.protocol}`);
  const req: OutboxSimRequest = {
    protocol: flags.protocol as OutboxProtocolName,
    txns: flags.txns,
    seed: flags.seed,
  };
  Object.assign(req, commonSettings(flags));
  if (flags.relays !== undefined) req.relays = flags.relays;
  if (flags.keys !== undefined) req.keys = flags.keys;
  return req;
}

function simulateOutbox(flags: SimFlags): void {
  const { report } = runSim(outboxRequest(flags));
  if (flags.json) writeJson(report);
  else process.stdout.write(formatOutboxReport(report));
}

const simulate: Readonly<Record<SimFamily, (flags: SimFlags) => void>> = {
  commit: simulateCommit,
  branch: simulateBranch,
  outbox: simulateOutbox,
};

export function registerSimCommand(program: Command): void {
  const command = program.command('sim').description('run one deterministic simulation and check it');
  for (const flag of simFlags) command.addOption(simOption(flag));
  command
    .option('--trace <file>', 'draw a space-time diagram of the run (.svg or .html)')
    .option('--trace-txn <id>', 'draw only this transaction (with --trace)')
    .option(
      '--history <file>',
      "append (saga, tcc: bank-audit): write the run's history (JSON lines, list-append; dtx check-history reads it)",
    )
    .option('--json', 'print one JSON object on stdout')
    .action((flags: SimFlags) => {
      const family = simFamilyOf(flags.protocol);
      rejectFlagsNotFor(family, flags);
      simulate[family](flags);
    });
}
