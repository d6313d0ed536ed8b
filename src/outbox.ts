// `dtx/outbox`: the transactional outbox. `publish(tx, ...)` writes a message
// in the caller's local transaction on PostgreSQL, MariaDB/MySQL or SQLite;
// the relay (`startRelay`, or `dtx relay` as its own process) publishes
// committed messages to NATS JetStream, deduplicated by message id.
// Needs the database's driver, and `@nats-io/transport-node` and
// `@nats-io/jetstream` for the relay. docs/outbox.md.

export {
  ensureOutboxSchema,
  mariadbOutbox,
  mariadbOutbox as mysqlOutbox,
  type Outbox,
  type OutboxOptions,
  type OutboxPayload,
  type OutboxRow,
  type OutboxStore,
  type PublishOptions,
  postgresOutbox,
  sqliteOutbox,
} from './adapters/outbox.ts';
export {
  brokerPayloadLimit,
  keyHeader,
  type Relay,
  type RelayOptions,
  type RelayStats,
  startRelay,
} from './runtime/outbox/relay.ts';
