// What holding the commit fence from PREPARE costs snapshot readers: the
// same `dtx bench` (2PC transfers with two snapshot auditors) run by this
// checkout, where every transaction holds the fence from its first PREPARE,
// and by another checkout given with --base (one from before, where the
// fence was entered at the commit record), alternating run by run so that
// the machine's drift hits both alike. Both run against the same three
// PostgreSQL databases (`--db` three times, or three throwaway clusters made
// with scripts/pg-cluster.sh). Prints per side the medians over rounds of:
// tps, audits/s, audit latency, how long a snapshot waited for the phases
// under way, and how long it held new ones back. Load averages at the start
// and the end: figures are only comparable at one load.
//
// Run: node --import tsx bench/snapshot-wait.ts --base DIR [--rounds 3] [--seconds 5] [--db URL --db URL --db URL]

import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { BenchOptions, BenchReport } from '../src/cli/bench.ts';
import { runBench } from '../src/cli/bench.ts';
import { startPgCluster } from '../test/adapters/pg-cluster.ts';

const args = process.argv.slice(2);
const flag = (name: string, fallback?: string) => {
  const i = args.indexOf(name);
  const value = i >= 0 ? args[i + 1] : fallback;
  if (value === undefined) throw new Error(`${name} is required`);
  return value;
};
const rounds = Number(flag('--rounds', '3'));
const seconds = Number(flag('--seconds', '5'));
const base = resolve(flag('--base'));
const given = args.flatMap((a, i) => (a === '--db' && args[i + 1] !== undefined ? [args[i + 1]!] : []));

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return 0;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const r1 = (x: number) => Math.round(x * 10) / 10;
const load = () => loadavg()[0]!.toFixed(1);

async function main(): Promise<void> {
  const baseBench = (await import(pathToFileURL(join(base, 'src/cli/bench.ts')).href)) as {
    runBench: (options: BenchOptions) => Promise<BenchReport>;
  };
  const sides = [
    { name: 'fence from the commit record (--base)', runBench: baseBench.runBench },
    { name: 'fence from the first PREPARE (this checkout)', runBench },
  ];
  const clusters = [];
  if (given.length === 0) for (let i = 0; i < 3; i++) clusters.push(await startPgCluster());
  const dbs =
    given.length > 0 ? given : clusters.map((c) => `postgres://postgres@127.0.0.1:${c.port}/postgres`);
  const work = mkdtempSync(join(tmpdir(), 'dtx-snapshot-wait-'));
  try {
    const load0 = load();
    // The transfers, as bench/isolation.ts runs them.
    const transfers = (log: string) => ({
      dbs,
      log,
      protocol: '2pc' as const,
      accounts: 1000,
      concurrency: 8,
    });
    const options = (log: string): BenchOptions => ({
      ...transfers(log),
      durationS: seconds,
      init: false,
      auditors: 2,
      reads: 'snapshot',
    });
    // Each side its own coordinator log, created (and the accounts set up) by a short first run.
    for (const [i, side] of sides.entries()) {
      await side.runBench({ ...transfers(join(work, `side-${i}.sqlite`)), txns: 8, init: true });
    }
    const reports = sides.map(() => [] as BenchReport[]);
    for (let round = 0; round < rounds; round++) {
      // Alternate which side goes first, so that neither always follows the other.
      const order = round % 2 === 0 ? [0, 1] : [1, 0];
      for (const i of order) {
        const report = await sides[i]!.runBench(options(join(work, `side-${i}.sqlite`)));
        reports[i]!.push(report);
      }
    }
    console.log(
      `snapshot auditors: ${rounds} rounds of ${seconds} s per side, 3 PostgreSQL databases, 1,000 accounts, ` +
        `concurrency 8, 2 snapshot auditors; load average ${load0} at the start, ${load()} at the end`,
    );
    console.log(
      '| fence held | tps | audits/s | audit p50 / p99 ms | snapshot waited p50 / p99 ms | commits held back p50 / p99 ms | wrong totals |',
    );
    console.log('|---|---|---|---|---|---|---|');
    for (const [i, side] of sides.entries()) {
      const rs = reports[i]!;
      const a = rs.map((r) => r.audit!);
      const m = (f: (x: (typeof a)[number]) => number | undefined) => r1(median(a.map((x) => f(x) ?? 0)));
      const audits = a.reduce((n, x) => n + x.audits, 0);
      const wrong = a.reduce((n, x) => n + x.inconsistentAudits, 0);
      console.log(
        `| ${side.name} | ${r1(median(rs.map((r) => r.tps)))} | ${r1(median(a.map((x) => x.audits / seconds)))} | ` +
          `${m((x) => x.latencyMs.p50)} / ${m((x) => x.latencyMs.p99)} | ` +
          `${m((x) => x.snapshotWaitedMs?.p50)} / ${m((x) => x.snapshotWaitedMs?.p99)} | ` +
          `${m((x) => x.snapshotHeldMs?.p50)} / ${m((x) => x.snapshotHeldMs?.p99)} | ${wrong} of ${audits} |`,
      );
    }
  } finally {
    await Promise.allSettled(clusters.map((c) => c.stop()));
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
