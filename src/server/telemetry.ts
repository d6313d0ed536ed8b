// What `dtx serve` reports about its transactions, in the server's terms: a
// transaction is a saga, a TCC or a message (not the saga runs the engine
// uses to carry out a TCC's confirms or cancels), it begins when the engine
// accepts it (a TCC or message at prepare) and ends once. The saga
// orchestrator's observer hooks (../runtime/observe.ts) speak of runs; this
// module translates them with the engine's index (gid → type and phase) and
// hands the events to its sinks: the metrics (./metrics.ts) and the log
// (./logging.ts).
//
// Owns: the start time of every transaction begun in this process and not
// ended (bounded like the engine's index), for durations.

import type { LogFlushed, Observer } from '../runtime/observe.ts';
import type { EngineHooks, TransType } from './engine.ts';
import { serverLimits } from './limits.ts';

/** How a server transaction ended (the native API's end states). */
export type ServeOutcome = 'completed' | 'compensated' | 'abandoned';

export interface ServeEvents {
  begun?(e: { gid: string; type: TransType }): void;
  ended?(e: {
    gid: string;
    type: TransType;
    outcome: ServeOutcome;
    /** Null when it began before this process started (resumed by recovery). */
    durationMs: number | null;
    reason: string | null;
  }): void;
  branchCalled?(e: {
    gid: string;
    type: TransType;
    branch: string;
    /** The op the branch is told: action, compensation, confirm, cancel. */
    op: string;
    status: 'success' | 'failure' | 'retry';
    durationMs: number;
    reason: string | null;
  }): void;
  stuck?(e: { gid: string; type: TransType; reason: string; retrying: boolean }): void;
  logFlushed?(e: LogFlushed & { log: 'saga' | 'server' }): void;
}

/** What the engine tells about a gid: its type and which decision its saga run carries out. */
export type Describe = (
  gid: string,
) => { type: TransType; phase: 'saga' | 'msg' | 'confirm' | 'cancel' } | undefined;

/** Calls `hook` on every sink, ignoring what one throws: reporting must not change an outcome. */
function fan<K extends keyof ServeEvents>(
  sinks: readonly ServeEvents[],
  hook: K,
  event: Parameters<NonNullable<ServeEvents[K]>>[0],
): void {
  for (const sink of sinks) {
    const fn = sink[hook] as ((e: typeof event) => void) | undefined;
    try {
      fn?.call(sink, event);
    } catch {
      // ignored on purpose
    }
  }
}

export class ServeTelemetry implements EngineHooks {
  private describe: Describe = () => undefined;
  private readonly startedMs = new Map<string, number>();

  constructor(private readonly sinks: readonly ServeEvents[]) {}

  /** Called by the engine once it exists, before recovery. */
  attach(describe: Describe): void {
    this.describe = describe;
  }

  private kind(gid: string): { type: TransType; phase: 'saga' | 'msg' | 'confirm' | 'cancel' } {
    return this.describe(gid) ?? { type: 'saga', phase: 'saga' };
  }

  begun(gid: string, type: TransType): void {
    this.startedMs.set(gid, Date.now());
    while (this.startedMs.size > serverLimits.indexEntriesMax)
      this.startedMs.delete(this.startedMs.keys().next().value!);
    fan(this.sinks, 'begun', { gid, type });
  }

  ended(gid: string, type: TransType, outcome: ServeOutcome, reason: string | null): void {
    const started = this.startedMs.get(gid);
    this.startedMs.delete(gid);
    const durationMs = started === undefined ? null : Date.now() - started;
    fan(this.sinks, 'ended', { gid, type, outcome, durationMs, reason });
  }

  /** The saga orchestrator's observer: its runs, in the server's terms. */
  readonly observer: Observer = {
    transactionEnded: (e) => {
      const { type, phase } = this.kind(e.id);
      // A TCC's cancels run as a saga that completes: the transaction is compensated.
      const outcome =
        phase === 'cancel' && e.outcome === 'completed' ? 'compensated' : (e.outcome as ServeOutcome);
      this.ended(e.id, type, outcome, e.reason);
    },
    branchCalled: (e) => {
      const { type, phase } = this.kind(e.id);
      const op = phase === 'confirm' || phase === 'cancel' ? phase : e.op;
      fan(this.sinks, 'branchCalled', {
        gid: e.id,
        type,
        branch: e.branch,
        op,
        status: e.status,
        durationMs: e.durationMs,
        reason: e.reason,
      });
    },
    stuck: (e) => {
      fan(this.sinks, 'stuck', {
        gid: e.id,
        type: this.kind(e.id).type,
        reason: e.reason,
        retrying: e.retrying,
      });
    },
  };

  flushes(log: 'saga' | 'server'): Pick<Observer, 'logFlushed'> {
    return { logFlushed: (e) => fan(this.sinks, 'logFlushed', { ...e, log }) };
  }
}
