// The checkers: code the protocols never import, fed every state change the
// simulator observes. They judge what happened to data, not what a protocol
// believes: a participant counts as prepared when its prepared record is
// durable, and as committed or aborted when its resource manager applied or
// discarded the work.
//
// - atomicity: never one participant committed and another aborted (TCConsistent);
// - validity: a participant commits only when every participant of the
//   transaction is prepared or committed, and nothing leaves `aborted` — the
//   refinement condition of Lamport's TCommit spec (PROTOCOLS.md §1);
// - decision stability: the outcome reported for a transaction never changes,
//   and a participant's final state never flips;
// - durability: a participant that committed never recovers (after a crash)
//   as undecided about it;
// - liveness (at the end): every transaction final once faults stopped.
// Conservation is judged by the run at quiescence, from the rows themselves.
//
// For a non-atomic protocol (naive commit) a mixed outcome is its expected
// result: it is counted as `partial`, and the other checkers are not applied.

import type { NodeId, Outcome } from '../protocol/common/types.ts';

export type ObservedState = 'working' | 'prepared' | 'committed' | 'aborted' | 'left';

export interface Violation {
  checker: 'atomicity' | 'validity' | 'stability' | 'durability' | 'conservation' | 'liveness';
  txn: string;
  detail: string;
}

/** Reports keep this many violations in full; the count covers all of them. */
const violationsKeptMax = 50;

export interface Classification {
  committed: number;
  aborted: number;
  partial: number;
  undecided: number;
  undecidedTxns: string[];
}

export class Checkers {
  readonly violations: Violation[] = [];
  violationCount = 0;
  private readonly participants = new Map<string, readonly NodeId[]>();
  private readonly states = new Map<string, Map<NodeId, ObservedState>>();
  private readonly outcomes = new Map<string, Outcome>();

  constructor(private readonly atomic: boolean) {}

  private flag(checker: Violation['checker'], txn: string, detail: string): void {
    this.violationCount++;
    if (this.violations.length < violationsKeptMax) this.violations.push({ checker, txn, detail });
  }

  register(txn: string, participants: readonly NodeId[]): void {
    this.participants.set(txn, participants);
  }

  rm(txn: string, node: NodeId, state: ObservedState): void {
    let m = this.states.get(txn);
    if (m === undefined) {
      m = new Map();
      this.states.set(txn, m);
    }
    const prev = m.get(node);
    m.set(node, state);
    if (!this.atomic) return;
    if ((prev === 'committed' || prev === 'aborted' || prev === 'left') && state !== prev) {
      this.flag('stability', txn, `${node} went from ${prev} to ${state}`);
    }
    if (state === 'committed') {
      for (const p of this.participants.get(txn) ?? []) {
        const s = m.get(p);
        if (s !== 'prepared' && s !== 'committed' && s !== 'left') {
          this.flag('validity', txn, `${node} committed while ${p} was ${s ?? 'never started'}`);
        }
      }
    }
    if (state === 'committed' || state === 'aborted') {
      const other = state === 'committed' ? 'aborted' : 'committed';
      for (const [p, s] of m) {
        if (s === other) this.flag('atomicity', txn, `${node} ${state} while ${p} ${s}`);
      }
    }
  }

  outcome(txn: string, outcome: Outcome): void {
    const prev = this.outcomes.get(txn);
    if (this.atomic && prev !== undefined && prev !== outcome) {
      this.flag('stability', txn, `outcome reported as ${prev}, then as ${outcome}`);
    }
    this.outcomes.set(txn, outcome);
  }

  /** A participant restarted and considers `inDoubt` undecided. */
  recovered(node: NodeId, inDoubt: Iterable<string>): void {
    if (!this.atomic) return;
    for (const txn of inDoubt) {
      const s = this.states.get(txn)?.get(node);
      if (s === 'committed' || s === 'aborted') {
        this.flag('durability', txn, `${node} recovered in doubt about a transaction it had ${s}`);
      }
    }
  }

  conservation(expected: number, actual: number): void {
    if (this.atomic && expected !== actual) {
      this.flag('conservation', '*', `total ${actual} at quiescence, expected ${expected}`);
    }
  }

  /** Classify every transaction at the end of the run; flags liveness and told-committed-but-not. */
  classify(): Classification {
    const c: Classification = { committed: 0, aborted: 0, partial: 0, undecided: 0, undecidedTxns: [] };
    for (const [txn, participants] of this.participants) {
      const m = this.states.get(txn);
      let committed = 0;
      let aborted = 0;
      let open = 0;
      for (const p of participants) {
        const s = m?.get(p);
        if (s === 'committed') committed++;
        else if (s === 'working' || s === 'prepared') open++;
        else if (s === 'aborted' || s === undefined) aborted++;
      }
      if (open > 0) {
        c.undecided++;
        if (c.undecidedTxns.length < violationsKeptMax) c.undecidedTxns.push(txn);
        if (this.atomic) this.flag('liveness', txn, `${open} participant(s) still undecided after faults healed`);
      } else if (committed > 0 && aborted > 0) c.partial++;
      else if (committed > 0) c.committed++;
      else c.aborted++;
      if (this.atomic && this.outcomes.get(txn) === 'committed' && aborted > 0) {
        this.flag('validity', txn, 'client was told committed but a participant did not commit');
      }
    }
    return c;
  }
}
