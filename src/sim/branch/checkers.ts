// The booking checkers, for sagas and TCC: code the protocols never import,
// fed every local transaction a service made durable and every outcome the
// orchestrator reported, and at quiescence the services' rows as their logs
// rebuild them. They judge what happened to the data.
//
// Online (as each service record becomes durable):
// - idempotency: no (transaction, branch, op) ran its handler twice;
// - hanging: no action/try ran after its compensation/cancel was recorded;
// - null compensation: no compensation ran its handler (undid something) for
//   an action that never ran;
// - stability: the outcome reported for a transaction never changes;
// - compensation order (sagas): a step is compensated only once every
//   compensable step that depends on it (its `after` edges, from the durable
//   `begin` record) and whose action ran has its compensation durable —
//   checked when the orchestrator's `start` of the compensation is durable and
//   when the service first records it, so a call sent too early is caught too;
// - decision (TCC): a confirm or cancel reaches a service only after the
//   orchestrator's decision for it is durable, and only the one decided;
// - confirm (TCC): the orchestrator sends a confirm only once every try of
//   the transaction ran at its service (durable) and none was cancelled: a
//   try refused, failed or never answered forbids confirm. Checked as each
//   confirm leaves, so a confirm the barrier turns away is caught too.
// At quiescence (faults healed, every node up, queues drained):
// - seat: every held seat belongs to a booking that paid and holds its ticket
//   (TCC: that was confirmed — a hold neither sold nor released is a seat held
//   without a paid ticket);
// - charge: no charge without a ticket or a refund (TCC: nothing left frozen);
// - ticket: ticket rows are 0 or 1, and a ticket has its seat and payment;
// - conservation: wallets + revenue (+ frozen) equal their initial total;
// - outcome: a completed booking has everything, a compensated one nothing,
//   and a booking whose saga never began left no trace;
// - liveness: every begun transaction ended completed or compensated, or was
//   visibly stuck: reported stuck, with its `stuck` record durable;
// - confirm (TCC): a transaction decided confirm whose every try ran ends
//   with no branch cancelled, is not reported compensated, and when reported
//   completed has every branch confirmed (a visibly stuck one may still lack
//   a confirm, never have a cancel).
// A visibly stuck booking is exempt from the data checks (an operator owns it
// now) but not from conservation, idempotency or hanging.

import type { ServiceRecord } from '../../protocol/branch/service.ts';
import { type BranchOp, originOf, type SagaOutcome } from '../../protocol/branch/types.ts';
import { normalizeSteps, type SagaPlan } from '../../protocol/saga/types.ts';
import type { TccPlan } from '../../protocol/tcc/types.ts';
import type { Booking } from './booking.ts';

export type SagaChecker =
  | 'idempotency'
  | 'hanging'
  | 'null-compensation'
  | 'stability'
  | 'compensation-order'
  | 'decision'
  | 'confirm'
  | 'seat'
  | 'charge'
  | 'ticket'
  | 'conservation'
  | 'outcome'
  | 'liveness'
  | 'countermeasure';

export interface SagaViolation {
  checker: SagaChecker;
  txn: string;
  detail: string;
}

const violationsKeptMax = 50;

export interface SagaClassification {
  /** Sagas whose `begin` record became durable (a BEGIN lost on the way never began). */
  begun: number;
  completed: number;
  compensated: number;
  /** Visibly stuck: a compensation (or confirm/cancel) failed past its limit. */
  stuck: number;
  rejected: number;
  /** Begun, and neither finished nor visibly stuck after the faults healed (a liveness violation). */
  unfinished: number;
  unfinishedTxns: string[];
}

export interface Quiescence {
  kind: 'saga' | 'tcc';
  /** The booking data checks run for the booking workload only (the default). */
  workload?: 'booking' | 'bank-audit';
  bookings: ReadonlyMap<string, Booking>;
  rows: ReadonlyMap<string, ReadonlyMap<string, number>>;
  /** Transactions the orchestrator's durable log shows as stuck. */
  stuckInLog: ReadonlySet<string>;
  initialTotal: number;
  finalTotal: number;
}

