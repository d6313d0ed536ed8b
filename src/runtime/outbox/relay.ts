// The outbox relay: moves committed outbox rows to JetStream. One round reads
// the oldest unsent rows, claims what src/protocol/outbox/plan.ts says it may
// (with a lease), publishes each claimed row with its id as `Nats-Msg-Id`,
// waits for JetStream's ack, and only then marks the row sent. A crash between
// the ack and the mark leaves the row unsent: it is published again after the
// lease, and the stream's duplicate window drops the copy. Rows of one key are
// published one after another, each after the previous one's ack.
//
// While NATS (or the database) fails, the relay backs off (capped doubling)
// and says so once when the trouble starts and once when it ends, not per row.
// Sent rows are pruned after a retention period.
//
// The NATS client is loaded when the relay starts, so importing `dtx/outbox`
// needs no NATS package.

import { hostname } from 'node:os';
import type { JetStreamClient, JetStreamPublishOptions } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { OutboxRow, OutboxStore } from '../../adapters/outbox.ts';
import { DtxError } from '../../errors.ts';
import { backoffMs, type OutboxCandidate, planClaim, publishChains } from '../../protocol/outbox/plan.ts';
import {
  outboxPruneBatch,
  outboxPruneEveryMs,
  outboxRetentionMsDefault,
  relayBackoffMs,
  relayBatchDefault,
  relayIdPattern,
  relayLeaseMsDefault,
  relayPollMsDefault,
  relayPublishTimeoutMsDefault,
  relayScanFactor,
} from '../limits.ts';

/** The header carrying a row's ordering key, for consumers that want it. */
export const keyHeader = 'Dtx-Key';

export interface RelayOptions {
  /** The outbox to drain (`postgresOutbox`, `mariadbOutbox`, `sqliteOutbox`). */
  db: OutboxStore;
  /** A NATS connection with JetStream enabled. The relay never closes it. */
  nats: NatsConnection;
  /** When set, every publish must land in this stream (the ack says which stream took it). */
  stream?: string;
  /** This relay's id in the rows it claims. Default: host, pid and a random suffix. */
  relayId?: string;
  /** Rows per round. */
  batch?: number;
  leaseMs?: number;
  publishTimeoutMs?: number;
  pollMs?: number;
  /** How long sent rows are kept before they are pruned. */
  retentionMs?: number;
  /** Where the relay reports trouble and recovery. Default: stderr. */
  log?: (line: string) => void;
  /**
   * Called after JetStream acked a row and before the row is marked sent:
   * the window a crash leaves a published row unsent. For crash tests.
   */
  afterAck?: (row: OutboxRow) => void;
}

export interface RelayStats {
  /** Rows acked by JetStream and marked sent by this relay. */
  published: number;
  /** Of those, the ones JetStream reported as duplicates (a republish after a crash or a lost lease). */
  duplicates: number;
  rounds: number;
  /** Failed publishes and failed database rounds. */
  failures: number;
  pruned: number;
  /** True while the relay is backing off. */
  backingOff: boolean;
}

export interface Relay {
  /** Stops after the round in flight (its acked rows are marked sent). */
  stop(): Promise<void>;
  stats(): RelayStats;
  /** Skips the idle wait: call after committing rows to publish them sooner. */
  wake(): void;
}

function positive(name: string, v: number | undefined, fallback: number): number {
  const n = v ?? fallback;
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `${name} must be a positive integer, got ${String(v)}`);
  }
  return n;
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Warns when the stream's duplicate window is shorter than a claim can stay
 * published-but-unmarked: a republish after that would not be deduplicated.
 * Only warns (NATS may be down while the relay starts; it will wait for it).
 */
async function checkDuplicateWindow(
  nats: NatsConnection,
  stream: string,
  neededMs: number,
  log: (line: string) => void,
): Promise<void> {
  try {
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const jsm = await jetstreamManager(nats, { timeout: 2_000 });
    const info = await jsm.streams.info(stream);
    const windowMs = info.config.duplicate_window / 1e6;
    if (windowMs < neededMs) {
      log(
        `dtx relay: stream ${stream} deduplicates for ${windowMs} ms, less than the ${neededMs} ms a republish may come after the first copy; raise its duplicate_window`,
      );
    }
  } catch (error) {
    log(`dtx relay: cannot check stream ${stream}: ${message(error)}`);
  }
}

