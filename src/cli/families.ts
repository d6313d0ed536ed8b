// Which world a protocol belongs to, decided in one place: atomic commit
// (naive, 2PC, 3PC, Paxos Commit), the branch family (saga, TCC) or the
// outbox. Each command keeps a table from family to how it simulates, swarms,
// benches or recovers, so no action branches on protocol names.

import { InvalidArgumentError } from 'commander';
import type { OutboxProtocolName, ProtocolName, SagaProtocolName } from '../sim/protocols.ts';
import type { SimFamily } from '../sim/sim-flags.ts';

export type { SimFamily } from '../sim/sim-flags.ts';

/** The families with a coordinator or orchestrator log: atomic commit and branch. */
export type Family = Exclude<SimFamily, 'outbox'>;

const familyByProtocol: Readonly<Record<ProtocolName | SagaProtocolName | OutboxProtocolName, SimFamily>> = {
  naive: 'commit',
  '2pc': 'commit',
  '3pc': 'commit',
  'paxos-commit': 'commit',
  saga: 'branch',
  tcc: 'branch',
  outbox: 'outbox',
};

/** The simulated world of `protocol` (for `sim` and `swarm`). */
export function simFamilyOf(protocol: string): SimFamily {
  const family = (familyByProtocol as Record<string, SimFamily | undefined>)[protocol];
  if (family === undefined) throw new InvalidArgumentError(`unknown protocol "${protocol}"`);
  return family;
}

/** The family of a protocol that keeps a coordinator or orchestrator log (what `recover` finds in one). */
export function familyOf(protocol: string): Family {
  const family = simFamilyOf(protocol);
  if (family === 'outbox') throw new InvalidArgumentError(`"${protocol}" keeps no coordinator log`);
  return family;
}

/** The commands on real databases (bench, recover, verify) run every family, the outbox included. */
export type DbFamily = SimFamily;

export function dbFamilyOf(protocol: string): DbFamily {
  return simFamilyOf(protocol);
}

/** The outbox family's parts, each runnable alone (`dtx bench --part`, for kill tests). */
export type OutboxPart = 'producer' | 'relay' | 'consumer';
export const outboxParts: readonly OutboxPart[] = ['producer', 'relay', 'consumer'];
/** The outbox bench's stream when `--stream` is not given. */
export const outboxBenchStreamDefault = 'DTX_BENCH';
