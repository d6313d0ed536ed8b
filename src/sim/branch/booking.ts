// The booking workload: reserve a seat, charge a wallet, issue a ticket,
// notify the customer — as a saga and as a TCC transaction, over four
// services (seats, payments, tickets, notify).
//
// Saga: reserve ∥ charge, then issue, then notify (an order graph: the seat
// and the payment run concurrently). Compensations: release the seat, refund
// the wallet, cancel the ticket; a notification cannot be undone, so it comes
// last. TCC: hold/sell/unhold the seat, freeze/capture/unfreeze the amount,
// draft/issue/void the ticket, prepare/send/discard the notice.
//
// Failures the business produces: a share of the wallets (default 4%) lack
// the balance, so their charge is refused; a seat someone else holds is
// refused; and a share of calls answer `ongoing` for their first attempts (a
// payment gateway that is still pending, a busy ticket printer).
//
// The handlers are deliberately naive: a release subtracts the holder, a
// refund pays back, whether or not the action ran. That is what a service
// looks like without the barrier, and why the barrier exists; the broken
// variant (./broken.ts) runs them unguarded and the checkers catch it.

import type { Handler, ServiceConfig, Write } from '../../protocol/branch/service.ts';
import type { SagaPlan } from '../../protocol/saga/types.ts';
import type { TccPlan } from '../../protocol/tcc/types.ts';
import type { Prng } from '../prng.ts';
import type { BranchWorkload } from './world.ts';

export const bookingServices = ['seats', 'payments', 'tickets', 'notify'] as const;
export type BookingService = (typeof bookingServices)[number];

export interface BookingOptions {
  /** Clients booking at once, each one booking after the other. */
  concurrency: number;
  seats: number;
  wallets: number;
  /** Share of wallets that lack the balance for any ticket. */
  shortShare: number;
  /** Balance of every other wallet (never runs out in a run). */
  balance: number;
  priceMin: number;
  priceMax: number;
  /** Share of payments, tickets and notifications that answer `ongoing` on their first attempt(s). */
  pendingShare: number;
}

export const defaultBookingOptions: BookingOptions = {
  concurrency: 4,
  seats: 100_000,
  wallets: 100,
  shortShare: 0.04,
  balance: 1_000_000,
  priceMin: 20,
  priceMax: 200,
  pendingShare: 0.05,
};

/** One booking, as the client made it up (the checkers read it back). */
export interface Booking {
  id: string;
  /** A positive number naming the booking in rows (a seat holds its booking's number). */
  num: number;
  seat: number;
  wallet: number;
  amount: number;
  /** Attempts the payment (saga: charge; TCC: freeze) answers `ongoing` before it answers. */
  payPending: number;
  /** The same for issuing the ticket and for the notification. */
  ticketPending: number;
  notifyPending: number;
}

/** Conserved: wallets plus revenue (plus frozen amounts, for TCC). */
export interface BookingWorkload extends BranchWorkload<Booking, BookingService, BookingOptions> {
  name: 'booking';
}

/** `k=v;k=v` with integer values. */
export function parsePayload(payload: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of payload.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0) out.set(part.slice(0, eq), Number(part.slice(eq + 1)));
  }
  return out;
}

/**
 * One field of a payload, as `parsePayload(payload).get(name) ?? 0` reads it
 * (the last `name=` wins), without building the map: every handler call
 * reads a field or two, and the simulator makes millions of calls.
 */
export function payloadField(payload: string, name: string): number {
  let value: number | undefined;
  for (let start = 0; start <= payload.length; ) {
    const semicolon = payload.indexOf(';', start);
    const end = semicolon < 0 ? payload.length : semicolon;
    const eq = payload.indexOf('=', start);
    if (eq - start === name.length && eq < end && name.length > 0 && payload.startsWith(name, start))
      value = Number(payload.slice(eq + 1, end));
    start = end + 1;
  }
  return value ?? 0;
}
const ok = (...writes: Write[]) => ({ result: 'success' as const, writes });
const pendingFirst =
  (reason: string, then: Handler): Handler =>
  (ctx) =>
    ctx.attempt <= payloadField(ctx.payload, 'pending') ? { result: 'ongoing', reason } : then(ctx);

