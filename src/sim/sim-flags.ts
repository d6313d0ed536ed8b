// The `dtx sim` flags, defined once as data. The CLI builds its commander
// options from this table (src/cli/commands/sim.ts), and the swarms build the
// command line that reproduces a seed's run from it (`simCommand`), so a flag
// the simulator takes cannot be forgotten by the reproduce line: a run that a
// printed command re-runs is the run that was printed. The table's order is
// the order of the flags in the help and in a reproduce command.

import { acceptorFanouts } from '../protocol/paxos-commit/types.ts';
import { countermeasures } from './branch/bank-audit.ts';
import type { SagaSimRequest } from './branch/run.ts';
import { readModes } from './isolation.ts';
import type { OutboxSimRequest } from './outbox/run.ts';
import { outboxProtocolNames, protocolNames, sagaProtocolNames } from './protocols.ts';
import type { SimRequest } from './run.ts';
import { workloadNames } from './workloads.ts';

/** The simulated worlds: atomic commit (./commit-world.ts), sagas/TCC (./branch/world.ts), outbox/inbox (./outbox/world.ts). */
export type SimFamily = 'commit' | 'branch' | 'outbox';

/** How a flag's text becomes a value; the CLI turns this into a commander parser. */
export type FlagValue =
  | { kind: 'int'; min: number; max?: number }
  | { kind: 'num'; min: number; max: number }
  | { kind: 'rates' }
  | { kind: 'switch' }
  | { kind: 'choice'; choices: readonly string[] }
  | { kind: 'text' };

type AnySimRequest = SimRequest | SagaSimRequest | OutboxSimRequest;

export interface SimFlag {
  /** The commander flag, e.g. `--loss <p>`; its camelCase name is the key in the parsed flags. */
  flag: string;
  help: string;
  value: FlagValue;
  /** The worlds whose requests take this flag; giving it to another is a usage error. */
  appliesTo: readonly SimFamily[];
  mandatory?: true;
  default?: number;
  /** 0 is what the simulator does without the flag, so a reproduce command leaves it out. */
  zeroIsAbsent?: true;
  /** The flag's value in a request, for the reproduce command (undefined: not given). */
  read(req: AnySimRequest): string | number | boolean | readonly number[] | undefined;
}

const all: readonly SimFamily[] = ['commit', 'branch', 'outbox'];
const both: readonly SimFamily[] = ['commit', 'branch'];
const commitOnly: readonly SimFamily[] = ['commit'];
const branchOnly: readonly SimFamily[] = ['branch'];
const outboxOnly: readonly SimFamily[] = ['outbox'];

/** Fields only a commit-world request has, read without widening the union at every use. */
const commit = (req: AnySimRequest) => req as Partial<SimRequest>;
const branch = (req: AnySimRequest) => req as Partial<SagaSimRequest>;
const outbox = (req: AnySimRequest) => req as Partial<OutboxSimRequest>;

