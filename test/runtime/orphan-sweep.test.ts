// The orphan sweep: prepared branches with this coordinator's id that no
// transaction of this process is working on and that the log does not say to
// commit are rolled back once older than the grace period — what a former
// owner of the log left behind after a takeover. Branches of other ids, and
// younger ones, are left alone. Real SQLite participants.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createSqliteAdapter } from '../../src/adapters/sqlite.ts';
import type { TwoPcRecord } from '../../src/protocol/twopc/types.ts';
import { createCoordinator } from '../../src/runtime/coordinator.ts';
import { openSqliteLog } from '../../src/runtime/log/sqlite.ts';

const dir = mkdtempSync(join(tmpdir(), 'dtx-sweep-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('the sweep rolls back its own orphans past the grace period, and nothing else', async () => {
  const a = await createSqliteAdapter({ create: true, path: join(dir, 'a.sqlite') });
  const log = await openSqliteLog<TwoPcRecord>(join(dir, 'log.sqlite'), { create: true });
  const c = await createCoordinator({ log, resources: { a }, orphanSweepIntervalMs: 0, orphanGraceMs: 200 });
  // A zombie of the same id prepared this after the start-up recovery ran; another deployment prepared that.
  const zombie = `${c.gidPrefix}zombie1.1_a`;
  const foreign = 'dtx_someoneelse.x.1_a';
  for (const gid of [zombie, foreign]) {
    const branch = await a.begin(gid);
    branch.put(`k-${gid}`, 1);
    await branch.prepare();
  }
  assert.deepEqual(await c.sweepOrphans(), [], 'younger than the grace period');
  await new Promise((r) => setTimeout(r, 250));
  assert.deepEqual(await c.sweepOrphans(), [zombie]);
  assert.deepEqual(
    (await a.listPrepared('dtx_')).map((p) => p.gid),
    [foreign],
  );
  // The coordinator's own transactions are untouched by a sweep running beside them.
  await c.transaction(async (tx) => {
    (await tx.branch<{ put(k: string, v: unknown): void }>('a')).put('mine', 2);
    assert.deepEqual(await c.sweepOrphans(), []);
  });
  assert.equal(a.read('mine'), 2);
  await a.rollbackPrepared(foreign);
  await c.close();
  await log.close();
  await a.close();
});
