// Gid validation and quoting, the typed error hierarchy, and the promise that an
// invalid gid never reaches a server: the PostgreSQL and MariaDB adapters here
// point at a closed port, so any attempt to talk to a server would fail with
// DTX_RESOURCE_UNAVAILABLE instead of DTX_INVALID_GID.

import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import {
  checkGid,
  checkGidPrefix,
  gidLimits,
  gidLiteral,
  isValidGid,
  makeGid,
  sqlStringLiteral,
} from '../../src/adapters/gid.ts';
import { createMariaDbAdapter, gidToXid } from '../../src/adapters/mariadb.ts';
import { createPostgresAdapter } from '../../src/adapters/postgres.ts';
import {
  DtxError,
  HeuristicError,
  InvalidGidError,
  isDtxError,
  LockConflictError,
  PreparedTxnsDisabledError,
  ResourceUnavailableError,
  retryableByCode,
} from '../../src/errors.ts';
import { hostileGids, rejectsWithCode, throwsWithCode } from './helpers.ts';

describe('gid rules', () => {
  test('accepts letters, digits, _ - . : starting with a letter or digit', () => {
    for (const gid of ['dtx_1_a', 'a', '0', 'dtx_TX-9.1:node-2', 'A_b-C.d:E']) {
      assert.equal(checkGid(gid), gid);
      assert.ok(isValidGid(gid));
    }
  });

  test('rejects hostile gids with InvalidGidError', () => {
    for (const gid of hostileGids) {
      const error = throwsWithCode(() => checkGid(gid), 'DTX_INVALID_GID');
      assert.ok(error instanceof InvalidGidError);
      assert.equal(error.retryable, false);
      assert.equal(isValidGid(gid), false, JSON.stringify(gid));
    }
    for (const notString of [undefined, null, 42, {}, ['dtx']]) {
      throwsWithCode(() => checkGid(notString), 'DTX_INVALID_GID');
    }
  });

  test('enforces each database limit, in bytes', () => {
    const max = (n: number) => 'g'.repeat(n);
    assert.ok(isValidGid(max(gidLimits.postgresBytesMax), gidLimits.postgresBytesMax));
    assert.equal(isValidGid(max(200), gidLimits.postgresBytesMax), false);
    assert.ok(isValidGid(max(128), gidLimits.mariadbBytesMax));
    assert.equal(isValidGid(max(129), gidLimits.mariadbBytesMax), false);
    assert.equal(gidLimits.portableBytesMax, Math.min(gidLimits.postgresBytesMax, gidLimits.mariadbBytesMax));
    const error = throwsWithCode(() => checkGid(max(500), 199), 'DTX_INVALID_GID');
    assert.match(error.message, /500 bytes, the limit here is 199/);
  });

  test('prefixes: empty, or the start of a valid gid', () => {
    assert.equal(checkGidPrefix(''), '');
    assert.equal(checkGidPrefix('dtx_abc_'), 'dtx_abc_');
    throwsWithCode(() => checkGidPrefix("dtx'"), 'DTX_INVALID_GID');
    throwsWithCode(() => checkGidPrefix('%'), 'DTX_INVALID_GID');
  });

  test('makeGid builds dtx_<txnId>_<branch> and checks it', () => {
    assert.equal(makeGid('tx42', 'pg1'), 'dtx_tx42_pg1');
    throwsWithCode(() => makeGid("tx'", 'pg1'), 'DTX_INVALID_GID');
    throwsWithCode(() => makeGid('t'.repeat(130), 'b'), 'DTX_INVALID_GID');
  });

  test('sqlStringLiteral doubles quotes and refuses backslash and NUL', () => {
    assert.equal(sqlStringLiteral('abc'), "'abc'");
    assert.equal(sqlStringLiteral("a'b"), "'a''b'");
    assert.equal(sqlStringLiteral("'; DROP TABLE t; --"), "'''; DROP TABLE t; --'");
    assert.equal(sqlStringLiteral(''), "''");
    throwsWithCode(() => sqlStringLiteral('a\\b'), 'DTX_INVALID_GID');
    throwsWithCode(() => sqlStringLiteral('a\u0000b'), 'DTX_INVALID_GID');
  });

  test('gidLiteral checks before quoting', () => {
    assert.equal(gidLiteral('dtx_1_a', 199), "'dtx_1_a'");
    throwsWithCode(() => gidLiteral("dtx_1'a", 199), 'DTX_INVALID_GID');
  });

  test('MariaDB xids split a gid after its 64th byte', () => {
    assert.deepEqual(gidToXid('dtx_1_a'), { gtrid: 'dtx_1_a', bqual: '', formatId: 1 });
    const long = `${'a'.repeat(64)}${'b'.repeat(40)}`;
    assert.deepEqual(gidToXid(long, 7), { gtrid: 'a'.repeat(64), bqual: 'b'.repeat(40), formatId: 7 });
  });
});

