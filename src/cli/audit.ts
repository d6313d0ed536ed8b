// Auditors for `dtx bench --auditors N --reads MODE` and `dtx verify --live`:
// each sums the accounts of the first two databases (the debit and the
// credit side) over and over while transfers run, and counts the audits
// whose total is not the one `--init` set up. Transfers move money between
// the two, so only a read that sees every transfer on both sides or on
// neither finds the right total.
//
//   plain         one autocommit SELECT per database, in parallel
//   serializable  one SERIALIZABLE READ ONLY transaction per database
//   locking       one distributed transaction of locking reads (tx.read),
//                 database by database in resource order; it votes read-only
//   snapshot      one consistent snapshot per database (coordinator.snapshot
//                 or, in another process, the shared commit fence)

import { performance } from 'node:perf_hooks';
import type { ResourceAdapter } from '../adapters/types.ts';
import { isDtxError } from '../errors.ts';
import type { CommitFence } from '../runtime/commit-fence.ts';
import type { Coordinator } from '../runtime/coordinator.ts';
import { type SnapshotReads, withSnapshot } from '../runtime/snapshot.ts';
import { type Summary, summarize } from '../sim/stats.ts';
import { accountsSum, accountsSumSql, benchSql, type DbTarget } from './db.ts';

export const auditReadModes = ['plain', 'serializable', 'locking', 'snapshot'] as const;
export type AuditReads = (typeof auditReadModes)[number];

export interface AuditReport {
  reads: AuditReads;
  auditors: number;
  /** Audits that read a total (right or wrong). */
  audits: number;
  /** Audits whose total was not the expected one: they saw a transfer on one side only. */
  inconsistentAudits: number;
  /** Audits that failed (a lock conflict, a serialization failure, a timeout) and read nothing. */
  failedAudits: number;
  /** The first failure's code or message, to tell what failed. */
  firstFailure: string | null;
  expectedTotal: number;
  /** The wrong totals seen, up to five. */
  wrongTotals: number[];
  latencyMs: Summary;
  /** Snapshot audits: how long each waited for running commit phases, and held new ones back. */
  snapshotWaitedMs?: Summary;
  snapshotHeldMs?: Summary;
}

export interface AuditorsOptions {
  auditors: number;
  reads: AuditReads;
  /** The two databases audited, with their adapters. */
  targets: readonly DbTarget[];
  adapters: Readonly<Record<string, ResourceAdapter>>;
  expectedTotal: number;
  /** The coordinator of the transfers (locking reads, and snapshots fenced in this process). */
  coordinator?: Coordinator;
  /** Snapshots without a coordinator here: the fence shared with the coordinators. */
  fence?: CommitFence;
}

/** Starts the auditors; `stop()` ends them after their current audit and reports. */
export function startAuditors(options: AuditorsOptions): { stop(): Promise<AuditReport> } {
  const report: AuditReport = {
    reads: options.reads,
    auditors: options.auditors,
    audits: 0,
    inconsistentAudits: 0,
    failedAudits: 0,
    firstFailure: null,
    expectedTotal: options.expectedTotal,
    wrongTotals: [],
    latencyMs: summarize([]),
  };
  const latencies: number[] = [];
  const waited: number[] = [];
  const held: number[] = [];
  const audit = auditOf(options, (reads) => {
    waited.push(reads.waitedMs);
    held.push(reads.heldMs);
  });
  let stopping = false;
  const auditor = async () => {
    while (!stopping) {
      const t0 = performance.now();
      let total: number;
      try {
        total = await audit();
      } catch (err) {
        report.failedAudits++;
        report.firstFailure ??= isDtxError(err) ? `${err.code}: ${err.message}` : String(err);
        // A failed audit is retried at once, but not in a tight loop.
        await new Promise((r) => setTimeout(r, 5));
        continue;
      }
      latencies.push(performance.now() - t0);
      report.audits++;
      if (total !== options.expectedTotal) {
        report.inconsistentAudits++;
        if (report.wrongTotals.length < 5) report.wrongTotals.push(total);
      }
    }
  };
  const running = Promise.all(Array.from({ length: options.auditors }, auditor));
  return {
    stop: async () => {
      stopping = true;
      await running;
      report.latencyMs = summarize(latencies);
      if (options.reads === 'snapshot') {
        report.snapshotWaitedMs = summarize(waited);
        report.snapshotHeldMs = summarize(held);
      }
      return report;
    },
  };
}

function auditOf(
  options: AuditorsOptions,
  onSnapshot: (reads: SnapshotReads) => void,
): () => Promise<number> {
  const { targets, adapters } = options;
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  switch (options.reads) {
    case 'plain':
    case 'serializable': {
      const isolation = options.reads;
      return async () =>
        sum(await Promise.all(targets.map((t) => accountsSum(t, adapters[t.name]!, isolation))));
    }
    case 'locking': {
      const coordinator = options.coordinator;
      if (coordinator === undefined) throw new Error('locking audits need the coordinator');
      // Database by database, in resource order: the lock-order rule lets
      // these reads wait, and no cycle can form (docs/isolation.md).
      return () =>
        coordinator.transaction(async (tx) => {
          let total = 0;
          for (const t of targets) {
            const { rows } = await tx.read<{ balance: unknown }>(
              t.name,
              benchSql(t, 'SELECT balance FROM dtx_bench.accounts'),
            );
            for (const row of rows) total += Number(row.balance);
          }
          return total;
        });
    }
    case 'snapshot': {
      const work = async (reads: SnapshotReads) => {
        onSnapshot(reads);
        const parts = await Promise.all(
          targets.map((t) => reads.query<{ s: unknown }>(t.name, benchSql(t, accountsSumSql))),
        );
        return sum(parts.map((p) => Number(p.rows[0]?.s ?? 0)));
      };
      const resources = targets.map((t) => t.name);
      if (options.coordinator !== undefined) {
        const coordinator = options.coordinator;
        return () => coordinator.snapshot(work, { resources });
      }
      const fence = options.fence;
      if (fence === undefined) throw new Error('snapshot audits need the coordinator or a shared fence');
      return () => withSnapshot(adapters, fence, work, { resources });
    }
  }
}

/** One line for people: what the auditors saw. */
export function auditLine(a: AuditReport): string {
  const held =
    a.snapshotHeldMs === undefined
      ? ''
      : `, commits held back p50 ${a.snapshotHeldMs.p50} ms p99 ${a.snapshotHeldMs.p99} ms per snapshot`;
  return (
    `audits (${a.auditors} ${a.reads}): ${a.audits} read, ${a.inconsistentAudits} inconsistent, ` +
    `${a.failedAudits} failed; latency p50 ${a.latencyMs.p50} ms, p99 ${a.latencyMs.p99} ms${held}`
  );
}
