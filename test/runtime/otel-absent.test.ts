// `@opentelemetry/api` is an optional peer dependency: dtx must run without
// it. The built package (dist/, which `npm test` builds first) is copied into
// a folder whose node_modules links every installed package except
// @opentelemetry/*, and a plain .mjs there runs a saga with a local branch and
// an HTTP branch on a real node:http server: the saga completes, the observer
// hears its calls, and the HTTP branch gets no trace header.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

const script = `
import { createRequire } from 'node:module';
import { createServer } from 'node:http';
let reachable = true;
try { createRequire(import.meta.url).resolve('@opentelemetry/api'); } catch { reachable = false; }
if (reachable) throw new Error('@opentelemetry/api is reachable: the check would prove nothing');
const { createSagaOrchestrator, openSagaLog } = await import('./dist/index.js');
const headers = [];
const server = createServer((req, res) => { headers.push(req.headers); req.resume(); req.on('end', () => res.end('{}')); });
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = 'http://127.0.0.1:' + server.address().port + '/ship';
const log = await openSagaLog({ sqlite: './log.sqlite', create: true });
const calls = [];
const o = await createSagaOrchestrator({ log, observer: { branchCalled: (e) => calls.push(e.branch + ':' + e.status) } });
const id = await o.start(
  { name: 'plain', steps: [{ name: 'local', action: async () => {}, compensation: async () => {} }, { name: 'http', action: { url }, compensation: null }] },
  { idempotencyKey: 'k' },
);
const r = await o.result(id, { timeoutMs: 20000 });
await o.close();
await log.close();
server.close();
console.log(JSON.stringify({ outcome: r.outcome, calls, traceparent: headers.map((h) => h.traceparent ?? null) }));
`;

test('without @opentelemetry/api installed, a saga runs and its calls carry no trace header', () => {
  assert.ok(existsSync(join(root, 'dist/index.js')), 'dist/ is missing: run npm run build');
  const dir = mkdtempSync(join(tmpdir(), 'dtx-no-otel-'));
  try {
    cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true });
    const modules = realpathSync(join(root, 'node_modules'));
    mkdirSync(join(dir, 'node_modules'));
    for (const name of readdirSync(modules)) {
      if (name.startsWith('.') || name === '@opentelemetry') continue;
      symlinkSync(join(modules, name), join(dir, 'node_modules', name));
    }
    writeFileSync(join(dir, 'package.json'), JSON.stringify({ private: true, type: 'module' }));
    writeFileSync(join(dir, 'check.mjs'), script);
    const r = spawnSync(process.execPath, ['check.mjs'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), {
      outcome: 'completed',
      calls: ['local:success', 'http:success'],
      traceparent: [null],
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
