// Reads in the branch world: auditors that read every account of every bank
// while transfers run as sagas or TCC transactions (./bank-audit.ts), and the
// bookkeeping that says what they saw. Outside the protocols: fed each local
// transaction a service made durable, each outcome the orchestrator reported,
// and each read an auditor made.
//
// A read is what a service reading its own database gets (`plain`, the only
// read mode of sagas and TCC): the bank's committed (durable) rows, at the
// moment the read reaches the bank, without a lock. An audit reads the banks
// one after the other, a network round trip each, and a bank that is down
// fails the audit (the auditor tries again later). Under the semantic lock an
// audit that meets a pending flag is given up too and tried again: that is
// how a reader respects the lock.
//
// What is counted:
// - inconsistent audits: the audit's total of every balance (and frozen
//   amount) is not the conserved total, neither as it was when the audit
//   started nor when it ended (a lost update moves the conserved total; see
//   `driftTotal`);
// - dirty reads: (audit, transfer) pairs where the audit read a value written
//   by a step of a transfer that was later compensated (TCC: cancelled);
// - lost updates: steps of other transfers whose effect a compensation
//   erased by putting back its undo image.
// And a history in Jepsen's list-append form (../../history): every transfer
// is one transaction appending its number to each account it changes (TCC's
// confirm appends a second element where it changes a row again); an account's
// list is the elements of the steps whose effect the row holds, in the order
// they were applied: a compensation takes its own out, an undo image put back
// restores the list as it was. An audit is a transaction reading every list.
// Completed transfers are `ok`, compensated ones `fail`, stuck ones `info`.
// The history checker then names what the reads show: G1a for a dirty read,
// G1b for a read between a TCC try and its confirm, G-single for a transfer
// seen on one bank only, incompatible-order where an undo image was put back.

import { checkHistoryOps } from '../../history/check.ts';
import type { ServiceRecord } from '../../protocol/branch/service.ts';
import type { SagaOutcome } from '../../protocol/branch/types.ts';
import type { Prng } from '../prng.ts';
import {
  accountKey,
  type BankAuditWorkload,
  type Countermeasure,
  frozenKey,
  lockKey,
  type Transfer,
} from './bank-audit.ts';

// Read modes are the shared contract's (../isolation.ts); sagas and TCC take `plain` only (their branches lock nothing).
export { type ReadMode, readModes } from '../isolation.ts';

/** Why `reads` cannot run with a saga or TCC, or null. */
export function branchReadsProblem(protocol: string, reads: string): string | null {
  if (reads === 'plain') return null;
  return `${protocol} offers plain reads only: a saga's or TCC's branches commit on their own, so there is no ${reads} read across them (see docs/isolation.md)`;
}

/** What the isolation workload measured, as `dtx sim --json` prints it under `isolation`. */
export interface BranchIsolationReport {
  reads: 'plain';
  countermeasure: Countermeasure | null;
  audits: number;
  inconsistentAudits: number;
  /** Audits given up (a bank down, or a pending flag under the semantic lock) and tried again. */
  auditsRetried: number;
  dirtyReads: number;
  lostUpdates: number;
  /** What the history checker found in the recorded history (serializable, list-append). */
  anomalyTypes: string[];
}

type MicroOp = [string, string, number | number[] | null];
export interface HistoryOp {
  index: number;
  process: string;
  type: 'invoke' | 'ok' | 'fail' | 'info';
  value: MicroOp[];
}

/** What the tracker needs of the world. */
export interface AuditPort {
  rng: Prng;
  now(): number;
  at(time: number, run: () => void): void;
  /** One way across the network (half a round trip plus jitter). */
  hopMs(): number;
  isUp(service: string): boolean;
  /** Transfers are still being started (the safety phase): auditors keep going. */
  running(): boolean;
}

const elementsPerTransfer = 4;
const elementOf = (num: number, confirm: boolean) => num * elementsPerTransfer + (confirm ? 1 : 0);
const transferOf = (element: number) => Math.floor(element / elementsPerTransfer);

export class BranchIsolation {
  readonly history: HistoryOp[] = [];
  audits = 0;
  inconsistentAudits = 0;
  auditsRetried = 0;
  lostUpdates = 0;
  /** Every audit begun, the retried ones too: names an audit in `seenOpen`. */
  private auditSeq = 0;
  /** Conserved total minus the initial one: what lost updates created or destroyed. */
  driftTotal = 0;
  private readonly images = new Map<string, Map<string, number>>();
  private readonly lists = new Map<string, number[]>();
  private readonly audited: ReadonlySet<string>;
  private readonly transfers = new Map<string, Transfer>();
  private readonly outcomes = new Map<number, SagaOutcome>();
  /** `audit:transfer` pairs: the audit saw a step of the transfer before the transfer finished. */
  private readonly seenOpen = new Set<string>();
  /** `txn|service|key` → the list before the transfer's step, and the step's delta (undo images only). */
  private readonly before = new Map<string, { list: number[]; delta: number }>();
  private readonly byValue: boolean;
  private readonly locking: boolean;
  private readonly initialTotal: number;

