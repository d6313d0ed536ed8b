// The bank-audit workload of the branch world: transfers between accounts
// held by different banks (services bank0, bank1, ...), run as sagas or as
// TCC transactions, while auditors (./isolation.ts) read every account of
// every bank and compare the total with the conserved sum.
//
// Saga: withdraw on the payer's bank ∥ deposit on the payee's bank. A share of
// deposits is refused (the account is closed), so the withdraw is compensated.
// How the handlers write is the run's countermeasure
// (Garcia-Molina & Salem's sagas give no isolation; the countermeasures are
// those of Richardson, "Microservices Patterns", ch. 4, after Frank & Zahle,
// "Semantic ACID properties in multidatabases using remote procedure calls
// and update propagations", 1998):
// - `none`: what a service writes when it keeps an undo image. The step saves
//   the row's value before it changed it; the compensation puts that value
//   back. Whatever another saga wrote to the row in between is lost.
// - `commutative`: the step and its compensation are increments (withdraw m,
//   give back m): they commute with every other saga's increments, so a
//   compensation loses nothing.
// - `semantic-lock`: as `none`, and each step sets a pending flag on the row
//   (`lock:<account>` holds the saga's number) in the same local transaction;
//   two more steps (`settle`, which cannot be compensated, so they run last)
//   clear the flags once both sides succeeded, and the compensations clear
//   them too. A step of another saga that meets the flag is refused, which
//   compensates that saga; an auditor that meets it gives the audit up and
//   tries again later.
// TCC: try = hold (balance -m, frozen +m) ∥ expect (a closed account refuses);
// confirm = pay (frozen -m) and credit (balance +m); cancel = release and
// drop. TCC's try is its own reservation; no countermeasure applies.
//
// Conserved: the sum of every bank's balances (and frozen amounts, for TCC).

import type { Handler, Write } from '../../protocol/branch/service.ts';
import type { SagaPlan, SagaPlanStep } from '../../protocol/saga/types.ts';
import type { TccPlan } from '../../protocol/tcc/types.ts';
import type { Prng } from '../prng.ts';
import { payloadField } from './booking.ts';
import type { BranchWorkload } from './world.ts';

export const countermeasures = ['none', 'semantic-lock', 'commutative'] as const;
export type Countermeasure = (typeof countermeasures)[number];

export interface BankAuditOptions {
  /** Clients running transfers at once, each one transfer after the other. */
  concurrency: number;
  banks: number;
  accountsPerBank: number;
  balance: number;
  amountMax: number;
  /** Share of deposits refused by the payee's bank (the saga compensates its withdraw). */
  refuseShare: number;
  /** Auditors reading every account of every bank, one audit after the other. */
  auditors: number;
  /** Mean pause (exponential) of an auditor between audits. */
  auditThinkMs: number;
  /**
   * Audits run (and tried) per transfer at most, over all auditors: a run
   * with faults lasts long in simulated time, and auditors that went on for
   * all of it would make the history, and its check, grow without bound.
   */
  auditsPerTransferMax: number;
  countermeasure: Countermeasure;
}

export const defaultBankAuditOptions: BankAuditOptions = {
  concurrency: 4,
  banks: 3,
  accountsPerBank: 8,
  balance: 1_000,
  amountMax: 100,
  refuseShare: 0.2,
  auditors: 2,
  auditThinkMs: 5,
  auditsPerTransferMax: 2,
  countermeasure: 'none',
};

/** One transfer, as the client made it up. */
export interface Transfer {
  id: string;
  num: number;
  fromBank: string;
  from: number;
  toBank: string;
  to: number;
  amount: number;
  /** The payee's bank refuses the deposit. */
  refused: boolean;
}

export const bankName = (i: number) => `bank${i}`;
export const accountKey = (a: number) => `acct:${a}`;
export const frozenKey = (a: number) => `frozen:${a}`;
export const lockKey = (a: number) => `lock:${a}`;
/** The undo image of saga `num` on this bank (only `none` and `semantic-lock` keep one). */
const undoKey = (num: number) => `undo:${num}`;

