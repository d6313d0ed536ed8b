// The Paxos Commit deployment the network-fault tests break: every role a
// host of its own on the test network (./netns.ts). Region a holds the leader
// (lead1), one acceptor (acc0), the debit database (db1) and the operator's
// host (ops); region b the backup leader (lead2), two acceptors (acc1, acc2)
// and the credit database (db2). Acceptors are `dtx acceptor` processes,
// leaders fixtures/leader.ts processes, databases throwaway PostgreSQL
// clusters listening on their host's address.
//
// What the tests read: each leader's transfers (outcome, start and end), the
// prepared branches on both databases, polled through their unix sockets (a
// path, so reachable from here whatever the network does) to measure how long
// each stayed in doubt, and `dtx verify` run on the ops host after a heal.

import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { createPostgresAdapter } from '../../src/adapters/postgres.ts';
import { initSchema } from '../../src/cli/db.ts';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';
import { type HostSpec, TestNet } from './netns.ts';

const dtxBin = fileURLToPath(new URL('../../bin/dtx.js', import.meta.url));
const leaderFixture = fileURLToPath(new URL('./fixtures/leader.ts', import.meta.url));

export const hostSpecs: HostSpec[] = [
  { name: 'lead1', region: 'a', octet: 11 },
  { name: 'acc0', region: 'a', octet: 21 },
  { name: 'db1', region: 'a', octet: 31 },
  { name: 'ops', region: 'a', octet: 40 },
  { name: 'lead2', region: 'b', octet: 12 },
  { name: 'acc1', region: 'b', octet: 22 },
  { name: 'acc2', region: 'b', octet: 23 },
  { name: 'db2', region: 'b', octet: 32 },
];
export const acceptorHosts = ['acc0', 'acc1', 'acc2'];
const acceptorPort = 7001;
const leaderPort = 7100;
/** PostgreSQL ports of these tests (their own range, apart from the other tests' clusters). */
const pgBasePort = 55400;
/** A branch of a leader cut off this long is taken over by the backup. */
export const takeoverMs = 3000;

/** A line on stderr with the time: set-up takes minutes on a loaded machine, and a timeout should say where. */
export function progress(what: string): void {
  process.stderr.write(`# ${new Date().toISOString().slice(11, 19)} ${what}\n`);
}

/** A process on a test host whose stdout is JSON lines. */
export class HostProcess {
  readonly lines: Record<string, unknown>[] = [];
  private err = '';
  readonly exited: Promise<number | null>;
  private waiters: (() => void)[] = [];

