// The package as a user gets it: `npm pack`, then `npm install <tarball>` in
// an empty folder (this fetches `commander` from the npm registry), then the
// command and the library entry points run from there. It proves the
// install is lean (no TypeScript loader, no database driver, no tests) and
// that dist/ is complete: nothing in it reaches back into src/ or needs a
// development dependency. `npm test` builds dist/ before the tests run, so
// the tarball holds the current sources.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stderr}`);
  return r.stdout;
}

// A plain ES module, as a user would write it: no TypeScript, no loader.
const importCheck = `
import * as dtx from 'dtx';
import * as postgres from 'dtx/postgres';
import * as mysql from 'dtx/mysql';
import * as sqlite from 'dtx/sqlite';
import * as outbox from 'dtx/outbox';
import * as inbox from 'dtx/inbox';
const entries = { dtx, 'dtx/postgres': postgres, 'dtx/mysql': mysql, 'dtx/sqlite': sqlite, 'dtx/outbox': outbox, 'dtx/inbox': inbox };
for (const [name, mod] of Object.entries(entries)) {
  if (!Object.values(mod).some((v) => typeof v === 'function')) throw new Error(name + ' exports no function');
}
if (typeof dtx.DtxError !== 'function') throw new Error('dtx does not export DtxError');
console.log(JSON.stringify(Object.fromEntries(Object.entries(entries).map(([k, m]) => [k, Object.keys(m).length]))));
`;

// The dashboard's files as the installed package serves them (the module is
// not an entry point: it is reached by its path, as `dtx serve` reaches it).
const dashboardCheck = `
import Fastify from 'fastify';
import { registerDashboardAssets } from './node_modules/dtx/dist/server/dashboard.js';
const app = Fastify();
registerDashboardAssets(app);
const out = [];
for (const url of ['/', '/dashboard/dashboard.js', '/dashboard/dashboard.css']) {
  const r = await app.inject({ url });
  out.push([r.statusCode, r.headers['content-type'], r.body.length > 100 && /default-src 'none'/.test(r.headers['content-security-policy'])]);
}
await app.close();
console.log(JSON.stringify(out));
`;

test('the packed tarball installs lean, runs `dtx demo --no-real` and imports every entry point from .mjs', () => {
  const packDir = mkdtempSync(join(tmpdir(), 'dtx-pack-'));
  const userDir = mkdtempSync(join(tmpdir(), 'dtx-user-'));
  try {
    // --ignore-scripts: dist/ is already built by `npm test`, and rebuilding it
    // here would delete it under the tests that run bin/dtx.js concurrently.
    const [packed] = JSON.parse(
      run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', packDir], root),
    ) as { filename: string; files: { path: string }[] }[];
    assert.ok(packed);
    const paths = packed.files.map((f) => f.path);
    for (const needed of [
      'package.json',
      'README.md',
      'bin/dtx.js',
      'dist/index.js',
      'dist/cli/main.js',
      // The dashboard `dtx serve` serves, next to the module that reads it (the build copies it).
      'dist/server/dashboard.js',
      'dist/server/dashboard/index.html',
      'dist/server/dashboard/dashboard.js',
      'dist/server/dashboard/dashboard.css',
    ])
      assert.ok(paths.includes(needed), `the tarball lacks ${needed}`);
    for (const p of paths) {
      assert.match(
        p,
        /^(package\.json|README\.md|bin\/dtx\.js|dist\/|docs\/)/,
        `unexpected file in the tarball: ${p}`,
      );
      assert.doesNotMatch(
        p,
        /(^|\/)test|\.test\.|\.map$|(?<!\.d)\.ts$/,
        `test or source file in the tarball: ${p}`,
      );
    }

    writeFileSync(
      join(userDir, 'package.json'),
      JSON.stringify({ name: 'dtx-install-check', private: true, type: 'module' }),
    );
    run('npm', ['install', '--no-audit', '--no-fund', join(packDir, packed.filename)], userDir);
    const installed = join(userDir, 'node_modules');
    assert.ok(existsSync(join(installed, 'commander')));
    for (const dev of ['tsx', 'esbuild', 'typescript', 'pg', 'mysql2', 'better-sqlite3'])
      assert.ok(!existsSync(join(installed, dev)), `${dev} was installed with dtx`);

    const demo = JSON.parse(run('npx', ['--no', 'dtx', 'demo', '--no-real', '--json'], userDir));
    const [naive, twoPc] = demo.partialCommits.runs;
    assert.ok(naive.partial > 0);
    assert.equal(twoPc.partial, 0);

    writeFileSync(join(userDir, 'check.mjs'), importCheck);
    const counts = JSON.parse(run(process.execPath, ['check.mjs'], userDir));
    assert.deepEqual(Object.keys(counts), [
      'dtx',
      'dtx/postgres',
      'dtx/mysql',
      'dtx/sqlite',
      'dtx/outbox',
      'dtx/inbox',
    ]);

    // `dtx serve`'s dashboard from the installed files: the page and its script are found and served.
    writeFileSync(join(userDir, 'dashboard.mjs'), dashboardCheck);
    const served = JSON.parse(run(process.execPath, ['dashboard.mjs'], userDir));
    assert.deepEqual(served, [
      [200, 'text/html; charset=utf-8', true],
      [200, 'text/javascript; charset=utf-8', true],
      [200, 'text/css; charset=utf-8', true],
    ]);
  } finally {
    rmSync(packDir, { recursive: true, force: true });
    rmSync(userDir, { recursive: true, force: true });
  }
});
