// How the dtx command fails: every failure is one `error: CODE: message` line
// on stderr (plus a `fix: ...` line when dtx knows one), exit status 2 for a
// wrong command line and 1 for a failed run, no stack trace unless --verbose
// or DEBUG=dtx, and never a password. Each case runs the real command as a
// subprocess against the real servers: an unreachable port, a MariaDB user
// with a password, a PostgreSQL database without the bench schema.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError } from 'commander';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { describeFailure, redact, redactStream, secretsIn } from '../../src/cli/errors.ts';
import { DtxError } from '../../src/errors.ts';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const bin = join(root, 'bin', 'dtx.js');
const pid = process.pid;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function dtx(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((done) => {
    execFile(
      process.execPath,
      [bin, ...args],
      { cwd: root, timeout: 60_000, encoding: 'utf8', env: { ...process.env, DEBUG: '', ...env } },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : null;
        done({ code, stdout, stderr });
      },
    );
  });
}

/**
 * Asserts the failure shape: exit status, nothing on stdout, stderr exactly one
 * `error: CODE: message` line and at most one `fix:` line after it, no stack
 * frame, and none of `secrets` anywhere.
 */
function assertFailure(
  r: Run,
  expected: { exit: number; code: string | RegExp; message?: RegExp; fix?: RegExp; secrets?: string[] },
): void {
  const where = `stderr was:\n${r.stderr}`;
  assert.equal(r.code, expected.exit, `exit status ${r.code}, expected ${expected.exit}; ${where}`);
  assert.equal(r.stdout, '', 'nothing on stdout');
  const lines = r.stderr.split('\n');
  assert.equal(lines.pop(), '', `stderr ends with a newline; ${where}`);
  assert.ok(lines.length === 1 || (lines.length === 2 && lines[1]?.startsWith('fix: ')), where);
  const m = /^error: ([A-Z_]+): (.+)$/.exec(lines[0] ?? '');
  assert.ok(m, `first line is "error: CODE: message"; ${where}`);
  if (typeof expected.code === 'string') assert.equal(m[1], expected.code, where);
  else assert.match(m[1] ?? '', expected.code, where);
  if (expected.message) assert.match(m[2] ?? '', expected.message, where);
  if (expected.fix) assert.match(lines[1] ?? '', expected.fix, where);
  assert.doesNotMatch(r.stderr, /^\s+at .+[:(]/m, `no stack trace; ${where}`);
  for (const secret of expected.secrets ?? []) {
    assert.ok(!r.stderr.includes(secret) && !r.stdout.includes(secret), `"${secret}" was printed; ${where}`);
  }
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  await new Promise<void>((ok) => server.close(() => ok()));
  return port;
}

const dir = mkdtempSync(join(tmpdir(), 'dtx-cli-errors-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('dtx failures: one line, a code, the right exit status', { concurrency: 4 }, () => {
  test('an unreachable host: DTX_RESOURCE_UNAVAILABLE, exit 1, a fix, no password', async () => {
    const port = await closedPort();
    for (const scheme of ['postgres', 'mysql']) {
      const url = `${scheme}://dtx:Unreach4bleSecret@127.0.0.1:${port}/db`;
      const r = await dtx(['verify', '--db', url, '--db', url]);
      assertFailure(r, {
        exit: 1,
        code: 'DTX_RESOURCE_UNAVAILABLE',
        message: new RegExp(`ECONNREFUSED 127\\.0\\.0\\.1:${port}`),
        fix: /server is running/,
        secrets: ['Unreach4bleSecret'],
      });
    }
  });

  test('--verbose and DEBUG=dtx add the stack trace, still without the password', async () => {
    const port = await closedPort();
    const url = `postgres://dtx:Verb0seSecret@127.0.0.1:${port}/db`;
    for (const [args, env] of [
      [['verify', '--verbose', '--db', url, '--db', url], {}],
      [['verify', '--db', url, '--db', url], { DEBUG: 'dtx' }],
    ] as const) {
      const r = await dtx([...args], env);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^error: DTX_RESOURCE_UNAVAILABLE: /);
      assert.match(r.stderr, /^\s+at .+:\d+:\d+\)?$/m, 'a stack trace');
      assert.ok(!r.stderr.includes('Verb0seSecret'), r.stderr);
    }
  });

  test('an unknown PostgreSQL database: DTX_INVALID_ARGUMENT, exit 2, a fix, stdout empty with --json', async () => {
    const url = `postgres://postgres@127.0.0.1:5432/no_such_db_${pid}`;
    const r = await dtx(['verify', '--db', url, '--db', url, '--json']);
    assertFailure(r, {
      exit: 2,
      code: 'DTX_INVALID_ARGUMENT',
      message: new RegExp(`no such database.*no_such_db_${pid}`),
      fix: /create the database/,
    });
  });

  test('malformed URLs are usage errors that name the URL, password hidden', async () => {
    for (const [url, why] of [
      ['postgres://dtx:Malf0rmedSecret@127.0.0.1:notaport/db', /not a valid URL/],
      ['mysql://dtx:Malf0rmedSecret@/db', /no host|not a valid URL/],
      ['http://127.0.0.1/db', /unknown scheme "http:"/],
      ['127.0.0.1:5432/db', /not a URL/],
      ['sqlite:', /needs a file path/],
    ] as const) {
      const r = await dtx(['verify', '--db', url, '--db', url]);
      assertFailure(r, {
        exit: 2,
        code: 'DTX_INVALID_ARGUMENT',
        message: why,
        fix: /write it as postgres:\/\//,
        secrets: ['Malf0rmedSecret'],
      });
      assert.match(r.stderr, /cannot use database URL/);
    }
  });

  test('a malformed --log URL is a usage error too, password hidden', async () => {
    const logDir = mkdtempSync(join(dir, 'log-url-'));
    const r = await dtx([
      'bench',
      '--db',
      `sqlite:${join(logDir, 'a.sqlite')}`,
      '--db',
      `sqlite:${join(logDir, 'b.sqlite')}`,
      '--init',
      '--txns',
      '1',
      '--log',
      'postgres://dtx:L0gUrlSecret@127.0.0.1:notaport/db',
    ]);
    assertFailure(r, {
      exit: 2,
      code: 'DTX_INVALID_ARGUMENT',
      message: /Invalid URL|cannot use log URL/,
      fix: /write it as postgres:\/\//,
      secrets: ['L0gUrlSecret'],
    });
  });

  test('a %zz escape in a URL is a usage error, before anything connects', async () => {
    for (const [url, part] of [
      ['mysql://root:Pct%zzSecret@127.0.0.1:3306/test', 'password'],
      ['postgres://po%zzstgres@127.0.0.1:5432/postgres', 'user name'],
      ['postgres://postgres@127.0.0.1:5432/db%zz', 'database name'],
    ] as const) {
      const r = await dtx(['verify', '--db', url, '--db', url]);
      assertFailure(r, {
        exit: 2,
        code: 'DTX_INVALID_ARGUMENT',
        message: new RegExp(`malformed %-escape in the ${part}`),
        secrets: ['Pct%zzSecret', 'zzSecret'],
      });
    }
  });

  test('bench without --txns or --duration says so and exits 2, creating nothing', async () => {
    const a = join(dir, 'bench-a.sqlite');
    const b = join(dir, 'bench-b.sqlite');
    const r = await dtx(['bench', '--db', `sqlite:${a}`, '--db', `sqlite:${b}`]);
    assertFailure(r, { exit: 2, code: 'DTX_INVALID_ARGUMENT', message: /give --duration S or --txns N/ });
    assert.ok(!existsSync(a) && !existsSync(b), 'no database file created');
  });

  test('usage errors of sim, swarm and compare, inside their actions too, exit 2 with their message', async () => {
    for (const [args, message] of [
      [
        [
          'sim',
          '--protocol',
          '2pc',
          '--workload',
          'toy',
          '--participants',
          '5',
          '--txns',
          '10',
          '--fail-rates',
          '0,0',
        ],
        /--fail-rates needs one rate per participant: 5, got 2/,
      ],
      [['sim', '--protocol', '2pc', '--txns', '10', '--faults', '1'], /are Paxos Commit options/],
      [
        ['sim', '--protocol', 'saga', '--txns', '10', '--workload', 'bank'],
        /runs the booking or bank-audit workload/,
      ],
      [['sim', '--protocol', '2pc', '--txns', '10', '--downtime-ms', '5'], /goes with --scenario/],
      [['swarm', '--protocol', '2pc', '--seeds', '1', '--faster'], /are Paxos Commit options/],
      [['sim', '--protocol', '2pc', '--txns', '10', '--relays', '2'], /--relays does not apply to 2pc/],
      [
        ['sim', '--protocol', 'outbox', '--txns', '10', '--workload', 'bank'],
        /--workload does not apply to outbox/,
      ],
      [
        ['sim', '--protocol', 'outbox', '--txns', '10', '--scenario', 'coordinator-crash'],
        /--scenario does not apply/,
      ],
      [['swarm', '--protocol', 'outbox', '--seeds', '1', '--faster'], /are Paxos Commit options/],
      [['swarm', '--protocol', '3pc', '--seeds', '1', '--fanout', 'all'], /are Paxos Commit options/],
      [['sim', '--protocol', 'paxos-commit', '--txns', '1', '--fanout', 'some'], /--fanout.*quorum, all/],
      [['compare', '--fanout', 'half'], /--fanout.*quorum, all/],
      [['sim', '--protocol', '2pc', '--txns', '1', '--every-participant'], /is for the bank workload/],
      [['swarm', '--protocol', '2pc', '--seeds', '0'], /--seeds must be between 1/],
      [['compare', '--participants', '1'], /--participants must be between 2/],
      [['sim', '--txns', '5'], /required option '--protocol <name>'/],
      [['frobnicate'], /unknown command 'frobnicate'/],
      [
        [
          'acceptor',
          '--listen',
          '127.0.0.1:0',
          '--data',
          '/nonexistent/never-created',
          '--syncs-in-flight',
          '0',
        ],
        /--syncs-in-flight must be between 1 and 16, got 0/,
      ],
    ] as const) {
      assertFailure(await dtx([...args]), { exit: 2, code: 'DTX_INVALID_ARGUMENT', message });
    }
  });

  test('usage errors of the auditors and of verify --live exit 2 before anything is opened', async () => {
    const dbs = [
      '--db',
      `sqlite:${join(dir, 'never-a.sqlite')}`,
      '--db',
      `sqlite:${join(dir, 'never-b.sqlite')}`,
    ];
    for (const [args, message] of [
      [['verify', ...dbs, '--live'], /--live needs --fence/],
      [['verify', ...dbs, '--fence', 'postgres://127.0.0.1/x'], /--fence needs --live/],
      [
        ['bench', ...dbs, '--protocol', 'naive', '--auditors', '1', '--reads', 'snapshot', '--txns', '1'],
        /needs --protocol 2pc/,
      ],
      [
        ['bench', ...dbs, '--protocol', 'saga', '--auditors', '1', '--txns', '1'],
        /--auditors does not apply to saga/,
      ],
      [
        ['bench', ...dbs, '--reads', 'dirty', '--txns', '1'],
        /Allowed choices are plain, serializable, locking, snapshot/,
      ],
      [
        ['bench', ...dbs, '--workload', 'append', '--protocol', 'saga', '--txns', '1'],
        /--workload append runs --protocol 2pc, not saga/,
      ],
      [['bench', ...dbs, '--keys', '3', '--txns', '1'], /--keys applies to --workload append/],
      [
        ['bench', ...dbs, '--workload', 'append', '--init', '--txns', '1'],
        /db1: the append workload runs on PostgreSQL and MariaDB, not SQLite/,
      ],
    ] as const) {
      assertFailure(await dtx([...args]), { exit: 2, code: 'DTX_INVALID_ARGUMENT', message });
    }
    assert.ok(!existsSync(join(dir, 'never-a.sqlite')), 'no database file created');
  });

  test("commander's suggestion becomes the fix line", async () => {
    assertFailure(await dtx(['simm']), {
      exit: 2,
      code: 'DTX_INVALID_ARGUMENT',
      message: /^unknown command 'simm'$/,
      fix: /^fix: did you mean sim\?$/,
    });
  });

  test('a nonexistent SQLite path for verify: one line, exit 1, the file not created', async () => {
    const a = join(dir, 'absent-a.sqlite');
    const b = join(dir, 'absent-b.sqlite');
    const r = await dtx(['verify', '--db', `sqlite:${a}`, '--db', `sqlite:${b}`]);
    assertFailure(r, { exit: 1, code: 'DTX_LOG_NOT_FOUND', message: /absent-a\.sqlite/ });
    assert.ok(!existsSync(a) && !existsSync(b), 'no database file created');
  });

  test('recover with the wrong protocol for the log: one line, DTX_LOG_MISMATCH, nothing touched', async () => {
    const logDir = mkdtempSync(join(dir, 'mismatch-'));
    const dbs = ['--db', `sqlite:${join(logDir, 'a.sqlite')}`, '--db', `sqlite:${join(logDir, 'b.sqlite')}`];
    const log = join(logDir, 'log.sqlite');
    const bench = await dtx(['bench', ...dbs, '--init', '--txns', '5', '--log', log]);
    assert.equal(bench.code, 0, bench.stderr);
    const r = await dtx(['recover', ...dbs, '--protocol', 'saga', '--log', log]);
    assert.ok(r.code === 1 || r.code === 2, `exit status ${r.code}; stderr was:\n${r.stderr}`);
    assertFailure(r, { exit: r.code ?? -1, code: 'DTX_LOG_MISMATCH', message: /2pc/ });
  });
});

