// Bad input for `dtx bench|recover|verify --protocol outbox` and the outbox's
// broker limit: NATS unreachable at start, the stream missing, a payload over
// the broker's limit, an event on a subject the consumer does not know, the
// consumer's database without its inbox table. Each is a clear error (or a
// dead letter) and loses nothing.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { pgTransaction } from '../../src/adapters/local-txn.ts';
import { postgresOutbox } from '../../src/adapters/outbox.ts';
import { DtxError } from '../../src/errors.ts';
import { brokerPayloadLimit } from '../../src/runtime/outbox/relay.ts';
import { spawnDtx } from './processes.ts';
import {
  benchDatabases,
  deleteStream,
  mariadbConnection,
  natsConnect,
  pgConnection,
  sharedNatsUrl,
} from './support.ts';

let dbs: string[];
let databases: Awaited<ReturnType<typeof benchDatabases>>;
const unreachable = 'nats://127.0.0.1:1';
const stream = `OBIN_${randomBytes(4).toString('hex').toUpperCase()}`;

let nc: NatsConnection;
let pool: pg.Pool;
let my: mysql.Pool;

before(async () => {
  databases = await benchDatabases('dtx_obench_input');
  dbs = ['--db', databases.pgUrl, '--db', databases.myUrl];
  nc = await natsConnect(sharedNatsUrl);
  pool = new pg.Pool({ ...pgConnection, database: databases.name, max: 2 });
  my = mysql.createPool({ ...mariadbConnection, database: databases.name, connectionLimit: 2 });
});

after(async () => {
  await deleteStream(nc, stream);
  await nc.close();
  await pool.end();
  await my.end();
  await databases.drop();
});

