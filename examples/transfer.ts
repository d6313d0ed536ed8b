// A transfer across two databases, atomically: debit an account in PostgreSQL,
// credit one in MariaDB, through dtx's two-phase commit. The README shows this
// file; test/example.test.ts runs it against real servers.
//
//   DTX_PG_URL=postgres://postgres@127.0.0.1:55491/postgres \
//   DTX_MYSQL_URL=mysql://root@127.0.0.1:3306/test \
//   node --import tsx examples/transfer.ts

import { createCoordinator, isDtxError, openCoordinatorLog } from 'dtx';
import { createMysqlAdapter } from 'dtx/mysql';
import { createPostgresAdapter } from 'dtx/postgres';

const pgUrl = process.env.DTX_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const mysql = new URL(process.env.DTX_MYSQL_URL ?? 'mysql://root@127.0.0.1:3306/test');

// `await using`: each handle is closed when the program leaves this scope,
// in the reverse order of opening (the coordinator, then its log, then the
// databases), whether the transfer succeeded or threw.
await using ledger = await createPostgresAdapter({
  connection: { connectionString: pgUrl },
  lockTimeoutMs: 2000,
});
await using shop = await createMysqlAdapter({
  connection: {
    host: mysql.hostname,
    port: Number(mysql.port || 3306),
    user: mysql.username,
    database: mysql.pathname.slice(1),
  },
});
// `create: true`: this program owns its log, so it creates it on first run
// (a recovery tool would open an existing log only).
await using log = await openCoordinatorLog({
  sqlite: process.env.DTX_LOG ?? '.dtx/example-coordinator.sqlite',
  create: true,
});
// Recovers before it returns: whatever a previous run of this coordinator
// left in doubt is finished first.
await using coordinator = await createCoordinator({ log, resources: { ledger, shop } });
const { recovery } = coordinator;
console.log(
  `recovered: ${recovery.recommitted.length} recommitted, ${recovery.rolledBack.length} rolled back`,
);

try {
  await coordinator.transaction(
    async (tx) => {
      await tx.query('ledger', 'UPDATE accounts SET balance = balance - $1 WHERE id = $2', [500, 'karan']);
      await tx.query('shop', 'UPDATE accounts SET balance = balance + ? WHERE id = ?', [500, 'merchant-17']);
    },
    { retries: 3 },
  );
  console.log('transfer committed on both databases');
} catch (err) {
  if (isDtxError(err))
    console.error(`transfer failed: ${err.code} (retryable: ${err.retryable}): ${err.message}`);
  throw err;
}
