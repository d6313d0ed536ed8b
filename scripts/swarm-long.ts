// `npm run swarm:long [-- --seeds N] [--only name,name] [--workers K] [--from S]`:
// the long swarm soak. Runs `dtx swarm` (from the TypeScript sources, on K
// worker threads, K = the number of CPUs by default) for every protocol of
// the table below, a million seeds each unless told otherwise, and prints per
// protocol: seeds run, violations, transactions undecided after the heal,
// transactions committed (sagas and TCC: completed), wall time and seeds per
// second. Exits 1 when any swarm found a failing seed.

import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

interface SoakRow {
  /** What --only selects and the table prints. */
  name: string;
  /** The `dtx swarm` flags that make this row (protocol and its options). */
  args: string[];
  /** Set while the swarm cannot run this row yet: the reason, printed instead of running it. */
  unavailable?: string;
}

/** The protocols soaked. Edit here: one row per `dtx swarm` configuration. */
export const soakRows: readonly SoakRow[] = [
  { name: '2pc', args: ['--protocol', '2pc'] },
  { name: 'paxos-commit', args: ['--protocol', 'paxos-commit'] },
  { name: 'paxos-commit-faster', args: ['--protocol', 'paxos-commit', '--faster'] },
  { name: 'paxos-commit-colocated', args: ['--protocol', 'paxos-commit', '--colocated'] },
  { name: 'saga', args: ['--protocol', 'saga'] },
  { name: 'tcc', args: ['--protocol', 'tcc'] },
  {
    // 3PC is safe under crashes alone; partitions break it by design (docs/protocols/3pc.md).
    name: '3pc-crashes-only',
    args: ['--protocol', '3pc', '--crashes-only'],
  },
];

interface SoakResult {
  name: string;
  seeds: number;
  violations: number;
  undecidedAfterHeal: number;
  committed: number;
  wallMs: number;
  failingSeed: number | null;
  reproduce: string | null;
}

function swarm(row: SoakRow, seeds: number, from: number, workers: number): Promise<SoakResult> {
  const args = [join(root, 'bin', 'dtx.js'), 'swarm', ...row.args];
  args.push('--seeds', String(seeds), '--from', String(from), '--workers', String(workers), '--json');
  return new Promise((resolvePromise, reject) => {
    const started = performance.now();
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: { ...process.env, DTX_FROM_SOURCE: '1' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => {
      stdout += s;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0 && code !== 1)
        return reject(new Error(`dtx swarm ${row.args.join(' ')} exited ${code}`));
      const s = JSON.parse(stdout) as {
        seeds: number;
        violations: number;
        undecidedAfterHeal: number;
        committed?: number;
        completed?: number;
        failingSeed: number | null;
        reproduce: string | null;
      };
      resolvePromise({
        name: row.name,
        seeds: s.seeds,
        violations: s.violations,
        undecidedAfterHeal: s.undecidedAfterHeal,
        committed: s.committed ?? s.completed ?? 0,
        // The whole command, start-up included: what a million seeds really cost.
        wallMs: Math.round(performance.now() - started),
        failingSeed: s.failingSeed,
        reproduce: s.reproduce,
      });
    });
  });
}

interface SoakOptions {
  seeds: number;
  from: number;
  workers: number;
  only: string[] | null;
}

function positiveInt(flag: string, v: string | undefined): number {
  const n = Number(v);
  if (v === undefined || !Number.isInteger(n) || n < 1)
    throw new RangeError(`${flag} needs a positive integer`);
  return n;
}

function parseArgs(argv: string[]): SoakOptions {
  const o: SoakOptions = { seeds: 1_000_000, from: 1, workers: availableParallelism(), only: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--seeds') o.seeds = positiveInt(arg, argv[++i]);
    else if (arg === '--from') o.from = positiveInt(arg, argv[++i]);
    else if (arg === '--workers') o.workers = positiveInt(arg, argv[++i]);
    else if (arg === '--only') o.only = (argv[++i] ?? '').split(',').filter((s) => s !== '');
    else
      throw new RangeError(
        `unknown argument ${arg} (use --seeds N, --from S, --workers K, --only name,name)`,
      );
  }
  const unknown = (o.only ?? []).filter((n) => !soakRows.some((r) => r.name === n));
  if (unknown.length > 0)
    throw new RangeError(
      `unknown row(s) ${unknown.join(', ')}; rows: ${soakRows.map((r) => r.name).join(', ')}`,
    );
  return o;
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows
    .map((r) =>
      r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  '),
    )
    .join('\n');
}

async function main(): Promise<number> {
  let o: SoakOptions;
  try {
    o = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`swarm:long: ${(err as Error).message}\n`);
    return 2;
  }
  const rows = soakRows.filter((r) => o.only === null || o.only.includes(r.name));
  process.stdout.write(`${o.seeds} seed(s) from ${o.from} per protocol, ${o.workers} worker(s)\n`);
  const header = [
    'protocol',
    'seeds',
    'violations',
    'undecided after heal',
    'committed',
    'wall s',
    'seeds/s',
  ];
  const lines: string[][] = [header];
  const failures: SoakResult[] = [];
  for (const row of rows) {
    if (row.unavailable !== undefined) {
      process.stdout.write(`${row.name}: skipped: ${row.unavailable}\n`);
      continue;
    }
    const r = await swarm(row, o.seeds, o.from, o.workers);
    const perSecond = r.seeds / (r.wallMs / 1000);
    const line = [
      r.name,
      String(r.seeds),
      String(r.violations),
      String(r.undecidedAfterHeal),
      String(r.committed),
      (r.wallMs / 1000).toFixed(1),
      perSecond.toFixed(0),
    ];
    lines.push(line);
    process.stdout.write(`${table([header, line]).split('\n')[1]}\n`);
    if (r.failingSeed !== null) failures.push(r);
  }
  process.stdout.write(`\n${table(lines)}\n`);
  for (const f of failures)
    process.stdout.write(`${f.name}: seed ${f.failingSeed} failed; reproduce with:\n  ${f.reproduce}\n`);
  return failures.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`swarm:long: ${(err as Error).message}\n`);
    process.exitCode = 1;
  },
);