export class SagaCheckers {
  readonly violations: SagaViolation[] = [];
  violationCount = 0;
  /** Violations per checker, all of them (the list keeps the first 50). */
  readonly byChecker: Partial<Record<SagaChecker, number>> = {};
  private readonly begun = new Set<string>();
  private readonly outcomes = new Map<string, SagaOutcome>();
  /** `txn|branch|op` → times its handler ran (an `applied` record). */
  private readonly ran = new Map<string, number>();
  /** `txn|branch` → a compensation or cancel is durable. */
  private readonly undone = new Set<string>();
  /** When the seat was taken and given back, per booking (for the inconsistency window). */
  private readonly seatTakenAt = new Map<string, number>();
  private readonly seatFreedAt = new Map<string, number>();
  /** Per saga, per step: the compensable steps that run after it (the reverse of its plan's `after` edges). */
  private readonly dependents = new Map<string, Map<string, string[]>>();
  /** Per TCC transaction: its durable decision. */
  private readonly decisions = new Map<string, 'confirm' | 'cancel'>();
  /** Per TCC transaction: its branches, from the durable `begin` record. */
  private readonly tccBranches = new Map<string, readonly string[]>();
  /** `txn|branch` whose try the service refused (or blocked, its cancel having come first). */
  private readonly refusedTries = new Set<string>();
  /** TCC transactions the confirm checker flagged as a confirm left (once each: a confirm is retried). */
  private readonly confirmFlagged = new Set<string>();

  flag(checker: SagaChecker, txn: string, detail: string): void {
    this.violationCount++;
    this.byChecker[checker] = (this.byChecker[checker] ?? 0) + 1;
    if (this.violations.length < violationsKeptMax) this.violations.push({ checker, txn, detail });
  }

  /** The orchestrator's `begin` record for `txn` is durable. */
  begin(txn: string, def?: unknown): void {
    this.begun.add(txn);
    const tccPlan = (def as Partial<TccPlan> | undefined)?.branches;
    const tccNames = tccPlan?.map((b) => b.branch);
    if (tccNames !== undefined) this.tccBranches.set(txn, tccNames);
    if ((def as Partial<SagaPlan> | undefined)?.steps === undefined) return;
    const steps = normalizeSteps(def as SagaPlan);
    const dependents = new Map<string, string[]>(steps.map((s) => [s.branch, []]));
    for (const s of steps) {
      if (s.compensation === null) continue;
      for (const a of s.after) dependents.get(a)?.push(s.branch);
    }
    this.dependents.set(txn, dependents);
  }

  /** The orchestrator's TCC decision for `txn` is durable. */
  decided(txn: string, decision: 'confirm' | 'cancel'): void {
    this.decisions.set(txn, decision);
  }

  /** The orchestrator sends call `op` of `branch` (every attempt). */
  called(txn: string, branch: string, op: BranchOp): void {
    if (op !== 'confirm' || this.confirmFlagged.has(txn)) return;
    for (const other of this.tccBranches.get(txn) ?? []) {
      const problem = this.tryProblem(txn, other);
      if (problem === null) continue;
      this.confirmFlagged.add(txn);
      this.flag('confirm', txn, `confirm of ${branch} sent while the try of ${other} ${problem}`);
      return;
    }
  }

  /** Why the try of `branch` does not count as succeeded, or null when it ran and was not cancelled. */
  private tryProblem(txn: string, branch: string): string | null {
    const pair = `${txn}|${branch}`;
    if (this.undone.has(pair)) return 'was cancelled';
    if (this.didRun(txn, branch, 'try')) return null;
    return this.refusedTries.has(pair) ? 'was refused' : 'had not run';
  }

  /** The saga orchestrator's `start` of `op` on `branch` is durable. */
  started(txn: string, branch: string, op: string): void {
    if (op === 'compensate') this.checkCompensationOrder(txn, branch, 'orchestrator');
  }

  /** Every dependent of `branch` whose action ran must have its compensation durable before `branch`'s starts. */
  private checkCompensationOrder(txn: string, branch: string, who: string): void {
    for (const d of this.dependents.get(txn)?.get(branch) ?? []) {
      if (this.didRun(txn, d, 'action') && !this.undone.has(`${txn}|${d}`)) {
        this.flag(
          'compensation-order',
          txn,
          `${who} started compensating ${branch} before ${d}, which runs after it, was compensated`,
        );
      }
    }
  }

  reported(txn: string, outcome: SagaOutcome): void {
    const prev = this.outcomes.get(txn);
    if (prev !== undefined && prev !== outcome) {
      this.flag('stability', txn, `outcome reported as ${prev}, then as ${outcome}`);
    }
    this.outcomes.set(txn, outcome);
  }

