// Latency of two-phase commit across services through `dtx serve`, measured
// end to end on this machine: a server in-process (SQLite store), a
// PostgreSQL participant (a throwaway cluster) and a MariaDB participant
// (database dtx_w3_measure_<pid>, dropped afterwards), each a node:http
// service on dtx/participant. N transactions one after another, each: begin,
// one INSERT per service (held open), two registrations, commit with wait.
//
//   node --import tsx scripts/serve-2pc-latency.ts [N=100]

import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { createMariaDbAdapter } from '../src/adapters/mariadb.ts';
import { createPostgresAdapter } from '../src/adapters/postgres.ts';
import { createParticipant, type Participant } from '../src/participant/index.ts';
import { startServer } from '../src/server/index.ts';
import { mariaAdmin } from '../test/adapters/helpers.ts';
import { startPgCluster } from '../test/adapters/pg-cluster.ts';

const n = Number(process.argv[2] ?? 100);
const db = `dtx_w3_measure_${process.pid}`;
const cluster = await startPgCluster();
const dir = mkdtempSync(join(tmpdir(), 'm2pc-'));
const a = new pg.Client(cluster.connection);
await a.connect();
await a.query('CREATE TABLE t (id text primary key)');
await mariaAdmin(`CREATE DATABASE ${db}`);
const conn = { host: '127.0.0.1', port: 3306, user: 'root', database: db, connectionLimit: 8 };
const m = await mysql.createConnection(conn);
await m.query('CREATE TABLE t (id varchar(80) primary key) ENGINE=InnoDB');
const pga = await createPostgresAdapter({ connection: { ...cluster.connection, max: 8 } });
const ma = await createMariaDbAdapter({ connection: conn });
async function svc(p: Participant, branch: string, sql: string) {
  const s = createServer((req, res) => {
    const path = new URL(req.url!, 'http://x').pathname;
    if (path !== '/work') return p.handler(req, res);
    let b = '';
    req.on('data', (d) => (b += d));
    req.on('end', async () => {
      const { gid } = JSON.parse(b);
      await p.work(gid, branch, (tx) => tx.query(sql, [gid]));
      res.end('{}');
    });
  });
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return { s, url: `http://127.0.0.1:${(s.address() as AddressInfo).port}` };
}
const s1 = await svc(createParticipant({ adapter: pga }), 'stock', 'INSERT INTO t VALUES ($1)');
const s2 = await svc(createParticipant({ adapter: ma }), 'pay', 'INSERT INTO t VALUES (?)');
const server = await startServer({ listen: '127.0.0.1:0', store: { sqlite: join(dir, 's.sqlite') } });
const post = (url: string, body: unknown) =>
  fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  }).then(async (r) => {
    if (r.status >= 300) throw new Error(`${url} ${r.status} ${await r.text()}`);
    return (await r.json()) as { state?: string };
  });
const total: number[] = [];
const commitOnly: number[] = [];
for (let i = 0; i < n; i++) {
  const gid = `m${process.pid}-${i}`;
  const t0 = performance.now();
  await post(`${server.url}/v1/2pc`, { id: gid });
  await post(`${s1.url}/work`, { gid });
  await post(`${s2.url}/work`, { gid });
  await post(`${server.url}/v1/2pc/${gid}/branches`, { branch: 'stock', url: s1.url });
  await post(`${server.url}/v1/2pc/${gid}/branches`, { branch: 'pay', url: s2.url });
  const t1 = performance.now();
  const v = await post(`${server.url}/v1/2pc/${gid}/commit`, { wait: { timeoutMs: 10000 } });
  const t2 = performance.now();
  if (v.state !== 'committed') throw new Error(JSON.stringify(v));
  total.push(t2 - t0);
  commitOnly.push(t2 - t1);
}
const q = (xs: number[], p: number) => {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor(p * s.length))]!.toFixed(1);
};
const rows = (await a.query('SELECT count(*)::int AS c FROM t')).rows[0].c;
const [mrows] = await m.query('SELECT count(*) AS c FROM t');
const mr = (mrows as { c: number }[])[0]!;
console.log(`n=${n} committed pg rows=${rows} maria rows=${mr.c}`);
console.log(
  `whole txn (begin, 2 work calls, 2 registrations, commit+wait) ms: p50 ${q(total, 0.5)} p90 ${q(total, 0.9)} max ${q(total, 1)}`,
);
console.log(
  `commit request (prepare both, force decision, commit both, acks) ms: p50 ${q(commitOnly, 0.5)} p90 ${q(commitOnly, 0.9)} max ${q(commitOnly, 1)}`,
);
await server.close();
s1.s.close();
s2.s.close();
await pga.close();
await ma.close();
await a.end();
await m.end();
await mariaAdmin(`DROP DATABASE ${db}`);
await cluster.stop();
rmSync(dir, { recursive: true, force: true });
