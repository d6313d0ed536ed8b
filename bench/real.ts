// What bench/twopc.ts and bench/saga.ts share: their flags, the throwaway
// databases they start (PostgreSQL clusters from scripts/pg-cluster.sh, fsync
// on, and a database of their own on the machine's MariaDB), the closed loop
// that times one round, and the table of rows with their ratios.
//
// Every row of a bench runs in this one process, in alternating rounds (round
// r runs the rows in an order rotated by r), against the same pools and
// drivers, so that load from the rest of the machine falls on all rows alike
// and the ratios between them mean something even on a busy machine. Client
// CPU is process.cpuUsage() (user + system, every thread of this process) over
// the round, divided by the transactions it committed.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import mysql from 'mysql2/promise';
import { type Summary, summarize } from '../src/sim/stats.ts';
import { type PgCluster, startPgCluster } from '../test/adapters/pg-cluster.ts';

export interface BenchFlags {
  seconds: number;
  rounds: number;
  concurrency: number[];
  json: boolean;
  accounts: number;
  /** A mysql:// URL naming the database the mixed topology uses (created when missing); 'off' skips it. */
  mariadb: string;
  topologies: ('pg' | 'pg+mariadb')[];
  /** bench:2pc only: one long dtx run at the highest concurrency, printing RSS. */
  soakS: number | undefined;
  /** bench:2pc only: one more row, dtx with its SQLite log on a worker thread (the log's `thread: 'worker'`). */
  compareLogThread: boolean;
  /**
   * bench:2pc and bench:saga: one more dtx row whose log is an in-memory
   * SQLite database (`unsafeMemory`: NOT durable, never for use). It measures
   * what the forced log writes cost: the gap between it and the baseline is
   * everything else dtx does.
   */
  diagnoseLog: boolean;
  /** bench:2pc only: one more row, Paxos Commit with votes to all 2F+1 acceptors (`acceptorFanout: 'all'`). */
  compareFanout: boolean;
  /** bench:2pc only: one more row, Paxos Commit whose acceptors keep one log sync in flight (`--syncs-in-flight 1`; the default is 2). */
  compareSyncs: boolean;
  compareVoteHold: boolean;
  /** Run only the rows whose name contains one of these (the first row left is the ratios' baseline). */
  rows: string[] | undefined;
}

const usage = `flags: --seconds S (per round, default 6) --rounds N (default 3) --concurrency 1,8,32
       --topology pg|pg+mariadb|all (default all) --accounts N (default 10000)
       --mariadb mysql://root@127.0.0.1:3306/DB (default dtx_bench_real; 'off' to skip)
       --json --quick (a short run that checks every row works: not a measurement)
       --soak S (bench:2pc: S seconds of dtx at the highest concurrency, RSS at start, middle, end)
       --compare-log-thread (bench:2pc: one more row, dtx with its SQLite log on a worker thread)
       --diagnose-log (one more row, dtx with its log in memory: NOT durable, measures what the forced writes cost)
       --compare-fanout (bench:2pc: one more row, Paxos Commit with votes to all 2F+1 acceptors)
       --compare-syncs (bench:2pc: one more row, Paxos Commit with acceptors at --syncs-in-flight 1)
       --compare-vote-hold (bench:2pc: one more row, Paxos Commit sending each vote as its branch prepares)
       --rows A,B (only the rows whose name contains A or B; the first one left is the ratios' baseline)`;

