// Workloads: what the simulated clients ask of the participants.
//
// - toy: the smallest case where naive commit goes wrong: three nodes A, B
//   and C (or N nodes), one transaction at a time on every node: debit a
//   wallet on A, credit a merchant on B, count an audit event on each other
//   node. Each node's durable writes fail with its own rate (default 1% on A
//   and B, 2% on each audit node).
// - bank: concurrent transfers between accounts spread across the
//   participants (Jepsen's bank test, in the simulator): the total balance is
//   invariant, and few accounts per participant make the transfers contend.
//   A share of transactions (`readOnlyShare`) reads: with that probability a
//   transfer becomes a balance check that writes nothing, and, independently,
//   a transaction also reads an account on a participant it does not write
//   (when there is one). A branch that writes nothing is read-only.
// - bank-audit: the bank's transfers, and audits: a transaction that reads
//   every account on every participant and compares the total with the
//   conserved sum (what the problem statement's reader does while transfers
//   run). A wrong total is an inconsistent audit.
// - append: random list-append transactions over a few keys per participant
//   (Jepsen's list-append workload, as Elle checks it): each appends unique
//   elements to some keys and reads others; a share only reads. The run
//   records the history and checks it (src/history).

import type { NodeId } from '../protocol/common/types.ts';
import { isolationWorkloadNames } from './isolation.ts';
import type { Prng } from './prng.ts';
import type { Key, Op } from './resource.ts';

export const workloadNames = ['toy', 'bank', ...isolationWorkloadNames] as const;
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
  /** The workload reads (`Op.read`): the run reports `isolation`. */
  reads?: true;
}

/** Participant names: A, B, C, ... then P27, P28, ... */
export function participantNames(n: number): NodeId[] {
  return Array.from({ length: n }, (_, i) => (i < 26 ? String.fromCharCode(65 + i) : `P${i + 1}`));
}

/** The toy workload's row on each of its nodes, by position. */
const toyKey = (i: number) => (i === 0 ? 'wallet' : i === 1 ? 'merchant' : 'audit');
const toyDelta = (i: number) => (i === 0 ? -500 : i === 1 ? 500 : 1);

/** `nodes` participants (at least 2), every transaction on all of them. */
export function toyWorkload(nodes = 3): Workload {
  const participants = participantNames(nodes);
  const ops = new Map(participants.map((p, i) => [p, [{ key: toyKey(i), delta: toyDelta(i) }]]));
  return {
    name: 'toy',
    participants,
    concurrency: 1,
    initialRows: (node) => new Map([[toyKey(participants.indexOf(node)), 0]]),
    next: () => new Map(ops),
    conserved: (key) => key !== 'audit',
    defaultFailRates: participants.map((_, i) => (i < 2 ? 0.01 : 0.02)),
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
  /** Probability of each of the two reads (see the module comment); 0: transfers only. */
  readOnlyShare: number;
}

export const defaultBankOptions: BankOptions = {
  participants: 3,
  accountsPerParticipant: 10,
  concurrency: 8,
  initialBalance: 1000,
  everyParticipant: false,
  readOnlyShare: 0,
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
      const account = () => `acct${rng.int(o.accountsPerParticipant)}`;
      // A share of 0 draws nothing more, so transfer-only runs stay as they were.
      const reads = o.readOnlyShare > 0;
      const check = reads && rng.chance(o.readOnlyShare);
      const ops = new Map([
        [participants[from]!, [{ key: account(), delta: check ? 0 : -amount }]],
        [participants[to]!, [{ key: account(), delta: check ? 0 : amount }]],
      ]);
      if (o.everyParticipant) {
        // A write that changes nothing in sum (+1 then -1 on one account), so
        // the branch votes like a writer, not read-only.
        for (const p of participants) {
          if (ops.has(p)) continue;
          const key = account();
          ops.set(p, [
            { key, delta: 1 },
            { key, delta: -1 },
          ]);
        }
      } else if (reads && participants.length > 2 && rng.chance(o.readOnlyShare)) {
        const others = participants.filter((_, i) => i !== from && i !== to);
        ops.set(rng.pick(others), [{ key: account(), delta: 0 }]);
      }
      return ops;
    },
    conserved: () => true,
    defaultFailRates: [],
  };
}

export interface AuditOptions {
  /** Probability that a transaction is an audit rather than a transfer. */
  auditShare: number;
}

/** Transfers as in `bank` (without its read-only share), and audits that read every account everywhere. */
export function bankAuditWorkload(options: Partial<BankOptions & AuditOptions> = {}): Workload {
  const { auditShare = 0.25, ...bank } = options;
  const transfers = bankWorkload({ ...bank, readOnlyShare: 0 });
  const accounts = bank.accountsPerParticipant ?? defaultBankOptions.accountsPerParticipant;
  return {
    ...transfers,
    name: 'bank-audit',
    reads: true,
    next(rng) {
      if (!rng.chance(auditShare)) return transfers.next(rng);
      let seq = 0;
      return new Map(
        transfers.participants.map((p) => [
          p,
          Array.from(
            { length: accounts },
            (_, i): Op => ({ key: `acct${i}`, delta: 0, read: true, seq: seq++ }),
          ),
        ]),
      );
    },
  };
}

export interface AppendOptions {
  participants: number;
  keysPerParticipant: number;
  concurrency: number;
  /** Probability that a transaction only reads. */
  readOnlyShare: number;
}

export const defaultAppendOptions: AppendOptions = {
  participants: 3,
  keysPerParticipant: 4,
  concurrency: 8,
  readOnlyShare: 0.25,
};

/**
 * List-append transactions: 1 to 4 micro-ops (2 to 4 reads when read-only)
 * on random keys; key k lives on participant k mod N. Every appended element
 * is unique (a counter), as the checker requires.
 */
export function appendWorkload(options: Partial<AppendOptions> = {}): Workload {
  const o = { ...defaultAppendOptions, ...options };
  const participants = participantNames(o.participants);
  const keys = o.participants * o.keysPerParticipant;
  let element = 0;
  return {
    name: 'append',
    participants,
    concurrency: o.concurrency,
    reads: true,
    initialRows: (node) => {
      const i = participants.indexOf(node);
      return new Map(
        Array.from({ length: o.keysPerParticipant }, (_, j) => [String(i + j * o.participants), 0]),
      );
    },
    next(rng) {
      const readOnly = rng.chance(o.readOnlyShare);
      const count = readOnly ? 2 + rng.int(3) : 1 + rng.int(4);
      const ops = new Map<NodeId, Op[]>();
      for (let seq = 0; seq < count; seq++) {
        const key = rng.int(keys);
        const op: Op =
          readOnly || rng.chance(0.5)
            ? { key: String(key), delta: 0, read: true, seq }
            : { key: String(key), delta: 0, append: ++element, seq };
        const p = participants[key % o.participants]!;
        let list = ops.get(p);
        if (list === undefined) ops.set(p, (list = []));
        list.push(op);
      }
      return ops;
    },
    conserved: () => false,
    defaultFailRates: [],
  };
}