/** Runs a dtx command; its exit code, stdout and stderr. */
async function dtx(args: string[]) {
  const child = spawnDtx(args);
  const { code } = await child.exited;
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

const outboxRows = async () => {
  const r = await pool.query('SELECT count(*) AS n, count(sent_ms) AS sent FROM dtx_obench_outbox');
  return { rows: Number(r.rows[0].n), sent: Number(r.rows[0].sent) };
};

const benchArgs = (nats: string, ...more: string[]) => [
  'bench',
  '--protocol',
  'outbox',
  ...dbs,
  '--nats',
  nats,
  '--stream',
  stream,
  ...more,
];

test('NATS unreachable at start: bench and recover fail with a clear error; nothing written, nothing marked sent', async () => {
  const init = await dtx(benchArgs(sharedNatsUrl, '--init', '--txns', '20', '--abort-share', '0'));
  assert.equal(init.code, 0, init.stderr);
  // Rows the producer committed while no relay ran: unsent.
  const produced = await dtx(
    benchArgs(sharedNatsUrl, '--part', 'producer', '--txns', '30', '--abort-share', '0'),
  );
  assert.equal(produced.code, 0, produced.stderr);
  const before = await outboxRows();
  assert.equal(before.rows - before.sent, 30);

  const bench = await dtx(benchArgs(unreachable, '--txns', '10'));
  assert.equal(bench.code, 1);
  assert.match(
    bench.stderr,
    /^error: DTX_RESOURCE_UNAVAILABLE: cannot reach NATS at nats:\/\/127\.0\.0\.1:1/m,
  );
  const recover = await dtx(['recover', ...dbs, '--nats', unreachable, '--stream', stream]);
  assert.equal(recover.code, 1);
  assert.match(recover.stderr, /DTX_RESOURCE_UNAVAILABLE: cannot reach NATS/);
  assert.deepEqual(await outboxRows(), before, 'no row written, none marked sent');

  // With NATS back: the 30 are relayed and credited once.
  const done = await dtx(['recover', ...dbs, '--nats', sharedNatsUrl, '--stream', stream, '--json']);
  assert.equal(done.code, 0, done.stderr);
  assert.equal(JSON.parse(done.stdout).relayed, 30);
  const verify = await dtx(['verify', ...dbs, '--json']);
  assert.equal(verify.code, 0, verify.stdout);
  assert.deepEqual(
    { ...JSON.parse(verify.stdout), total: 0, expectedTotal: 0 },
    {
      ok: true,
      total: 0,
      expectedTotal: 0,
      produced: 50,
      applied: 50,
      duplicates: 0,
      missing: 0,
      unknown: 0,
    },
  );
});

test('stream missing: a clear error without --init; --init creates it with explicit settings', async () => {
  await deleteStream(nc, stream);
  const before = await outboxRows();
  const r = await dtx(benchArgs(sharedNatsUrl, '--txns', '5'));
  assert.equal(r.code, 1);
  assert.match(r.stderr, new RegExp(`^error: DTX_INVALID_STATE: JetStream has no stream ${stream}`, 'm'));
  assert.match(r.stderr, /--init/);
  assert.deepEqual(await outboxRows(), before, 'nothing written');

  const init = await dtx(benchArgs(sharedNatsUrl, '--init', '--txns', '5'));
  assert.equal(init.code, 0, init.stderr);
  const info = await (await jetstreamManager(nc)).streams.info(stream);
  assert.deepEqual(info.config.subjects, [`${stream}.>`]);
  assert.equal(info.config.duplicate_window, 120e9);
  assert.equal(info.config.storage, 'file');
});

test('an event on a subject the consumer does not apply is dead-lettered with a clear reason; the books stay exact', async () => {
  const init = await dtx(benchArgs(sharedNatsUrl, '--init', '--txns', '10'));
  assert.equal(init.code, 0, init.stderr);
  await jetstream(nc).publish(`${stream}.refund`, JSON.stringify({ txn: 'x', account: 1, amount: 5 }), {
    msgID: 'stray-1',
  });
  const r = await dtx(['recover', ...dbs, '--nats', sharedNatsUrl, '--stream', stream, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).deadLettered, 1);
  assert.match(r.stderr, new RegExp(`unknown subject ${stream}\\.refund`));
  const [rows] = await my.query("SELECT state FROM dtx_obench_inbox WHERE id = 'stray-1'");
  assert.deepEqual(rows, [{ state: 'dead' }]);
  const verify = await dtx(['verify', ...dbs, '--json']);
  assert.equal(JSON.parse(verify.stdout).ok, true, verify.stdout);
});

test("the consumer's database without the inbox table: a clear error naming it; --init creates it", async () => {
  const init = await dtx(benchArgs(sharedNatsUrl, '--init', '--txns', '5'));
  assert.equal(init.code, 0, init.stderr);
  await my.query('DROP TABLE dtx_obench_inbox');
  const before = await outboxRows();
  const r = await dtx(benchArgs(sharedNatsUrl, '--txns', '5'));
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    new RegExp(
      `^error: DTX_INVALID_STATE: the consumer database mysql://root@127\\.0\\.0\\.1:3306/${databases.name} has no table dtx_obench_inbox`,
      'm',
    ),
  );
  assert.deepEqual(await outboxRows(), before, 'nothing written');
  const again = await dtx(benchArgs(sharedNatsUrl, '--init', '--txns', '5', '--json'));
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).applied, JSON.parse(again.stdout).committed);
});

test("a payload over the broker's limit is refused at publish, before the commit; one under it commits", async () => {
  const small = `${stream}_SMALL`;
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: small, subjects: [`${small}.>`], max_msg_size: 2048 });
  try {
    const limit = await brokerPayloadLimit(nc, small);
    assert.equal(limit, 2048 - 512, 'room left for the headers the relay sets');
    // The broker's limit is real: straight to JetStream, the large payload is refused.
    await assert.rejects(
      jetstream(nc).publish(`${small}.x`, new Uint8Array(3000)),
      /message size exceeds maximum/i,
    );

    const table = `dtx_ob_limit_${randomBytes(3).toString('hex')}`;
    const outbox = postgresOutbox(pool, { table, maxPayloadBytes: limit });
    await outbox.ensureSchema();
    try {
      await pgTransaction(pool, async (client) => {
        await assert.rejects(
          outbox.publish(client, `${small}.x`, new Uint8Array(3000)),
          (e: unknown) =>
            e instanceof DtxError &&
            e.code === 'DTX_INVALID_ARGUMENT' &&
            /3000 bytes exceeds 1536 bytes \(the broker's limit\)/.test(e.message),
        );
        // The transaction is intact: the refusal ran no SQL.
        await outbox.publish(client, `${small}.x`, new Uint8Array(900), { id: 'fits' });
      });
      const r = await pool.query(`SELECT id FROM ${table}`);
      assert.deepEqual(r.rows, [{ id: 'fits' }]);
    } finally {
      await pool.query(`DROP TABLE ${table}`);
    }
  } finally {
    await deleteStream(nc, small);
  }
});
