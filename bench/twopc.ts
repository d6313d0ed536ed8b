// `npm run bench:2pc`: dtx's two-phase commit against the hand-written code it
// replaces, side by side in one run (see bench/real.ts for how rounds
// alternate and what is measured).
//
// The transfer: UPDATE one account on the first database (debit), UPDATE one
// on the second (credit), and INSERT the transfer's row on every database
// (the third, audit, gets only that row). Rows:
//
//   hand-written    per database BEGIN (XA START on MariaDB), the UPDATE and
//                   INSERT, then PREPARE TRANSACTION on all at once, then
//                   COMMIT PREPARED on all at once; no log, no recovery. The
//                   baseline: what a careful programmer writes by hand.
//   dtx committed   coordinator.transaction with the same statements,
//                   acknowledge 'committed' (the default): answers once every
//                   branch committed. Its log: SQLite, synchronous = FULL.
//   dtx durable     the same with acknowledge 'durable': answers as soon as the
//                   commit decision is durable; phase two runs after.
//   naive           per database BEGIN, the statements, COMMIT, one database
//                   after the other: no atomicity at all, the floor.
//   dtx paxos-commit (F=1)
//                   createCoordinator({ protocol: 'paxos-commit' }) with the
//                   same statements over the same pools: the decision is held
//                   by three `dtx acceptor` processes this bench starts (their
//                   own processes, each with its SQLite log, fsync on), not by
//                   a coordinator log. Printed after the table: its throughput
//                   against dtx 2PC ('committed') at each concurrency, and its
//                   messages and forced writes per commit, counted on the run
//                   (src/cli/paxos-costs.ts), next to the simulator's and the
//                   paper's.
//
// Topologies: three throwaway PostgreSQL clusters (fsync on), and PostgreSQL
// (debit) + the machine's MariaDB (credit). All rows use the same adapters'
// pools (`pg`, `mysql2`).
//
//   npm run bench:2pc -- --seconds 6 --rounds 3 [--json] [--topology pg] [--soak 600]

import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { PoolConnection as MysqlConnection, RowDataPacket } from 'mysql2/promise';
import type { PoolClient as PgClient } from 'pg';
import type { MariaDbAdapter } from '../src/adapters/mariadb.ts';
import type { PostgresAdapter } from '../src/adapters/postgres.ts';
import type { ResourceAdapter } from '../src/adapters/types.ts';
import { applyTransferPart, type DbTarget, initSchema, openAdapter, parseDbUrl } from '../src/cli/db.ts';
import {
  DbWriteCounter,
  type PaxosCosts,
  paxosCostLines,
  paxosCosts,
  readPaxosCounters,
} from '../src/cli/paxos-costs.ts';
import { isDtxError } from '../src/errors.ts';
import type { AcceptorFanout } from '../src/protocol/paxos-commit/types.ts';
import { twoPcRecordCodec } from '../src/protocol/twopc/codec.ts';
import type { TwoPcRecord } from '../src/protocol/twopc/types.ts';
import { type Coordinator, createCoordinator, type Transaction } from '../src/runtime/coordinator.ts';
import { openSqliteLog } from '../src/runtime/log/sqlite.ts';
import {
  type AcceptorProcess,
  startAcceptorProcesses,
  tempDir,
} from '../test/runtime/paxos-commit/support.ts';
import { freePort } from '../test/support/ports.ts';
import {
  type BenchFlags,
  incarnation,
  type Row,
  runBenchMain,
  runRound,
  runTable,
  type Variant,
} from './real.ts';

const roles = ['debit', 'credit', 'audit'] as const;

interface Db {
  target: DbTarget;
  adapter: ResourceAdapter;
  role: (typeof roles)[number];
}

/** The statements of one database's part: `$n` placeholders on PostgreSQL, `?` on MariaDB. */
function partSql(db: Db, account: number, amount: number, txn: string): [string, unknown[]][] {
  const pg = db.target.kind === 'postgres';
  const t = (name: string) => (pg ? `dtx_bench.${name}` : `dtx_bench_${name}`);
  const p = (i: number) => (pg ? `$${i}` : '?');
  const delta = db.role === 'debit' ? -amount : amount;
  const statements: [string, unknown[]][] = [];
  if (db.role !== 'audit') {
    statements.push([
      `UPDATE ${t('accounts')} SET balance = balance + ${p(1)} WHERE id = ${p(2)}`,
      [delta, account],
    ]);
  }
  statements.push([`INSERT INTO ${t('transfers')} (txn, amount) VALUES (${p(1)}, ${p(2)})`, [txn, amount]]);
  return statements;
}