const ok = (...writes: Write[]) => ({ result: 'success' as const, writes });
const refuse = (reason: string) => ({ result: 'failure' as const, reason });

/**
 * The saga handlers of every bank for countermeasure `cm`. Payloads:
 * `b=<saga number>;a=<account>;m=<amount>[;refuse=1]`.
 */
function sagaHandlers(cm: Countermeasure): Record<string, Handler> {
  const byValue = cm !== 'commutative';
  const locking = cm === 'semantic-lock';
  /** A forward step: the checks, then `delta` on the account, with its undo image and flag. */
  const step =
    (sign: 1 | -1): Handler =>
    (ctx) => {
      const b = payloadField(ctx.payload, 'b');
      const a = payloadField(ctx.payload, 'a');
      const m = payloadField(ctx.payload, 'm');
      if (payloadField(ctx.payload, 'refuse') === 1) return refuse(`${accountKey(a)} is closed`);
      const holder = ctx.read(lockKey(a));
      if (locking && holder !== 0) return refuse(`${accountKey(a)} is pending in saga ${holder}`);
      const before = ctx.read(accountKey(a));
      if (sign < 0 && before < m) return refuse(`insufficient funds in ${accountKey(a)}`);
      const writes: Write[] = [{ key: accountKey(a), delta: sign * m }];
      if (byValue) writes.push({ key: undoKey(b), delta: before - ctx.read(undoKey(b)) });
      if (locking) writes.push({ key: lockKey(a), delta: b });
      return ok(...writes);
    };
  /** The compensation: the undo image back (`none`, `semantic-lock`) or the inverse increment. */
  const undo =
    (sign: 1 | -1): Handler =>
    (ctx) => {
      const b = payloadField(ctx.payload, 'b');
      const a = payloadField(ctx.payload, 'a');
      const writes: Write[] = byValue
        ? [{ key: accountKey(a), delta: ctx.read(undoKey(b)) - ctx.read(accountKey(a)) }]
        : [{ key: accountKey(a), delta: -sign * payloadField(ctx.payload, 'm') }];
      if (locking && ctx.read(lockKey(a)) === b) writes.push({ key: lockKey(a), delta: -b });
      return ok(...writes);
    };
  return {
    withdraw: step(-1),
    redeposit: undo(-1),
    deposit: step(1),
    undeposit: undo(1),
    // Clears the flag this saga set; the saga's steps have all succeeded.
    settle: (ctx) => {
      const b = payloadField(ctx.payload, 'b');
      const a = payloadField(ctx.payload, 'a');
      return ctx.read(lockKey(a)) === b ? ok({ key: lockKey(a), delta: -b }) : ok();
    },
  };
}

function tccHandlers(): Record<string, Handler> {
  const field = (ctx: Parameters<Handler>[0]) => ({
    a: payloadField(ctx.payload, 'a'),
    m: payloadField(ctx.payload, 'm'),
  });
  return {
    hold: (ctx) => {
      const { a, m } = field(ctx);
      if (ctx.read(accountKey(a)) < m) return refuse(`insufficient funds in ${accountKey(a)}`);
      return ok({ key: accountKey(a), delta: -m }, { key: frozenKey(a), delta: m });
    },
    pay: (ctx) => ok({ key: frozenKey(field(ctx).a), delta: -field(ctx).m }),
    release: (ctx) => {
      const { a, m } = field(ctx);
      return ok({ key: frozenKey(a), delta: -m }, { key: accountKey(a), delta: m });
    },
    expect: (ctx) =>
      payloadField(ctx.payload, 'refuse') === 1
        ? refuse(`${accountKey(field(ctx).a)} is closed`)
        : ok({ key: `incoming:${field(ctx).a}`, delta: field(ctx).m }),
    credit: (ctx) => {
      const { a, m } = field(ctx);
      return ok({ key: `incoming:${a}`, delta: -m }, { key: accountKey(a), delta: m });
    },
    drop: (ctx) => ok({ key: `incoming:${field(ctx).a}`, delta: -field(ctx).m }),
  };
}

