// Histories from real databases: the list-append workload of
// `dtx bench --workload append` (src/cli/bench-append.ts) over three
// PostgreSQL databases, once per read mode, and over two PostgreSQL
// databases with MariaDB as the middle participant when `--mysql` is given;
// each run's history is checked for serializability and strict
// serializability (src/history). Prints one table row per run and keeps the
// histories in `--out` (`dtx check-history FILE` shows the witnesses).
//
// Run: node --import tsx bench/histories.ts [--seconds 10] [--concurrency 8] [--auditors 2]
//        [--keys 4] [--out DIR] [--mysql mysql://root@127.0.0.1:3306/DB] [--db URL x3]
// (`--db` three times uses those PostgreSQL databases; otherwise three
// throwaway clusters are started with test/adapters/pg-cluster.ts.)

import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditReads } from '../src/cli/audit.ts';
import { type AppendBenchReport, runAppendBench } from '../src/cli/bench-append.ts';
import { startPgCluster } from '../test/adapters/pg-cluster.ts';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const seconds = Number(flag('--seconds', '10'));
const concurrency = Number(flag('--concurrency', '8'));
const auditors = Number(flag('--auditors', '2'));
const keys = Number(flag('--keys', '4'));
const mysql = flag('--mysql', '');
const out = flag('--out', '');
const given = args.flatMap((a, i) => (a === '--db' && args[i + 1] !== undefined ? [args[i + 1]!] : []));

const modes: AuditReads[] = ['plain', 'serializable', 'locking', 'snapshot'];

function row(r: AppendBenchReport, load: string): string {
  const verdict = (v: AppendBenchReport['check']['serializable']) =>
    v.valid ? 'valid' : v.anomalyTypes.map((t) => `${t} ${v.counts[t]}`).join(', ');
  const rw = r.readWrite;
  const ro = r.readOnly;
  return (
    `| ${r.databases.join(' + ')} | ${r.reads} | ${rw.ok} / ${rw.fail} / ${rw.info} | ${ro.ok} / ${ro.fail} | ` +
    `${r.tps} | ${verdict(r.check.serializable)} | ${verdict(r.check['strict-serializable'])} | ${load} |`
  );
}

const work = mkdtempSync(join(tmpdir(), 'dtx-bench-histories-'));
const keep = out === '' ? work : out;
mkdirSync(keep, { recursive: true });
const clusters =
  given.length === 0 ? await Promise.all([startPgCluster(), startPgCluster(), startPgCluster()]) : [];
const pgs =
  given.length > 0 ? given : clusters.map((c) => `postgres://postgres@127.0.0.1:${c.port}/postgres`);
const rows: string[] = [];
try {
  const runs: { dbs: string[]; reads: AuditReads; name: string }[] = modes.map((reads) => ({
    dbs: pgs,
    reads,
    name: `pg-${reads}`,
  }));
  if (mysql !== '') {
    for (const reads of modes.filter((m) => m !== 'serializable')) {
      runs.push({ dbs: [pgs[0]!, mysql, pgs[2]!], reads, name: `mariadb-${reads}` });
    }
  }
  for (const run of runs) {
    const report = await runAppendBench({
      dbs: run.dbs,
      log: join(work, `${run.name}.sqlite`),
      concurrency,
      auditors,
      reads: run.reads,
      keys,
      durationS: seconds,
      init: true,
      history: join(keep, `${run.name}.jsonl`),
    });
    const line = row(report, loadavg()[0]!.toFixed(1));
    process.stderr.write(
      `${line}${report.firstFailure === null ? '' : `\n  first failure: ${report.firstFailure}`}\n`,
    );
    rows.push(line);
  }
} finally {
  await Promise.allSettled(clusters.map((c) => c.stop()));
  // The logs go; the histories stay only in --out.
  rmSync(work, { recursive: true, force: true });
}
console.log(
  `\nappend workload: ${seconds} s per run, ${concurrency} read-write + ${auditors} read-only workers, ` +
    `${keys} keys per database${out === '' ? '' : `; histories in ${out}`}`,
);
console.log(
  '| databases | reads | read-write ok / failed / unknown | read-only ok / failed | tps | serializable | strict-serializable | load avg (1 min) |',
);
console.log('|---|---|---|---|---|---|---|---|');
for (const line of rows) console.log(line);