/** Bytes left to a message's headers (`Nats-Msg-Id`, `Dtx-Key`, `Nats-Expected-Stream`) under the broker's limit. */
const headerAllowanceBytes = 512;

/**
 * The largest payload `stream` takes through `nats`: the server's
 * `max_payload` less room for the relay's headers, and the stream's
 * `max_msg_size` when it sets one. Give it to the outbox as `maxPayloadBytes`
 * so that a payload the broker would refuse is refused at `publish`, before
 * the caller commits, instead of a row the relay can never deliver.
 */
export async function brokerPayloadLimit(nats: NatsConnection, stream: string): Promise<number> {
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const jsm = await jetstreamManager(nats, { timeout: 5_000 });
  const info = await jsm.streams.info(stream);
  const server = (nats.info?.max_payload ?? 1_048_576) - headerAllowanceBytes;
  const own = info.config.max_msg_size;
  return own !== undefined && own > 0 ? Math.max(1, Math.min(server, own - headerAllowanceBytes)) : server;
}

/**
 * Starts a relay on `options.db`. Fails at once (DTX_INVALID_STATE) when the
 * outbox table is missing: create it with `ensureOutboxSchema` first.
 */
export async function startRelay(options: RelayOptions): Promise<Relay> {
  const batch = positive('batch', options.batch, relayBatchDefault);
  const leaseMs = positive('leaseMs', options.leaseMs, relayLeaseMsDefault);
  // A short lease gets a proportionally short publish timeout by default.
  const publishTimeoutMs = positive(
    'publishTimeoutMs',
    options.publishTimeoutMs,
    Math.min(relayPublishTimeoutMsDefault, Math.floor(leaseMs / 3)),
  );
  const pollMs = positive('pollMs', options.pollMs, relayPollMsDefault);
  const retentionMs = positive('retentionMs', options.retentionMs, outboxRetentionMsDefault);
  const relayId =
    options.relayId ?? `${hostname().slice(0, 40)}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  if (!relayIdPattern.test(relayId)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `relay id ${JSON.stringify(relayId)} must match ${relayIdPattern}`,
    );
  }
  if (publishTimeoutMs * 2 > leaseMs) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `leaseMs (${leaseMs}) must be at least twice publishTimeoutMs (${publishTimeoutMs}) so a claim outlives a publish`,
    );
  }
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const { db } = options;
  try {
    await db.check();
  } catch (error) {
    throw new DtxError(
      'DTX_INVALID_STATE',
      `outbox table ${db.table} (${db.kind}) cannot be read: ${message(error)}; create it with ensureOutboxSchema (dtx relay --init)`,
      { cause: error },
    );
  }
  const { jetstream } = await import('@nats-io/jetstream');
  const { headers } = await import('@nats-io/transport-node');
  const js: JetStreamClient = jetstream(options.nats);
  if (options.stream !== undefined)
    await checkDuplicateWindow(options.nats, options.stream, leaseMs + publishTimeoutMs, log);

  const stats: RelayStats = {
    published: 0,
    duplicates: 0,
    rounds: 0,
    failures: 0,
    pruned: 0,
    backingOff: false,
  };
  let stopping = false;
  let consecutiveFailures = 0;
  let lastPruneMs = 0;
  let wakeIdle: (() => void) | undefined;

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        wakeIdle = undefined;
        resolve();
      }
      wakeIdle = done;
    });

  /** Publishes one row and waits for its ack. */
  async function publishRow(row: OutboxRow): Promise<void> {
    const h = headers();
    if (row.key !== null) h.set(keyHeader, row.key);
    const opts: Partial<JetStreamPublishOptions> = { msgID: row.id, timeout: publishTimeoutMs, headers: h };
    if (options.stream !== undefined) opts.expect = { streamName: options.stream };
    const ack = await js.publish(row.subject, row.payload, opts);
    if (ack.duplicate) stats.duplicates++;
  }

  /** Publishes a chain in order; stops at the first failure or when the claim is about to lapse. */
  async function runChain(rows: OutboxRow[], untilMs: number, acked: number[], errors: unknown[]) {
    for (const row of rows) {
      // A publish started after the claim lapsed could race the relay that
      // took the row over; that would only be a deduplicated copy, but it is
      // cheaper not to send it.
      if (Date.now() + publishTimeoutMs >= untilMs) return;
      try {
        await publishRow(row);
        options.afterAck?.(row);
        acked.push(row.seq);
      } catch (error) {
        errors.push(error);
        return;
      }
    }
  }

  /**
   * What is failing, if anything. A round that reaches the database ends
   * database trouble even with nothing to publish; only acked publishes end
   * NATS trouble (an empty outbox says nothing about NATS).
   */
  let trouble: 'database' | 'nats' | undefined;

  function troubleStarted(kind: 'database' | 'nats', error: unknown) {
    stats.failures++;
    consecutiveFailures++;
    if (trouble !== kind) {
      trouble = kind;
      stats.backingOff = true;
      const what = kind === 'nats' ? 'publishing to JetStream failed' : 'outbox database round failed';
      log(`dtx relay ${relayId}: ${what}: ${message(error)}; backing off and retrying`);
    }
  }

  function troubleEnded(kind: 'database' | 'nats') {
    if (trouble !== kind) return;
    log(`dtx relay ${relayId}: recovered after ${consecutiveFailures} failed round(s)`);
    trouble = undefined;
    stats.backingOff = false;
    consecutiveFailures = 0;
  }

  /** One round; returns true when it found rows to publish (so the next round starts at once). */
  async function round(): Promise<boolean> {
    stats.rounds++;
    const nowMs = Date.now();
    if (nowMs - lastPruneMs >= outboxPruneEveryMs) {
      lastPruneMs = nowMs;
      stats.pruned += await db.prune(nowMs - retentionMs, outboxPruneBatch);
    }
    const candidates = await db.scan(batch * relayScanFactor);
    const plannedSeqs = planClaim(candidates, relayId, nowMs, batch);
    if (plannedSeqs.length === 0) {
      troubleEnded('database');
      return false;
    }
    const untilMs = nowMs + leaseMs;
    const claimedRows = await db.claim(plannedSeqs, relayId, nowMs, untilMs);
    const bySeq = new Map(claimedRows.map((r) => [r.seq, r]));
    const plannedSet = new Set(plannedSeqs);
    const planned: OutboxCandidate[] = candidates.filter((c) => plannedSet.has(c.seq));
    const { chains, release } = publishChains(planned, new Set(bySeq.keys()));
    const acked: number[] = [];
    const errors: unknown[] = [];
    await Promise.all(
      chains.map((chain) =>
        runChain(
          chain.map((s) => bySeq.get(s)!),
          untilMs,
          acked,
          errors,
        ),
      ),
    );
    // Mark what JetStream acked even when other publishes failed: those rows
    // are in the stream, and marking them keeps a retry from re-sending them.
    await db.markSent(acked, Date.now());
    stats.published += acked.length;
    const ackedSet = new Set(acked);
    const unpublished = claimedRows.map((r) => r.seq).filter((s) => !ackedSet.has(s));
    // Hand back what this relay did not publish, so another relay (or this
    // one's next round) can take it without waiting for the lease.
    await db.release([...release, ...unpublished], relayId);
    troubleEnded('database'); // every statement of the round went through
    if (errors.length > 0) {
      troubleStarted('nats', errors[0]);
      return false;
    }
    if (acked.length > 0) troubleEnded('nats');
    return claimedRows.length > 0;
  }

  const loop = (async () => {
    while (!stopping) {
      let busy = false;
      try {
        busy = await round();
      } catch (error) {
        troubleStarted('database', error);
      }
      if (stopping) break;
      if (stats.backingOff)
        await sleep(backoffMs(consecutiveFailures, relayBackoffMs.baseMs, relayBackoffMs.maxMs));
      else if (!busy) await sleep(pollMs);
    }
  })();

  return {
    async stop() {
      stopping = true;
      wakeIdle?.();
      await loop;
    },
    stats: () => ({ ...stats }),
    wake() {
      if (!stats.backingOff) wakeIdle?.();
    },
  };
}