export function parseFlags(argv: string[]): BenchFlags {
  const flags: BenchFlags = {
    seconds: 6,
    rounds: 3,
    concurrency: [1, 8, 32],
    json: false,
    accounts: 10_000,
    mariadb: process.env.DTX_BENCH_MARIADB_URL ?? 'mysql://root@127.0.0.1:3306/dtx_bench_real',
    topologies: ['pg', 'pg+mariadb'],
    soakS: undefined,
    compareLogThread: false,
    diagnoseLog: false,
    compareFanout: false,
    compareSyncs: false,
    compareVoteHold: false,
    rows: undefined,
  };
  const number = (name: string, v: string | undefined): number => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n <= 0)
      throw new Error(`${name} needs a positive number\n${usage}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    switch (a) {
      case '--seconds':
        flags.seconds = number(a, v);
        i++;
        break;
      case '--rounds':
        flags.rounds = Math.ceil(number(a, v));
        i++;
        break;
      case '--accounts':
        flags.accounts = Math.ceil(number(a, v));
        i++;
        break;
      case '--concurrency':
        flags.concurrency = (v ?? '').split(',').map((c) => Math.ceil(number(a, c)));
        i++;
        break;
      case '--topology':
        if (v === 'all') flags.topologies = ['pg', 'pg+mariadb'];
        else if (v === 'pg' || v === 'pg+mariadb') flags.topologies = [v];
        else throw new Error(`--topology takes pg, pg+mariadb or all\n${usage}`);
        i++;
        break;
      case '--mariadb':
        flags.mariadb = v ?? '';
        i++;
        break;
      case '--soak':
        flags.soakS = number(a, v);
        i++;
        break;
      case '--json':
        flags.json = true;
        break;
      case '--compare-log-thread':
        flags.compareLogThread = true;
        break;
      case '--diagnose-log':
        flags.diagnoseLog = true;
        break;
      case '--compare-fanout':
        flags.compareFanout = true;
        break;
      case '--compare-syncs':
        flags.compareSyncs = true;
        break;
      case '--compare-vote-hold':
        flags.compareVoteHold = true;
        break;
      case '--rows':
        flags.rows = (v ?? '').split(',').filter((r) => r !== '');
        if (flags.rows.length === 0) throw new Error(`--rows needs a list of names\n${usage}`);
        i++;
        break;
      case '--quick':
        flags.seconds = 0.4;
        flags.rounds = 1;
        flags.accounts = 1_000;
        break;
      default:
        throw new Error(`unknown flag ${a}\n${usage}`);
    }
  }
  return flags;
}

/** Throwaway PostgreSQL clusters, stopped when `stop` runs (also on SIGINT/SIGTERM). */
export async function startClusters(n: number): Promise<{ urls: string[]; stop(): Promise<void> }> {
  const clusters: PgCluster[] = [];
  const stop = async () => {
    await Promise.allSettled(clusters.map((c) => c.stop()));
  };
  const onSignal = () => {
    void stop().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    // One after the other: scripts/pg-cluster.sh claims ports one at a time.
    for (let i = 0; i < n; i++) clusters.push(await startPgCluster());
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    urls: clusters.map((c) => `postgres://postgres@${c.host}:${c.port}/postgres`),
    stop: async () => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      await stop();
    },
  };
}

/** Creates the MariaDB database `url` names; undefined (and why) when the server cannot be reached. */
export async function ensureMariaDb(url: string): Promise<{ url: string } | { skipped: string }> {
  if (url === 'off') return { skipped: '--mariadb off' };
  const u = new URL(url);
  const database = decodeURIComponent(u.pathname.slice(1));
  if (!/^[A-Za-z0-9_]{1,64}$/.test(database)) throw new Error(`--mariadb must name a database: ${url}`);
  try {
    const admin = await mysql.createConnection({
      host: u.hostname,
      port: Number(u.port || 3306),
      user: decodeURIComponent(u.username || 'root'),
      password: decodeURIComponent(u.password),
    });
    try {
      await admin.query(`CREATE DATABASE IF NOT EXISTS ${database}`);
    } finally {
      await admin.end();
    }
    return { url };
  } catch (err) {
    return { skipped: `MariaDB at ${u.host} unreachable (${(err as Error).message})` };
  }
}