function sagaHandlers(service: BookingService): Record<string, Handler> {
  switch (service) {
    case 'seats':
      return {
        reserve: (ctx) => {
          const seat = `seat:${payloadField(ctx.payload, 'seat')}`;
          const holder = ctx.read(seat);
          if (holder !== 0) return { result: 'failure', reason: `${seat} is taken` };
          return ok({ key: seat, delta: payloadField(ctx.payload, 'b') });
        },
        release: (ctx) =>
          ok({ key: `seat:${payloadField(ctx.payload, 'seat')}`, delta: -payloadField(ctx.payload, 'b') }),
      };
    case 'payments':
      return {
        charge: pendingFirst('payment pending at the gateway', (ctx) => {
          const wallet = `wallet:${payloadField(ctx.payload, 'wallet')}`;
          const amount = payloadField(ctx.payload, 'amount');
          if (ctx.read(wallet) < amount)
            return { result: 'failure', reason: `insufficient funds in ${wallet}` };
          return ok({ key: wallet, delta: -amount }, { key: 'revenue', delta: amount });
        }),
        refund: (ctx) => {
          const amount = payloadField(ctx.payload, 'amount');
          return ok(
            { key: `wallet:${payloadField(ctx.payload, 'wallet')}`, delta: amount },
            { key: 'revenue', delta: -amount },
          );
        },
      };
    case 'tickets':
      return {
        issue: pendingFirst('ticket printer busy', (ctx) =>
          ok({ key: `ticket:${payloadField(ctx.payload, 'b')}`, delta: 1 }),
        ),
        cancel: (ctx) => ok({ key: `ticket:${payloadField(ctx.payload, 'b')}`, delta: -1 }),
      };
    case 'notify':
      return {
        send: pendingFirst('mail server busy', (ctx) =>
          ok({ key: `notice:${payloadField(ctx.payload, 'b')}`, delta: 1 }),
        ),
      };
  }
}

function tccHandlers(service: BookingService): Record<string, Handler> {
  switch (service) {
    case 'seats':
      return {
        hold: (ctx) => {
          const seat = `seat:${payloadField(ctx.payload, 'seat')}`;
          if (ctx.read(seat) !== 0) return { result: 'failure', reason: `${seat} is taken` };
          return ok({ key: seat, delta: payloadField(ctx.payload, 'b') });
        },
        sell: (ctx) =>
          ok({ key: `sold:${payloadField(ctx.payload, 'seat')}`, delta: payloadField(ctx.payload, 'b') }),
        unhold: (ctx) =>
          ok({ key: `seat:${payloadField(ctx.payload, 'seat')}`, delta: -payloadField(ctx.payload, 'b') }),
      };
    case 'payments':
      return {
        freeze: pendingFirst('payment pending at the gateway', (ctx) => {
          const w = payloadField(ctx.payload, 'wallet');
          const amount = payloadField(ctx.payload, 'amount');
          if (ctx.read(`wallet:${w}`) < amount)
            return { result: 'failure', reason: `insufficient funds in wallet:${w}` };
          return ok({ key: `wallet:${w}`, delta: -amount }, { key: `frozen:${w}`, delta: amount });
        }),
        capture: (ctx) => {
          const amount = payloadField(ctx.payload, 'amount');
          return ok(
            { key: `frozen:${payloadField(ctx.payload, 'wallet')}`, delta: -amount },
            { key: 'revenue', delta: amount },
          );
        },
        unfreeze: (ctx) => {
          const w = payloadField(ctx.payload, 'wallet');
          const amount = payloadField(ctx.payload, 'amount');
          return ok({ key: `frozen:${w}`, delta: -amount }, { key: `wallet:${w}`, delta: amount });
        },
      };
    case 'tickets':
      return {
        draft: (ctx) => ok({ key: `draft:${payloadField(ctx.payload, 'b')}`, delta: 1 }),
        issue: pendingFirst('ticket printer busy', (ctx) => {
          const b = payloadField(ctx.payload, 'b');
          return ok({ key: `draft:${b}`, delta: -1 }, { key: `ticket:${b}`, delta: 1 });
        }),
        void: (ctx) => ok({ key: `draft:${payloadField(ctx.payload, 'b')}`, delta: -1 }),
      };
    case 'notify':
      return {
        prepare: () => ok(),
        send: pendingFirst('mail server busy', (ctx) =>
          ok({ key: `notice:${payloadField(ctx.payload, 'b')}`, delta: 1 }),
        ),
        discard: () => ok(),
      };
  }
}

/** The payload each branch is sent: `k=v;k=v`, read back by the handlers with payloadField(). */
function bookingPayloads(b: Booking) {
  return {
    seat: `b=${b.num};seat=${b.seat}`,
    pay: `b=${b.num};wallet=${b.wallet};amount=${b.amount};pending=${b.payPending}`,
    ticket: `b=${b.num};pending=${b.ticketPending}`,
    notify: `b=${b.num};pending=${b.notifyPending}`,
  };
}

