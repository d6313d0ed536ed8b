// Which world a protocol belongs to, decided in one place: atomic commit
// (naive, 2PC, 3PC, Paxos Commit) or the branch family (saga, TCC). Each
// command keeps a table from family to how it simulates, swarms, benches or
// recovers, so no action branches on protocol names.

import { InvalidArgumentError } from 'commander';
import type { ProtocolName, SagaProtocolName } from '../sim/protocols.ts';
import type { SimFamily } from '../sim/sim-flags.ts';

export type { SimFamily as Family } from '../sim/sim-flags.ts';

const familyByProtocol: Readonly<Record<ProtocolName | SagaProtocolName, SimFamily>> = {
  naive: 'commit',
  '2pc': 'commit',
  '3pc': 'commit',
  'paxos-commit': 'commit',
  saga: 'branch',
  tcc: 'branch',
};

export function familyOf(protocol: string): SimFamily {
  const family = (familyByProtocol as Record<string, SimFamily | undefined>)[protocol];
  if (family === undefined) throw new InvalidArgumentError(`unknown protocol "${protocol}"`);
  return family;
}

/**
 * The commands on real databases (bench, recover, verify) also run the
 * transactional outbox, a family of its own with no simulator world here.
 */
export type DbFamily = SimFamily | 'outbox';

const dbOnlyFamilies: Readonly<Record<string, DbFamily>> = { outbox: 'outbox' };

export function dbFamilyOf(protocol: string): DbFamily {
  return Object.hasOwn(dbOnlyFamilies, protocol) ? dbOnlyFamilies[protocol]! : familyOf(protocol);
}

/** The outbox family's parts, each runnable alone (`dtx bench --part`, for kill tests). */
export type OutboxPart = 'producer' | 'relay' | 'consumer';
export const outboxParts: readonly OutboxPart[] = ['producer', 'relay', 'consumer'];
/** The outbox bench's stream when `--stream` is not given. */
export const outboxBenchStreamDefault = 'DTX_BENCH';