/** A connection of the adapter's own pool, with the four calls the hand-written code makes. */
interface Session {
  query(sql: string, params?: unknown[]): Promise<void>;
  release(destroy?: boolean): void;
}

async function session(db: Db): Promise<Session> {
  if (db.target.kind === 'postgres') {
    const client: PgClient = await (db.adapter as PostgresAdapter).pool.connect();
    return {
      query: async (sql, params) => {
        await client.query(sql, params);
      },
      release: (destroy) => client.release(destroy === true ? true : undefined),
    };
  }
  const conn: MysqlConnection = await (db.adapter as MariaDbAdapter).pool.getConnection();
  return {
    query: async (sql, params) => {
      await conn.query(sql, params);
    },
    release: (destroy) => (destroy === true ? conn.destroy() : conn.release()),
  };
}

const handGidPrefix = 'hwbench_';

/** Hand-written two-phase commit: the baseline. */
function handWritten(dbs: Db[], pick: () => number): Variant {
  let n = 0;
  return {
    name: 'hand-written',
    async transfer() {
      const txn = `hw.${incarnation}.${++n}`;
      const gid = `${handGidPrefix}${incarnation}_${n}`;
      const amount = 1 + Math.floor(Math.random() * 100);
      const open: { db: Db; s: Session; prepared: boolean }[] = [];
      try {
        for (const db of dbs) {
          const s = await session(db);
          const entry = { db, s, prepared: false };
          open.push(entry);
          await s.query(db.target.kind === 'postgres' ? 'BEGIN' : `XA START '${gid}'`);
          for (const [sql, params] of partSql(db, pick(), amount, txn)) await s.query(sql, params);
        }
        await Promise.all(
          open.map(async (e) => {
            if (e.db.target.kind === 'postgres') await e.s.query(`PREPARE TRANSACTION '${gid}'`);
            else {
              await e.s.query(`XA END '${gid}'`);
              await e.s.query(`XA PREPARE '${gid}'`);
            }
            e.prepared = true;
          }),
        );
      } catch (err) {
        await Promise.allSettled(open.map((e) => abortHand(e, gid)));
        return failure(err);
      }
      await Promise.all(
        open.map(async (e) => {
          await e.s.query(
            e.db.target.kind === 'postgres' ? `COMMIT PREPARED '${gid}'` : `XA COMMIT '${gid}'`,
          );
          e.s.release();
        }),
      );
      return 'committed';
    },
  };
}

async function abortHand(e: { db: Db; s: Session; prepared: boolean }, gid: string): Promise<void> {
  const pg = e.db.target.kind === 'postgres';
  try {
    if (e.prepared) await e.s.query(pg ? `ROLLBACK PREPARED '${gid}'` : `XA ROLLBACK '${gid}'`);
    else if (pg) await e.s.query('ROLLBACK');
    else {
      await e.s.query(`XA END '${gid}'`).catch(() => undefined);
      await e.s.query(`XA ROLLBACK '${gid}'`);
    }
    e.s.release();
  } catch {
    e.s.release(true);
  }
}

/** Naive commit: each database's local transaction committed in turn. */
function naive(dbs: Db[], pick: () => number): Variant {
  let n = 0;
  return {
    name: 'naive',
    async transfer() {
      const txn = `nv.${incarnation}.${++n}`;
      const amount = 1 + Math.floor(Math.random() * 100);
      for (const db of dbs) {
        const s = await session(db);
        try {
          await s.query(db.target.kind === 'postgres' ? 'BEGIN' : 'START TRANSACTION');
          for (const [sql, params] of partSql(db, pick(), amount, txn)) await s.query(sql, params);
          await s.query('COMMIT');
          s.release();
        } catch (err) {
          await s.query('ROLLBACK').then(
            () => s.release(),
            () => s.release(true),
          );
          return failure(err);
        }
      }
      return 'committed';
    },
  };
}

/** What a dtx row needs of its coordinator (2PC's or Paxos Commit's). */
interface DtxCoordinator {
  transaction(work: (tx: Pick<Transaction, 'id' | 'branch'>) => Promise<void>): Promise<unknown>;
}