export const simFlags: readonly SimFlag[] = [
  {
    flag: '--protocol <name>',
    help: 'protocol',
    value: { kind: 'choice', choices: [...protocolNames, ...sagaProtocolNames, ...outboxProtocolNames] },
    appliesTo: all,
    mandatory: true,
    read: (req) => (typeof req.protocol === 'string' ? req.protocol : req.protocol.name),
  },
  {
    flag: '--workload <name>',
    help: 'workload (default: toy; booking for saga and tcc); bank-audit and append read',
    value: { kind: 'choice', choices: [...workloadNames, 'booking'] },
    appliesTo: both,
    read: (req) => commit(req).workload ?? branch(req).workload,
  },
  {
    flag: '--txns <n>',
    help: 'transactions to run',
    value: { kind: 'int', min: 1, max: 10_000_000 },
    appliesTo: all,
    mandatory: true,
    read: (req) => req.txns,
  },
  {
    flag: '--seed <s>',
    help: 'PRNG seed; the same seed gives the same run',
    value: { kind: 'int', min: 0 },
    appliesTo: all,
    default: 1,
    read: (req) => req.seed,
  },
  {
    flag: '--faults <f>',
    help: 'Paxos Commit: acceptor failures tolerated (2F+1 acceptors)',
    value: { kind: 'int', min: 0, max: 10 },
    appliesTo: commitOnly,
    read: (req) => commit(req).protocolOptions?.faults,
  },
  {
    flag: '--faster',
    help: 'Paxos Commit: acceptors send phase 2b to the RMs directly',
    value: { kind: 'switch' },
    appliesTo: commitOnly,
    read: (req) => commit(req).protocolOptions?.faster,
  },
  {
    flag: '--colocated',
    help: 'Paxos Commit: the leader runs on the first participant',
    value: { kind: 'switch' },
    appliesTo: commitOnly,
    read: (req) => commit(req).protocolOptions?.colocated,
  },
  {
    flag: '--fanout <to>',
    help: 'Paxos Commit: RMs send their votes to F+1 acceptors (quorum, default) or to all 2F+1',
    value: { kind: 'choice', choices: acceptorFanouts },
    appliesTo: commitOnly,
    read: (req) => commit(req).protocolOptions?.fanout,
  },
  {
    flag: '--participants <n>',
    help: 'participants (bank: accounts spread over them; toy: every transaction on all of them, default 3)',
    value: { kind: 'int', min: 2, max: 64 },
    appliesTo: commitOnly,
    read: (req) => commit(req).participants,
  },
  {
    flag: '--every-participant',
    help: 'bank workload: every transfer also writes at every other participant (N per transaction)',
    value: { kind: 'switch' },
    appliesTo: commitOnly,
    read: (req) => commit(req).everyParticipant,
  },
  {
    flag: '--concurrency <n>',
    help: 'clients running transactions at once',
    value: { kind: 'int', min: 1, max: 1000 },
    appliesTo: all,
    read: (req) => req.concurrency,
  },
  {
    flag: '--think-ms <ms>',
    help: 'mean pause of each client between its transactions (exponential; default 0, back to back)',
    value: { kind: 'num', min: 0, max: 3_600_000 },
    appliesTo: all,
    read: (req) => req.thinkMs,
  },
  {
    flag: '--fail-rates <r1,r2,...>',
    help: 'per-participant probability that a forced write fails, one rate per participant',
    value: { kind: 'rates' },
    appliesTo: commitOnly,
    read: (req) => commit(req).failRates,
  },
  {
    flag: '--coordinator-fail-rate <p>',
    help: 'probability that a forced write fails on the coordinator (Paxos Commit leader, saga/tcc orchestrator)',
    value: { kind: 'num', min: 0, max: 1 },
    appliesTo: both,
    zeroIsAbsent: true,
    read: (req) => commit(req).coordinatorFailRate ?? branch(req).coordinatorFailRate,
  },
  {
    flag: '--acceptor-fail-rate <p>',
    help: 'Paxos Commit: probability that a forced write fails on an acceptor',
    value: { kind: 'num', min: 0, max: 1 },
    appliesTo: commitOnly,
    zeroIsAbsent: true,
    read: (req) => commit(req).acceptorFailRate,
  },
  {
    flag: '--service-fail-rate <p>',
    help: 'saga/tcc: probability that a forced write fails on a service',
    value: { kind: 'num', min: 0, max: 1 },
    appliesTo: branchOnly,
    zeroIsAbsent: true,
    read: (req) => branch(req).serviceFailRate,
  },
  {
    flag: '--read-only-share <p>',
    help: 'bank: share of transfers that only read, and of transactions that also read on another participant',
    value: { kind: 'num', min: 0, max: 1 },
    appliesTo: commitOnly,
    zeroIsAbsent: true,
    read: (req) => commit(req).readOnlyShare,
  },
  {
    flag: '--reads <mode>',
    help: 'bank-audit, append: what a read does (plain: latest committed value; locking: shared locks to the outcome; snapshot: read-only work reads one consistent cut; timestamp: read-only work reads at a snapshot timestamp, 2pc)',
    value: { kind: 'choice', choices: readModes },
    appliesTo: both,
    read: (req) => (req as { reads?: string }).reads,
  },
  {
    flag: '--clock-skew-ms <ms>',
    help: "--reads timestamp: each node's clock is off by up to this much either way (default 0)",
    value: { kind: 'num', min: 0, max: 60_000 },
    appliesTo: commitOnly,
    read: (req) => commit(req).clockSkewMs,
  },
  {
    flag: '--commit-wait',
    help: '--reads timestamp: acknowledge a commit only once every clock is past its timestamp (waits twice the skew)',
    value: { kind: 'switch' },
    appliesTo: commitOnly,
    read: (req) => commit(req).commitWait,
  },
  {
    flag: '--loss <p>',
    help: 'message loss probability',
    value: { kind: 'num', min: 0, max: 1 },
    appliesTo: all,
    zeroIsAbsent: true,
    read: (req) => req.loss,
  },
  {
    flag: '--dup <p>',
    help: 'message duplication probability',
    value: { kind: 'num', min: 0, max: 1 },
    appliesTo: all,
    zeroIsAbsent: true,
    read: (req) => req.dup,
  },
  {
    flag: '--late-dup-ms <ms>',
    help: "mean extra delay (exponential) of a duplicated message's second copy",
    value: { kind: 'num', min: 0, max: 3_600_000 },
    appliesTo: both,
    zeroIsAbsent: true,
    read: (req) => req.lateDupMs,
  },
  {
    flag: '--jitter-ms <ms>',
    help: 'mean extra message delay (exponential)',
    value: { kind: 'num', min: 0, max: 60_000 },
    appliesTo: all,
    read: (req) => req.jitterMs,
  },
  {
    flag: '--rtt-ms <ms>',
    help: 'network round trip',
    value: { kind: 'num', min: 0, max: 60_000 },
    appliesTo: all,
    read: (req) => req.rttMs,
  },
  {
    flag: '--fsync-ms <ms>',
    help: 'latency of a forced write',
    value: { kind: 'num', min: 0, max: 60_000 },
    appliesTo: all,
    read: (req) => req.fsyncMs,
  },
  {
    flag: '--partitions',
    help: 'partitions (symmetric and one-way) start and heal during the run',
    value: { kind: 'switch' },
    appliesTo: all,
    read: (req) => req.partitions,
  },
  {
    flag: '--crash-rate <p>',
    help: 'probability that a node crashes during any one step',
    value: { kind: 'num', min: 0, max: 1 },
    appliesTo: all,
    zeroIsAbsent: true,
    read: (req) => req.crashRate,
  },
  {
    flag: '--downtime-mean-ms <ms>',
    help: 'mean downtime of a crashed node',
    value: { kind: 'num', min: 0, max: 3_600_000 },
    appliesTo: all,
    read: (req) => req.downtimeMeanMs,
  },
  {
    flag: '--short-share <p>',
    help: 'booking: share of wallets that lack the balance',
    value: { kind: 'num', min: 0, max: 1 },
    appliesTo: branchOnly,
    read: (req) => branch(req).booking?.shortShare,
  },
  {
    flag: '--seats <n>',
    help: 'booking: seats on sale',
    value: { kind: 'int', min: 1, max: 100_000_000 },
    appliesTo: branchOnly,
    read: (req) => branch(req).booking?.seats,
  },
  {
    flag: '--countermeasure <name>',
    help: 'bank-audit, saga: none (undo images), semantic-lock (pending flags), commutative (increments)',
    value: { kind: 'choice', choices: countermeasures },
    appliesTo: branchOnly,
    read: (req) => branch(req).countermeasure,
  },
  {
    flag: '--relays <n>',
    help: 'outbox: relays publishing from the one outbox (default 1)',
    value: { kind: 'int', min: 1, max: 16 },
    appliesTo: outboxOnly,
    read: (req) => outbox(req).relays,
  },
  {
    flag: '--keys <n>',
    help: 'outbox: ordering keys the rows spread over (default 4; 0: no keys)',
    value: { kind: 'int', min: 0, max: 1_000_000 },
    appliesTo: outboxOnly,
    read: (req) => outbox(req).keys,
  },
  {
    flag: '--scenario <name>',
    help: 'a scripted fault',
    value: { kind: 'choice', choices: ['coordinator-crash'] },
    appliesTo: both,
    read: (req) => (commit(req).scenario ?? branch(req).scenario)?.kind,
  },
  {
    flag: '--downtime-ms <ms>',
    help: 'coordinator downtime for --scenario coordinator-crash',
    value: { kind: 'num', min: 0, max: 3_600_000 },
    appliesTo: both,
    read: (req) => (commit(req).scenario ?? branch(req).scenario)?.downtimeMs,
  },
];

/** `--loss <p>` → `--loss`. */
export function flagName(flag: SimFlag): string {
  return flag.flag.split(' ')[0] as string;
}

/** The row for `--name`, for a command that takes some of the simulator's flags. */
export function simFlag(name: string): SimFlag {
  const flag = simFlags.find((f) => flagName(f) === name);
  if (flag === undefined) throw new Error(`no simulator flag ${name}`);
  return flag;
}

/** `--late-dup-ms <ms>` → `lateDupMs`, the key commander parses it to. */
export function flagKey(flag: SimFlag): string {
  return flagName(flag)
    .slice(2)
    .replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

/** The `dtx sim` command line that reproduces `req`, in any world. */
export function simCommand(req: AnySimRequest): string {
  const parts = ['dtx sim'];
  for (const flag of simFlags) {
    const value = flag.read(req);
    if (value === undefined || value === false || (flag.zeroIsAbsent && value === 0)) continue;
    if (value === true) parts.push(flagName(flag));
    else parts.push(`${flagName(flag)} ${Array.isArray(value) ? value.join(',') : value}`);
  }
  return parts.join(' ');
}
