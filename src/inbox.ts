// `dtx/inbox`: the idempotent consumer for messages from NATS JetStream (such
// as the outbox relay's). Each message is handled in a local transaction on
// the consumer's database together with its inbox row, acked after the
// commit, skipped when redelivered, dead-lettered after too many failures.
// Needs the database's driver, `@nats-io/transport-node` and
// `@nats-io/jetstream`. docs/outbox.md.

export {
  ensureInboxSchema,
  type InboxDb,
  type InboxEntry,
  mariadbInbox,
  mariadbInbox as mysqlInbox,
  postgresInbox,
  sqliteInbox,
} from './adapters/inbox.ts';
export {
  type ConsumeOptions,
  type ConsumerStats,
  consume,
  type InboxConsumer,
  type InboxHandler,
  type InboxMessage,
} from './runtime/outbox/inbox.ts';