/** dtx: the same statements in a coordinator.transaction, one branch per database in order. */
function viaDtx(
  name: string,
  coordinator: DtxCoordinator,
  gidPrefix: string,
  dbs: Db[],
  pick: () => number,
): Variant {
  return {
    name,
    async transfer() {
      try {
        await coordinator.transaction(async (tx) => {
          const amount = 1 + Math.floor(Math.random() * 100);
          for (const db of dbs) {
            const branch = await tx.branch(db.target.name);
            await applyTransferPart(db.target, branch, db.role, tx.id, pick(), amount);
          }
        });
        return 'committed';
      } catch (err) {
        return failure(err);
      }
    },
    // acknowledge 'durable' answers before phase two: let it finish before the next round starts.
    async settle() {
      const deadline = Date.now() + 60_000;
      for (const db of dbs) {
        while ((await db.adapter.listPrepared(gidPrefix)).length > 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 20));
        }
      }
    },
  };
}

/** A lock timeout or deadlock is an abort (counted); anything else stops the bench. */
function failure(err: unknown): string {
  if (isDtxError(err) && err.retryable) return 'aborted';
  const code = (err as { code?: unknown }).code;
  // PostgreSQL lock_not_available / deadlock, MariaDB lock wait timeout / deadlock.
  if (
    code === '55P03' ||
    code === '40P01' ||
    code === 'ER_LOCK_WAIT_TIMEOUT' ||
    code === 'ER_LOCK_DEADLOCK'
  ) {
    return 'aborted';
  }
  throw err;
}

/** Rolls back hand-written branches a killed earlier run left prepared on MariaDB (its XA list outlives us). */
async function clearHandWrittenLeftovers(db: Db): Promise<void> {
  if (db.target.kind !== 'mysql') return;
  const pool = (db.adapter as MariaDbAdapter).pool;
  const [rows] = await pool.query<RowDataPacket[]>('XA RECOVER');
  for (const row of rows) {
    const data = String(row.data);
    if (data.startsWith(handGidPrefix) && /^[A-Za-z0-9_]+$/.test(data)) {
      await pool.query(`XA ROLLBACK '${data}'`);
    }
  }
}

const paxosRow = 'dtx paxos-commit (F=1)';
/** `--compare-fanout`: the same with every RM's vote sent to all 2F+1 acceptors. */
const paxosAllRow = 'dtx paxos-commit (F=1, votes to all)';
/** `--compare-syncs`: the same with acceptors that sync their log one batch at a time (the default is two at once). */
const paxosOneSyncRow = 'dtx paxos-commit (F=1, acceptors: 1 sync in flight)';
/** `--compare-vote-hold`: the same with each vote sent as its branch prepares (`voteHoldMs: 0`). */
const paxosNoHoldRow = 'dtx paxos-commit (F=1, votes not held)';
/** The same with one of the three acceptors in the leader's process (`hostAcceptor`), two as processes. */
const paxosHostedRow = 'dtx paxos-commit (F=1, one acceptor in the leader)';
const paxosRows = [paxosRow, paxosHostedRow, paxosAllRow, paxosOneSyncRow, paxosNoHoldRow];

/** One Paxos Commit row: where the votes go, and how the acceptors sync their logs. */
interface PaxosShape {
  name: string;
  fanout: AcceptorFanout;
  cluster: string;
  acceptorFlags: string[];
  /** The leader's `voteHoldMs` (default: the coordinator's). */
  voteHoldMs?: number;
  /** One acceptor hosted by the leader (`hostAcceptor`), the others processes. */
  hosted?: boolean;
}
const twoPcRow = "dtx acknowledge 'committed'";
/** Each topology's Paxos Commit costs per commit, printed after the table. */
const paxosCostsByTopology: { topology: string; row: string; costs: PaxosCosts }[] = [];

/**
 * The Paxos Commit row: a leader over the same adapters (their forced writes
 * counted on the way), three acceptor processes, F = 1. Its costs are the
 * counters' growth over all its rounds (warm-up included) per transfer it
 * committed in them.
 */
