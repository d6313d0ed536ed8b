// The 2PC coordinator's contract: a transaction id is begun at most once
// (src/protocol/twopc/types.ts). The drivers keep it — the runtime makes a
// fresh id per transaction, embedding its incarnation, and the simulator's
// client requests never reach a later incarnation of a coordinator — and these
// scripts show why it is a contract and not a detail: presumed abort lets a
// coordinator that no longer remembers an id answer ABORT for it, and that
// answer cannot be told apart from one for a later begin of the same id. If a
// change to the cores makes either script safe, its test fails: then the
// contract can be relaxed, and the docs with it.
//
// The last test is a regression test for recovery re-applying commits.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Cluster } from '../../support/script.ts';
import { twoPcProtocol } from '../../support/script-cores.ts';

function run(commands: string): void {
  const cluster = new Cluster(twoPcProtocol);
  for (const line of commands.trim().split('\n')) cluster.run(line.trim());
}

test('contract: beginning an id again after a crash lets a stale presumed ABORT break atomicity', () =>
  assert.throws(
    () =>
      run(`
      coordinator c
      participant p1 p2
      executed p1 t1 c
      executed p2 t1 c
      begin c t1 p1 p2
      deliver c p1 PREPARE t1
      deliver c p2 PREPARE t1
      crash c
      recover c
      timeout p2 inquiry:t1
      deliver p2 c INQUIRY t1
      begin c t1 p1 p2
      deliver c p1 PREPARE t1 2.1
      deliver c p2 PREPARE t1 2.1
      deliver p1 c VOTE t1 yes 2.1
      deliver p2 c VOTE t1 yes 2.1
      deliver c p2 ABORT t1
      deliver c p1 COMMIT t1
    `),
    /atomicity|aborts t1 although/,
  ));

test('contract: beginning an id again after it committed reports it aborted', () =>
  assert.throws(
    () =>
      run(`
      coordinator c
      participant p1
      executed p1 t1 c
      begin c t1 p1
      deliver c p1 PREPARE t1
      deliver p1 c VOTE t1 yes
      deliver c p1 COMMIT t1
      deliver p1 c ACK t1
      begin c t1 p1
      deliver c p1 PREPARE t1 1.2
      deliver p1 c VOTE t1 no
    `),
    /outcome|reported/,
  ));

test('a participant that crashes between its committed fsync and the local commit commits on recovery', () => {
  const cluster = new Cluster(twoPcProtocol);
  for (const line of [
    'coordinator c',
    'participant p1',
    'executed p1 t1 c',
    'begin c t1 p1',
    'deliver c p1 PREPARE t1',
    'deliver p1 c VOTE t1 yes',
    'hold p1',
    'deliver c p1 COMMIT t1',
    'crash-after-flush p1',
    'recover p1',
    'timeout c resend:t1',
    'deliver c p1 COMMIT t1',
    'deliver p1 c ACK t1',
  ]) {
    cluster.run(line);
  }
  assert.equal(cluster.rm('t1', 'p1'), 'committed');
});
