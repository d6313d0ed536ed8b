// `node --import tsx bench/dashboard.ts [N]`: what the dashboard of `dtx serve`
// costs the server. Runs N two-step sagas to completion on a throwaway SQLite
// store (default 1,000), then times building the overview (`GET
// /v1/overview` without its 1 s reuse: every view the store holds is read)
// and one transaction's timeline over HTTP, ten times each; prints the median
// and the slowest.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { overview } from '../src/server/dashboard.ts';
import { startServer } from '../src/server/index.ts';
import { branchService, call } from '../test/server/helpers.ts';

const n = Number(process.argv[2] ?? 1000);
const rounds = 10;
const dir = mkdtempSync(join(tmpdir(), 'dtx-bench-dashboard-'));
const svc = await branchService(() => ({ status: 200 }));
const server = await startServer({ listen: '127.0.0.1:0', store: { sqlite: join(dir, 'store.sqlite') } });
try {
  const saga = (id: string) => ({
    id,
    steps: [
      { name: 'a', action: { url: `${svc.url}/a` }, compensation: { url: `${svc.url}/a-undo` } },
      { name: 'b', action: { url: `${svc.url}/b` }, compensation: null },
    ],
    wait: { timeoutMs: 30_000 },
  });
  for (let i = 0; i < n; i += 50) {
    const batch = Array.from({ length: Math.min(50, n - i) }, (_, k) => `s${i + k}`);
    await Promise.all(batch.map((id) => call(server.url, 'POST', '/v1/sagas', saga(id))));
  }
  const time = async (what: () => Promise<void>) => {
    const ms: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const t = performance.now();
      await what();
      ms.push(performance.now() - t);
    }
    ms.sort((a, b) => a - b);
    return { medianMs: Number(ms[rounds / 2]!.toFixed(1)), maxMs: Number(ms.at(-1)!.toFixed(1)) };
  };
  const overviewMs = await time(async () => {
    const o = await overview(server.engine, Date.now());
    if (o.total !== n) throw new Error(`the overview counts ${o.total} transactions, not ${n}`);
  });
  let r = 0;
  const timelineMs = await time(async () => {
    const x = await call(server.url, 'GET', `/v1/transactions/s${r++}/timeline`);
    if (x.status !== 200 || typeof x.json.svg !== 'string') throw new Error(`timeline: ${x.status}`);
  });
  console.log(JSON.stringify({ sagas: n, overview: overviewMs, timeline: timelineMs }));
} finally {
  await server.close();
  await svc.close();
  rmSync(dir, { recursive: true, force: true });
}