  /** A service made local transaction `r` durable at virtual time `now`. */
  local(service: string, r: ServiceRecord, now: number): void {
    const pair = `${r.txn}|${r.branch}`;
    const origin = originOf(r.op);
    if (r.op === 'compensate' && !this.undone.has(pair))
      this.checkCompensationOrder(r.txn, r.branch, service);
    if (r.op === 'confirm' || r.op === 'cancel') {
      const decision = this.decisions.get(r.txn);
      if (decision !== r.op) {
        this.flag(
          'decision',
          r.txn,
          `${service} got ${r.op} of ${r.branch} when the decision was ${decision ?? 'not yet made'}`,
        );
      }
    }
    if ((r.op === 'try' && r.kind === 'refused') || r.blocks === 'try') this.refusedTries.add(pair);
    if (origin !== null) {
      this.undone.add(pair);
      if (r.kind === 'applied' && !this.ran.has(`${pair}|${origin}`)) {
        this.flag(
          'null-compensation',
          r.txn,
          `${service} ran ${r.op} of ${r.branch}, whose ${origin} never ran`,
        );
      }
    }
    if (r.kind !== 'applied') return;
    const key = `${pair}|${r.op}`;
    const n = (this.ran.get(key) ?? 0) + 1;
    this.ran.set(key, n);
    if (n > 1) this.flag('idempotency', r.txn, `${service} ran ${r.op} of ${r.branch} ${n} times`);
    if ((r.op === 'action' || r.op === 'try') && this.undone.has(pair)) {
      this.flag('hanging', r.txn, `${service} ran ${r.op} of ${r.branch} after its compensation`);
    }
    if (r.branch === 'seat') {
      if (r.op === 'action' || r.op === 'try') this.seatTakenAt.set(r.txn, now);
      else if (r.op === 'compensate' || r.op === 'cancel') this.seatFreedAt.set(r.txn, now);
    }
  }

  private didRun(txn: string, branch: string, op: string): boolean {
    return this.ran.has(`${txn}|${branch}|${op}`);
  }

  /**
   * For every booking whose seat was taken and given back: how long it was
   * unavailable to others (taken durable → release durable).
   */
  inconsistencyWindows(): number[] {
    const out: number[] = [];
    for (const [txn, taken] of this.seatTakenAt) {
      const freed = this.seatFreedAt.get(txn);
      if (freed !== undefined && freed >= taken) out.push(freed - taken);
    }
    return out;
  }

  /** Judge the quiescent state; flags liveness and every data invariant. */
  finish(q: Quiescence): SagaClassification {
    const c: SagaClassification = {
      begun: this.begun.size,
      completed: 0,
      compensated: 0,
      stuck: 0,
      rejected: 0,
      unfinished: 0,
      unfinishedTxns: [],
    };
    for (const txn of this.begun) {
      const outcome = this.outcomes.get(txn);
      if (outcome === 'completed') c.completed++;
      else if (outcome === 'compensated') c.compensated++;
      else if (outcome === 'stuck' && q.stuckInLog.has(txn)) c.stuck++;
      else {
        c.unfinished++;
        if (c.unfinishedTxns.length < violationsKeptMax) c.unfinishedTxns.push(txn);
        this.flag('liveness', txn, `still ${outcome ?? 'unreported'} after the faults healed`);
      }
    }
    for (const outcome of this.outcomes.values()) if (outcome === 'rejected') c.rejected++;

    if (q.initialTotal !== q.finalTotal) {
      this.flag(
        'conservation',
        '*',
        `wallets + revenue = ${q.finalTotal} at quiescence, expected ${q.initialTotal}`,
      );
    }
    if (q.workload === 'bank-audit') return c;
    if (q.kind === 'saga') this.finishSaga(q);
    else this.finishTcc(q);
    return c;
  }

  private exempt(txn: string): boolean {
    return this.outcomes.get(txn) === 'stuck';
  }

  private byNum(q: Quiescence): Map<number, Booking> {
    return new Map([...q.bookings.values()].map((b) => [b.num, b]));
  }

  private finishSaga(q: Quiescence): void {
    const seats = q.rows.get('seats') ?? new Map<string, number>();
    const tickets = q.rows.get('tickets') ?? new Map<string, number>();
    const notices = q.rows.get('notify') ?? new Map<string, number>();
    const byNum = this.byNum(q);
    const charged = (b: Booking) =>
      this.didRun(b.id, 'pay', 'action') && !this.didRun(b.id, 'pay', 'compensate');
    const ticket = (b: Booking) => tickets.get(`ticket:${b.num}`) ?? 0;
    for (const [key, holder] of seats) {
      if (!key.startsWith('seat:') || holder === 0) continue;
      const b = byNum.get(holder);
      if (b === undefined || `seat:${b.seat}` !== key) {
        this.flag('seat', '*', `${key} holds ${holder}, which is no booking of that seat`);
      } else if (!this.exempt(b.id) && !(charged(b) && ticket(b) === 1)) {
        this.flag('seat', b.id, `${key} held without a paid ticket`);
      }
    }
    for (const b of q.bookings.values()) {
      if (this.exempt(b.id)) continue;
      const t = ticket(b);
      const held = (seats.get(`seat:${b.seat}`) ?? 0) === b.num;
      if (t !== 0 && t !== 1) this.flag('ticket', b.id, `ticket row is ${t}`);
      if (charged(b) && t !== 1) this.flag('charge', b.id, 'charged without a ticket or a refund');
      if (t === 1 && !(held && charged(b)))
        this.flag('ticket', b.id, 'ticket issued without its seat and payment');
      const outcome = this.outcomes.get(b.id);
      if (outcome === 'completed') {
        if (!(held && charged(b) && t === 1 && (notices.get(`notice:${b.num}`) ?? 0) >= 1)) {
          this.flag(
            'outcome',
            b.id,
            'reported completed, but the seat, payment, ticket or notice is missing',
          );
        }
      } else if (held || charged(b) || t !== 0) {
        const what = this.begun.has(b.id) ? `reported ${outcome ?? 'nothing'}` : 'never began';
        this.flag('outcome', b.id, `${what}, but holds its seat, payment or ticket`);
      }
    }
  }