describe('error hierarchy', () => {
  test('codes, retryable defaults, subclasses', () => {
    const lock = new LockConflictError('locked', { key: 'k', holderGid: 'g' });
    assert.ok(lock instanceof DtxError && lock instanceof Error);
    assert.equal(lock.code, 'DTX_LOCK_CONFLICT');
    assert.equal(lock.retryable, true);
    assert.equal(lock.holderGid, 'g');

    const unavailable = new ResourceUnavailableError('down', {
      inDoubt: true,
      cause: new Error('ECONNRESET'),
    });
    assert.equal(unavailable.retryable, true);
    assert.equal(unavailable.inDoubt, true);
    assert.ok(unavailable.cause instanceof Error);

    const disabled = new PreparedTxnsDisabledError();
    assert.equal(disabled.code, 'DTX_PREPARED_TXNS_DISABLED');
    assert.equal(disabled.retryable, false);
    assert.match(disabled.message, /max_prepared_transactions/);
    assert.match(disabled.message, /restart/);

    const heuristic = new HeuristicError('oops', { decision: 'commit', outcome: 'rolledBack', gid: 'g1' });
    assert.equal(heuristic.code, 'DTX_HEURISTIC');
    assert.equal(heuristic.gid, 'g1');

    assert.equal(new DtxError('DTX_BRANCH_BUSY', 'busy').retryable, retryableByCode.DTX_BRANCH_BUSY);
    assert.equal(new DtxError('DTX_QUERY_FAILED', 'x', { retryable: true }).retryable, true);
    assert.ok(isDtxError(lock, 'DTX_LOCK_CONFLICT'));
    assert.equal(isDtxError(lock, 'DTX_TIMEOUT'), false);
    assert.equal(isDtxError(new Error('x')), false);
  });
});

describe('an invalid gid is never sent to a server', async () => {
  // Port 1 on loopback: nothing listens there, so any real attempt fails as unavailable.
  const pg = await createPostgresAdapter({
    connection: { host: '127.0.0.1', port: 1, user: 'postgres', connectionTimeoutMillis: 2000 },
  });
  const maria = await createMariaDbAdapter({
    connection: { host: '127.0.0.1', port: 1, user: 'root', connectTimeout: 2000 },
  });
  after(async () => {
    await pg.close();
    await maria.close();
  });

  for (const [name, adapter] of [
    ['postgres', pg],
    ['mariadb', maria],
  ] as const) {
    test(`${name}: every gid-taking call rejects hostile gids before connecting`, async () => {
      const tooLong = 'g'.repeat(adapter.gidBytesMax + 1);
      for (const gid of [...hostileGids, tooLong]) {
        await rejectsWithCode(adapter.begin(gid), 'DTX_INVALID_GID');
        await rejectsWithCode(adapter.commitPrepared(gid), 'DTX_INVALID_GID');
        await rejectsWithCode(adapter.rollbackPrepared(gid), 'DTX_INVALID_GID');
      }
      await rejectsWithCode(adapter.listPrepared("dtx'"), 'DTX_INVALID_GID');
    });

    test(`${name}: a valid gid does reach for the (absent) server`, async () => {
      const error = await rejectsWithCode(adapter.commitPrepared('dtx_valid_1'), 'DTX_RESOURCE_UNAVAILABLE');
      assert.equal(error.retryable, true);
    });
  }
});