  private readonly auditsMax: number;

  constructor(
    private readonly kind: 'saga' | 'tcc',
    private readonly workload: BankAuditWorkload,
    private readonly port: AuditPort,
    txns: number,
  ) {
    this.auditsMax = Math.ceil(txns * workload.options.auditsPerTransferMax);
    const cm = workload.options.countermeasure;
    this.byValue = kind === 'saga' && cm !== 'commutative';
    this.locking = kind === 'saga' && cm === 'semantic-lock';
    this.audited = new Set(workload.auditedKeys(kind));
    let total = 0;
    for (const service of workload.services) {
      const rows = new Map(workload.serviceConfig(kind, service).initialRows);
      this.images.set(service, rows);
      total += workload.conservedTotal(rows);
    }
    this.initialTotal = total;
  }

  private listOf(service: string, key: string): number[] {
    const id = `${service}/${key}`;
    let list = this.lists.get(id);
    if (list === undefined) this.lists.set(id, (list = []));
    return list;
  }

  private append(value: MicroOp[], type: HistoryOp['type'], process: string): void {
    this.history.push({ index: this.history.length, process, type, value });
  }

  // ----------------------------------------------------------- transfers

  /** The appends transfer `t` makes, in the order the history names them. */
  private appendsOf(t: Transfer): MicroOp[] {
    const from = (key: string) => `${t.fromBank}/${key}`;
    const to = (key: string) => `${t.toBank}/${key}`;
    if (this.kind === 'saga')
      return [
        ['append', from(accountKey(t.from)), elementOf(t.num, false)],
        ['append', to(accountKey(t.to)), elementOf(t.num, false)],
      ];
    return [
      ['append', from(accountKey(t.from)), elementOf(t.num, false)],
      ['append', from(frozenKey(t.from)), elementOf(t.num, false)],
      ['append', from(frozenKey(t.from)), elementOf(t.num, true)],
      ['append', to(accountKey(t.to)), elementOf(t.num, true)],
    ];
  }

  /** The client sent transfer `t` to the orchestrator. */
  invoked(t: Transfer): void {
    this.transfers.set(t.id, t);
    this.append(this.appendsOf(t), 'invoke', t.id);
  }

  /** The orchestrator reported `outcome` for `txn` (the first report counts). */
  reported(txn: string, outcome: SagaOutcome): void {
    const t = this.transfers.get(txn);
    if (t === undefined || this.outcomes.has(t.num)) return;
    this.outcomes.set(t.num, outcome);
    const type =
      outcome === 'completed' ? 'ok' : outcome === 'compensated' || outcome === 'rejected' ? 'fail' : 'info';
    this.append(this.appendsOf(t), type, t.id);
  }

  /** `service` made local transaction `r` durable. */
  durable(service: string, r: ServiceRecord): void {
    if (r.kind !== 'applied') return;
    const t = this.transfers.get(r.txn);
    const image = this.images.get(service)!;
    const undoing = r.op === 'compensate' || r.op === 'cancel';
    for (const w of r.writes) {
      const before = image.get(w.key) ?? 0;
      image.set(w.key, before + w.delta);
      if (t === undefined || !this.audited.has(w.key)) continue;
      const list = this.listOf(service, w.key);
      const id = `${r.txn}|${service}|${w.key}`;
      if (!undoing) {
        if (this.byValue) this.before.set(id, { list: [...list], delta: w.delta });
        list.push(elementOf(t.num, r.op === 'confirm'));
      } else if (this.byValue) this.putBack(id, list, t.num, w.delta);
      else this.takeOut(list, t.num);
    }
  }

  /** An undo image put back: the row, and so its list, is as before the step; whatever came after is lost. */
  private putBack(id: string, list: number[], num: number, delta: number): void {
    const saved = this.before.get(id);
    if (saved === undefined) return;
    this.before.delete(id);
    const kept = new Set(saved.list);
    for (const e of list) if (transferOf(e) !== num && !kept.has(e)) this.lostUpdates++;
    list.length = 0;
    list.push(...saved.list);
    // An exact inverse would have written -saved.delta.
    this.driftTotal += delta + saved.delta;
  }

  private takeOut(list: number[], num: number): void {
    for (let i = list.length - 1; i >= 0; i--) if (transferOf(list[i]!) === num) list.splice(i, 1);
  }

  // -------------------------------------------------------------- audits