/** One row of a table: a way of running the same transfer. */
export interface Variant {
  name: string;
  /** One transfer; resolves 'committed', or what else it ended as. Throws only what must stop the bench. */
  transfer(): Promise<string>;
  /** Runs after each of its rounds (e.g. waits until work acknowledged early is applied). */
  settle?(): Promise<void>;
}

export interface RoundResult {
  committed: number;
  other: Record<string, number>;
  elapsedS: number;
  cpuUs: number;
  latenciesMs: number[];
}

/** `concurrency` workers, one transfer after the other each, for `seconds`. */
export async function runRound(v: Variant, concurrency: number, seconds: number): Promise<RoundResult> {
  const latenciesMs: number[] = [];
  const other: Record<string, number> = {};
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const deadline = t0 + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        const start = performance.now();
        const outcome = await v.transfer();
        if (outcome === 'committed') latenciesMs.push(performance.now() - start);
        else other[outcome] = (other[outcome] ?? 0) + 1;
      }
    }),
  );
  const elapsedS = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  await v.settle?.();
  return { committed: latenciesMs.length, other, elapsedS, cpuUs: cpu.user + cpu.system, latenciesMs };
}

export interface Row {
  topology: string;
  concurrency: number;
  variant: string;
  committed: number;
  /** Transfers that ended otherwise (aborted, compensated...), by outcome. */
  other: Record<string, number>;
  tps: number;
  latencyMs: Summary;
  cpuMsPerTxn: number;
  /** This row against the table's first row (the baseline) at the same concurrency. */
  tpsRatio: number;
  cpuRatio: number;
}

/**
 * Runs every variant at every concurrency for `rounds` rounds, alternating:
 * each round runs each concurrency's variants once, in an order rotated by
 * the round. A short warm-up first (JIT, pools, caches), not counted.
 */
export async function runTable(
  topology: string,
  variants: Variant[],
  flags: BenchFlags,
  progress: (line: string) => void,
): Promise<Row[]> {
  const only = flags.rows;
  if (only !== undefined) variants = variants.filter((v) => only.some((r) => v.name.includes(r)));
  for (const v of variants) await runRound(v, 4, Math.min(1, flags.seconds));
  const results = new Map<string, RoundResult[]>();
  for (let round = 0; round < flags.rounds; round++) {
    for (const c of flags.concurrency) {
      for (let k = 0; k < variants.length; k++) {
        const v = variants[(k + round) % variants.length]!;
        const r = await runRound(v, c, flags.seconds);
        const key = `${c}\t${v.name}`;
        results.set(key, [...(results.get(key) ?? []), r]);
        progress(
          `${topology} round ${round + 1}/${flags.rounds} c=${c} ${v.name}: ` +
            `${(r.committed / r.elapsedS).toFixed(1)} tps`,
        );
      }
    }
  }
  const rows: Row[] = [];
  for (const c of flags.concurrency) {
    const first = rows.length;
    for (const v of variants) {
      const rs = results.get(`${c}\t${v.name}`) ?? [];
      const committed = rs.reduce((n, r) => n + r.committed, 0);
      const elapsedS = rs.reduce((n, r) => n + r.elapsedS, 0);
      const cpuUs = rs.reduce((n, r) => n + r.cpuUs, 0);
      const other: Record<string, number> = {};
      for (const r of rs) for (const [k, n] of Object.entries(r.other)) other[k] = (other[k] ?? 0) + n;
      const tps = committed / elapsedS;
      const cpuMsPerTxn = committed === 0 ? 0 : cpuUs / 1000 / committed;
      const base = rows[first];
      rows.push({
        topology,
        concurrency: c,
        variant: v.name,
        committed,
        other,
        tps: round1(tps),
        latencyMs: summarize(rs.flatMap((r) => r.latenciesMs)),
        cpuMsPerTxn: round3(cpuMsPerTxn),
        tpsRatio: base === undefined ? 1 : round3(tps / base.tps),
        cpuRatio: base === undefined ? 1 : round3(cpuMsPerTxn / base.cpuMsPerTxn),
      });
    }
  }
  return rows;
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const round3 = (x: number) => Math.round(x * 1000) / 1000;

export function printRows(title: string, rows: Row[]): void {
  console.log(title);
  const head = [
    'topology',
    'c',
    'row',
    'committed',
    'tps',
    'p50 ms',
    'p99 ms',
    'cpu ms/txn',
    'tps ratio',
    'cpu ratio',
    'other',
  ];
  const lines = rows.map((r) => [
    r.topology,
    String(r.concurrency),
    r.variant,
    String(r.committed),
    r.tps.toFixed(1),
    r.latencyMs.p50.toFixed(2),
    r.latencyMs.p99.toFixed(2),
    r.cpuMsPerTxn.toFixed(3),
    `${r.tpsRatio.toFixed(2)}x`,
    `${r.cpuRatio.toFixed(2)}x`,
    Object.entries(r.other)
      .map(([k, n]) => `${k} ${n}`)
      .join(', ') || '-',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]) =>
    cells
      .map((cell, i) =>
        i <= 2 || i === cells.length - 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!),
      )
      .join('  ');
  console.log(fmt(head));
  for (const l of lines) console.log(fmt(l));
}

