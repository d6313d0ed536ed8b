// Workloads: what the simulated clients ask of the participants.
//
// - toy: the smallest case where naive commit goes wrong: three nodes A, B
//   and C, one transaction at a time: debit a wallet on A, credit a merchant
//   on B, count an audit event on C. Each node's durable writes fail with its
//   own rate (default 1%, 1%, 2%).
// - bank: concurrent transfers between accounts spread across the
//   participants (Jepsen's bank test, in the simulator): the total balance is
//   invariant, and few accounts per participant make the transfers contend.

import type { NodeId } from '../protocol/common/types.ts';
import type { Prng } from './prng.ts';
import type { Key, Op } from './resource.ts';

export const workloadNames = ['toy', 'bank'] as const;
export type WorkloadName = (typeof workloadNames)[number];

export interface Workload {
  name: WorkloadName;
  participants: NodeId[];
  /** Clients running transactions at once, each one after the other. */
  concurrency: number;
  initialRows(node: NodeId): Map<Key, number>;
  /** The next transaction's writes, per participant. */
  next(rng: Prng): Map<NodeId, Op[]>;
  /** Whether a row counts towards the conserved total. */
  conserved(key: Key): boolean;
  defaultFailRates: number[];
}

/** Participant names: A, B, C, ... then P27, P28, ... */
export function participantNames(n: number): NodeId[] {
  return Array.from({ length: n }, (_, i) => (i < 26 ? String.fromCharCode(65 + i) : `P${i + 1}`));
}

export function toyWorkload(): Workload {
  return {
    name: 'toy',
    participants: ['A', 'B', 'C'],
    concurrency: 1,
    initialRows: (node) => new Map([[node === 'A' ? 'wallet' : node === 'B' ? 'merchant' : 'audit', 0]]),
    next: () =>
      new Map([
        ['A', [{ key: 'wallet', delta: -500 }]],
        ['B', [{ key: 'merchant', delta: 500 }]],
        ['C', [{ key: 'audit', delta: 1 }]],
      ]),
    conserved: (key) => key !== 'audit',
    defaultFailRates: [0.01, 0.01, 0.02],
  };
}

export interface BankOptions {
  participants: number;
  accountsPerParticipant: number;
  concurrency: number;
  initialBalance: number;
  /**
   * Every transfer also writes (a zero amount) at every other participant, so
   * that each transaction has all N participants: what the paper's message
   * counts assume (N RMs per transaction).
   */
  everyParticipant: boolean;
}

export const defaultBankOptions: BankOptions = {
  participants: 3,
  accountsPerParticipant: 10,
  concurrency: 8,
  initialBalance: 1000,
  everyParticipant: false,
};

export function bankWorkload(options: Partial<BankOptions> = {}): Workload {
  const o = { ...defaultBankOptions, ...options };
  const participants = participantNames(o.participants);
  return {
    name: 'bank',
    participants,
    concurrency: o.concurrency,
    initialRows: () =>
      new Map(Array.from({ length: o.accountsPerParticipant }, (_, i) => [`acct${i}`, o.initialBalance])),
    next(rng) {
      const from = rng.int(participants.length);
      let to = rng.int(participants.length - 1);
      if (to >= from) to++;
      const amount = 1 + rng.int(100);
      const ops = new Map([
        [participants[from]!, [{ key: `acct${rng.int(o.accountsPerParticipant)}`, delta: -amount }]],
        [participants[to]!, [{ key: `acct${rng.int(o.accountsPerParticipant)}`, delta: amount }]],
      ]);
      if (o.everyParticipant) {
        for (const p of participants)
          if (!ops.has(p)) ops.set(p, [{ key: `acct${rng.int(o.accountsPerParticipant)}`, delta: 0 }]);
      }
      return ops;
    },
    conserved: () => true,
    defaultFailRates: [],
  };
}
