// Shared set-up of the Paxos Commit runtime tests: acceptors (in this process,
// or as `dtx acceptor` processes that a test can SIGKILL and restart on the
// same port and data directory) and SQLite participants with two accounts.

import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createSqliteAdapter, type SqliteAdapter, type SqliteBranch } from '../../../src/adapters/sqlite.ts';
import type { PaxosCommitCoordinator } from '../../../src/runtime/paxos-commit/coordinator.ts';

const dtxBin = fileURLToPath(new URL('../../../bin/dtx.js', import.meta.url));

export function tempDir(name: string): string {
  return mkdtempSync(join(tmpdir(), `dtx-pc-${name}-`));
}

/** A `dtx acceptor` process, restartable on the same port and directory. */
export class AcceptorProcess {
  proc: ChildProcess | null = null;
  url = '';
  private port = 0;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly dataDir: string,
    readonly cluster = 'dtx',
    /** More `dtx acceptor` flags, e.g. `--syncs-in-flight 1`. */
    readonly flags: readonly string[] = [],
  ) {}

  async start(): Promise<void> {
    const proc = spawn(
      process.execPath,
      [
        dtxBin,
        'acceptor',
        '--listen',
        `127.0.0.1:${this.port}`,
        '--data',
        this.dataDir,
        '--cluster',
        this.cluster,
        ...this.flags,
      ],
      { env: { ...process.env, DTX_FROM_SOURCE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = proc;
    this.exited = new Promise((resolve) => proc.once('exit', () => resolve()));
    let out = '';
    let err = '';
    proc.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
    });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`acceptor did not start: ${err}`)), 300_000);
      proc.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /listening on (http:\/\/[0-9.]+:(\d+))/.exec(out);
        if (m !== null) {
          clearTimeout(timer);
          this.url = m[1]!;
          this.port = Number(m[2]);
          resolve();
        }
      });
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`acceptor exited ${code}: ${err}`));
      });
    });
  }

  async kill9(): Promise<void> {
    this.proc?.kill('SIGKILL');
    await this.exited;
    this.proc = null;
  }

  async stop(): Promise<void> {
    this.proc?.kill('SIGTERM');
    await this.exited;
    this.proc = null;
  }
}

export async function startAcceptorProcesses(
  n: number,
  cluster = 'dtx',
  flags: readonly string[] = [],
): Promise<AcceptorProcess[]> {
  const all = Array.from({ length: n }, (_, i) => new AcceptorProcess(tempDir(`acc${i}`), cluster, flags));
  const started = await Promise.allSettled(all.map((a) => a.start()));
  const failed = started.find((r) => r.status === 'rejected');
  if (failed !== undefined) {
    // Leave no process behind when one of them did not come up.
    await Promise.all(all.map((a) => a.kill9()));
    throw (failed as PromiseRejectedResult).reason;
  }
  return all;
}

/** Two SQLite participants, `a` and `b`, each holding one account with `initial`. */
export async function accountDbs(
  initial = 100,
): Promise<{ paths: Record<string, string>; adapters: Record<string, SqliteAdapter> }> {
  const dir = tempDir('db');
  const paths = { a: join(dir, 'a.db'), b: join(dir, 'b.db') };
  const adapters: Record<string, SqliteAdapter> = {};
  for (const [name, path] of Object.entries(paths)) {
    const adapter = await createSqliteAdapter({ path, create: true });
    const branch = await adapter.begin(`seed_${name}`);
    branch.put('balance', initial);
    await branch.prepare();
    await adapter.commitPrepared(`seed_${name}`);
    adapters[name] = adapter;
  }
  return { paths, adapters };
}

/** Moves `amount` from a to b in one transaction. */
export function transfer(c: PaxosCommitCoordinator, amount: number): Promise<void> {
  return c.transaction(async (tx) => {
    const a = await tx.branch<SqliteBranch>('a');
    const b = await tx.branch<SqliteBranch>('b');
    a.put('balance', (a.get('balance') as number) - amount);
    b.put('balance', (b.get('balance') as number) + amount);
  });
}

export async function waitUntil(
  what: string,
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 30_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const leaderFixture = fileURLToPath(new URL('./fixtures/leader.ts', import.meta.url));

/** A leader process (fixtures/leader.ts, `args` its DTX_PC_LEADER): what it printed so far, and how it exits. */
export function spawnLeader(args: Record<string, unknown>): {
  output(): string;
  exited: Promise<NodeJS.Signals | null>;
  running(): boolean;
} {
  const proc = spawn(process.execPath, ['--import', 'tsx', leaderFixture], {
    env: { ...process.env, DTX_PC_LEADER: JSON.stringify(args) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return {
    output: () => out,
    exited: new Promise((resolve) => proc.once('exit', (_c, s) => resolve(s))),
    running: () => proc.exitCode === null && proc.signalCode === null,
  };
}

/**
 * A leader of transfers of 1 from a to b (100 each) killed with every branch
 * of transfer 3 prepared: waits until `backup` resolved both in-doubt
 * branches, checks the transfer was applied on both or neither, and returns
 * how long they stayed in doubt after the kill.
 */
export async function checkTakenOver(
  adapters: Record<string, SqliteAdapter>,
  backup: PaxosCommitCoordinator,
  leader: { output(): string; exited: Promise<NodeJS.Signals | null> },
): Promise<number> {
  const exit = await leader.exited;
  const out = leader.output();
  assert.equal(exit, 'SIGKILL', `the leader did not die at its crash point:\n${out}`);
  const killedAt = Number(/killing at (\d+)/.exec(out)![1]);
  assert.match(out, /done 2\n/);
  // The dead leader's two prepared branches are in doubt until the backup resolves them.
  const inDoubt = async () =>
    (await adapters.a!.listPrepared('pc_')).length + (await adapters.b!.listPrepared('pc_')).length;
  await waitUntil('the backup to resolve the in-doubt branches', async () => (await inDoubt()) === 0, 60_000);
  const inDoubtMs = Date.now() - killedAt;
  const a = adapters.a!.read('balance') as number;
  const b = adapters.b!.read('balance') as number;
  assert.equal(a + b, 200, 'money was made or lost');
  assert.ok(a === 97 || a === 98, `transfer 3 was applied ${a === 97 ? 'on both' : 'partly'}: a = ${a}`);
  assert.equal(backup.recovered.committed + backup.recovered.rolledBack, 2);
  return inDoubtMs;
}