/** What every report says next to its figures: the machine's load while it ran. */
export async function loadAverage(): Promise<number[]> {
  const { loadavg } = await import('node:os');
  return loadavg().map((x) => Math.round(x * 100) / 100);
}

/** A unique-enough prefix for the transfer ids of this process. */
export const incarnation = `${Date.now().toString(36)}${process.pid.toString(36)}`;

/**
 * A bench's whole run: the flags, `clusterCount` throwaway PostgreSQL
 * clusters, each topology in turn (`pg`: every cluster; `pg+mariadb`: the
 * first cluster and MariaDB), then the table (or JSON) with the load average.
 * `bench` runs one topology and returns its rows (none for a soak).
 */
export async function runBenchMain(
  name: '2pc' | 'saga' | 'serve',
  clusterCount: number,
  title: (flags: BenchFlags) => string,
  bench: (topology: string, urls: string[], flags: BenchFlags, logDir: string) => Promise<Row[]>,
  /** What a bench reports beyond its rows: lines after the table, fields of the JSON object. */
  extra?: { lines(rows: Row[]): string[]; json(rows: Row[]): Record<string, unknown> },
): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const load = [await loadAverage()];
  const clusters = await startClusters(flags.topologies.includes('pg') ? clusterCount : 1);
  const logDir = mkdtempSync(join(tmpdir(), `dtx-bench-${name}-`));
  const rows: Row[] = [];
  const skipped: string[] = [];
  try {
    for (const topology of flags.topologies) {
      if (topology === 'pg') rows.push(...(await bench('pg', clusters.urls, flags, logDir)));
      else {
        const maria = await ensureMariaDb(flags.mariadb);
        if ('skipped' in maria) skipped.push(`pg+mariadb: ${maria.skipped}`);
        else rows.push(...(await bench('pg+mariadb', [clusters.urls[0]!, maria.url], flags, logDir)));
      }
    }
  } finally {
    await clusters.stop();
    rmSync(logDir, { recursive: true, force: true });
  }
  load.push(await loadAverage());
  if (flags.soakS !== undefined) return;
  if (flags.json) {
    const { seconds, rounds } = flags;
    console.log(
      JSON.stringify({
        bench: name,
        seconds,
        rounds,
        loadAverage: load,
        rows,
        skipped,
        ...extra?.json(rows),
      }),
    );
    return;
  }
  printRows(title(flags), rows);
  for (const line of extra?.lines(rows) ?? []) console.log(line);
  for (const s of skipped) console.log(`skipped ${s}`);
  console.log(`load average (1, 5, 15 min) at start ${load[0]!.join(' ')}, at end ${load[1]!.join(' ')}`);
}
