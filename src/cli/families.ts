// Which world a protocol belongs to, decided in one place: atomic commit
// (naive, 2PC, 3PC, Paxos Commit), the branch family (saga, TCC) or the
// outbox. Each command keeps a table from family to how it simulates, swarms,
// benches or recovers, so no action branches on protocol names.

import { InvalidArgumentError } from 'commander';
import type { OutboxProtocolName, ProtocolName, SagaProtocolName } from '../sim/protocols.ts';
import type { SimFamily } from '../sim/sim-flags.ts';

export type { SimFamily } from '../sim/sim-flags.ts';

/** The families `bench` and `recover` run: the outbox world is simulated only (`sim`, `swarm`). */
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

/** The family of `protocol` for commands that run it for real (`bench`, `recover`). */
export function familyOf(protocol: string): Family {
  const family = simFamilyOf(protocol);
  if (family === 'outbox')
    throw new InvalidArgumentError(`"${protocol}" is simulated only: use sim or swarm`);
  return family;
}
