// The faults both swarms draw for a seed (./swarm.ts for the commit world,
// ./branch/swarm.ts for sagas and TCC), so that a swarm of either world
// samples the same fault space: loss, duplication with late second copies,
// jitter, partitions, crashes and their downtimes, and failing forced writes.
//
// A third of the seeds are mild (little loss and duplication, no partitions,
// few or no crashes, rarely a failing write): under heavy faults most
// transactions abort, and the commit paths would be sampled thinly. A swarm
// may also ask for crashes only: no loss, partitions or failing writes, no
// late second copies, and a mean jitter of at most 1 ms, far below every
// protocol timeout. That is the fault model three-phase commit is built for:
// crashes on a synchronous network. A message that arrives after its timeout
// is a partition to it (with 20 ms of mean jitter, 7 seeds of 10,000 broke
// 3PC's atomicity; with second copies 500 ms late, seed 58,441 of a million).

import type { FaultSettings } from './kernel.ts';
import type { Prng } from './prng.ts';

/** Which faults a swarm draws: every kind, or node crashes alone (with prompt duplicates and a little jitter). */
export const swarmFaultKinds = ['all', 'crash'] as const;
export type SwarmFaultKinds = (typeof swarmFaultKinds)[number];

/** One seed's faults; `failRate()` draws the next node's rate of failing forced writes. */
export interface DrawnFaults {
  settings: Required<
    Pick<
      FaultSettings,
      'loss' | 'dup' | 'lateDupMs' | 'jitterMs' | 'partitions' | 'crashRate' | 'downtimeMeanMs'
    >
  >;
  mild: boolean;
  failRate(): number;
}

const round = (x: number) => Math.round(x * 1000) / 1000;

export function drawFaults(rng: Prng, kinds: SwarmFaultKinds = 'all'): DrawnFaults {
  const mild = rng.chance(1 / 3);
  const crashOnly = kinds === 'crash';
  const loss = round(rng.between(0, mild ? 0.02 : 0.3));
  const dup = round(rng.between(0, mild ? 0.05 : 0.5));
  const lateDupMs = rng.pick([0, 5, 50, 500]);
  const jitterMs = rng.pick(mild ? [0.1, 1] : [0.1, 1, 5, 20]);
  const partitions = !mild && rng.chance(0.5);
  const crashRate = rng.pick(mild ? [0, 0, 0.005] : [0, 0.005, 0.02, 0.05]);
  const downtimeMeanMs = rng.pick([20, 200, 1000]);
  const writeFaults = !crashOnly;
  return {
    settings: {
      loss: crashOnly ? 0 : loss,
      dup,
      // A late second copy is a message delayed far past the bound: on the
      // synchronous network of crashes-only runs, copies arrive within the jitter.
      lateDupMs: crashOnly ? 0 : lateDupMs,
      jitterMs: crashOnly ? Math.min(jitterMs, 1) : jitterMs,
      partitions: !crashOnly && partitions,
      crashRate,
      downtimeMeanMs,
    },
    mild,
    failRate: () => {
      const rate = rng.pick(mild ? [0, 0, 0, 0.01] : [0, 0, 0.01, 0.05, 0.2]);
      return writeFaults ? rate : 0;
    },
  };
}
