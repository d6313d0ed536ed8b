// `dtx demo nonblocking`: the same transfers, on two participants, under
// two-phase commit and under Paxos Commit (three `dtx acceptor` processes,
// F = 1), with the coordinator / leader process SIGKILLed once both branches
// are prepared and before it knows any outcome, and kept down `downtimeMs`.
// The participants are two embedded SQLite databases made for the run, or
// the two databases given with `--db` (PostgreSQL with
// max_prepared_transactions > 0, MariaDB/MySQL XA, SQLite), which hold the
// books of `dtx bench` (src/cli/db.ts): each round sets them up again
// (`bench --init`'s schema, one account each).
//
// Measured here, by this process, on the databases themselves:
// - inDoubtMaxMs: from the kill until no branch of the killed process is
//   prepared any more (polled every 10 ms with listPrepared);
// - lockHeldMaxMs: from the kill until a no-wait read of the debit account
//   stops failing with DTX_LOCK_CONFLICT (probed every 50 ms; on SQL servers
//   a locking read, since a plain read there is never blocked);
// - blocked: how many of those probes (one client's transactions wanting the
//   account) were refused in the meantime;
// - verifyOk: `dtx verify`'s own check (runVerify, the function the command
//   runs) on the same databases: the total is unchanged, every transfer is
//   on both databases or on neither, and nothing is left prepared.
//
// 2PC: the coordinator is restarted after the downtime and its recovery
// (presumed abort) ends the branches. Paxos Commit: a backup leader (this
// process) takes the branches over after its `takeoverMs` and finishes them
// from the acceptors; the killed leader is restarted after the downtime too.

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ResourceAdapter, SqlBranch } from '../adapters/types.ts';
import { DtxError, isDtxError } from '../errors.ts';
import { twoPcRecordCodec } from '../protocol/twopc/codec.ts';
import { createCoordinator, type Transaction } from '../runtime/coordinator.ts';
import { openSqliteLog } from '../runtime/log/sqlite.ts';
import type { PaxosCommitCoordinator } from '../runtime/paxos-commit/coordinator.ts';
import { runVerify } from './bench.ts';
import {
  applyTransferPart,
  benchSql,
  type DbTarget,
  initSchema,
  openAdapter,
  parseDbUrl,
  readState,
  rollBackLeftovers,
} from './db.ts';

const bin = resolve(fileURLToPath(new URL('../../bin/dtx.js', import.meta.url)));

export interface NonblockingResult {
  inDoubtMaxMs: number;
  lockHeldMaxMs: number;
  blocked: number;
  verifyOk: boolean;
  /** How the killed transfer ended. */
  outcome: 'committed' | 'aborted';
}

export interface NonblockingReport {
  downtimeMs: number;
  takeoverMs: number;
  '2pc': NonblockingResult;
  'paxos-commit': NonblockingResult;
}

export interface ChildSpec {
  protocol: '2pc' | 'paxos-commit';
  dir: string;
  /** The two participants' URLs (debit, credit). */
  dbs: readonly string[];
  /** SIGKILL at this transfer's `prepared:all`; 0: recover and exit. */
  killAt: number;
  acceptors: string[];
  cluster: string;
}

/** The backup's timeout: well above how long a live transfer stays prepared, even on a loaded machine. */
const takeoverMs = 2000;
/** The killed process's transfer: the earlier ones commit. */
const killAt = 3;
/** The 2PC coordinator's id (its log's), so that its gids are known: `dtx_demo-nb.`. */
const twoPcCoordinatorId = 'demo-nb';
/** The Paxos Commit cluster of the demo's acceptors: its gids are `pc_demo_`. */
const paxosCluster = 'demo';
const gidPrefixes = { '2pc': `dtx_${twoPcCoordinatorId}.`, 'paxos-commit': `pc_${paxosCluster}_` } as const;
const roles = ['debit', 'credit'] as const;

interface Participants {
  targets: DbTarget[];
  adapters: Record<string, ResourceAdapter>;
  close(): Promise<void>;
}

/** Opens the two participants, named db1 and db2 as `dtx bench` and `dtx verify` name them. */
async function openParticipants(dbs: readonly string[], create = false): Promise<Participants> {
  const targets = dbs.map((url, i) => parseDbUrl(url, i));
  const adapters: Record<string, ResourceAdapter> = {};
  const close = async () => {
    await Promise.allSettled(Object.values(adapters).map((a) => a.close()));
  };
  try {
    for (const t of targets) adapters[t.name] = await openAdapter(t, { create });
  } catch (error) {
    await close();
    throw error;
  }
  return { targets, adapters, close };
}

