// `npm run bench:saga`: dtx's saga and TCC transfers against the same two
// local transactions issued directly, side by side in one run (see
// bench/real.ts for how rounds alternate and what is measured).
//
// Rows:
//
//   direct        on the first database BEGIN, UPDATE the debited account,
//                 INSERT the transfer's row, COMMIT; then the same on the
//                 second for the credit. No log, no barrier, no recovery: the
//                 baseline.
//   dtx saga      the saga of `dtx bench --protocol saga` (two steps, debit
//                 then credit, each in withBarrier on its database), through
//                 the durable orchestrator and its SQLite log.
//   dtx TCC       the TCC transfer of `dtx bench --protocol tcc` (try on both,
//                 then confirm on both), the same way.
//
// No transfer is refused (`--refuse-share 0`): the baseline has no
// compensation to compare with. Topologies: two throwaway PostgreSQL clusters
// (fsync on), and PostgreSQL (debit) + the machine's MariaDB (credit).
//
//   npm run bench:saga -- --seconds 6 --rounds 3 [--json] [--topology pg]

import { join } from 'node:path';
import type { MariaDbAdapter } from '../src/adapters/mariadb.ts';
import type { PostgresAdapter } from '../src/adapters/postgres.ts';
import {
  type Engine,
  type Opened,
  openEngine,
  openSides,
  prepareSagaBench,
  type Side,
} from '../src/cli/bench-saga.ts';
import { benchSql } from '../src/cli/db.ts';
import { type BenchFlags, incarnation, type Row, runBenchMain, runTable, type Variant } from './real.ts';

/** One local transaction on `side`'s database: the balance change and the transfer's row. */
async function localTransfer(
  side: Side,
  o: Opened,
  account: number,
  delta: number,
  txn: string,
): Promise<void> {
  const adapter = o.adapters[side === o.debit ? 0 : 1]!;
  const t = side.target;
  if (t.kind === 'postgres') {
    const client = await (adapter as PostgresAdapter).pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('UPDATE dtx_bench.accounts SET balance = balance + $1 WHERE id = $2', [
        delta,
        account,
      ]);
      await client.query('INSERT INTO dtx_bench.transfers (txn, amount) VALUES ($1, $2)', [
        txn,
        Math.abs(delta),
      ]);
      await client.query('COMMIT');
      client.release();
    } catch (err) {
      client.release(true);
      throw err;
    }
    return;
  }
  const conn = await (adapter as MariaDbAdapter).pool.getConnection();
  try {
    await conn.query('START TRANSACTION');
    await conn.query(benchSql(t, 'UPDATE dtx_bench.accounts SET balance = balance + ? WHERE id = ?'), [
      delta,
      account,
    ]);
    await conn.query(benchSql(t, 'INSERT INTO dtx_bench.transfers (txn, amount) VALUES (?, ?)'), [
      txn,
      Math.abs(delta),
    ]);
    await conn.query('COMMIT');
    conn.release();
  } catch (err) {
    conn.destroy();
    throw err;
  }
}

function direct(o: Opened, pick: () => number): Variant {
  let n = 0;
  return {
    name: 'direct local txns',
    async transfer() {
      const txn = `direct.${incarnation}.${++n}`;
      const amount = 1 + Math.floor(Math.random() * 100);
      await localTransfer(o.debit, o, pick(), -amount, txn);
      await localTransfer(o.credit, o, pick(), amount, txn);
      return 'committed';
    },
  };
}

function viaEngine(name: string, engine: Engine, pick: () => number): Variant {
  const prefix = `${name.replace(/\W+/g, '')}.${incarnation}`;
  // Its own counter: an idempotency key used again would return the earlier transfer's result at once.
  let n = 0;
  return {
    name,
    async transfer() {
      const input = { from: pick(), to: pick(), amount: 1 + Math.floor(Math.random() * 100), refuse: false };
      const id = await engine.start(`${prefix}.${++n}`, input);
      const { outcome } = await engine.result(id);
      return outcome === 'completed' ? 'committed' : outcome;
    },
  };
}

async function benchTopology(
  topology: string,
  urls: string[],
  flags: BenchFlags,
  logDir: string,
): Promise<Row[]> {
  const o = await openSides(urls, 'saga', true);
  const engines: Engine[] = [];
  try {
    await prepareSagaBench(o, { init: true, accounts: flags.accounts });
    const pick = () => Math.floor(Math.random() * flags.accounts);
    const log = (protocol: string) => ({
      sqlite: join(logDir, `${topology.replace('+', '-')}.${protocol}.sqlite`),
      create: true,
    });
    const saga = (await openEngine(o, 'saga', log('saga'))).engine;
    engines.push(saga);
    const tcc = (await openEngine(o, 'tcc', log('tcc'))).engine;
    engines.push(tcc);
    const variants = [
      direct(o, pick),
      viaEngine('dtx saga (barrier)', saga, pick),
      viaEngine('dtx TCC (barrier)', tcc, pick),
    ];
    if (flags.diagnoseLog) {
      // Diagnosis only: its log keeps nothing across a crash.
      const memory = (await openEngine(o, 'saga', { sqlite: ':memory:', unsafeMemory: true, create: true }))
        .engine;
      engines.push(memory);
      variants.push(viaEngine('dtx saga, log in memory (NOT durable)', memory, pick));
    }
    return await runTable(topology, variants, flags, (line) => process.stderr.write(`${line}\n`));
  } finally {
    for (const e of engines) await e.close();
    await o.close();
  }
}

await runBenchMain(
  'saga',
  2,
  (f) =>
    `Saga transfers, ${f.rounds} alternating rounds of ${f.seconds} s per row; ratios against direct local txns`,
  benchTopology,
);
