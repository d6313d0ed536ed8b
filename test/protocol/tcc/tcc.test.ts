// Unit tests of the TCC side of the barrier-guarded service
// (src/protocol/saga/service.ts) that are not interaction scripts. The TCC
// coordinator's scenarios (try on every branch, then confirm all or cancel
// all) are testdata/tcc/*.txt, run by ../scripts.test.ts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sagaService } from '../../../src/protocol/branch/service.ts';
import type { BranchMsg } from '../../../src/protocol/branch/types.ts';
import { branchHandlers } from '../../support/script-cores.ts';

test('cancel without try is a recorded no-op at the service', () => {
  const st = sagaService.init('S1', { handlers: branchHandlers, initialRows: [], barrier: true });
  const call = (op: 'try' | 'cancel' | 'confirm'): BranchMsg => ({
    type: 'CALL',
    txn: 't9',
    branch: 'x',
    op,
    handler: op === 'try' ? 'reserve' : op === 'cancel' ? 'release' : 'commit',
    payload: '',
    attempt: 1,
  });
  const r = sagaService.step(st, { type: 'receive', from: 'coord', msg: call('cancel') });
  assert.deepEqual(
    r.effects.map((e) => e.type),
    ['persist', 'sendAfterPersist'],
  );
  assert.equal(st.rows.size, 0);
  assert.equal(st.stats.nullCompensations, 1);
  // A confirm without a successful try is refused and not recorded.
  const conf = sagaService.step(st, { type: 'receive', from: 'coord', msg: call('confirm') });
  assert.ok(conf.effects.every((e) => e.type !== 'persist'));
  assert.match(JSON.stringify(conf.effects), /confirm without a successful try/);
});