/** Transfer `t<n>`: 1 from the debit account to the credit account, recorded on both. */
async function transferIn(tx: Pick<Transaction, 'branch'>, targets: readonly DbTarget[], n: number) {
  for (const [i, t] of targets.entries())
    await applyTransferPart(t, await tx.branch(t.name), roles[i]!, `t${n}`, 0, 1);
}

function dieAt(killAt: number) {
  return {
    point(point: string, ordinal: number) {
      if (point !== 'prepared:all' || ordinal !== killAt) return;
      process.stdout.write(`killing ${Date.now()}\n`);
      process.kill(process.pid, 'SIGKILL');
    },
  };
}

/** The child process: a coordinator (2PC) or leader (Paxos Commit) that dies at its crash point, or recovers. */
export async function runNonblockingChild(spec: ChildSpec): Promise<void> {
  const { targets, adapters: resources, close } = await openParticipants(spec.dbs);
  try {
    if (spec.protocol === '2pc') {
      const log = await openSqliteLog(join(spec.dir, 'coordinator.sqlite'), {
        create: true,
        identity: { protocol: '2pc', coordinatorId: twoPcCoordinatorId },
        decode: (v) => twoPcRecordCodec.check(v),
      });
      const c = await createCoordinator({ log, resources, faults: dieAt(spec.killAt) });
      process.stdout.write('ready\n');
      for (let n = 1; n <= spec.killAt; n++) await c.transaction((tx) => transferIn(tx, targets, n));
      await c.close();
      await log.close();
      return;
    }
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l1',
      leaders: ['l1', 'l2'],
      acceptors: spec.acceptors,
      cluster: spec.cluster,
      resources,
      takeoverMs,
      crashPoints: dieAt(spec.killAt),
    });
    process.stdout.write('ready\n');
    for (let n = 1; n <= spec.killAt; n++) await c.transaction((tx) => transferIn(tx, targets, n));
    // A restarted leader: give its scan time to find what is left, then stop.
    if (spec.killAt === 0) await new Promise((r) => setTimeout(r, takeoverMs * 3));
    await c.close();
  } finally {
    await close();
  }
}