/**
 * Makes up booking `seq`. The rng draws happen in the order of the object's
 * fields below; that order is what keeps a seed's run identical, so keep it.
 */
function nextBooking(o: BookingOptions, rng: Prng, seq: number): Booking {
  const pending = (max: number) => (rng.chance(o.pendingShare) ? 1 + rng.int(max) : 0);
  return {
    id: `b${seq}`,
    num: seq,
    seat: rng.int(o.seats),
    wallet: rng.int(o.wallets),
    amount: o.priceMin + rng.int(o.priceMax - o.priceMin + 1),
    payPending: pending(2),
    ticketPending: pending(1),
    notifyPending: pending(1),
  };
}

/** Saga: reserve ∥ charge, then issue, then notify (which has no compensation, so it runs last). */
function bookingSagaDefinition(b: Booking): SagaPlan {
  const p = bookingPayloads(b);
  return {
    steps: [
      {
        branch: 'seat',
        service: 'seats',
        action: 'reserve',
        compensation: 'release',
        payload: p.seat,
        after: [],
      },
      {
        branch: 'pay',
        service: 'payments',
        action: 'charge',
        compensation: 'refund',
        payload: p.pay,
        after: [],
      },
      {
        branch: 'ticket',
        service: 'tickets',
        action: 'issue',
        compensation: 'cancel',
        payload: p.ticket,
        after: ['seat', 'pay'],
      },
      {
        branch: 'notify',
        service: 'notify',
        action: 'send',
        compensation: null,
        payload: p.notify,
        after: ['ticket'],
      },
    ],
  };
}

/** TCC: the four branches with their try/confirm/cancel actions. */
function bookingTccDefinition(b: Booking): TccPlan {
  const p = bookingPayloads(b);
  return {
    branches: [
      {
        branch: 'seat',
        service: 'seats',
        try: 'hold',
        confirm: 'sell',
        cancel: 'unhold',
        payload: p.seat,
      },
      {
        branch: 'pay',
        service: 'payments',
        try: 'freeze',
        confirm: 'capture',
        cancel: 'unfreeze',
        payload: p.pay,
      },
      {
        branch: 'ticket',
        service: 'tickets',
        try: 'draft',
        confirm: 'issue',
        cancel: 'void',
        payload: p.ticket,
      },
      {
        branch: 'notify',
        service: 'notify',
        try: 'prepare',
        confirm: 'send',
        cancel: 'discard',
        payload: p.notify,
      },
    ],
  };
}

/** Handlers and initial rows: the payments service starts with the wallets (the first `short` of them short). */
function bookingServiceConfig(
  o: BookingOptions,
  kind: 'saga' | 'tcc',
  service: BookingService,
): ServiceConfig {
  const short = Math.round(o.wallets * o.shortShare);
  const initialRows: [string, number][] = [];
  if (service === 'payments') {
    for (let w = 0; w < o.wallets; w++)
      initialRows.push([`wallet:${w}`, w < short ? o.priceMin - 1 : o.balance]);
    initialRows.push(['revenue', 0]);
  }
  return {
    handlers: kind === 'saga' ? sagaHandlers(service) : tccHandlers(service),
    initialRows,
    barrier: true,
  };
}

/** Wallets plus revenue plus frozen amounts: what no booking may create or destroy. */
function bookingConservedTotal(rows: ReadonlyMap<string, number>): number {
  let sum = 0;
  for (const [key, value] of rows) {
    if (key.startsWith('wallet:') || key.startsWith('frozen:') || key === 'revenue') sum += value;
  }
  return sum;
}

export function bookingWorkload(options: Partial<BookingOptions> = {}): BookingWorkload {
  // Each member is a module function (bookingSagaDefinition, nextBooking, ...)
  // so that none of them, nor this, runs past ~100 lines; behaviour and the
  // order of rng draws are unchanged (the simulator's output is byte-identical).
  const o: BookingOptions = { ...defaultBookingOptions, ...options };
  return {
    name: 'booking',
    options: o,
    services: bookingServices,
    next: (rng, seq) => nextBooking(o, rng, seq),
    sagaDefinition: bookingSagaDefinition,
    tccDefinition: bookingTccDefinition,
    serviceConfig: (kind, service) => bookingServiceConfig(o, kind, service),
    conservedTotal: bookingConservedTotal,
  };
}