  /** The confirm checker at quiescence: a transaction decided confirm with every try run is all confirm. */
  private finishConfirmed(): void {
    for (const [txn, decision] of this.decisions) {
      const branches = this.tccBranches.get(txn) ?? [];
      // One whose tries did not all run was flagged as its confirm left.
      if (decision !== 'confirm' || !branches.every((b) => this.didRun(txn, b, 'try'))) continue;
      const cancelled = branches.filter((b) => this.undone.has(`${txn}|${b}`));
      const outcome = this.outcomes.get(txn);
      const unconfirmed = branches.filter((b) => !this.didRun(txn, b, 'confirm'));
      if (cancelled.length > 0) {
        this.flag(
          'confirm',
          txn,
          `decided confirm with every try run, but ${cancelled.join(', ')} cancelled`,
        );
      } else if (outcome === 'compensated') {
        this.flag('confirm', txn, 'decided confirm with every try run, but reported compensated');
      } else if (outcome === 'completed' && unconfirmed.length > 0) {
        this.flag('confirm', txn, `reported completed, but ${unconfirmed.join(', ')} never confirmed`);
      }
    }
  }

  private finishTcc(q: Quiescence): void {
    this.finishConfirmed();
    const seats = q.rows.get('seats') ?? new Map<string, number>();
    const payments = q.rows.get('payments') ?? new Map<string, number>();
    const tickets = q.rows.get('tickets') ?? new Map<string, number>();
    const byNum = this.byNum(q);
    const captured = (b: Booking) => this.didRun(b.id, 'pay', 'confirm');
    const frozen = (b: Booking) =>
      this.didRun(b.id, 'pay', 'try') && !captured(b) && !this.didRun(b.id, 'pay', 'cancel');
    const ticket = (b: Booking) => tickets.get(`ticket:${b.num}`) ?? 0;
    const draft = (b: Booking) => tickets.get(`draft:${b.num}`) ?? 0;
    for (const [key, holder] of seats) {
      if (!key.startsWith('seat:') || holder === 0) continue;
      const b = byNum.get(holder);
      const seat = key.slice('seat:'.length);
      if (b === undefined || String(b.seat) !== seat) {
        this.flag('seat', '*', `${key} holds ${holder}, which is no booking of that seat`);
      } else if (
        !this.exempt(b.id) &&
        !((seats.get(`sold:${seat}`) ?? 0) === b.num && captured(b) && ticket(b) === 1)
      ) {
        this.flag('seat', b.id, `${key} held without a paid ticket`);
      }
    }
    for (const [key, v] of seats) {
      if (!key.startsWith('sold:') || v === 0) continue;
      const seat = key.slice('sold:'.length);
      if ((seats.get(`seat:${seat}`) ?? 0) !== v)
        this.flag('seat', '*', `${key} sold to ${v}, held by another`);
    }
    for (const [key, v] of payments) {
      if (key.startsWith('frozen:') && v < 0) this.flag('charge', '*', `${key} is ${v}`);
    }
    for (const b of q.bookings.values()) {
      if (this.exempt(b.id)) continue;
      const t = ticket(b);
      if (frozen(b)) this.flag('charge', b.id, 'amount still frozen: neither captured nor released');
      if (captured(b) && t !== 1) this.flag('charge', b.id, 'captured without a ticket');
      if (draft(b) !== 0) this.flag('ticket', b.id, `draft row is ${draft(b)}: neither issued nor voided`);
      if (t !== 0 && t !== 1) this.flag('ticket', b.id, `ticket row is ${t}`);
      const sold = (seats.get(`sold:${b.seat}`) ?? 0) === b.num;
      const held = (seats.get(`seat:${b.seat}`) ?? 0) === b.num;
      const outcome = this.outcomes.get(b.id);
      if (outcome === 'completed') {
        if (!(held && sold && captured(b) && t === 1)) {
          this.flag('outcome', b.id, 'reported completed, but the seat, payment or ticket is missing');
        }
      } else if (held || sold || captured(b) || t !== 0) {
        const what = this.begun.has(b.id) ? `reported ${outcome ?? 'nothing'}` : 'never began';
        this.flag('outcome', b.id, `${what}, but holds its seat, payment or ticket`);
      }
    }
  }
}
