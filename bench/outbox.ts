// Outbox benchmark, on PostgreSQL and NATS JetStream:
//
// 1. relay throughput: `--rows` rows are committed first (relay stopped),
//    then one relay drains them; rows/s = rows / time to drain.
// 2. end-to-end latency: with a relay and an inbox consumer running, a
//    producer commits one message every `--interval-ms` for `--ms`; the
//    latency of a message is from its producer's commit returning to the
//    consumer's commit of its effect (both clocks are this process's).
// 3. against a baseline without an outbox: the same transfer events at
//    concurrency 8, either written to the outbox in the debit's transaction
//    and published by the relay (exactly once), or published straight to
//    JetStream after the debit commits (a crash in between loses the event:
//    not exactly once). Rounds of each alternate in the same run; a rate is
//    events in the stream per second (an outbox round ends when the relay
//    has marked its last row sent). Prints both rates and their ratio.
//
// Run: npm run bench:outbox -- [--rows 5000] [--ms 5000] [--interval-ms 5]
//        [--pg postgres://...] [--nats nats://...] [--batch 256]
//        [--rounds 3] [--round-ms 3000] [--concurrency 8]
// Tables and the stream are created for the run and dropped at the end.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect } from '@nats-io/transport-node';
import pg from 'pg';
import { postgresInbox } from '../src/adapters/inbox.ts';
import { pgTransaction } from '../src/adapters/local-txn.ts';
import { postgresOutbox } from '../src/adapters/outbox.ts';
import { consume } from '../src/runtime/outbox/inbox.ts';
import { startRelay } from '../src/runtime/outbox/relay.ts';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const rows = Number(flag('--rows', '5000'));
const latencyMs = Number(flag('--ms', '5000'));
const intervalMs = Number(flag('--interval-ms', '5'));
const batch = Number(flag('--batch', '256'));
const rounds = Number(flag('--rounds', '3'));
const roundMs = Number(flag('--round-ms', '3000'));
const concurrency = Number(flag('--concurrency', '8'));
const pgUrl = flag('--pg', process.env.DTX_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test');
const natsUrl = flag('--nats', process.env.DTX_BENCH_NATS_URL ?? 'nats://127.0.0.1:4222');

const run = randomBytes(4).toString('hex');
const stream = `BENCH_OUTBOX_${run}`.toUpperCase();
const pool = new pg.Pool({ connectionString: pgUrl, max: 8 });
const outbox = postgresOutbox(pool, { table: `dtx_bench_ob_${run}` });
const inbox = postgresInbox(pool, { table: `dtx_bench_ib_${run}` });
const nc = await connect({ servers: natsUrl });
const jsm = await jetstreamManager(nc);
const quiet = () => undefined;

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

try {
  await outbox.ensureSchema();
  await inbox.ensureSchema();
  await jsm.streams.add({ name: stream, subjects: [`${stream}.>`], duplicate_window: 120e9 });
  const payload = randomBytes(200);

  // 1. Throughput: fill, then drain with one relay.
  for (let i = 0; i < rows; i += 100) {
    await pgTransaction(pool, async (client) => {
      for (let j = i; j < Math.min(rows, i + 100); j++)
        await outbox.publish(client, `${stream}.fill`, payload);
    });
  }
  const t0 = performance.now();
  const relay = await startRelay({ db: outbox, nats: nc, stream, batch, pollMs: 5, log: quiet });
  while ((await outbox.unsentCount()) > 0) await new Promise((r) => setTimeout(r, 20));
  const drainMs = performance.now() - t0;
  const throughput = rows / (drainMs / 1000);

  // 2. Latency: steady producer, relay and consumer running.
  const committedAt = new Map<string, number>();
  const latencies: number[] = [];
  const consumer = await consume(
    {
      nats: nc,
      stream,
      durable: 'bench',
      db: inbox,
      filterSubject: `${stream}.lat`,
      log: quiet,
      afterCommit: (m) => {
        const start = committedAt.get(m.id);
        if (start !== undefined) latencies.push(performance.now() - start);
      },
    },
    async () => undefined,
  );
  let sent = 0;
  const end = performance.now() + latencyMs;
  while (performance.now() < end) {
    const id = `lat-${sent++}`;
    await pgTransaction(pool, (client) => outbox.publish(client, `${stream}.lat`, { n: sent }, { id }));
    committedAt.set(id, performance.now());
    relay.wake();
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  const deadline = performance.now() + 30_000;
  while (latencies.length < sent && performance.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  await consumer.stop();

  // 3. Outbox vs straight to JetStream, alternating rounds.
  const accounts = `dtx_bench_acct_${run}`;
  await pool.query(`CREATE TABLE ${accounts} (id integer PRIMARY KEY, balance bigint NOT NULL)`);
  await pool.query(`INSERT INTO ${accounts} SELECT g, 1000 FROM generate_series(0, 999) g`);
  const js = jetstream(nc);
  const debit = (client: pg.PoolClient, event: { account: number; amount: number }) =>
    client.query(`UPDATE ${accounts} SET balance = balance - $1 WHERE id = $2`, [
      event.amount,
      event.account,
    ]);
  let eventNo = 0;
  const nextEvent = () => ({
    txn: `cmp-${eventNo++}`,
    account: Math.floor(Math.random() * 1000),
    amount: 1 + Math.floor(Math.random() * 100),
  });
  /** Runs `one` on `concurrency` workers for `roundMs`; returns how many completed. */
  const round = async (one: () => Promise<void>) => {
    let done = 0;
    const stopAt = performance.now() + roundMs;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < stopAt) {
          await one();
          done++;
        }
      }),
    );
    return done;
  };
  const totals = { outbox: { events: 0, ms: 0 }, direct: { events: 0, ms: 0 } };
  for (let r = 0; r < rounds; r++) {
    let t = performance.now();
    const viaOutbox = await round(async () => {
      const event = nextEvent();
      await pgTransaction(pool, async (client) => {
        await debit(client, event);
        await outbox.publish(client, `${stream}.cmp`, event, { id: event.txn });
      });
      relay.wake();
    });
    while ((await outbox.unsentCount()) > 0) await new Promise((r) => setTimeout(r, 5));
    totals.outbox.events += viaOutbox;
    totals.outbox.ms += performance.now() - t;
    t = performance.now();
    const direct = await round(async () => {
      const event = nextEvent();
      await pgTransaction(pool, (client) => debit(client, event));
      await js.publish(`${stream}.cmp`, JSON.stringify(event), { msgID: event.txn });
    });
    totals.direct.events += direct;
    totals.direct.ms += performance.now() - t;
  }
  await relay.stop();
  const rate = (k: 'outbox' | 'direct') => Math.round(totals[k].events / (totals[k].ms / 1000));
  const versus = {
    concurrency,
    rounds,
    roundMs,
    outboxPerSec: rate('outbox'),
    directPerSec: rate('direct'),
    ratio: Number((rate('outbox') / rate('direct')).toFixed(2)),
  };
  latencies.sort((a, b) => a - b);
  const out = {
    versus,
    relay: { rows, batch, drainMs: Math.round(drainMs), rowsPerSec: Math.round(throughput) },
    endToEnd: {
      messages: sent,
      received: latencies.length,
      p50Ms: Number(percentile(latencies, 50).toFixed(1)),
      p99Ms: Number(percentile(latencies, 99).toFixed(1)),
      maxMs: Number(latencies.at(-1)!.toFixed(1)),
    },
  };
  process.stdout.write(
    `relay throughput: ${out.relay.rowsPerSec} rows/s (${rows} rows of 200 bytes, batch ${batch}, drained in ${out.relay.drainMs} ms)\n` +
      `end-to-end latency (commit -> consumer commit), ${out.endToEnd.received}/${sent} messages over ${latencyMs} ms ` +
      `(${Math.round(sent / (latencyMs / 1000))}/s, one commit then a ${intervalMs} ms pause): ` +
      `p50 ${out.endToEnd.p50Ms} ms, p99 ${out.endToEnd.p99Ms} ms, max ${out.endToEnd.maxMs} ms\n` +
      `transfer events at concurrency ${concurrency}, ${rounds} alternating rounds of ${roundMs} ms each: ` +
      `outbox (debit + event in one transaction, relayed) ${versus.outboxPerSec}/s, ` +
      `straight to JetStream after the commit (no outbox, not exactly once) ${versus.directPerSec}/s, ` +
      `ratio ${versus.ratio}x\n`,
  );
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await jsm.streams.delete(stream).catch(() => undefined);
  await pool.query(`DROP TABLE IF EXISTS dtx_bench_ob_${run}, dtx_bench_ib_${run}, dtx_bench_acct_${run}`);
  await pool.end();
  await nc.close();
}
