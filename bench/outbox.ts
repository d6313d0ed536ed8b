// Outbox benchmark, on PostgreSQL and NATS JetStream:
//
// 1. relay throughput: `--rows` rows are committed first (relay stopped),
//    then one relay drains them; rows/s = rows / time to drain.
// 2. end-to-end latency: with a relay and an inbox consumer running, a
//    producer commits one message every `--interval-ms` for `--ms`; the
//    latency of a message is from its producer's commit returning to the
//    consumer's commit of its effect (both clocks are this process's).
//
// Run: npm run bench:outbox -- [--rows 5000] [--ms 5000] [--interval-ms 5]
//        [--pg postgres://...] [--nats nats://...] [--batch 256]
// Tables and the stream are created for the run and dropped at the end.

import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { jetstreamManager } from '@nats-io/jetstream';
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
  await relay.stop();
  latencies.sort((a, b) => a - b);
  const out = {
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
      `p50 ${out.endToEnd.p50Ms} ms, p99 ${out.endToEnd.p99Ms} ms, max ${out.endToEnd.maxMs} ms\n`,
  );
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await jsm.streams.delete(stream).catch(() => undefined);
  await pool.query(`DROP TABLE IF EXISTS dtx_bench_ob_${run}, dtx_bench_ib_${run}`);
  await pool.end();
  await nc.close();
}
