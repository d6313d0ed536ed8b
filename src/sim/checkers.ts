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
// - client outcome, both ways: a client told `aborted` never sees any
//   participant commit (checked whenever either is observed, in either order),
//   and a client told `committed` sees every participant commit (checked at
//   the end, as a participant may apply the commit after the client is told);
// - liveness (at the end): every transaction final once faults stopped;
// - isolation (reading workloads, with locking or snapshot reads): no audit
//   saw a wrong total, and the run's history has no anomaly;
// - chosen (consensus protocols): at most one value is ever chosen per
//   instance. Every vote an acceptor sends is kept for the whole run — also
//   after the acceptor crashed or overwrote it — and a value counts as chosen
//   once a quorum voted for it in one ballot, so a choice that no live
//   acceptor remembers still counts.
// Conservation is judged by the run at quiescence, from the rows themselves.
//
// For a non-atomic protocol (naive commit) a mixed outcome is its expected
// result: it is counted as `partial`, and the other checkers are not applied.

import type { NodeId, Outcome } from '../protocol/common/types.ts';

export type ObservedState = 'working' | 'prepared' | 'committed' | 'aborted' | 'left';

export interface Violation {
  checker:
    | 'atomicity'
    | 'validity'
    | 'stability'
    | 'durability'
    | 'outcome'
    | 'conservation'
    | 'liveness'
    | 'invariant'
    | 'chosen'
    | 'isolation';
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

/** Observed states, coded small: a run keeps one byte per participant per transaction. */
const stateNames = [undefined, 'working', 'prepared', 'committed', 'aborted', 'left'] as const;
const stateCode: Record<ObservedState, number> = {
  working: 1,
  prepared: 2,
  committed: 3,
  aborted: 4,
  left: 5,
};
const outcomeNames = [undefined, 'committed', 'aborted', 'partial'] as const;
const outcomeCode: Record<Outcome, number> = { committed: 1, aborted: 2, partial: 3 };

interface TxnRecord {
  participants: readonly NodeId[];
  /** stateCode per participant, in `participants` order; 0 = never started. */
  states: number[];
  outcome: number;
}

/** An acceptor's vote: it accepted `value` in `ballot` for one instance (a consensus protocol's phase 2b). */
export interface Vote {
  txn: string;
  instance: string;
  ballot: number;
  value: string;
}

export class Checkers {
  readonly violations: Violation[] = [];
  violationCount = 0;
  private readonly txns = new Map<string, TxnRecord>();
  /** `txn/instance` → ballot → value → the acceptors that ever voted for it. */
  private readonly votes = new Map<string, Map<number, Map<string, Set<NodeId>>>>();
  /** `txn/instance` → the value first chosen, and in which ballot. */
  private readonly chosen = new Map<string, { value: string; ballot: number }>();

  /** `quorum`: how many acceptors' votes in one ballot choose a value (consensus protocols only). */
  constructor(
    private readonly atomic: boolean,
    private readonly quorum = Infinity,
  ) {}

  private flag(checker: Violation['checker'], txn: string, detail: string): void {
    this.violationCount++;
    if (this.violations.length < violationsKeptMax) this.violations.push({ checker, txn, detail });
  }

  register(txn: string, participants: readonly NodeId[]): void {
    this.txns.set(txn, { participants, states: new Array<number>(participants.length).fill(0), outcome: 0 });
  }

  rm(txn: string, node: NodeId, state: ObservedState): void {
    const t = this.txns.get(txn);
    const i = t === undefined ? -1 : t.participants.indexOf(node);
    if (t === undefined || i < 0) {
      if (this.atomic)
        this.flag('validity', txn, `${node} reports ${state} for a transaction it is not part of`);
      return;
    }
    const prev = stateNames[t.states[i]!];
    t.states[i] = stateCode[state];
    if (!this.atomic) return;
    if ((prev === 'committed' || prev === 'aborted' || prev === 'left') && state !== prev) {
      this.flag('stability', txn, `${node} went from ${prev} to ${state}`);
    }
    if (state === 'committed') {
      for (let k = 0; k < t.participants.length; k++) {
        const s = stateNames[t.states[k]!];
        if (s !== 'prepared' && s !== 'committed' && s !== 'left') {
          this.flag(
            'validity',
            txn,
            `${node} committed while ${t.participants[k]} was ${s ?? 'never started'}`,
          );
        }
      }
    }
    if (state === 'committed' && t.outcome === outcomeCode.aborted) {
      this.flag('outcome', txn, `${node} committed after the client was told aborted`);
    }
    if (state === 'committed' || state === 'aborted') {
      const other = stateCode[state === 'committed' ? 'aborted' : 'committed'];
      for (let k = 0; k < t.participants.length; k++) {
        if (t.states[k] === other) {
          this.flag('atomicity', txn, `${node} ${state} while ${t.participants[k]} ${stateNames[other]}`);
        }
      }
    }
  }

