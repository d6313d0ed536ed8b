// Shared bits of the adapter tests: a per-run id, so gids and table names of
// one run never collide with a rerun or a concurrent run, and small assertion
// helpers for typed errors, and the MariaDB root session tests make their
// databases with.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import mysql from 'mysql2/promise';
import { DtxError, type DtxErrorCode } from '../../src/errors.ts';

/** Short, gid-safe and identifier-safe: lowercase letters and digits. */
export function runId(): string {
  return `${Date.now().toString(36)}${randomBytes(3).toString('hex')}`;
}

/** Asserts that `promise` rejects with a DtxError of `code`, and returns it for more checks. */
export async function rejectsWithCode(promise: Promise<unknown>, code: DtxErrorCode): Promise<DtxError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof DtxError, `expected a DtxError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    return error;
  }
  assert.fail(`expected a rejection with ${code}`);
}

/** Same as `rejectsWithCode` for synchronous calls. */
export function throwsWithCode(work: () => unknown, code: DtxErrorCode): DtxError {
  try {
    work();
  } catch (error) {
    assert.ok(error instanceof DtxError, `expected a DtxError ${code}, got ${String(error)}`);
    assert.equal(error.code, code, `expected ${code}, got ${error.code}: ${error.message}`);
    return error;
  }
  assert.fail(`expected a throw with ${code}`);
}

/** Gids no adapter may accept: quoting tricks, statement injection, non-ASCII, control characters. */
export const hostileGids: readonly string[] = [
  '',
  "dtx_a'b",
  "dtx_x'; DROP TABLE t; --",
  "'",
  "''",
  'dtx_a;b',
  'dtx_a"b',
  'dtx_a\\b',
  'dtx_a\\',
  'dtx_a\u0000b',
  'dtx_a b',
  'dtx_a\nb',
  'dtx_a\tb',
  'dtx_é',
  'dtx_\u{1F600}',
  'dtx_ａ', // fullwidth a
  'dtx_a\u200bb', // zero-width space
  'dtx_a/*x*/',
  'dtx_a`b',
  'dtx_a$1',
  'dtx_a%',
  'dtx_a,b',
  'dtx_a(b)',
  '-dtx',
  '_dtx',
  '.dtx',
];

/** Runs one statement as MariaDB's root on the machine's server (127.0.0.1:3306): test databases are made and dropped so. */
export async function mariaAdmin(sql: string): Promise<void> {
  const admin = await mysql.createConnection({ host: '127.0.0.1', port: 3306, user: 'root' });
  try {
    await admin.query(sql);
  } finally {
    await admin.end();
  }
}
