// Opening a protocol's log from where it is. The coordinator's, the saga
// orchestrator's and the TCC orchestrator's openers (`openCoordinatorLog`,
// `openSagaLog`, `openTccLog`) all come here with their own record decoder, so
// a caller names a place and never wires a codec, and a log written by
// another protocol is refused before recovery reads a record of it.

import { openPostgresLog } from './postgres.ts';
import { openSqliteLog } from './sqlite.ts';
import type { DurableLog, LogOptions, LogProtocol } from './types.ts';

/**
 * Where a log is: a SQLite file (`{ sqlite: path }`) or a PostgreSQL table
 * (`{ postgres, owner }`). A missing log is refused (DTX_LOG_NOT_FOUND) unless
 * `create` is set; `coordinatorId`, when given, must be the log's (and is the
 * new log's id with `create`). PostgreSQL: `leaseTtlMs` is the owner lease's
 * ttl (default 10,000), `waitForLease` makes a standby wait for it, `leaseHolder`
 * names this open in the lease table (default: host, pid and random bits).
 */
export type LogLocation =
  /** `unsafeMemory`: allow `:memory:`, which survives nothing (tests and diagnosis only; see openSqliteLog). */
  (
    | { sqlite: string; unsafeMemory?: boolean }
    | {
        postgres: string;
        owner: string;
        table?: string;
        leaseTtlMs?: number;
        waitForLease?: boolean;
        leaseHolder?: string;
      }
  ) & { create?: boolean; coordinatorId?: string; observer?: LogOptions<unknown>['observer'] };

/**
 * Opens a log exclusively (SQLite file lock, PostgreSQL owner lease),
 * checking that it is a `protocol` log: another protocol's is
 * DTX_LOG_MISMATCH, so that recovery never reads records it does not own.
 * `await using` closes it.
 */
export async function openLog<R>(
  where: LogLocation,
  decode: (value: unknown) => R,
  protocol: LogProtocol,
): Promise<DurableLog<R> & AsyncDisposable> {
  const id = where.coordinatorId === undefined ? {} : { coordinatorId: where.coordinatorId };
  const common = {
    decode,
    create: where.create === true,
    identity: { protocol, ...id },
    expect: { protocol, ...id },
    ...(where.observer === undefined ? {} : { observer: where.observer }),
  };
  if ('sqlite' in where) {
    return openSqliteLog<R>(where.sqlite, {
      ...common,
      ...(where.unsafeMemory === true ? { unsafeMemory: true } : {}),
    });
  }
  return openPostgresLog<R>(where.postgres, {
    ...common,
    owner: where.owner,
    ...(where.table === undefined ? {} : { table: where.table }),
    lease: {
      ...(where.leaseTtlMs === undefined ? {} : { ttlMs: where.leaseTtlMs }),
      ...(where.waitForLease === true ? { wait: true } : {}),
      ...(where.leaseHolder === undefined ? {} : { holder: where.leaseHolder }),
    },
  });
}
