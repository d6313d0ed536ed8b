// `dtx demo nonblocking`: the same transfer, on two embedded SQLite
// participants, under two-phase commit and under Paxos Commit (three
// `dtx acceptor` processes, F = 1), with the coordinator / leader process
// SIGKILLed once both branches are prepared and before it knows any outcome,
// and kept down `downtimeMs`.
//
// Measured here, by this process, on the databases themselves:
// - inDoubtMaxMs: from the kill until no branch of the killed process is
//   prepared any more (polled every 10 ms with listPrepared);
// - lockHeldMaxMs: from the kill until a plain read of the transfer's key
//   stops failing with DTX_LOCK_CONFLICT (probed every 50 ms);
// - blocked: how many of those probes (one client's transactions wanting the
//   key) were refused in the meantime;
// - verifyOk: the books: the total is unchanged, the transfer's marker key is
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
import { createSqliteAdapter, type SqliteAdapter, type SqliteBranch } from '../adapters/sqlite.ts';
import { isDtxError } from '../errors.ts';
import { twoPcRecordCodec } from '../protocol/twopc/codec.ts';
import { createCoordinator } from '../runtime/coordinator.ts';
import { openSqliteLog } from '../runtime/log/sqlite.ts';
import type { PaxosCommitCoordinator } from '../runtime/paxos-commit/coordinator.ts';

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
  /** SIGKILL at this transfer's `prepared:all`; 0: recover and exit. */
  killAt: number;
  acceptors: string[];
  cluster: string;
}

const initial = 1000;
/** The backup's timeout: well above how long a live transfer stays prepared, even on a loaded machine. */
const takeoverMs = 2000;

/** One transfer of 1 from a to b, with a marker key `t<n>` written on both. */
async function transferIn(branch: <B>(resource: string) => Promise<B>, n: number): Promise<void> {
  const a = await branch<SqliteBranch>('a');
  const b = await branch<SqliteBranch>('b');
  a.put('balance', (a.get('balance') as number) - 1);
  b.put('balance', (b.get('balance') as number) + 1);
  a.put(`t${n}`, n);
  b.put(`t${n}`, n);
}