describe('real servers that refuse: a wrong password, a database without the bench schema', () => {
  const user = `dtx_pw_test_${pid}`;
  const password = `Right-Pa55-${pid}`;
  const database = `dtx_cli_errors_${pid}`;
  let maria: mysql.Connection | undefined;

  before(async () => {
    maria = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
    await maria.query('CREATE USER ?@? IDENTIFIED BY ?', [user, '127.0.0.1', password]);
    await maria.query('GRANT ALL ON test.* TO ?@?', [user, '127.0.0.1']);
    const client = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
    await client.connect();
    await client.query(`CREATE DATABASE ${database}`);
    await client.end();
  });

  after(async () => {
    await maria?.query('DROP USER IF EXISTS ?@?', [user, '127.0.0.1']);
    await maria?.end();
    const client = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
    await client.connect();
    await client.query(`DROP DATABASE IF EXISTS ${database}`);
    await client.end();
  });

  test('a wrong MariaDB password: DTX_INVALID_ARGUMENT, exit 2, a fix, neither password printed', async () => {
    const wrong = `Wr0ng-Pa55-${pid}`;
    const url = `mysql://${user}:${encodeURIComponent(wrong)}@127.0.0.1:3306/test`;
    const r = await dtx(['verify', '--db', url, '--db', url]);
    assertFailure(r, {
      exit: 2,
      code: 'DTX_INVALID_ARGUMENT',
      message: /refused the login.*Access denied/,
      fix: /user name and password/,
      secrets: [wrong, password],
    });
  });

  test('verify on a database bench never initialized: DTX_INVALID_STATE, exit 1, fix: --init', async () => {
    const url = `postgres://postgres@127.0.0.1:5432/${database}`;
    const r = await dtx(['verify', '--db', url, '--db', url]);
    assertFailure(r, {
      exit: 1,
      code: 'DTX_INVALID_STATE',
      message: /db[12] \(postgres:.*\) has no dtx_bench schema/,
      fix: /dtx bench --init/,
    });
  });
});

