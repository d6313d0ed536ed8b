// What `dtx relay` runs, loaded when it runs: open the outbox named by a
// database URL, connect to NATS (waiting for it if it is down), relay until
// SIGINT or SIGTERM, then stop cleanly (rows acked so far are marked sent).

import { writeSync } from 'node:fs';
import { checkOutboxTable, type OutboxStore } from '../adapters/outbox.ts';
import { DtxError } from '../errors.ts';
import { checkServerUrl, parseDbUrl } from './db.ts';

export interface RelayFlags {
  db: string;
  nats: string;
  stream?: string;
  table?: string;
  batch?: number;
  leaseMs?: number;
  relayId?: string;
  init?: boolean;
  crashAfterAcks?: number;
}

/** The outbox a `--db` URL names, and how to close what was opened for it. */
export async function openOutboxUrl(
  url: string,
  table: string | undefined,
  create: boolean,
): Promise<{ outbox: OutboxStore; close(): Promise<void> }> {
  const target = parseDbUrl(url, 0);
  checkOutboxTable(table, 'dtx_outbox'); // before anything is opened or created

  const opts = table === undefined ? {} : { table };
  if (target.kind === 'sqlite') {
    const { default: Database } = await import('better-sqlite3');
    const { sqliteOutbox } = await import('../adapters/outbox.ts');
    const path = url.slice('sqlite:'.length);
    let db: InstanceType<typeof Database>;
    try {
      db = new Database(path, { fileMustExist: !create, timeout: 5_000 });
    } catch (error) {
      throw new DtxError('DTX_LOG_NOT_FOUND', `cannot open SQLite outbox ${path}: ${String(error)}`, {
        cause: error,
      });
    }
    db.pragma('journal_mode = WAL');
    return { outbox: sqliteOutbox(db, opts), close: async () => void db.close() };
  }
  if (checkServerUrl(url) === 'postgres') {
    const { default: pg } = await import('pg');
    const { postgresOutbox } = await import('../adapters/outbox.ts');
    const pool = new pg.Pool({ connectionString: url, max: 4, application_name: 'dtx-relay' });
    pool.on('error', () => undefined); // an idle client's lost connection; the next round reports it
    return { outbox: postgresOutbox(pool, opts), close: () => pool.end() };
  }
  const { createPool } = await import('mysql2/promise');
  const { mariadbOutbox } = await import('../adapters/outbox.ts');
  const pool = createPool({ uri: url, connectionLimit: 4 });
  return { outbox: mariadbOutbox(pool, opts), close: () => pool.end() };
}

/** Kills this process after the `n`-th ack, before the row is marked sent (for the crash tests). */
function crashAfter(n: number): () => void {
  let acks = 0;
  return () => {
    if (++acks < n) return;
    writeSync(2, `dtx relay: crash point after ack ${acks}\n`);
    process.kill(process.pid, 'SIGKILL');
  };
}

export async function runRelay(flags: RelayFlags): Promise<void> {
  const { connect } = await import('@nats-io/transport-node');
  const { startRelay } = await import('../runtime/outbox/relay.ts');
  const { outbox, close } = await openOutboxUrl(flags.db, flags.table, flags.init === true);
  try {
    if (flags.init) await outbox.ensureSchema();
    const nats = await connect({
      servers: flags.nats,
      name: 'dtx-relay',
      waitOnFirstConnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    try {
      const relay = await startRelay({
        db: outbox,
        nats,
        ...(flags.stream === undefined ? {} : { stream: flags.stream }),
        ...(flags.batch === undefined ? {} : { batch: flags.batch }),
        ...(flags.leaseMs === undefined ? {} : { leaseMs: flags.leaseMs }),
        ...(flags.relayId === undefined ? {} : { relayId: flags.relayId }),
        ...(flags.crashAfterAcks === undefined ? {} : { afterAck: crashAfter(flags.crashAfterAcks) }),
      });
      process.stderr.write(`dtx relay: relaying ${outbox.kind} table ${outbox.table} to ${flags.nats}\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await relay.stop();
      const s = relay.stats();
      process.stderr.write(
        `dtx relay: stopped; ${s.published} published (${s.duplicates} duplicates dropped by the stream), ` +
          `${s.failures} failures, ${s.pruned} pruned\n`,
      );
    } finally {
      await nats.close();
    }
  } finally {
    await close();
  }
}