async function openDbs(dir: string, create: boolean): Promise<Record<'a' | 'b', SqliteAdapter>> {
  return {
    a: await createSqliteAdapter({ path: join(dir, 'a.sqlite'), create }),
    b: await createSqliteAdapter({ path: join(dir, 'b.sqlite'), create }),
  };
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
  const resources = await openDbs(spec.dir, false);
  if (spec.protocol === '2pc') {
    const log = await openSqliteLog(join(spec.dir, 'coordinator.sqlite'), {
      create: true,
      decode: (v) => twoPcRecordCodec.check(v),
    });
    const c = await createCoordinator({ log, resources, faults: dieAt(spec.killAt) });
    process.stdout.write('ready\n');
    for (let n = 1; n <= spec.killAt; n++) await c.transaction((tx) => transferIn(tx.branch, n));
    await c.close();
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
  for (let n = 1; n <= spec.killAt; n++) await c.transaction((tx) => transferIn(tx.branch, n));
  // A restarted leader: give its scan time to find what is left, then stop.
  if (spec.killAt === 0) await new Promise((r) => setTimeout(r, takeoverMs * 3));
  await c.close();
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
    private readonly dbs: Record<'a' | 'b', SqliteAdapter>,
    private readonly prefix: string,
    private readonly killedAt: number,
  ) {}

  async run(deadlineMs: number): Promise<void> {
    let nextProbe = 0;
    while (this.inDoubtMs === null || this.lockHeldMs === null) {
      const now = Date.now();
      if (now - this.killedAt > deadlineMs) throw new Error(`still in doubt after ${deadlineMs} ms`);
      if (this.inDoubtMs === null) {
        const left =
          (await this.dbs.a.listPrepared(this.prefix)).length +
          (await this.dbs.b.listPrepared(this.prefix)).length;
        if (left === 0) this.inDoubtMs = Date.now() - this.killedAt;
      }
      if (this.lockHeldMs === null && now >= nextProbe) {
        nextProbe = now + 50;
        const probe = await this.dbs.a.begin(`probe_${++this.probes}`);
        try {
          probe.get('balance');
          this.lockHeldMs = Date.now() - this.killedAt;
        } catch (error) {
          if (!isDtxError(error, 'DTX_LOCK_CONFLICT')) throw error;
          this.blocked++;
        }
        await probe.rollback();
      }
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

async function books(
  dbs: Record<'a' | 'b', SqliteAdapter>,
  n: number,
): Promise<{ ok: boolean; outcome: 'committed' | 'aborted' }> {
  const a = dbs.a.read('balance') as number;
  const b = dbs.b.read('balance') as number;
  const markA = dbs.a.read(`t${n}`) !== undefined;
  const markB = dbs.b.read(`t${n}`) !== undefined;
  const left = (await dbs.a.listPrepared('')).length + (await dbs.b.listPrepared('')).length;
  return {
    ok: a + b === 2 * initial && markA === markB && left === 0,
    outcome: markA ? 'committed' : 'aborted',
  };
}

async function seed(dir: string): Promise<Record<'a' | 'b', SqliteAdapter>> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const dbs = await openDbs(dir, true);
  for (const [name, db] of Object.entries(dbs)) {
    const b = await db.begin(`seed_${name}`);
    b.put('balance', initial);
    await b.prepare();
    await db.commitPrepared(`seed_${name}`);
  }
  return dbs;
}

const killAt = 3;

async function result(dbs: Record<'a' | 'b', SqliteAdapter>, watch: Watch): Promise<NonblockingResult> {
  const { ok, outcome } = await books(dbs, killAt);
  return {
    inDoubtMaxMs: watch.inDoubtMs!,
    lockHeldMaxMs: watch.lockHeldMs!,
    blocked: watch.blocked,
    verifyOk: ok,
    outcome,
  };
}

async function runTwoPc(
  dir: string,
  downtimeMs: number,
  log: (l: string) => void,
): Promise<NonblockingResult> {
  const dbs = await seed(dir);
  const spec: ChildSpec = { protocol: '2pc', dir, killAt, acceptors: [], cluster: 'demo' };
  log(`2pc: coordinator process runs ${killAt} transfers, SIGKILLed once transfer ${killAt} is prepared`);
  const leader = spawnDtx(['demo', 'nonblocking', '--child', JSON.stringify(spec)]);
  const killedAt = Number((await leader.line(/killing (\d+)/))[1]);
  await leader.exit;
  const watch = new Watch(dbs, 'dtx_', killedAt);
  const watching = watch.run(downtimeMs + 120_000);
  await new Promise((r) => setTimeout(r, downtimeMs));
  log(`2pc: down ${downtimeMs} ms; restarting the coordinator (recovery)`);
  const restarted = spawnDtx(['demo', 'nonblocking', '--child', JSON.stringify({ ...spec, killAt: 0 })]);
  await watching;
  await restarted.exit;
  const r = await result(dbs, watch);
  await dbs.a.close();
  await dbs.b.close();
  return r;
}

async function runPaxosCommit(
  dir: string,
  downtimeMs: number,
  log: (l: string) => void,
): Promise<NonblockingResult> {
  const dbs = await seed(dir);
  log('paxos-commit: starting 3 acceptor processes (F = 1)');
  const acceptors = [0, 1, 2].map((i) =>
    spawnDtx([
      'acceptor',
      '--listen',
      '127.0.0.1:0',
      '--data',
      join(dir, `acceptor${i}`),
      '--cluster',
      'demo',
    ]),
  );
  const urls = await Promise.all(acceptors.map(async (a) => (await a.line(/listening on (\S+)/))[1]!));
  let backup: PaxosCommitCoordinator | undefined;
  try {
    backup = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'l2',
      leaders: ['l1', 'l2'],
      acceptors: urls,
      cluster: 'demo',
      resources: dbs,
      takeoverMs,
      scanIntervalMs: 100,
    });
    const spec: ChildSpec = { protocol: 'paxos-commit', dir, killAt, acceptors: urls, cluster: 'demo' };
    log(
      `paxos-commit: leader process runs ${killAt} transfers, SIGKILLed once transfer ${killAt} is prepared`,
    );
    const leader = spawnDtx(['demo', 'nonblocking', '--child', JSON.stringify(spec)]);
    const killedAt = Number((await leader.line(/killing (\d+)/))[1]);
    await leader.exit;
    const watch = new Watch(dbs, 'pc_', killedAt);
    await Promise.all([watch.run(downtimeMs + 120_000), new Promise((r) => setTimeout(r, downtimeMs))]);
    log(`paxos-commit: down ${downtimeMs} ms; restarting the leader`);
    await spawnDtx(['demo', 'nonblocking', '--child', JSON.stringify({ ...spec, killAt: 0 })]).exit;
    return await result(dbs, watch);
  } finally {
    await backup?.close();
    for (const a of acceptors) a.child.kill('SIGTERM');
    await Promise.all(acceptors.map((a) => a.exit));
    await dbs.a.close();
    await dbs.b.close();
  }
}

export async function runNonblockingDemo(options: {
  dir: string;
  downtimeMs: number;
  log?: (line: string) => void;
}): Promise<NonblockingReport> {
  const log = options.log ?? (() => {});
  const twoPc = await runTwoPc(join(options.dir, '2pc'), options.downtimeMs, log);
  const paxos = await runPaxosCommit(join(options.dir, 'paxos-commit'), options.downtimeMs, log);
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