describe('the reporter itself', () => {
  test('redact hides URL passwords, password= pairs and the command line passwords', () => {
    assert.equal(redact('postgres://u:p%40ss@h:5432/db'), 'postgres://u:***@h:5432/db');
    assert.equal(redact('mysql://u:a@b:c@h/db and sqlite:/x'), 'mysql://u:***@h/db and sqlite:/x');
    assert.equal(redact('postgres://u@h:5432/db'), 'postgres://u@h:5432/db');
    assert.equal(redact('host=h password=hunter22 user=u'), 'host=h password=*** user=u');
    const secrets = secretsIn(['verify', '--db', 'postgres://u:s3cr%40t@h/db']);
    assert.deepEqual(secrets, ['s3cr%40t', 's3cr@t']);
    assert.equal(redact("auth failed for 's3cr@t'", secrets), "auth failed for '***'");
  });

  test('redactStream filters everything written to a stream, strings and bytes', () => {
    const written: string[] = [];
    const stream = {
      write: (chunk: unknown) => {
        written.push(String(chunk));
        return true;
      },
    } as unknown as NodeJS.WriteStream;
    redactStream(stream, ['hunter22']);
    stream.write('{"log": "postgres://u:hunter22@h/db"}\n');
    stream.write(Buffer.from('echoed hunter22'));
    assert.deepEqual(written, ['{"log": "postgres://u:***@h/db"}\n', 'echoed ***']);
  });

  test('PostgreSQL login and database refusals get the same codes and fixes as MariaDB', () => {
    // The servers here trust local logins, so PostgreSQL's refusal is checked
    // on the error shape `pg` produces (a server error: severity and SQLSTATE).
    const pgError = (code: string, message: string) =>
      Object.assign(new Error(message), { severity: 'FATAL', code });
    const login = describeFailure(pgError('28P01', 'password authentication failed for user "dtx"'));
    assert.equal(login.code, 'DTX_INVALID_ARGUMENT');
    assert.equal(login.exitCode, 2);
    assert.match(login.message, /PostgreSQL refused the login/);
    assert.match(login.fix ?? '', /user name and password/);
    const missing = describeFailure(pgError('3D000', 'database "x" does not exist'));
    assert.equal(missing.code, 'DTX_INVALID_ARGUMENT');
    assert.match(missing.fix ?? '', /create the database/);
  });

  test('describeFailure: exit 2 for usage, 1 for the rest, DTX_INTERNAL for a bug, always one line', () => {
    assert.deepEqual(describeFailure(new InvalidArgumentError('bad\nflag')), {
      code: 'DTX_INVALID_ARGUMENT',
      message: 'bad flag',
      fix: undefined,
      exitCode: 2,
    });
    assert.equal(describeFailure(new DtxError('DTX_LOG_BUSY', 'held by c1')).exitCode, 1);
    const bug = describeFailure(new TypeError('x is undefined'));
    assert.equal(bug.code, 'DTX_INTERNAL');
    assert.equal(bug.exitCode, 1);
    const fsError = Object.assign(new Error("ENOENT: no such file or directory, open '/nope/x.svg'"), {
      code: 'ENOENT',
      syscall: 'open',
      path: '/nope/x.svg',
    });
    assert.equal(describeFailure(fsError).code, 'DTX_INVALID_ARGUMENT');
  });
});
