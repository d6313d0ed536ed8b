// The idempotent consumer: takes messages from a durable JetStream consumer
// and hands each to a handler inside a local transaction on the consumer's
// database, with the message id recorded in the inbox table of that same
// transaction. The message is acked only after the commit, so:
//
// - a crash before the commit loses the effect and the record together; the
//   message is redelivered and handled then;
// - a crash between the commit and the ack redelivers a message whose id is
//   recorded: it is skipped (and acked), its effect applied once;
// - a handler that throws rolls back and the message is negatively acked with
//   a growing delay; after `attemptsMax` deliveries it is dead-lettered
//   instead: published to the dead-letter subject, recorded in the inbox as
//   `dead` with the error, logged, counted, and terminated in JetStream.
//
// What to do after a failure is decided by src/protocol/outbox/plan.ts.
// Messages are handled one at a time, in the order the consumer delivers them.
// The NATS client is loaded when `consume` runs, so importing `dtx/inbox`
// needs no NATS package.

import type { ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { MsgHdrs, NatsConnection } from '@nats-io/transport-node';
import type { InboxDb, InboxEntry } from '../../adapters/inbox.ts';
import { DtxError } from '../../errors.ts';
import { backoffMs, onHandlerFailure } from '../../protocol/outbox/plan.ts';
import {
  inboxAckWaitMsDefault,
  inboxAttemptsMaxDefault,
  inboxPrefetchDefault,
  inboxRetryMs,
  outboxIdPattern,
  outboxSubjectPattern,
} from '../limits.ts';
import { keyHeader } from './relay.ts';

/** A message as the handler sees it. */
export interface InboxMessage {
  /** `Nats-Msg-Id` when the publisher set one (the outbox always does), else `<stream>:<stream sequence>`. */
  id: string;
  subject: string;
  data: Uint8Array;
  /** The ordering key the outbox row had, if any. */
  key: string | null;
  headers: MsgHdrs | undefined;
  /** 1 on the first delivery. */
  deliveryCount: number;
  streamSeq: number;
  /** `data` parsed as JSON. */
  json<T = unknown>(): T;
  /** `data` as UTF-8 text. */
  text(): string;
}

export interface ConsumeOptions<Tx> {
  nats: NatsConnection;
  stream: string;
  /** The durable consumer's name. Created (explicit ack) when missing; used as it is when it exists. */
  durable: string;
  db: InboxDb<Tx>;
  /** Only for a consumer created here: the subjects it takes. Default: the whole stream. */
  filterSubject?: string;
  /** Deliveries before a failing message is dead-lettered. */
  attemptsMax?: number;
  /** Where dead letters go. Default: `dtx.dead.<stream>.<durable>`. */
  deadLetterSubject?: string;
  /** Only for a consumer created here: how long JetStream waits for an ack before redelivering. */
  ackWaitMs?: number;
  /** Messages pulled ahead of the one being handled. */
  prefetch?: number;
  /** Where dead letters and retries are reported. Default: stderr. */
  log?: (line: string) => void;
  /** Called after a message's transaction committed and before its ack: the window a crash causes a redelivery. For crash tests. */
  afterCommit?: (message: InboxMessage) => void;
}

export interface ConsumerStats {
  /** Messages whose handler committed. */
  applied: number;
  /** Redeliveries skipped because the inbox had them. */
  skipped: number;
  /** Failed deliveries sent back for a retry. */
  retried: number;
  deadLettered: number;
}

export interface InboxConsumer {
  /** Stops taking messages, finishes the one in hand (commit and ack), and returns. */
  stop(): Promise<void>;
  stats(): ConsumerStats;
}

export type InboxHandler<Tx> = (message: InboxMessage, tx: Tx) => Promise<void>;

const decoder = new TextDecoder();

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function toInboxMessage(m: JsMsg, stream: string): InboxMessage {
  const headerId = m.headers?.get('Nats-Msg-Id') ?? '';
  const id = outboxIdPattern.test(headerId) ? headerId : `${stream}:${m.seq}`;
  const key = m.headers?.get(keyHeader) ?? '';
  return {
    id,
    subject: m.subject,
    data: m.data,
    key: key === '' ? null : key,
    headers: m.headers,
    deliveryCount: m.info.deliveryCount,
    streamSeq: m.seq,
    json: <T>() => JSON.parse(decoder.decode(m.data)) as T,
    text: () => decoder.decode(m.data),
  };
}

/** Thrown through the transaction so that a handler's failure is told apart from the database's. */
class HandlerFailed extends Error {
  constructor(readonly reason: unknown) {
    super(messageOf(reason));
  }
}

/**
 * Consumes `options.durable` on `options.stream`, handling each message once
 * in a transaction on `options.db` (whose inbox table must exist:
 * `ensureInboxSchema`).
 */
export async function consume<Tx>(
  options: ConsumeOptions<Tx>,
  handler: InboxHandler<Tx>,
): Promise<InboxConsumer> {
  const attemptsMax = options.attemptsMax ?? inboxAttemptsMaxDefault;
  if (!Number.isSafeInteger(attemptsMax) || attemptsMax < 1) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `attemptsMax must be a positive integer, got ${attemptsMax}`);
  }
  for (const [name, v] of [
    ['stream', options.stream],
    ['durable', options.durable],
  ] as const) {
    if (!/^[A-Za-z0-9_-]{1,64}$/.test(v)) {
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `${name} ${JSON.stringify(v)} must be 1 to 64 of A-Z a-z 0-9 _ -`,
      );
    }
  }
  const deadLetterSubject = options.deadLetterSubject ?? `dtx.dead.${options.stream}.${options.durable}`;
  if (!outboxSubjectPattern.test(deadLetterSubject)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `dead-letter subject ${JSON.stringify(deadLetterSubject)} is not a subject`,
    );
  }
  const log = options.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const { db, stream, durable } = options;

  const { jetstream, jetstreamManager, AckPolicy } = await import('@nats-io/jetstream');
  const { headers: newHeaders } = await import('@nats-io/transport-node');
  const jsm = await jetstreamManager(options.nats);
  try {
    await jsm.consumers.info(stream, durable);
  } catch {
    await jsm.consumers.add(stream, {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      ack_wait: (options.ackWaitMs ?? inboxAckWaitMsDefault) * 1e6,
      max_deliver: -1,
      ...(options.filterSubject === undefined ? {} : { filter_subject: options.filterSubject }),
    });
  }
  const js: JetStreamClient = jetstream(options.nats);
  const consumer = await js.consumers.get(stream, durable);
  const messages: ConsumerMessages = await consumer.consume({
    max_messages: options.prefetch ?? inboxPrefetchDefault,
  });
  const stats: ConsumerStats = { applied: 0, skipped: 0, retried: 0, deadLettered: 0 };
  let stopping = false;

  const entryOf = (msg: InboxMessage, state: InboxEntry['state'], error?: string): InboxEntry => ({
    id: msg.id,
    subject: msg.subject,
    streamSeq: msg.streamSeq,
    deliveries: msg.deliveryCount,
    state,
    ...(error === undefined ? {} : { error }),
  });

  async function deadLetter(m: JsMsg, msg: InboxMessage, reason: unknown): Promise<void> {
    const h = newHeaders();
    // The application's headers travel on; JetStream's own (`Nats-Msg-Id`,
    // the publisher's `Nats-Expected-*`) belong to the original publish.
    for (const [k, vs] of m.headers ?? []) for (const v of vs) if (!k.startsWith('Nats-')) h.append(k, v);
    h.set('Dtx-Original-Subject', msg.subject);
    h.set(
      'Dtx-Error',
      messageOf(reason)
        .replace(/[\r\n]+/g, ' ')
        .slice(0, 500),
    );
    // Published before the inbox row commits: a crash in between publishes it
    // again on redelivery, and the dead-letter message id makes JetStream
    // drop that copy (when a stream takes the subject; otherwise it is a plain
    // NATS message, for whoever listens).
    try {
      await js.publish(deadLetterSubject, m.data, { msgID: `dead-${msg.id}`.slice(0, 128), headers: h });
    } catch (error) {
      log(
        `dtx inbox ${stream}/${durable}: no stream took dead letter ${msg.id} on ${deadLetterSubject} (${messageOf(error)}); sent it as a plain NATS message`,
      );
      options.nats.publish(deadLetterSubject, m.data, { headers: h });
    }
    await db.transaction((_tx, sql) => sql.record(entryOf(msg, 'dead', messageOf(reason))));
    m.term(`dead-lettered after ${msg.deliveryCount} deliveries`);
    stats.deadLettered++;
    log(
      `dtx inbox ${stream}/${durable}: message ${msg.id} on ${msg.subject} dead-lettered to ${deadLetterSubject} ` +
        `after ${msg.deliveryCount} deliveries: ${messageOf(reason)}`,
    );
  }

  async function handle(m: JsMsg): Promise<void> {
    const msg = toInboxMessage(m, stream);
    let outcome: 'applied' | 'skipped';
    try {
      outcome = await db.transaction(async (tx, sql) => {
        if (!(await sql.record(entryOf(msg, 'done')))) return 'skipped';
        try {
          await handler(msg, tx);
        } catch (error) {
          throw new HandlerFailed(error);
        }
        return 'applied';
      });
    } catch (error) {
      if (error instanceof HandlerFailed) {
        const action = onHandlerFailure(
          msg.deliveryCount,
          attemptsMax,
          inboxRetryMs.baseMs,
          inboxRetryMs.maxMs,
        );
        if (action.kind === 'deadLetter') {
          await deadLetter(m, msg, error.reason);
          return;
        }
        stats.retried++;
        m.nak(action.delayMs);
        return;
      }
      // The database failed, not the handler: retry without counting towards
      // the dead letter (a message must not die because the database is down).
      stats.retried++;
      log(
        `dtx inbox ${stream}/${durable}: database failed on message ${msg.id}: ${messageOf(error)}; retrying`,
      );
      m.nak(backoffMs(msg.deliveryCount, inboxRetryMs.baseMs, inboxRetryMs.maxMs));
      return;
    }
    options.afterCommit?.(msg);
    m.ack();
    if (outcome === 'applied') stats.applied++;
    else stats.skipped++;
  }

  const loop = (async () => {
    for await (const m of messages) {
      if (stopping) {
        // Pulled but not handled: hand it back at once instead of waiting out the ack wait.
        m.nak();
        continue;
      }
      try {
        await handle(m);
      } catch (error) {
        // Dead-lettering failed (the database is down): leave the message
        // unacked; JetStream redelivers it after the ack wait.
        log(`dtx inbox ${stream}/${durable}: ${messageOf(error)}`);
      }
    }
  })();

  return {
    async stop() {
      stopping = true;
      await messages.close();
      await loop;
    },
    stats: () => ({ ...stats }),
  };
}
