// `GET /metrics`: the server's Prometheus metrics, in a registry of its own
// (one per server instance, never prom-client's global default, so that two
// servers in one process, as in the tests, never mix their counts).
//
// Counters and histograms are fed by the server's events (./telemetry.ts);
// the gauges are read from the engine's state when scraped (what the saga
// core holds, what is prepared), so they cannot drift from it. Every name
// starts with `dtx_`; docs/server.md ("Observability") lists them.

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ServeEvents } from './telemetry.ts';

/** Latency buckets (seconds): a branch call is milliseconds to its timeout; a transaction up to minutes. */
const callBuckets = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const txnBuckets = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];
/** Records per flush: the group commit's batch size. */
const batchBuckets = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512];

export class ServeMetrics implements ServeEvents {
  readonly registry = new Registry();
  private readonly started: Counter<'type'>;
  private readonly endedTotal: Counter<'type' | 'outcome'>;
  private readonly duration: Histogram<'type' | 'outcome'>;
  private readonly calls: Counter<'type' | 'op' | 'status'>;
  private readonly callDuration: Histogram<'type' | 'op'>;
  private readonly stuckAlerts: Counter<'type'>;
  private readonly flushes: Counter<'log'>;
  private readonly batch: Histogram<'log'>;
  private counts: () => { running: number; stuck: number; inDoubt: number } = () => ({
    running: 0,
    stuck: 0,
    inDoubt: 0,
  });

  constructor() {
    const registers = [this.registry];
    this.started = new Counter({
      name: 'dtx_transactions_started_total',
      help: 'Transactions accepted, by type (saga, tcc, msg)',
      labelNames: ['type'],
      registers,
    });
    this.endedTotal = new Counter({
      name: 'dtx_transactions_ended_total',
      help: 'Transactions ended, by type and outcome (completed, compensated, abandoned)',
      labelNames: ['type', 'outcome'],
      registers,
    });
    this.duration = new Histogram({
      name: 'dtx_transaction_duration_seconds',
      help: 'From acceptance to end, for transactions begun since the server started',
      labelNames: ['type', 'outcome'],
      buckets: txnBuckets,
      registers,
    });
    this.calls = new Counter({
      name: 'dtx_branch_calls_total',
      help: 'Branch calls, by type, op and status (success, failure = refused, retry = no answer or an error)',
      labelNames: ['type', 'op', 'status'],
      registers,
    });
    this.callDuration = new Histogram({
      name: 'dtx_branch_call_duration_seconds',
      help: 'Branch call latency, whatever the answer',
      labelNames: ['type', 'op'],
      buckets: callBuckets,
      registers,
    });
    this.stuckAlerts = new Counter({
      name: 'dtx_stuck_alerts_total',
      help: 'Stuck alerts raised (a run that keeps failing), and hard stops',
      labelNames: ['type'],
      registers,
    });
    this.flushes = new Counter({
      name: 'dtx_log_flushes_total',
      help: 'Durable writes of the store (one fsync or one synchronous COMMIT each), by log (saga, server)',
      labelNames: ['log'],
      registers,
    });
    this.batch = new Histogram({
      name: 'dtx_log_flush_records',
      help: 'Records appended per durable write (the group commit batch size)',
      labelNames: ['log'],
      buckets: batchBuckets,
      registers,
    });
    const counts = () => this.counts();
    new Gauge({
      name: 'dtx_transactions_running',
      help: 'Transactions calling branches now (forward or compensating), not stuck',
      registers,
      collect() {
        this.set(counts().running);
      },
    });
    new Gauge({
      name: 'dtx_transactions_stuck',
      help: 'Transactions stuck now: a stuck alert raised, or stopped waiting for an operator',
      registers,
      collect() {
        this.set(counts().stuck);
      },
    });
    new Gauge({
      name: 'dtx_transactions_in_doubt',
      help: 'TCC and message transactions prepared and waiting for their decision (submit or abort)',
      registers,
      collect() {
        this.set(counts().inDoubt);
      },
    });
  }

  /** Where the gauges read the engine's state from. */
  readState(counts: () => { running: number; stuck: number; inDoubt: number }): void {
    this.counts = counts;
  }

  begun(e: Parameters<NonNullable<ServeEvents['begun']>>[0]): void {
    this.started.inc({ type: e.type });
  }

  ended(e: Parameters<NonNullable<ServeEvents['ended']>>[0]): void {
    this.endedTotal.inc({ type: e.type, outcome: e.outcome });
    if (e.durationMs !== null)
      this.duration.observe({ type: e.type, outcome: e.outcome }, e.durationMs / 1000);
  }

  branchCalled(e: Parameters<NonNullable<ServeEvents['branchCalled']>>[0]): void {
    this.calls.inc({ type: e.type, op: e.op, status: e.status });
    this.callDuration.observe({ type: e.type, op: e.op }, e.durationMs / 1000);
  }

  stuck(e: Parameters<NonNullable<ServeEvents['stuck']>>[0]): void {
    this.stuckAlerts.inc({ type: e.type });
  }

  logFlushed(e: Parameters<NonNullable<ServeEvents['logFlushed']>>[0]): void {
    this.flushes.inc({ log: e.log });
    this.batch.observe({ log: e.log }, e.records);
  }

  /** The text exposition format, and its content type. */
  async render(): Promise<{ text: string; contentType: string }> {
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