async function startPaxos(
  topology: string,
  dbs: Db[],
  resources: Record<string, ResourceAdapter>,
  acceptors: AcceptorProcess[],
  pick: () => number,
  { name, fanout, voteHoldMs }: PaxosShape,
  /** The data directory of the acceptor the leader hosts, if it hosts one. */
  hostedDir: string | undefined,
) {
  const db = new DbWriteCounter();
  await answering(acceptors.map((a) => a.url));
  const own = hostedDir === undefined ? undefined : `127.0.0.1:${await freePort()}`;
  const leader = await createCoordinator({
    protocol: 'paxos-commit',
    id: `bench-${topology.replace('+', '-')}`,
    resources: db.wrap(resources),
    acceptors: [...(own === undefined ? [] : [own]), ...acceptors.map((a) => a.url)],
    ...(own === undefined ? {} : { listen: own, hostAcceptor: { dataDir: hostedDir! } }),
    faults: 1,
    acceptorFanout: fanout,
    ...(voteHoldMs === undefined ? {} : { voteHoldMs }),
    // Each row's acceptors are a cluster of their own: a leader takes over the prepared branches of its cluster only.
    cluster: acceptors[0]!.cluster,
  });
  const before = await readPaxosCounters(leader, db);
  const inner = viaDtx(name, leader, `pc_${leader.cluster}_`, dbs, pick);
  let committed = 0;
  const variant: Variant = {
    ...inner,
    async transfer() {
      const outcome = await inner.transfer();
      if (outcome === 'committed') committed++;
      return outcome;
    },
  };
  const shape = { rms: dbs.length, F: 1, faster: false, fanout };
  return {
    leader,
    name,
    variant,
    costs: async () => paxosCosts(before, await readPaxosCounters(leader, db), committed, shape),
  };
}

/**
 * Waits until every acceptor answers `/info`: a process that printed its
 * address may still be slow to answer on a busy machine, and the leader
 * refuses acceptors that do not answer within its request timeout.
 */