function spawnDtx(args: string[]): {
  child: ChildProcess;
  line(re: RegExp): Promise<RegExpExecArray>;
  exit: Promise<string>;
} {
  const child = spawn(process.execPath, [bin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const waiters: { re: RegExp; resolve: (m: RegExpExecArray) => void }[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    for (const w of [...waiters]) {
      const m = w.re.exec(out);
      if (m !== null) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exit = new Promise<string>((r) => child.once('exit', (code, signal) => r(signal ?? String(code))));
  return {
    child,
    exit,
    line: (re) =>
      new Promise((res, rej) => {
        const m = re.exec(out);
        if (m !== null) return res(m);
        waiters.push({ re, resolve: res });
        void exit.then((how) =>
          rej(new Error(`dtx ${args[0]} ${args[1] ?? ''} exited (${how}) before ${re}: ${err.slice(-2000)}`)),
        );
      }),
  };
}

/** Watches the databases from the kill on: in doubt, lock held, blocked probes. */
class Watch {
  inDoubtMs: number | null = null;
  lockHeldMs: number | null = null;
  blocked = 0;
  private probes = 0;

  constructor(
    private readonly dbs: Participants,
    private readonly prefix: string,
    private readonly killedAt: number,
  ) {}

  async run(deadlineMs: number): Promise<void> {
    let nextProbe = 0;
    while (this.inDoubtMs === null || this.lockHeldMs === null) {
      const now = Date.now();
      if (now - this.killedAt > deadlineMs) throw new Error(`still in doubt after ${deadlineMs} ms`);
      if (this.inDoubtMs === null) {
        let left = 0;
        for (const a of Object.values(this.dbs.adapters)) left += (await a.listPrepared(this.prefix)).length;
        if (left === 0) this.inDoubtMs = Date.now() - this.killedAt;
      }
      if (this.lockHeldMs === null && now >= nextProbe) {
        nextProbe = now + 50;
        if (await this.probe()) this.lockHeldMs = Date.now() - this.killedAt;
        else this.blocked++;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** One no-wait read of the debit account in a transaction of its own: false while a lock refuses it. */
  private async probe(): Promise<boolean> {
    const target = this.dbs.targets[0]!;
    const branch = await this.dbs.adapters[target.name]!.begin(`probe_${++this.probes}`);
    try {
      if (target.kind === 'sqlite') (branch as unknown as { get(key: string): unknown }).get('bench:acct:0');
      else
        await (branch as SqlBranch).lockingRead!(
          benchSql(target, 'SELECT balance FROM dtx_bench.accounts WHERE id = 0'),
          [],
          { wait: false },
        );
      return true;
    } catch (error) {
      if (!isDtxError(error, 'DTX_LOCK_CONFLICT')) throw error;
      return false;
    } finally {
      await branch.rollback();
    }
  }
}

/**
 * Sets the participants up for one round: the demo's own branches an earlier,
 * interrupted run left prepared are rolled back (they hold locks on the
 * tables about to be replaced), then the books of `bench --init` with one
 * account each. A PostgreSQL server without prepared transactions fails here,
 * at the first branch, with DTX_PREPARED_TXNS_DISABLED.
 */
async function setUp(dbs: readonly string[]): Promise<Participants> {
  const p = await openParticipants(dbs, true);
  try {
    // First whether every server can prepare at all, before anything is changed on any.
    for (const adapter of Object.values(p.adapters)) await (await adapter.begin('dtx_demo_check')).rollback();
    for (const [i, t] of p.targets.entries()) {
      const adapter = p.adapters[t.name]!;
      for (const prefix of Object.values(gidPrefixes))
        await rollBackLeftovers(adapter, { prefix, mayRollBack: () => true });
      await initSchema(t, adapter, 1, roles[i]!);
    }
  } catch (error) {
    await p.close();
    throw error;
  }
  return p;
}

/** The round's result, with `dtx verify`'s check of the books (`logs`: narrow it to that 2PC log's branches). */
async function result(
  p: Participants,
  watch: Watch,
  dbs: readonly string[],
  logs?: string[],
): Promise<NonblockingResult> {
  const debit = p.targets[0]!;
  const state = await readState(debit, p.adapters[debit.name]!, []);
  const verify = await runVerify([...dbs], logs === undefined ? {} : { logs });
  return {
    inDoubtMaxMs: watch.inDoubtMs!,
    lockHeldMaxMs: watch.lockHeldMs!,
    blocked: watch.blocked,
    verifyOk: verify.ok,
    outcome: state.transfers.has(`t${killAt}`) ? 'committed' : 'aborted',
  };
}

/** Where a round keeps its files, emptied; and its participants: `dbs`, or two SQLite databases there. */
function roundDir(dir: string, protocol: ChildSpec['protocol'], dbs: readonly string[] | undefined) {
  const own = join(dir, protocol);
  rmSync(own, { recursive: true, force: true });
  mkdirSync(own, { recursive: true });
  return { own, dbs: dbs ?? [`sqlite:${join(own, 'a.sqlite')}`, `sqlite:${join(own, 'b.sqlite')}`] };
}

async function runTwoPc(
  dir: string,
  given: readonly string[] | undefined,
  downtimeMs: number,
  log: (l: string) => void,
): Promise<NonblockingResult> {
  const { own, dbs } = roundDir(dir, '2pc', given);
  const p = await setUp(dbs);
  try {
    const spec: ChildSpec = { protocol: '2pc', dir: own, dbs, killAt, acceptors: [], cluster: paxosCluster };
    log(`2pc: coordinator process runs ${killAt} transfers, SIGKILLed once transfer ${killAt} is prepared`);
    const leader = spawnDtx(['demo', 'nonblocking', '--child', JSON.stringify(spec)]);
    const killedAt = Number((await leader.line(/killing (\d+)/))[1]);
    await leader.exit;
    const watch = new Watch(p, gidPrefixes['2pc'], killedAt);
    const watching = watch.run(downtimeMs + 120_000);
    await new Promise((r) => setTimeout(r, downtimeMs));
    log(`2pc: down ${downtimeMs} ms; restarting the coordinator (recovery)`);
    const restarted = spawnDtx(['demo', 'nonblocking', '--child', JSON.stringify({ ...spec, killAt: 0 })]);
    await watching;
    await restarted.exit;
    return await result(p, watch, dbs, [join(own, 'coordinator.sqlite')]);
  } finally {
    await p.close();
  }
}

async function runPaxosCommit(
  dir: string,
  given: readonly string[] | undefined,
  downtimeMs: number,
  log: (l: string) => void,
): Promise<NonblockingResult> {
  const { own, dbs } = roundDir(dir, 'paxos-commit', given);
  const p = await setUp(dbs);
  log('paxos-commit: starting 3 acceptor processes (F = 1)');
  const acceptors = [0, 1, 2].map((i) =>
    spawnDtx([
      'acceptor',
      '--listen',
      '127.0.0.1:0',
      '--data',
      join(own, `acceptor${i}`),
      '--cluster',
      paxosCluster,
    ]),
  );
  let backup: PaxosCommitCoordinator | undefined;
  try {
    const urls = await Promise.all(acceptors.map(async (a) => (await a.line(/listening on (\S+)/))[1]!));
    backup = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l2',
      leaders: ['l1', 'l2'],
      acceptors: urls,
      cluster: paxosCluster,
      resources: p.adapters,
      takeoverMs,
      scanIntervalMs: 100,
    });
    const spec: ChildSpec = {
      protocol: 'paxos-commit',
      dir: own,
      dbs,
      killAt,
      acceptors: urls,
      cluster: paxosCluster,
    };
    log(
      `paxos-commit: leader process runs ${killAt} transfers, SIGKILLed once transfer ${killAt} is prepared`,
    );
    const leader = spawnDtx(['demo', 'nonblocking', '--child', JSON.stringify(spec)]);
    const killedAt = Number((await leader.line(/killing (\d+)/))[1]);
    await leader.exit;
    const watch = new Watch(p, gidPrefixes['paxos-commit'], killedAt);
    await Promise.all([watch.run(downtimeMs + 120_000), new Promise((r) => setTimeout(r, downtimeMs))]);
    log(`paxos-commit: down ${downtimeMs} ms; restarting the leader`);
    await spawnDtx(['demo', 'nonblocking', '--child', JSON.stringify({ ...spec, killAt: 0 })]).exit;
    return await result(p, watch, dbs);
  } finally {
    await backup?.close();
    for (const a of acceptors) a.child.kill('SIGTERM');
    await Promise.all(acceptors.map((a) => a.exit));
    await p.close();
  }
}

export async function runNonblockingDemo(options: {
  dir: string;
  downtimeMs: number;
  /** Two participants' URLs (debit, credit); default two SQLite databases under `dir`. */
  dbs?: readonly string[];
  log?: (line: string) => void;
}): Promise<NonblockingReport> {
  const log = options.log ?? (() => {});
  const dbs = options.dbs === undefined || options.dbs.length === 0 ? undefined : options.dbs;
  if (dbs !== undefined && dbs.length !== 2)
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `give two --db URLs (the debit and the credit database), got ${dbs.length}`,
    );
  // Every URL checked before anything runs: a typo is a usage error naming it.
  for (const [i, url] of (dbs ?? []).entries()) parseDbUrl(url, i);
  const twoPc = await runTwoPc(options.dir, dbs, options.downtimeMs, log);
  const paxos = await runPaxosCommit(options.dir, dbs, options.downtimeMs, log);
  return { downtimeMs: options.downtimeMs, takeoverMs, '2pc': twoPc, 'paxos-commit': paxos };
}

export function formatNonblocking(r: NonblockingReport): string {
  const row = (name: string, x: NonblockingResult) =>
    `  ${name.padEnd(13)} ${String(x.inDoubtMaxMs).padStart(12)} ${String(x.lockHeldMaxMs).padStart(14)} ${String(x.blocked).padStart(8)}  ${x.outcome.padEnd(9)} ${x.verifyOk ? 'ok' : 'FAILED'}`;
  return [
    `The coordinator / leader process SIGKILLed with both branches prepared, down ${r.downtimeMs} ms`,
    `(Paxos Commit: 3 acceptor processes, F = 1, backup leader takeover after ${r.takeoverMs} ms).`,
    '',
    '  protocol      in doubt ms  lock held ms  blocked  outcome   books',
    row('2pc', r['2pc']),
    row('paxos-commit', r['paxos-commit']),
    '',
    '2PC leaves the branches in doubt, locks held, until its coordinator is back; Paxos Commit does not',
    'wait for the leader: a backup learns the outcome from the acceptors.',
    '',
  ].join('\n');
}
