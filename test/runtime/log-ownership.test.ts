// Issue 9, log ownership and identity, as an operator meets them on the
// command line: a mistyped --log, `dtx recover` started while a bench owns a
// shared PostgreSQL log, and `dtx recover` of a saga or TCC log without
// --protocol. Real processes (bench is SIGKILLed where it says so), real
// SQLite participants, a throwaway PostgreSQL cluster for the shared log.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { runVerify } from '../../src/cli/bench.ts';
import { startPgCluster } from '../adapters/pg-cluster.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = join(root, 'bin', 'dtx.js');
const work = mkdtempSync(join(tmpdir(), 'dtx-ownership-'));
after(() => rmSync(work, { recursive: true, force: true }));

function dtx(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root, timeout: 60_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

function dbArgs(name: string, n = 3): { dbs: string[]; args: string[] } {
  const dbs = Array.from({ length: n }, (_, i) => `sqlite:${join(work, `${name}-${i}.sqlite`)}`);
  return { dbs, args: dbs.flatMap((d) => ['--db', d]) };
}

test('a mistyped --log is refused with DTX_LOG_NOT_FOUND; nothing is created or rolled back; the right log then commits', () => {
  const { dbs, args } = dbArgs('typo');
  const log = join(work, 'real.sqlite');
  const init = dtx(['bench', ...args, '--log', log, '--init', '--txns', '5', '--accounts', '50']);
  assert.equal(init.code, 0, init.stderr);
  const crash = dtx([
    'bench',
    ...args,
    '--log',
    log,
    '--txns',
    '20',
    '--crash-at',
    'decided',
    '--crash-after',
    '3',
    '--acknowledge',
    'durable',
  ]);
  assert.equal(crash.signal, 'SIGKILL', crash.stderr);

  const typo = join(work, 'reel.sqlite');
  const refused = dtx(['recover', ...args, '--log', typo]);
  assert.equal(refused.code, 1, refused.stderr);
  assert.match(refused.stderr, /DTX_LOG_NOT_FOUND/);
  assert.ok(refused.stderr.includes(typo), refused.stderr);
  assert.equal(existsSync(typo), false, 'the mistyped log was created');
  // The transfer the kill hit is still prepared: nothing was rolled back.
  const before = dtx(['verify', ...args, '--json']);
  assert.ok((JSON.parse(before.stdout) as { preparedLeft: number }).preparedLeft > 0, before.stdout);

  const otherId = dtx(['recover', ...args, '--log', log, '--id', 'someoneelse']);
  assert.equal(otherId.code, 1, otherId.stderr);
  assert.match(
    otherId.stderr,
    /DTX_LOG_MISMATCH: .* belongs to coordinator id [a-z0-9]{10}, not someoneelse/,
  );
  const recovered = dtx(['recover', ...args, '--log', log, '--json']);
  assert.equal(recovered.code, 0, recovered.stderr);
  const report = JSON.parse(recovered.stdout) as { recommitted: string[] };
  assert.ok(report.recommitted.length >= 1, recovered.stdout);
  const verify = dtx(['verify', ...args]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  // verify and recover never create a participant either.
  const ghost = dtx(['verify', '--db', dbs[0]!, '--db', `sqlite:${join(work, 'ghost.sqlite')}`]);
  assert.equal(ghost.code, 1);
  assert.match(ghost.stderr, /DTX_LOG_NOT_FOUND.*ghost\.sqlite/);
  assert.equal(existsSync(join(work, 'ghost.sqlite')), false);
});

test('bench without --init needs an existing log: DTX_LOG_NOT_FOUND with the fix', () => {
  const { args } = dbArgs('noinit');
  const init = dtx(['bench', ...args, '--log', join(work, 'noinit.sqlite'), '--init', '--txns', '1']);
  assert.equal(init.code, 0, init.stderr);
  const r = dtx(['bench', ...args, '--log', join(work, 'other.sqlite'), '--txns', '1']);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /DTX_LOG_NOT_FOUND.*other\.sqlite.*--init/);
});

for (const protocol of ['saga', 'tcc'] as const) {
  test(`${protocol}: recover without --protocol reads it from the log and finishes every transfer; a wrong --protocol is DTX_LOG_MISMATCH`, async () => {
    const { dbs, args } = dbArgs(`p-${protocol}`, 2);
    const log = join(work, `${protocol}-log`);
    const common = ['bench', '--protocol', protocol, ...args, '--log', log, '--refuse-share', '0.3'];
    const init = dtx([...common, '--init', '--txns', '10', '--accounts', '50']);
    assert.equal(init.code, 0, init.stderr);
    const child = spawn(process.execPath, [bin, ...common, '--duration', '30', '--concurrency', '8'], {
      cwd: root,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    const exited = new Promise((done) => child.on('exit', (_c, signal) => done(signal)));
    await new Promise<void>((started) =>
      child.stderr.on('data', (d) => {
        stderr += d;
        if (stderr.includes('transfers started')) started();
      }),
    );
    await new Promise((r) => setTimeout(r, 300));
    process.kill(child.pid!, 'SIGKILL');
    assert.equal(await exited, 'SIGKILL');

    const wrong = dtx(['recover', ...args, '--log', log, '--protocol', '2pc']);
    assert.equal(wrong.code, 1, wrong.stderr);
    assert.match(wrong.stderr, /DTX_LOG_MISMATCH/);
    const r = dtx(['recover', ...args, '--log', log]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`recovered \\(${protocol}\\)`));
    const v = await runVerify(dbs);
    assert.equal(v.ok, true, JSON.stringify(v));
  });
}

test('recover while a bench owns the postgres:// log: each fails with DTX_LOG_BUSY naming the holder and changes nothing', async () => {
  const cluster = await startPgCluster();
  try {
    const logUrl = `postgres://postgres@127.0.0.1:${cluster.port}/postgres`;
    const { dbs, args } = dbArgs('busy');
    const init = dtx(['bench', ...args, '--log', logUrl, '--init', '--txns', '5', '--accounts', '200']);
    assert.equal(init.code, 0, init.stderr);
    const before = await runVerify(dbs);
    const bench = spawn(
      process.execPath,
      [bin, 'bench', ...args, '--log', logUrl, '--concurrency', '4', '--duration', '5', '--json'],
      { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    let err = '';
    bench.stdout.on('data', (d) => (out += d));
    bench.stderr.on('data', (d) => (err += d));
    const benchExit = new Promise<number | null>((done) => bench.on('exit', (code) => done(code)));
    await new Promise<void>((started) =>
      bench.stderr.on('data', () => {
        if (err.includes('transfers started')) started();
      }),
    );
    const recovers = await Promise.all(
      [1, 2, 3].map(
        () =>
          new Promise<{ code: number | null; stderr: string }>((done) => {
            const r = spawn(process.execPath, [bin, 'recover', ...args, '--log', logUrl], {
              cwd: root,
              stdio: ['ignore', 'ignore', 'pipe'],
            });
            let e = '';
            r.stderr.on('data', (d) => (e += d));
            r.on('exit', (code) => done({ code, stderr: e }));
          }),
      ),
    );
    for (const r of recovers) {
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /DTX_LOG_BUSY: .*held and renewed by "[^"]+-\d+-[0-9a-f]{12}"/);
    }
    assert.equal(await benchExit, 0, err);
    const report = JSON.parse(out) as { committed: number };
    const afterVerify = await runVerify(dbs);
    assert.equal(afterVerify.ok, true, JSON.stringify(afterVerify));
    assert.equal(afterVerify.committedTransfers - before.committedTransfers, report.committed);
  } finally {
    await cluster.stop();
  }
});
