// Tests that read the same against every SQL adapter (PostgreSQL, MariaDB): each
// adapter's suite calls them inside its own describe, with its own adapter,
// table and gids, so the expectations of the port are written down once.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ResourceAdapter, SqlBranch } from '../../src/adapters/types.ts';

export interface SqlAdapterSuite {
  /** The adapter under test. A function: a suite may replace its adapter between tests. */
  adapter(): ResourceAdapter<SqlBranch>;
  /** A table of rows (id, balance), ids 1 to 20, every balance 100 at the start. */
  table: string;
  nextGid(label: string): string;
  /** The committed balance of row `id`, read outside any branch. */
  balance(id: number): Promise<number>;
}

/**
 * Phase two by gid: rollbackPrepared discards prepared work, and resolving a
 * branch again, or one never seen, answers `unknown` in either direction.
 * Uses row 2.
 */
export function phaseTwoTests(suite: SqlAdapterSuite): void {
  test('prepare -> rollbackPrepared discards the work', async () => {
    const adapter = suite.adapter();
    const gid = suite.nextGid('rollback');
    const branch = await adapter.begin(gid);
    await branch.query(`UPDATE ${suite.table} SET balance = 0 WHERE id = 2`);
    assert.equal(await branch.prepare(), 'yes');
    assert.equal(await adapter.rollbackPrepared(gid), 'done');
    assert.equal(await suite.balance(2), 100);
    assert.equal(await adapter.rollbackPrepared(gid), 'unknown');
    assert.equal(await adapter.commitPrepared(gid), 'unknown');
  });

  test('commit/rollback of gids never seen are unknown', async () => {
    const adapter = suite.adapter();
    assert.equal(await adapter.commitPrepared(suite.nextGid('never')), 'unknown');
    assert.equal(await adapter.rollbackPrepared(suite.nextGid('never')), 'unknown');
  });
}
