// The SQLite participant: prepared state built from a branch table, intents
// and key locks; commit/rollback by gid; lock conflicts and stale reads; and
// survival of a prepared branch across SIGKILL of the process that prepared it.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { createSqliteAdapter, type SqliteAdapter } from '../../src/adapters/sqlite.ts';
import { LockConflictError } from '../../src/errors.ts';
import { hostileGids, rejectsWithCode, runId, throwsWithCode } from './helpers.ts';

const run = runId();
const prefix = `dtxt_${run}_`;
let gidSeq = 0;
const nextGid = (label: string) => `${prefix}${label}_${++gidSeq}`;

const repoRoot = fileURLToPath(new URL('../../', import.meta.url));
const childScript = fileURLToPath(new URL('./fixtures/sqlite-prepare-and-hang.ts', import.meta.url));

let dir: string;
let path: string;
let adapter: SqliteAdapter;

/** Seeds committed values through a branch, the only way in. */
async function seed(values: Record<string, number>): Promise<void> {
  const gid = nextGid('seed');
  const branch = await adapter.begin(gid);
  for (const [key, value] of Object.entries(values)) branch.put(key, value);
  assert.equal(await branch.prepare(), 'yes');
  assert.equal(await adapter.commitPrepared(gid), 'done');
}

describe('SQLite participant', () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'dtx-sqlite-'));
    path = join(dir, 'participant.db');
    adapter = await createSqliteAdapter({ create: true, path });
  });

  after(async () => {
    await adapter?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the file is in WAL mode with synchronous=FULL', () => {
    const peek = new Database(path, { readonly: true });
    try {
      assert.equal(peek.pragma('journal_mode', { simple: true }), 'wal');
    } finally {
      peek.close();
    }
    assert.equal(adapter.database().pragma('synchronous', { simple: true }), 2); // FULL
  });

  test('prepare -> commitPrepared applies intents once and releases locks', async () => {
    await seed({ 'a:1': 100, 'a:gone': 1 });
    const gid = nextGid('commit');
    const branch = await adapter.begin(gid);
    assert.equal(branch.get('a:1'), 100);
    branch.put('a:1', 70);
    branch.put('a:2', { nested: ['json', true, null] });
    branch.delete('a:gone');
    assert.equal(branch.get('a:1'), 70, 'reads its own writes');
    assert.equal(branch.get('a:gone'), undefined);

    assert.equal(await branch.prepare(), 'yes');
    assert.equal(branch.state, 'prepared');
    const listed = await adapter.listPrepared(prefix);
    assert.ok(listed.some((b) => b.gid === gid && b.preparedAt instanceof Date));
    assert.equal(adapter.read('a:1'), 100, 'not applied before the decision');
    assert.equal(adapter.lockHolder('a:1'), gid);
    assert.equal(adapter.lockHolder('a:gone'), gid);

    assert.equal(await adapter.commitPrepared(gid), 'done');
    assert.equal(adapter.read('a:1'), 70);
    assert.deepEqual(adapter.read('a:2'), { nested: ['json', true, null] });
    assert.equal(adapter.read('a:gone'), undefined);
    assert.equal(adapter.lockHolder('a:1'), undefined);
    assert.equal(await adapter.commitPrepared(gid), 'unknown');
    assert.equal(await adapter.rollbackPrepared(gid), 'unknown');
  });

  test('prepare -> rollbackPrepared discards intents and locks', async () => {
    await seed({ 'b:1': 5 });
    const gid = nextGid('rollback');
    const branch = await adapter.begin(gid);
    branch.put('b:1', 6);
    assert.equal(await branch.prepare(), 'yes');
    assert.equal(await adapter.rollbackPrepared(gid), 'done');
    assert.equal(adapter.read('b:1'), 5);
    assert.equal(adapter.lockHolder('b:1'), undefined);
    assert.equal(await adapter.rollbackPrepared(gid), 'unknown');
    assert.equal(await adapter.commitPrepared(gid), 'unknown');
  });

  test('a branch that only read votes readOnly and leaves nothing behind', async () => {
    await seed({ 'c:1': 1 });
    const gid = nextGid('ro');
    const branch = await adapter.begin(gid);
    assert.equal(branch.get('c:1'), 1);
    assert.equal(await branch.prepare(), 'readOnly');
    assert.ok(!(await adapter.listPrepared(prefix)).some((b) => b.gid === gid));
  });

  test('a key locked by a prepared branch: other readers and writers get a retryable lock conflict', async () => {
    await seed({ 'd:1': 10 });
    const holder = nextGid('holder');
    const first = await adapter.begin(holder);
    first.put('d:1', 11);
    assert.equal(await first.prepare(), 'yes');

    const writer = await adapter.begin(nextGid('writer'));
    const error = throwsWithCode(() => writer.put('d:1', 99), 'DTX_LOCK_CONFLICT');
    assert.ok(error instanceof LockConflictError);
    assert.equal(error.retryable, true);
    assert.equal(error.key, 'd:1');
    assert.equal(error.holderGid, holder);
    assert.equal(writer.state, 'rolledBack', 'the conflicting branch is rolled back');
    throwsWithCode(() => writer.put('d:other', 1), 'DTX_INVALID_STATE');

    const reader = await adapter.begin(nextGid('reader'));
    throwsWithCode(() => reader.get('d:1'), 'DTX_LOCK_CONFLICT');
    const deleter = await adapter.begin(nextGid('deleter'));
    throwsWithCode(() => deleter.delete('d:1'), 'DTX_LOCK_CONFLICT');

    assert.equal(await adapter.commitPrepared(holder), 'done');
    const retry = await adapter.begin(nextGid('retry'));
    assert.equal(retry.get('d:1'), 11);
    retry.put('d:1', 12);
    const retryGid = retry.gid;
    assert.equal(await retry.prepare(), 'yes');
    assert.equal(await adapter.commitPrepared(retryGid), 'done');
    assert.equal(adapter.read('d:1'), 12);
  });

  test('two active writers of one key: the second to prepare gets the conflict', async () => {
    const a = await adapter.begin(nextGid('racerA'));
    const b = await adapter.begin(nextGid('racerB'));
    a.put('e:1', 'a');
    b.put('e:1', 'b');
    assert.equal(await a.prepare(), 'yes');
    const error = await rejectsWithCode(b.prepare(), 'DTX_LOCK_CONFLICT');
    assert.equal((error as LockConflictError).holderGid, a.gid);
    assert.equal(b.state, 'rolledBack');
    assert.ok(
      !(await adapter.listPrepared(prefix)).some((x) => x.gid === b.gid),
      'nothing of B was recorded',
    );
    assert.equal(await adapter.rollbackPrepared(a.gid), 'done');
  });

  test('a lost update is refused: reads are validated at prepare', async () => {
    await seed({ 'f:1': 100 });
    const slow = await adapter.begin(nextGid('slow'));
    const fast = await adapter.begin(nextGid('fast'));
    const seenBySlow = slow.get('f:1') as number;
    const seenByFast = fast.get('f:1') as number;
    fast.put('f:1', seenByFast + 1);
    assert.equal(await fast.prepare(), 'yes');
    assert.equal(await adapter.commitPrepared(fast.gid), 'done');

    slow.put('f:1', seenBySlow + 1);
    const error = await rejectsWithCode(slow.prepare(), 'DTX_SERIALIZATION_FAILURE');
    assert.equal(error.retryable, true);
    assert.equal(adapter.read('f:1'), 101);
  });

  test('gid rules: duplicates and hostile gids are refused', async () => {
    const gid = nextGid('dup');
    const branch = await adapter.begin(gid);
    await rejectsWithCode(adapter.begin(gid), 'DTX_DUPLICATE_GID'); // active here
    branch.put('g:1', 1);
    assert.equal(await branch.prepare(), 'yes');
    await rejectsWithCode(adapter.begin(gid), 'DTX_DUPLICATE_GID'); // prepared here
    assert.equal(await adapter.rollbackPrepared(gid), 'done');
    for (const hostile of [...hostileGids, 'g'.repeat(200)]) {
      await rejectsWithCode(adapter.begin(hostile), 'DTX_INVALID_GID');
      await rejectsWithCode(adapter.commitPrepared(hostile), 'DTX_INVALID_GID');
    }
    // Bad arguments are TypeErrors and leave the branch as it was.
    const other = await adapter.begin(nextGid('args'));
    assert.throws(() => other.put('', 1), TypeError);
    assert.throws(() => other.put('k', undefined as never), TypeError);
    assert.equal(other.state, 'active');
    await other.rollback();
  });

  test('prepared branches survive closing and reopening the file; active ones vanish', async () => {
    const prepared = nextGid('durable');
    const p = await adapter.begin(prepared);
    p.put('h:1', 'kept');
    assert.equal(await p.prepare(), 'yes');
    const active = await adapter.begin(nextGid('volatile'));
    active.put('h:2', 'lost');
    await adapter.close();
    assert.equal(active.state, 'rolledBack');

    adapter = await createSqliteAdapter({ create: true, path });
    const found = (await adapter.listPrepared(prefix)).map((b) => b.gid);
    assert.ok(found.includes(prepared));
    assert.ok(!found.includes(active.gid));
    assert.equal(await adapter.commitPrepared(prepared), 'done');
    assert.equal(adapter.read('h:1'), 'kept');
    assert.equal(adapter.read('h:2'), undefined);
  });

  test('a prepared branch survives SIGKILL of the process that prepared it', async () => {
    await seed({ 'acct:alice': 100, 'acct:bob': 100, 'acct:old': 1 } as Record<string, number>);
    const preparedGid = nextGid('killed');
    const activeGid = nextGid('killedActive');
    const child = spawn(process.execPath, ['--import', 'tsx', childScript, path, preparedGid, activeGid], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`child not ready after 20 s: ${stderr}`)), 20_000);
        child.stdout.on('data', (chunk: Buffer) => {
          if (chunk.toString().includes('ready')) {
            clearTimeout(timer);
            resolve();
          }
        });
        void exited.then(({ code }) => {
          clearTimeout(timer);
          reject(new Error(`child exited early (${code}): ${stderr}`));
        });
      });
    } finally {
      if (child.pid !== undefined && child.exitCode === null) process.kill(child.pid, 'SIGKILL');
    }
    assert.deepEqual(await exited, { code: null, signal: 'SIGKILL' });

    // A fresh adapter on the file (the one this test already had open keeps working too).
    const recovered = await createSqliteAdapter({ create: true, path });
    try {
      const found = (await recovered.listPrepared(prefix)).map((b) => b.gid);
      assert.ok(found.includes(preparedGid), 'the prepared branch is still there');
      assert.ok(!found.includes(activeGid), 'the active branch left no trace');
      assert.equal(recovered.lockHolder('acct:alice'), preparedGid, 'and still holds its locks');
      assert.equal(recovered.read('acct:alice'), 100);

      assert.equal(await recovered.commitPrepared(preparedGid), 'done');
      assert.deepEqual(recovered.read('acct:alice'), { balance: 70 });
      assert.deepEqual(recovered.read('acct:bob'), { balance: 130 });
      assert.equal(recovered.read('acct:old'), undefined);
      assert.equal(recovered.read('acct:carol'), undefined);
      assert.equal(await recovered.commitPrepared(preparedGid), 'unknown');
    } finally {
      await recovered.close();
    }
  });

  test('a closed adapter refuses work', async () => {
    const scratch = await createSqliteAdapter({ create: true, path: join(dir, 'scratch.db') });
    await scratch.close();
    await rejectsWithCode(scratch.begin(nextGid('closed')), 'DTX_INVALID_STATE');
    await rejectsWithCode(scratch.listPrepared(), 'DTX_INVALID_STATE');
  });
});