  /** Starts the auditors; each stops once transfers are no longer being started. */
  start(): void {
    const n = this.workload.options.auditors;
    for (let i = 0; i < n; i++) this.port.at(0, () => this.audit(`audit${i}`));
  }

  private pause(auditor: string): void {
    if (!this.port.running()) return;
    const think = this.workload.options.auditThinkMs;
    this.port.at(this.port.now() + this.port.rng.exp(think), () => this.audit(auditor));
  }

  private audit(auditor: string): void {
    if (!this.port.running() || this.auditSeq >= this.auditsMax) return;
    const id = ++this.auditSeq;
    const services = [...this.workload.services];
    // A random order per audit: readers do not agree on one.
    for (let i = services.length - 1; i > 0; i--) {
      const j = this.port.rng.int(i + 1);
      [services[i], services[j]] = [services[j]!, services[i]!];
    }
    const keys = [...this.audited];
    const reads: MicroOp[] = services.flatMap((s) => keys.map((k): MicroOp => ['r', `${s}/${k}`, null]));
    this.append(reads, 'invoke', auditor);
    const expectedAtStart = this.initialTotal + this.driftTotal;
    const values: MicroOp[] = [];
    let total = 0;
    const readBank = (i: number): void => {
      if (i === services.length) return this.port.at(this.port.now() + this.port.hopMs(), finish);
      this.port.at(this.port.now() + this.port.hopMs(), () => {
        const s = services[i]!;
        const image = this.images.get(s)!;
        if (!this.port.isUp(s) || (this.locking && this.pending(image))) return giveUp();
        for (const k of keys) {
          total += image.get(k) ?? 0;
          const list = [...this.listOf(s, k)];
          for (const e of list) {
            const num = transferOf(e);
            if (!this.outcomes.has(num)) this.seenOpen.add(`${id}:${num}`);
          }
          values.push(['r', `${s}/${k}`, list]);
        }
        readBank(i + 1);
      });
    };
    const giveUp = () => {
      this.auditsRetried++;
      this.append(reads, 'fail', auditor);
      this.pause(auditor);
    };
    const finish = () => {
      const expectedAtEnd = this.initialTotal + this.driftTotal;
      this.audits++;
      if (total !== expectedAtStart && total !== expectedAtEnd) this.inconsistentAudits++;
      this.append(values, 'ok', auditor);
      this.pause(auditor);
    };
    readBank(0);
  }

  /** A pending flag on any account of the bank (semantic lock). */
  private pending(image: ReadonlyMap<string, number>): boolean {
    for (let a = 0; a < this.workload.options.accountsPerBank; a++)
      if ((image.get(lockKey(a)) ?? 0) !== 0) return true;
    return false;
  }

  // -------------------------------------------------------------- report

  /** Dirty reads: the pairs whose transfer ended compensated. */
  dirtyReads(): number {
    let n = 0;
    for (const pair of this.seenOpen) {
      const outcome = this.outcomes.get(Number(pair.slice(pair.indexOf(':') + 1)));
      if (outcome === 'compensated') n++;
    }
    return n;
  }

  report(): BranchIsolationReport {
    const checked = checkHistoryOps(this.history, 'sim', {
      model: 'list-append',
      consistency: 'serializable',
    });
    return {
      reads: 'plain',
      countermeasure: this.kind === 'saga' ? this.workload.options.countermeasure : null,
      audits: this.audits,
      inconsistentAudits: this.inconsistentAudits,
      auditsRetried: this.auditsRetried,
      dirtyReads: this.dirtyReads(),
      lostUpdates: this.lostUpdates,
      anomalyTypes: checked.anomalyTypes,
    };
  }

  /** The conserved total the banks must hold at quiescence: the initial one moved by lost updates. */
  expectedTotal(): number {
    return this.initialTotal + this.driftTotal;
  }

  /** The history as Jepsen's JSON, one op per line. */
  historyText(): string {
    return this.history.map((op) => JSON.stringify(op)).join('\n') + (this.history.length > 0 ? '\n' : '');
  }
}

/**
 * A countermeasure that lets through the anomaly it is there to remove is a
 * violation: the semantic lock forbids dirty reads and lost updates, the
 * commutative updates lost updates. `flag` is the checkers' (./checkers.ts).
 */
export function countermeasureViolations(
  r: BranchIsolationReport,
  flag: (checker: 'countermeasure', txn: string, detail: string) => void,
): void {
  if (r.countermeasure === 'semantic-lock' && r.dirtyReads > 0)
    flag('countermeasure', '*', `${r.dirtyReads} dirty read(s) under the semantic lock`);
  if ((r.countermeasure === 'semantic-lock' || r.countermeasure === 'commutative') && r.lostUpdates > 0)
    flag('countermeasure', '*', `${r.lostUpdates} lost update(s) under ${r.countermeasure}`);
}