async function answering(urls: string[]): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (const url of urls) {
    for (;;) {
      let why: unknown;
      try {
        const res = await fetch(`${url}/info`, { signal: AbortSignal.timeout(10_000) });
        if (res.ok) break;
        why = `HTTP ${res.status}`;
      } catch (err) {
        why = err;
      }
      if (Date.now() > deadline) throw new Error(`acceptor ${url} does not answer`, { cause: why });
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

/** Paxos Commit's throughput against dtx 2PC ('committed') on the same databases, per topology and concurrency. */
function paxosRatios(rows: Row[]): { topology: string; row: string; concurrency: number; ratio: number }[] {
  return rows
    .filter((r) => paxosRows.includes(r.variant))
    .flatMap((p) => {
      const base = rows.find(
        (r) => r.variant === twoPcRow && r.topology === p.topology && r.concurrency === p.concurrency,
      );
      return base === undefined || base.tps === 0
        ? []
        : [
            {
              topology: p.topology,
              row: p.variant,
              concurrency: p.concurrency,
              ratio: Math.round((p.tps / base.tps) * 1000) / 1000,
            },
          ];
    });
}

async function benchTopology(
  topology: string,
  urls: string[],
  flags: BenchFlags,
  logDir: string,
): Promise<Row[]> {
  const dbs: Db[] = [];
  const coordinators: Coordinator[] = [];
  const acceptors: AcceptorProcess[] = [];
  const hostedDirs: string[] = [];
  const paxos: Awaited<ReturnType<typeof startPaxos>>[] = [];
  const logs: { close(): Promise<void> }[] = [];
  try {
    for (const [i, url] of urls.entries()) {
      const target = parseDbUrl(url, i);
      dbs.push({ target, adapter: await openAdapter(target, { create: true }), role: roles[i]! });
    }
    for (const db of dbs) {
      await clearHandWrittenLeftovers(db);
      await initSchema(db.target, db.adapter, flags.accounts, db.role);
    }
    const resources = Object.fromEntries(dbs.map((d) => [d.target.name, d.adapter]));
    const pick = () => Math.floor(Math.random() * flags.accounts);
    const viaTwoPc = (name: string, c: Coordinator) => viaDtx(name, c, c.gidPrefix, dbs, pick);
    const start = async (
      acknowledge: 'committed' | 'durable',
      thread: 'worker' | 'main' | 'memory' = 'main',
    ) => {
      const log = await openSqliteLog<TwoPcRecord>(
        thread === 'memory'
          ? ':memory:'
          : join(logDir, `${topology.replace('+', '-')}-${acknowledge}-${thread}.sqlite`),
        {
          create: true,
          decode: (v) => twoPcRecordCodec.check(v),
          identity: { protocol: '2pc' },
          ...(thread === 'memory' ? { unsafeMemory: true } : { thread }),
        },
      );
      logs.push(log);
      const c = await createCoordinator({ log, resources, acknowledge });
      coordinators.push(c);
      return c;
    };
    const variants = [
      handWritten(dbs, pick),
      viaTwoPc("dtx acknowledge 'committed'", await start('committed')),
      viaTwoPc("dtx acknowledge 'durable'", await start('durable')),
      naive(dbs, pick),
    ];
    if (flags.compareLogThread) {
      variants.push(viaTwoPc("dtx 'committed', log on worker thread", await start('committed', 'worker')));
    }
    if (flags.diagnoseLog) {
      variants.push(
        viaTwoPc("dtx 'committed', log in memory (NOT durable)", await start('committed', 'memory')),
      );
    }
    if (flags.soakS === undefined) {
      const shapes: PaxosShape[] = [
        { name: paxosRow, fanout: 'quorum', cluster: 'dtx', acceptorFlags: [] },
        { name: paxosHostedRow, fanout: 'quorum', cluster: 'dtxhosted', acceptorFlags: [], hosted: true },
      ];
      if (flags.compareFanout)
        shapes.push({ name: paxosAllRow, fanout: 'all', cluster: 'dtxall', acceptorFlags: [] });
      if (flags.compareSyncs)
        shapes.push({
          name: paxosOneSyncRow,
          fanout: 'quorum',
          cluster: 'dtxsync1',
          acceptorFlags: ['--syncs-in-flight', '1'],
        });
      if (flags.compareVoteHold)
        shapes.push({
          name: paxosNoHoldRow,
          fanout: 'quorum',
          cluster: 'dtxnohold',
          acceptorFlags: [],
          voteHoldMs: 0,
        });
      for (const shape of shapes) {
        const own = await startAcceptorProcesses(shape.hosted ? 2 : 3, shape.cluster, shape.acceptorFlags);
        acceptors.push(...own);
        const hostedDir = shape.hosted ? tempDir(`hosted-${shape.cluster}`) : undefined;
        if (hostedDir !== undefined) hostedDirs.push(hostedDir);
        paxos.push(await startPaxos(topology, dbs, resources, own, pick, shape, hostedDir));
        variants.push(paxos.at(-1)!.variant);
      }
    }
    if (flags.soakS !== undefined) {
      await soak(variants[1]!, Math.max(...flags.concurrency), flags.soakS);
      return [];
    }
    const rows = await runTable(topology, variants, flags, (line) => process.stderr.write(`${line}\n`));
    for (const p of paxos) paxosCostsByTopology.push({ topology, row: p.name, costs: await p.costs() });
    return rows;
  } finally {
    for (const p of paxos) await p.leader.close();
    await Promise.allSettled(acceptors.map((a) => a.stop()));
    for (const dir of [...acceptors.map((a) => a.dataDir), ...hostedDirs])
      rmSync(dir, { recursive: true, force: true });
    for (const c of coordinators) await c.close();
    for (const l of logs) await l.close();
    await Promise.allSettled(dbs.map((d) => d.adapter.close()));
  }
}

/** Item 4 of the memory check: one long run, RSS at start, middle and end (and every tenth in between). */
async function soak(v: Variant, concurrency: number, seconds: number): Promise<void> {
  const slices = 10;
  const rssMb = () => Math.round(process.memoryUsage().rss / 1e5) / 10;
  console.log(`soak: ${v.name}, concurrency ${concurrency}, ${seconds} s; RSS at start ${rssMb()} MB`);
  for (let i = 1; i <= slices; i++) {
    const r = await runRound(v, concurrency, seconds / slices);
    const mark = i === slices / 2 ? ' (middle)' : i === slices ? ' (end)' : '';
    console.log(
      `soak: ${i}/${slices} ${(r.committed / r.elapsedS).toFixed(1)} tps, RSS ${rssMb()} MB${mark}`,
    );
  }
}

await runBenchMain(
  '2pc',
  3,
  (f) =>
    `2PC transfers, ${f.rounds} alternating rounds of ${f.seconds} s per row; ratios against hand-written`,
  benchTopology,
  {
    lines: (rows) => [
      '',
      ...paxosRatios(rows).map(
        (r) => `${r.topology} c=${r.concurrency}: ${r.row} / ${twoPcRow} throughput ${r.ratio.toFixed(2)}x`,
      ),
      ...paxosCostsByTopology.flatMap(({ topology, row, costs }) => [
        '',
        `${topology}, ${row}:`,
        ...paxosCostLines(costs),
      ]),
      '',
      `${paxosRow}: 3 \`dtx acceptor\` processes started by this bench (SQLite logs, fsync on), on this machine`,
      `${paxosHostedRow}: 2 such processes and a third acceptor in the leader's process (hostAcceptor, the same SQLite log)`,
    ],
    json: (rows) => ({ paxosVsTwoPc: paxosRatios(rows), paxosCosts: paxosCostsByTopology }),
  },
);
