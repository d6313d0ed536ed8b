// The three databases as the outbox tests use them: a producer side (an
// `orders` table written with the outbox row in one transaction) and a
// consumer side (an `effects` table the inbox handler appends to, with no
// uniqueness of its own, so that a message applied twice shows up as two rows).

import type BetterSqlite3 from 'better-sqlite3';
import type { PoolConnection as MysqlConnection } from 'mysql2/promise';
import type { PoolClient as PgClient } from 'pg';
import { type InboxDb, mariadbInbox, postgresInbox, sqliteInbox } from '../../src/adapters/inbox.ts';
import { mariadbTransaction, pgTransaction, sqliteTransactions } from '../../src/adapters/local-txn.ts';
import {
  mariadbOutbox,
  type Outbox,
  type OutboxPayload,
  postgresOutbox,
  sqliteOutbox,
} from '../../src/adapters/outbox.ts';
import { mariadbPool, pgPool, sqliteFile } from './support.ts';

export interface TestDb {
  kind: 'postgres' | 'mariadb' | 'sqlite';
  outbox: Outbox<never, unknown>;
  inbox: InboxDb<unknown>;
  /** One producer transaction: `work` gets `publish` bound to it and `order(id)` to write the business row. */
  produce(
    work: (t: {
      publish(subject: string, payload: OutboxPayload, opts?: { id?: string; key?: string }): Promise<string>;
      order(id: string): Promise<void>;
    }) => Promise<void>,
  ): Promise<void>;
  /** The inbox handler's business write: one effect row for order `id`. */
  applyEffect(tx: unknown, orderId: string): Promise<void>;
  /** How many effect rows each order id has. */
  effects(): Promise<Map<string, number>>;
  dispose(): Promise<void>;
}

export async function openTestDb(kind: TestDb['kind'], run: string): Promise<TestDb> {
  const outboxTable = `dtx_ob_${run}`;
  const inboxTable = `dtx_ib_${run}`;
  const orders = `orders_${run}`;
  const effects = `effects_${run}`;
  const countRows = (rows: { order_id: string; n: number | string }[]) =>
    new Map(rows.map((r) => [r.order_id, Number(r.n)]));
  const countSql = `SELECT order_id, count(*) AS n FROM ${effects} GROUP BY order_id`;

  if (kind === 'postgres') {
    const pool = pgPool();
    const outbox = postgresOutbox(pool, { table: outboxTable });
    const inbox = postgresInbox(pool, { table: inboxTable });
    await outbox.ensureSchema();
    await inbox.ensureSchema();
    await pool.query(`CREATE TABLE ${orders} (id TEXT PRIMARY KEY)`);
    await pool.query(`CREATE TABLE ${effects} (n SERIAL PRIMARY KEY, order_id TEXT NOT NULL)`);
    return {
      kind,
      outbox: outbox as Outbox<never, unknown>,
      inbox: inbox as InboxDb<unknown>,
      produce: (work) =>
        pgTransaction(pool, (client) =>
          work({
            publish: (s, p, o) => outbox.publish(client, s, p, o),
            order: async (id) => void (await client.query(`INSERT INTO ${orders} (id) VALUES ($1)`, [id])),
          }),
        ),
      applyEffect: async (tx, id) =>
        void (await (tx as PgClient).query(`INSERT INTO ${effects} (order_id) VALUES ($1)`, [id])),
      effects: async () => countRows((await pool.query(countSql)).rows),
      async dispose() {
        for (const t of [outboxTable, inboxTable, orders, effects])
          await pool.query(`DROP TABLE IF EXISTS ${t}`);
        await pool.end();
      },
    };
  }
  if (kind === 'mariadb') {
    const pool = await mariadbPool();
    const outbox = mariadbOutbox(pool, { table: outboxTable });
    const inbox = mariadbInbox(pool, { table: inboxTable });
    await outbox.ensureSchema();
    await inbox.ensureSchema();
    await pool.query(`CREATE TABLE ${orders} (id VARCHAR(64) PRIMARY KEY) ENGINE=InnoDB`);
    await pool.query(
      `CREATE TABLE ${effects} (n INT AUTO_INCREMENT PRIMARY KEY, order_id VARCHAR(64) NOT NULL) ENGINE=InnoDB`,
    );
    return {
      kind,
      outbox: outbox as Outbox<never, unknown>,
      inbox: inbox as InboxDb<unknown>,
      produce: (work) =>
        mariadbTransaction(pool, (conn) =>
          work({
            publish: (s, p, o) => outbox.publish(conn, s, p, o),
            order: async (id) => void (await conn.query(`INSERT INTO ${orders} (id) VALUES (?)`, [id])),
          }),
        ),
      applyEffect: async (tx, id) =>
        void (await (tx as MysqlConnection).query(`INSERT INTO ${effects} (order_id) VALUES (?)`, [id])),
      effects: async () => countRows((await pool.query(countSql))[0] as { order_id: string; n: number }[]),
      async dispose() {
        for (const t of [outboxTable, inboxTable, orders, effects])
          await pool.query(`DROP TABLE IF EXISTS ${t}`);
        await pool.end();
      },
    };
  }
  // SQLite: the producer and the consumer are two services with a file each
  // (a connection holding a write transaction across awaits would stall
  // another connection of the same process, whose lock wait is synchronous).
  const file = sqliteFile();
  const consumerFile = sqliteFile();
  const producerDb = file.open();
  const consumerDb = consumerFile.open();
  const outbox = sqliteOutbox(producerDb, { table: outboxTable });
  const inbox = sqliteInbox(consumerDb, { table: inboxTable });
  await outbox.ensureSchema();
  await inbox.ensureSchema();
  producerDb.exec(`CREATE TABLE ${orders} (id TEXT PRIMARY KEY)`);
  consumerDb.exec(`CREATE TABLE ${effects} (n INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL)`);
  const producerTxn = sqliteTransactions(producerDb);
  return {
    kind,
    outbox: outbox as Outbox<never, unknown>,
    inbox: inbox as InboxDb<unknown>,
    produce: (work) =>
      producerTxn((db) =>
        work({
          publish: async (s, p, o) => outbox.publish(db, s, p, o),
          order: async (id) => void db.prepare(`INSERT INTO ${orders} (id) VALUES (?)`).run(id),
        }),
      ),
    applyEffect: async (tx, id) =>
      void (tx as BetterSqlite3.Database).prepare(`INSERT INTO ${effects} (order_id) VALUES (?)`).run(id),
    effects: async () => countRows(consumerDb.prepare(countSql).all() as { order_id: string; n: number }[]),
    async dispose() {
      producerDb.close();
      consumerDb.close();
      file.dispose();
      consumerFile.dispose();
    },
  };
}