  outcome(txn: string, outcome: Outcome): void {
    const t = this.txns.get(txn);
    if (t === undefined) return;
    const prev = outcomeNames[t.outcome];
    if (this.atomic && prev !== undefined && prev !== outcome) {
      this.flag('stability', txn, `outcome reported as ${prev}, then as ${outcome}`);
    }
    t.outcome = outcomeCode[outcome];
    if (this.atomic && outcome === 'aborted') {
      for (let k = 0; k < t.participants.length; k++) {
        if (t.states[k] === stateCode.committed) {
          this.flag('outcome', txn, `client told aborted while ${t.participants[k]} had committed`);
        }
      }
    }
  }

  /**
   * A participant restarted and considers `inDoubt` undecided. Forgetting a
   * commit is a durability failure. Forgetting an abort is not: presumed abort
   * writes `aborted` lazily, and a participant that lost it asks again and is
   * told ABORT again (were it told COMMIT, the stability checker would see it).
   */
  recovered(node: NodeId, inDoubt: Iterable<string>): void {
    if (!this.atomic) return;
    for (const txn of inDoubt) {
      const t = this.txns.get(txn);
      const i = t?.participants.indexOf(node) ?? -1;
      if (t !== undefined && i >= 0 && t.states[i] === stateCode.committed) {
        this.flag('durability', txn, `${node} recovered in doubt about a transaction it had committed`);
      }
    }
  }

  /**
   * Whether some participant of `txn` has not applied an outcome yet
   * (working, prepared, or never started); false for a transaction not registered.
   */
  unfinished(txn: string): boolean {
    const t = this.txns.get(txn);
    if (t === undefined) return false;
    return t.states.some((code) => code === 0 || code === stateCode.working || code === stateCode.prepared);
  }

  /** Reads that promise serializability saw what no serial order shows (an atomic protocol only). */
  isolation(txn: string, detail: string): void {
    if (this.atomic) this.flag('isolation', txn, detail);
  }

  /** A protocol's own invariant broke (reported by the protocol's invariant function, e.g. Paxos acceptors). */
  invariant(txn: string, detail: string): void {
    this.flag('invariant', txn, detail);
  }

  /** `acceptor` sent vote `v`; flags a second value chosen for the same instance. */
  voted(acceptor: NodeId, v: Vote): void {
    const key = `${v.txn}/${v.instance}`;
    let byBallot = this.votes.get(key);
    if (byBallot === undefined) this.votes.set(key, (byBallot = new Map()));
    let byValue = byBallot.get(v.ballot);
    if (byValue === undefined) byBallot.set(v.ballot, (byValue = new Map()));
    let voters = byValue.get(v.value);
    if (voters === undefined) byValue.set(v.value, (voters = new Set()));
    if (voters.has(acceptor)) return;
    voters.add(acceptor);
    if (voters.size !== this.quorum) return;
    const first = this.chosen.get(key);
    if (first === undefined) this.chosen.set(key, { value: v.value, ballot: v.ballot });
    else if (first.value !== v.value) {
      this.flag(
        'chosen',
        v.txn,
        `${key}: ${v.value} chosen in ballot ${v.ballot}, after ${first.value} was chosen in ballot ${first.ballot}`,
      );
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
    for (const [txn, t] of this.txns) {
      let committed = 0;
      let aborted = 0;
      let open = 0;
      for (const code of t.states) {
        if (code === stateCode.committed) committed++;
        else if (code === stateCode.working || code === stateCode.prepared) open++;
        else if (code === stateCode.aborted || code === 0) aborted++;
      }
      if (open > 0) {
        c.undecided++;
        if (c.undecidedTxns.length < violationsKeptMax) c.undecidedTxns.push(txn);
        if (this.atomic)
          this.flag('liveness', txn, `${open} participant(s) still undecided after faults healed`);
      } else if (committed > 0 && aborted > 0) c.partial++;
      else if (committed > 0) c.committed++;
      // Every participant left read-only: nothing was applied, and the outcome is what the client was told.
      else if (aborted === 0 && t.outcome === outcomeCode.committed) c.committed++;
      else c.aborted++;
      if (this.atomic && t.outcome === outcomeCode.committed && aborted > 0) {
        // Reported under `validity` since before the `outcome` checker existed; kept so reports stay comparable.
        this.flag('validity', txn, 'client was told committed but a participant did not commit');
      }
    }
    return c;
  }
}
