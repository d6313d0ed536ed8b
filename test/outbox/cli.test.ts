// `dtx relay` on the command line: bad usage is one `error: CODE` line and
// exit 2; a missing outbox table is refused before anything runs; `--init`
// creates the table, and SIGTERM stops the relay cleanly with its tally.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { spawnRelay } from './processes.ts';
import { sharedNatsUrl, sqliteFile } from './support.ts';

const dtxBin = fileURLToPath(new URL('../../bin/dtx.js', import.meta.url));

function dtx(args: string[]) {
  return spawnSync(process.execPath, [dtxBin, ...args], {
    env: { ...process.env, DTX_FROM_SOURCE: '1' },
    encoding: 'utf8',
    timeout: 60_000,
  });
}

test('dtx relay refuses a bad URL or table name (exit 2) and a missing table (exit 1), touching nothing', () => {
  const badUrl = dtx(['relay', '--db', 'nope://x', '--nats', sharedNatsUrl]);
  assert.equal(badUrl.status, 2);
  assert.match(badUrl.stderr, /^error: DTX_INVALID_ARGUMENT: cannot use database URL "nope:\/\/x"/m);
  const badTable = dtx([
    'relay',
    '--db',
    'sqlite:/nonexistent/x.db',
    '--table',
    'x;drop',
    '--nats',
    sharedNatsUrl,
  ]);
  assert.equal(badTable.status, 2);
  assert.match(badTable.stderr, /^error: DTX_INVALID_ARGUMENT: table "x;drop"/m);
  const file = sqliteFile();
  try {
    new Database(file.path).close();
    const missing = dtx(['relay', '--db', `sqlite:${file.path}`, '--nats', sharedNatsUrl]);
    assert.equal(missing.status, 1);
    assert.match(
      missing.stderr,
      /^error: DTX_INVALID_STATE: outbox table dtx_outbox \(sqlite\) cannot be read/m,
    );
  } finally {
    file.dispose();
  }
});

test('dtx relay --init creates the outbox table; SIGTERM stops it with exit 0 and a tally', async () => {
  const file = sqliteFile();
  try {
    const relay = spawnRelay(['--db', `sqlite:${file.path}`, '--nats', sharedNatsUrl, '--init']);
    await relay.waitForOutput('dtx relay: relaying sqlite table dtx_outbox');
    await relay.stop();
    assert.equal((await relay.exited).code, 0);
    assert.match(relay.stderr(), /dtx relay: stopped; 0 published/);
    const db = new Database(file.path, { readonly: true });
    assert.deepEqual(db.prepare('SELECT count(*) AS n FROM dtx_outbox').get(), { n: 0 });
    db.close();
  } finally {
    file.dispose();
  }
});

test('dtx bench --protocol outbox: usage errors (exit 2) before anything connects', () => {
  const pgUrl = 'postgres://postgres@127.0.0.1:5432/test';
  const cases: [string[], RegExp][] = [
    [
      ['--protocol', '2pc', '--db', pgUrl, '--db', pgUrl, '--nats', sharedNatsUrl],
      /--nats applies to --protocol outbox/,
    ],
    [['--protocol', 'outbox', '--db', pgUrl], /--protocol outbox takes two --db/],
    [
      ['--protocol', 'outbox', '--db', pgUrl, '--db', 'mysql://root@127.0.0.1/x', '--stream', 'a.b'],
      /--stream "a.b" must be/,
    ],
    [
      ['--protocol', 'outbox', '--db', pgUrl, '--db', pgUrl],
      /the producer and the consumer need two different databases/,
    ],
    [['--protocol', 'outbox', '--db', pgUrl, '--db', 'sqlite:/nonexistent/x'], /postgres:\/\/ or mysql:\/\//],
    [
      ['--protocol', 'outbox', '--db', pgUrl, '--db', 'mysql://root@127.0.0.1/x', '--lease', 'l'],
      /--lease does not apply to outbox/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = dtx(['bench', ...args, '--txns', '1']);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`^error: DTX_INVALID_ARGUMENT: .*${message.source}`, 'm'));
  }
});