  constructor(
    readonly name: string,
    readonly proc: ChildProcess,
  ) {
    let buf = '';
    proc.stdout!.on('data', (d: Buffer) => {
      buf += d.toString();
      let i = buf.indexOf('\n');
      while (i >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
        try {
          this.lines.push(JSON.parse(line) as Record<string, unknown>);
        } catch {
          this.lines.push({ text: line });
        }
      }
      for (const w of this.waiters.splice(0)) w();
    });
    proc.stderr!.on('data', (d: Buffer) => {
      this.err = (this.err + d.toString()).slice(-4000);
    });
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code) => {
        for (const w of this.waiters.splice(0)) w();
        resolve(code);
      }),
    );
  }

  get stderr(): string {
    return this.err;
  }

  async waitFor(what: string, pred: (l: Record<string, unknown>) => boolean, timeoutMs = 300_000) {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.lines.find(pred);
      if (hit !== undefined) return hit;
      if (this.proc.exitCode !== null || this.proc.signalCode !== null)
        throw new Error(`${this.name} exited before ${what}: ${this.err}`);
      if (Date.now() > end) throw new Error(`${this.name}: timed out waiting for ${what}: ${this.err}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  kill(): void {
    this.proc.kill('SIGKILL');
  }
}

export interface Transfer {
  txn: string;
  r: string;
  t0: number;
  t1: number;
}

/** Times each `pc_` branch stayed prepared, from the databases' own clocks, by polling pg_prepared_xacts. */
export class InDoubtWatch {
  /** gid → [prepared at, last seen prepared at] (ms, the database's clock). */
  readonly seen = new Map<string, [number, number]>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private polling = false;

  constructor(private readonly clients: pg.Client[]) {}

  start(intervalMs = 50): void {
    this.timer = setInterval(() => void this.poll(), intervalMs);
  }

  private async poll(): Promise<void> {
    if (this.polling) return;
    this.polling = true;
    try {
      for (const c of this.clients) {
        const { rows } = await c.query<{ gid: string; prepared: Date; now: Date }>(
          "SELECT gid, prepared, now() AS now FROM pg_prepared_xacts WHERE gid LIKE 'pc\\_%'",
        );
        for (const r of rows) this.seen.set(r.gid, [r.prepared.getTime(), r.now.getTime()]);
      }
    } catch {
      // A poll that fails (a database restarting) is just a gap in the samples.
    } finally {
      this.polling = false;
    }
  }

  /** The longest time in doubt (ms) of the branches prepared in [fromMs, toMs), and how many there were. */
  maxInDoubtMs(fromMs: number, toMs: number): { maxMs: number; branches: number } {
    let maxMs = 0;
    let branches = 0;
    for (const [prepared, last] of this.seen.values()) {
      if (prepared < fromMs || prepared >= toMs) continue;
      branches++;
      maxMs = Math.max(maxMs, last - prepared);
    }
    return { maxMs, branches };
  }

  async preparedNow(): Promise<string[]> {
    const out: string[] = [];
    for (const c of this.clients) {
      const { rows } = await c.query<{ gid: string }>(
        "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE 'pc\\_%'",
      );
      out.push(...rows.map((r) => r.gid));
    }
    return out;
  }

  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
  }
}

export interface VerifyReport {
  ok: boolean;
  total: number;
  expectedTotal: number;
  committedTransfers: number;
  partialTransfers: number;
  preparedLeft: number;
}

export class PaxosNet {
  net!: TestNet;
  dbs: PgCluster[] = [];
  acceptors: HostProcess[] = [];
  backup!: HostProcess;
  watch!: InDoubtWatch;
  private clients: pg.Client[] = [];
  private readonly processes: HostProcess[] = [];
  private readonly dataDir = mkdtempSync(join(tmpdir(), 'dtx-netfaults-'));
  private leaders = 0;

  get dbUrls(): [string, string] {
    return this.dbs.map((d) => `postgres://postgres@${d.host}:${d.port}/postgres`) as [string, string];
  }

  get acceptorUrls(): string[] {
    return acceptorHosts.map((h) => `http://${this.net.host(h).ip}:${acceptorPort}`);
  }

  /** Builds the network, starts the databases, the acceptors and the backup leader, and creates the books. */
  async start(accounts: number): Promise<void> {
    progress('building the test network');
    this.net = await TestNet.create(hostSpecs);
    progress('starting the databases');
    for (const host of ['db1', 'db2']) {
      const h = this.net.host(host);
      this.dbs.push(await startPgCluster({ netns: h.ns, listen: h.ip, basePort: pgBasePort }));
    }
    progress('starting the acceptors');
    for (const host of acceptorHosts) {
      const p = this.spawnOn(host, 'acceptor', [
        process.execPath,
        dtxBin,
        'acceptor',
        '--listen',
        `${this.net.host(host).ip}:${acceptorPort}`,
        '--data',
        join(this.dataDir, host),
      ]);
      this.acceptors.push(p);
    }
    for (const a of this.acceptors)
      await a.waitFor('listening', (l) => String(l.text ?? '').includes('listening on'));
    for (const d of this.dbs) {
      const c = new pg.Client({ host: d.dir, port: d.port, user: 'postgres', database: 'postgres' });
      await c.connect();
      this.clients.push(c);
    }
    this.watch = new InDoubtWatch(this.clients);
    this.watch.start();
    // The books, created from here through the unix sockets; the backup starts once they exist.
    for (const [i, d] of this.dbs.entries()) {
      const adapter = await createPostgresAdapter({
        connection: { host: d.dir, port: d.port, user: 'postgres', database: 'postgres' },
      });
      const target = { url: this.dbUrls[i]!, kind: 'postgres', name: `db${i + 1}` } as const;
      await initSchema(target, adapter, accounts, i === 0 ? 'debit' : 'credit');
      await adapter.close();
    }
    progress('books created; starting the backup leader');
    this.backup = this.startLeader('lead2', { workers: 0, accounts });
    await this.backup.waitFor('ready', (l) => l.ready === true);
    progress('ready');
  }

  private spawnOn(host: string, name: string, argv: string[], env: Record<string, string> = {}): HostProcess {
    const [cmd, args] = this.net.exec(host, argv);
    const proc = spawn(cmd, args, {
      env: { ...process.env, DTX_FROM_SOURCE: '1', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const p = new HostProcess(`${name}@${host}`, proc);
    this.processes.push(p);
    return p;
  }

  /** Starts a leader process on `host` (lead1 or lead2), both in ballot order l1, l2. */
  startLeader(
    host: 'lead1' | 'lead2',
    o: { workers: number; accounts: number; txnTimeoutMs?: number },
  ): HostProcess {
    this.leaders++;
    const id = host === 'lead1' ? 'l1' : 'l2';
    return this.spawnOn(host, `leader${this.leaders}`, [process.execPath, '--import', 'tsx', leaderFixture], {
      DTX_NET_LEADER: JSON.stringify({
        id,
        leaders: ['l1', 'l2'],
        acceptors: this.acceptorUrls,
        listen: `${this.net.host(host).ip}:${leaderPort}`,
        dbs: this.dbUrls,
        workers: o.workers,
        accounts: o.accounts,
        takeoverMs,
        txnTimeoutMs: o.txnTimeoutMs ?? 30_000,
      }),
    });
  }

  /** Lets a leader's workers finish, closes it, and returns its transfers. */
  async stopLeader(p: HostProcess, timeoutMs = 300_000): Promise<Transfer[]> {
    p.proc.stdin!.write('stop\n');
    await p.waitFor('stopped', (l) => l.stopped === true, timeoutMs);
    await p.exited;
    return transfers(p);
  }

  /** Waits until no `pc_` branch is prepared on either database. */
  async quiesce(timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const left = await this.watch.preparedNow();
      if (left.length === 0) return;
      if (Date.now() > end)
        throw new Error(`branches still prepared after ${timeoutMs} ms: ${left.join(', ')}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  /** `dtx verify` on the ops host: conservation, no partial transfer, nothing of dtx left prepared. */
  verify(): VerifyReport {
    const [cmd, args] = this.net.exec('ops', [
      process.execPath,
      dtxBin,
      'verify',
      '--db',
      this.dbUrls[0],
      '--db',
      this.dbUrls[1],
      '--json',
    ]);
    let out: string;
    try {
      out = execFileSync(cmd, args, { env: { ...process.env, DTX_FROM_SOURCE: '1' }, encoding: 'utf8' });
    } catch (error) {
      // dtx verify exits 1 when the books are wrong, with its report on stdout.
      out = String((error as { stdout?: unknown }).stdout ?? '');
      if (out === '') throw error;
    }
    return JSON.parse(out) as VerifyReport;
  }

  /** The transfers committed on both databases (dtx_bench.transfers), read through the unix sockets. */
  async committedTxns(): Promise<Set<string>[]> {
    return Promise.all(
      this.clients.map(
        async (c) =>
          new Set(
            (await c.query<{ txn: string }>('SELECT txn FROM dtx_bench.transfers')).rows.map((r) => r.txn),
          ),
      ),
    );
  }

  /** Stops everything and removes the network. Safe to call twice, and from a failed start. */
  async close(): Promise<void> {
    this.watch?.stop();
    for (const c of this.clients.splice(0)) await c.end().catch(() => undefined);
    for (const p of this.processes) p.kill();
    for (const d of this.dbs.splice(0)) await d.stop().catch(() => undefined);
    this.net?.destroy();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  /** What a signal handler can do: kill the processes, stop the databases, remove the network, synchronously. */
  closeNow(): void {
    for (const p of this.processes) p.kill();
    for (const d of this.dbs) {
      try {
        execFileSync('bash', [
          fileURLToPath(new URL('../../scripts/pg-cluster.sh', import.meta.url)),
          'stop',
          d.dir,
        ]);
        rmSync(`${d.dir}.owner`, { force: true });
      } catch {
        // best effort: the next run's sweep removes what is left
      }
    }
    this.net?.destroy();
  }
}

export function transfers(p: HostProcess): Transfer[] {
  return p.lines.filter((l) => typeof l.r === 'string') as unknown as Transfer[];
}

/** Median, 99th percentile and max of `xs` (ms), rounded. */
export function latency(xs: number[]): { p50: number; p99: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const at = (q: number) => (s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.floor(q * s.length))]!);
  return { p50: Math.round(at(0.5)), p99: Math.round(at(0.99)), max: Math.round(s.at(-1) ?? 0) };
}
