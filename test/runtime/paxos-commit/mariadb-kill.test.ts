// A MariaDB participant killed (kill -9 of its server) after it prepared,
// under Paxos Commit: its RM retries XA COMMIT with back-off, and the
// transaction finishes once the server is back with the branch (InnoDB's
// crash recovery keeps XA PREPAREd transactions). The server is a throwaway
// one of this test (test/adapters/maria-server.ts), never the machine's own.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import mysql from 'mysql2/promise';
import { createMariaDbAdapter, type MariaDbAdapter } from '../../../src/adapters/mariadb.ts';
import type { SqliteBranch } from '../../../src/adapters/sqlite.ts';
import { createCoordinator } from '../../../src/runtime/coordinator.ts';
import { AcceptorServer } from '../../../src/runtime/paxos-commit/acceptor-server.ts';
import { type MariaServer, startMariaServer } from '../../adapters/maria-server.ts';
import { accountDbs, tempDir, waitUntil } from './support.ts';

const database = 'dtx_w4_kill';

describe('Paxos Commit with a MariaDB participant killed after it prepared', () => {
  const acceptors: AcceptorServer[] = [];
  let maria: MariaServer;
  before(async () => {
    for (let i = 0; i < 3; i++)
      acceptors.push(await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: tempDir(`mk${i}`) }));
    maria = await startMariaServer();
  });
  after(async () => {
    await maria?.stop();
    for (const a of acceptors) await a.close();
  });

  test('kill -9 of the server with the branch prepared: resolved after its restart, atomically', async () => {
    const setup = await mysql.createConnection(maria.connection());
    await setup.query(`CREATE DATABASE ${database}`);
    await setup.query(
      `CREATE TABLE ${database}.acct (id INT PRIMARY KEY, balance INT NOT NULL) ENGINE=InnoDB`,
    );
    await setup.query(`INSERT INTO ${database}.acct VALUES (1, 100)`);
    await setup.end();
    const m: MariaDbAdapter = await createMariaDbAdapter({ connection: maria.connection(database) });
    const { adapters } = await accountDbs(100);
    let killed: Promise<void> | undefined;
    const c = await createCoordinator({
      protocol: 'paxos-commit',
      id: 'mk1',
      acceptors: acceptors.map((a) => a.url),
      resources: { m, a: adapters.a! },
      onWarning: () => {},
      crashPoints: {
        point(point) {
          if (point === 'prepared:all' && killed === undefined) killed = maria.kill9();
        },
      },
    });
    try {
      const work = c.transaction(async (tx) => {
        await tx.query('m', 'UPDATE acct SET balance = balance - 10 WHERE id = 1');
        const a = await tx.branch<SqliteBranch>('a');
        a.put('balance', (a.get('balance') as number) + 10);
      });
      await waitUntil('the kill', () => killed !== undefined, 120_000);
      await killed;
      // Down a while: the RM's XA COMMIT fails and is retried meanwhile.
      await new Promise((r) => setTimeout(r, 1500));
      let settled = false;
      const settle = () => {
        settled = true;
      };
      work.then(settle, settle);
      assert.equal(settled, false, 'the transaction finished while its database was down');
      await maria.restart();
      await work;
      const check = await createMariaDbAdapter({ connection: maria.connection(database) });
      try {
        const [rows] = await check.pool.query('SELECT balance FROM acct WHERE id = 1');
        assert.equal(Number((rows as { balance: number }[])[0]!.balance), 90);
        assert.equal(adapters.a!.read('balance'), 110);
        assert.deepEqual(await check.listPrepared('pc_'), []);
      } finally {
        await check.close();
      }
    } finally {
      await c.close();
      await m.close();
    }
  });
});
