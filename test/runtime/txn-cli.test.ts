// `dtx txn`, as an operator uses it after a crash: a 2PC coordinator
// (`dtx bench`) is SIGKILLed right after a commit decision became durable,
// and its PostgreSQL participant is down. `list` and `show` read the log and
// show the transaction in doubt, with the time of each record; `abandon`
// without --force and a reason is refused; `resolve --outcome aborted` of a
// decided commit is refused (it would contradict the log); `abandon --force
// --reason` starts the coordinator anyway (the dead participant no longer
// keeps it from starting), records the reason, and names the branch left
// prepared; once the participant is back, an operator finishes that branch
// by hand and the books balance. Real processes, a real PostgreSQL cluster
// stopped and restarted with pg_ctl, a real SQLite participant.

import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type PgCluster, startPgCluster } from '../adapters/pg-cluster.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = join(root, 'bin', 'dtx.js');
const work = mkdtempSync(join(tmpdir(), 'dtx-txn-cli-'));
let cluster: PgCluster | undefined;
after(async () => {
  await cluster?.stop();
  rmSync(work, { recursive: true, force: true });
});

function dtx(args: string[]) {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', cwd: root, timeout: 90_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}

/** pg_ctl on the test cluster, as the user the server runs as (see scripts/pg-cluster.sh). */
function pgCtl(c: PgCluster, args: string[]): void {
  const command = ['pg_ctl', '-D', c.dir, ...args];
  if (process.getuid?.() === 0) {
    execFileSync('runuser', ['-u', 'postgres', '--', ...command], { stdio: 'ignore' });
  } else execFileSync(command[0]!, command.slice(1), { stdio: 'ignore' });
}

function psql(c: PgCluster, sql: string): string {
  return execFileSync(
    'psql',
    ['-h', c.host, '-p', String(c.port), '-U', 'postgres', '-d', 'postgres', '-qAt', '-c', sql],
    {
      encoding: 'utf8',
    },
  ).trim();
}

interface View {
  id: string;
  state: string;
  reason: string | null;
  records: { at: string | null; record: { type: string } }[];
}

test('dtx txn: list and show an in-doubt 2PC transaction, refuse unforced or contradicting actions, abandon with a reason while a participant is down', async () => {
  cluster = await startPgCluster();
  const pg = `postgres://postgres@${cluster.host}:${cluster.port}/postgres`;
  const dbs = ['--db', pg, '--db', `sqlite:${join(work, 'credit.sqlite')}`];
  const log = join(work, 'coordinator.sqlite');
  const logArgs = ['--log', log];

  const init = dtx([
    'bench',
    ...dbs,
    ...logArgs,
    '--init',
    '--txns',
    '3',
    '--accounts',
    '20',
    '--concurrency',
    '1',
  ]);
  assert.equal(init.code, 0, init.stderr);
  const crash = dtx([
    'bench',
    ...dbs,
    ...logArgs,
    '--txns',
    '10',
    '--concurrency',
    '1',
    '--acknowledge',
    'durable',
    '--crash-at',
    'decided',
    '--crash-after',
    '2',
  ]);
  assert.equal(crash.signal, 'SIGKILL', crash.stderr);

  // The log, read offline: the killed transfer is in doubt, its records carry times.
  const listed = dtx(['txn', 'list', ...logArgs, '--state', 'in-doubt', '--json']);
  assert.equal(listed.code, 0, listed.stderr);
  const inDoubt = JSON.parse(listed.stdout) as View[];
  assert.equal(inDoubt.length, 1, listed.stdout);
  const id = inDoubt[0]!.id;
  const shown = dtx(['txn', 'show', id, ...logArgs, '--json']);
  assert.equal(shown.code, 0, shown.stderr);
  const view = JSON.parse(shown.stdout) as View;
  assert.equal(view.state, 'in-doubt');
  assert.ok(view.records.some((r) => r.record.type === 'commit'));
  for (const r of view.records)
    assert.ok(r.at !== null && !Number.isNaN(Date.parse(r.at)), JSON.stringify(r));
  const text = dtx(['txn', 'show', id, ...logArgs]);
  assert.match(text.stdout, new RegExp(`${id.replaceAll('.', '\\.')} \\(2pc\\): in-doubt`));
  const unknown = dtx(['txn', 'show', 'no-such-txn', ...logArgs]);
  assert.equal(unknown.code, 2, unknown.stderr);

  // The PostgreSQL participant goes down with the branch prepared.
  assert.equal(psql(cluster, "select count(*) from pg_prepared_xacts where gid like 'dtx_%'"), '1');
  pgCtl(cluster, ['-m', 'immediate', '-w', 'stop']);

  const unforced = dtx(['txn', 'abandon', id, ...logArgs, ...dbs, '--reason', 'gone']);
  assert.equal(unforced.code, 2, unforced.stderr);
  assert.match(unforced.stderr, /--force/);
  const noReason = dtx(['txn', 'abandon', id, ...logArgs, ...dbs, '--force']);
  assert.equal(noReason.code, 2, noReason.stderr);
  const contradicts = dtx([
    'txn',
    'resolve',
    id,
    ...logArgs,
    ...dbs,
    '--outcome',
    'aborted',
    '--force',
    '--reason',
    'try to undo a commit',
  ]);
  assert.equal(contradicts.code, 1, contradicts.stderr);
  assert.match(contradicts.stderr, /^error: DTX_/m);
  assert.equal(JSON.parse(dtx(['txn', 'show', id, ...logArgs, '--json']).stdout).state, 'in-doubt');

  const abandoned = dtx([
    'txn',
    'abandon',
    id,
    ...logArgs,
    ...dbs,
    '--force',
    '--reason',
    'ledger host lost; branch settled by hand',
    '--json',
  ]);
  assert.equal(abandoned.code, 0, abandoned.stderr);
  const out = JSON.parse(abandoned.stdout) as { result: { stillPrepared: string[] }; transaction: View };
  assert.equal(out.transaction.state, 'abandoned');
  assert.equal(out.transaction.reason, 'ledger host lost; branch settled by hand');
  assert.equal(out.result.stillPrepared.length, 1, abandoned.stdout);

  // Back up: the abandoned branch is still prepared, for the operator — recovery never presumes it aborted.
  pgCtl(cluster, ['-l', join(cluster.dir, 'server.log'), '-w', 'start']);
  const recovered = dtx(['recover', ...dbs, ...logArgs, '--json']);
  assert.equal(recovered.code, 0, recovered.stderr);
  assert.equal(psql(cluster, "select count(*) from pg_prepared_xacts where gid like 'dtx_%'"), '1');
  psql(cluster, `COMMIT PREPARED '${out.result.stillPrepared[0]}'`);
  const verified = dtx(['verify', ...dbs, '--json']);
  assert.equal(verified.code, 0, verified.stdout + verified.stderr);
});