function payloads(t: Transfer) {
  return {
    from: `b=${t.num};a=${t.from};m=${t.amount}`,
    to: `b=${t.num};a=${t.to};m=${t.amount}${t.refused ? ';refuse=1' : ''}`,
  };
}

function transferSaga(t: Transfer, cm: Countermeasure): SagaPlan {
  const p = payloads(t);
  const steps: SagaPlanStep[] = [
    {
      branch: 'withdraw',
      service: t.fromBank,
      action: 'withdraw',
      compensation: 'redeposit',
      payload: p.from,
      after: [],
    },
    {
      branch: 'deposit',
      service: t.toBank,
      action: 'deposit',
      compensation: 'undeposit',
      payload: p.to,
      after: [],
    },
  ];
  if (cm === 'semantic-lock') {
    for (const [branch, service, payload] of [
      ['settle-from', t.fromBank, p.from],
      ['settle-to', t.toBank, p.to],
    ] as const) {
      steps.push({
        branch,
        service,
        action: 'settle',
        compensation: null,
        payload,
        after: ['withdraw', 'deposit'],
      });
    }
  }
  return { steps };
}

function transferTcc(t: Transfer): TccPlan {
  const p = payloads(t);
  return {
    branches: [
      {
        branch: 'from',
        service: t.fromBank,
        try: 'hold',
        confirm: 'pay',
        cancel: 'release',
        payload: p.from,
      },
      { branch: 'to', service: t.toBank, try: 'expect', confirm: 'credit', cancel: 'drop', payload: p.to },
    ],
  };
}

function nextTransfer(o: BankAuditOptions, rng: Prng, seq: number): Transfer {
  const fromBank = rng.int(o.banks);
  const toBank = (fromBank + 1 + rng.int(o.banks - 1)) % o.banks;
  return {
    id: `t${seq}`,
    num: seq,
    fromBank: bankName(fromBank),
    from: rng.int(o.accountsPerBank),
    toBank: bankName(toBank),
    to: rng.int(o.accountsPerBank),
    amount: 1 + rng.int(o.amountMax),
    refused: rng.chance(o.refuseShare),
  };
}

/** Balances plus frozen amounts: what no transfer may create or destroy. */
function conservedTotal(rows: ReadonlyMap<string, number>): number {
  let sum = 0;
  for (const [key, value] of rows) if (key.startsWith('acct:') || key.startsWith('frozen:')) sum += value;
  return sum;
}

/** Transfers (`next` makes a `Transfer`) and the keys an audit reads on each bank. */
export interface BankAuditWorkload extends BranchWorkload<Transfer, string, BankAuditOptions> {
  name: 'bank-audit';
  auditedKeys(kind: 'saga' | 'tcc'): string[];
}

export function bankAuditWorkload(options: Partial<BankAuditOptions> = {}): BankAuditWorkload {
  const o: BankAuditOptions = { ...defaultBankAuditOptions, ...options };
  if (!(o.banks >= 2)) throw new RangeError('bank-audit needs two banks or more');
  const services = Array.from({ length: o.banks }, (_, i) => bankName(i));
  const accounts = Array.from({ length: o.accountsPerBank }, (_, a) => a);
  const handlers = { saga: sagaHandlers(o.countermeasure), tcc: tccHandlers() };
  return {
    name: 'bank-audit',
    options: o,
    services,
    next: (rng, seq) => nextTransfer(o, rng, seq),
    sagaDefinition: (t) => transferSaga(t, o.countermeasure),
    tccDefinition: transferTcc,
    serviceConfig: (kind) => ({
      handlers: handlers[kind],
      initialRows: accounts.map((a) => [accountKey(a), o.balance] as const),
      barrier: true,
    }),
    conservedTotal,
    auditedKeys: (kind) => [...accounts.map(accountKey), ...(kind === 'tcc' ? accounts.map(frozenKey) : [])],
  };
}
