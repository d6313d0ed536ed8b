// The Paxos Commit invariants, as a pure check over a snapshot of node states
// (what a simulator or a test holds after every step). They are the facts the
// correctness proof of PaxosCommit.tla rests on:
//
// - per acceptor and instance: bal <= mbal, and val is 'none' exactly when
//   bal is -1 (PCTypeOK and the Phase1b/Phase2b actions);
// - at most one value per (instance, ballot), among acceptors and among
//   every leader's phase 2a (the spec's first conjunct of Phase2a);
// - every ballot a candidate proposed in is its own (ballot mod candidates =
//   its index, and > 0: ballot 0 is the RM's);
// - at most one chosen value per instance, and once v is chosen in ballot b,
//   every acceptor that accepted in a ballot >= b accepted v (what makes the
//   choice stick);
// - what candidates learned, and what they decided, agrees with each other.
//
// The acceptors' own step already asserts the first item; the rest needs
// every node at once, so it lives here.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import type { NodeId, Outcome, TxnId } from '../common/types.ts';
import type { AcceptorInstance, AcceptorState } from './acceptor.ts';
import type { CandidateState, LeaderTxn } from './leader.ts';
import type { Ballot, PcValue } from './types.ts';

/** Adds the acceptor and candidate parts of `state` (any mix of RM, acceptor, candidate and composite states). */
function collectParts(state: unknown, acceptors: AcceptorState[], candidates: CandidateState[]): void {
  const s = state as {
    kind?: string;
    acceptor?: AcceptorState | null;
    candidate?: CandidateState | null;
  } | null;
  if (s === null || typeof s !== 'object') return;
  if (s.kind === 'node') {
    if (s.acceptor) acceptors.push(s.acceptor);
    if (s.candidate) candidates.push(s.candidate);
  } else if (s.kind === 'acceptor') acceptors.push(state as AcceptorState);
  else if (s.kind === 'candidate') candidates.push(state as CandidateState);
}

/**
 * Checks the Paxos Commit invariants over the states of every live node (any
 * mix of RM, acceptor, candidate and composite states; others are ignored).
 * With `txn`, only that transaction's instances are checked (cheap enough to
 * run after every step). Returns one line per violation; empty when all hold.
 *
 * The simulator calls this after every step, so it walks the states in place
 * (a few acceptors, a few instances each) rather than building maps and sets
 * per instance and ballot: it allocates little when every invariant holds.
 */
export function paxosInvariants(states: Iterable<unknown>, txn?: TxnId): string[] {
  const out: string[] = [];
  const acceptors: AcceptorState[] = [];
  const candidates: CandidateState[] = [];
  for (const s of states) collectParts(s, acceptors, candidates);
  const txns = txn !== undefined ? [txn] : [...new Set(acceptors.flatMap((a) => [...a.txns.keys()]))];
  const F = acceptors[0]?.config.F ?? candidates[0]?.config.F ?? 0;

  // Acceptors: local shape, one value per ballot, stickiness of the chosen value.
  const chosenByAcceptors = new Map<string, PcValue>();
  for (const id of txns) checkAcceptors(acceptors, id, F, chosenByAcceptors, out);

  // Candidates: own ballots, one phase 2a per (instance, ballot) across all of
  // them, learned values and decisions that agree.
  const seen: CandidateSeen = { proposals: null, learned: null, decisions: null, chosenByAcceptors };
  for (const c of candidates) {
    if (txn === undefined) {
      for (const [id, t] of c.txns) checkCandidateTxn(c, id, t, seen, out);
      for (const [id, outcome] of c.decided) checkDecision(id, outcome, seen, out);
    } else {
      // With one transaction to check, look it up rather than walk them all.
      const t = c.txns.get(txn);
      if (t !== undefined) checkCandidateTxn(c, txn, t, seen, out);
      const outcome = c.decided.get(txn);
      if (outcome !== undefined) checkDecision(txn, outcome, seen, out);
    }
  }
  return out;
}

/** The acceptor invariants of transaction `id`; records each instance's chosen value in `chosen` (key `id|ins`). */
function checkAcceptors(
  acceptors: readonly AcceptorState[],
  id: TxnId,
  F: number,
  chosen: Map<string, PcValue>,
  out: string[],
): void {
  // This transaction's instances at each acceptor, in acceptor order.
  const held: Array<Map<NodeId, AcceptorInstance> | undefined> = [];
  for (const a of acceptors) {
    const instances = a.txns.get(id)?.instances;
    held.push(instances);
    if (instances === undefined) continue;
    for (const [ins, st] of instances) {
      if (st.bal > st.mbal) out.push(`${a.self} ${id}/${ins}: bal ${st.bal} > mbal ${st.mbal}`);
      if ((st.val === 'none') !== (st.bal === -1))
        out.push(`${a.self} ${id}/${ins}: val ${st.val} with bal ${st.bal}`);
    }
  }
  // Each instance once, in the order the acceptors first name it.
  const entries: AcceptorEntry[] = [];
  for (let i = 0; i < held.length; i++) {
    const instances = held[i];
    if (instances === undefined) continue;
    for (const ins of instances.keys()) {
      if (namedBefore(held, i, ins)) continue;
      entries.length = 0;
      for (let k = i; k < held.length; k++) {
        const st = held[k]?.get(ins);
        if (st !== undefined) entries.push({ acc: acceptors[k]!.self, bal: st.bal, val: st.val });
      }
      checkInstance(id, ins, entries, F, chosen, out);
    }
  }
}

interface AcceptorEntry {
  acc: NodeId;
  bal: Ballot;
  val: PcValue | 'none';
}

function namedBefore(
  held: ReadonlyArray<Map<NodeId, AcceptorInstance> | undefined>,
  i: number,
  ins: NodeId,
): boolean {
  for (let k = 0; k < i; k++) if (held[k]?.has(ins)) return true;
  return false;
}

/** An acceptor's vote counts once it accepted a value in a ballot. */
function accepted(e: AcceptorEntry): boolean {
  return e.bal >= 0 && e.val !== 'none';
}

/** `entries[i]` is the first acceptance in its ballot. */
function firstInBallot(entries: readonly AcceptorEntry[], i: number): boolean {
  const e = entries[i]!;
  if (!accepted(e)) return false;
  for (let k = 0; k < i; k++) if (accepted(entries[k]!) && entries[k]!.bal === e.bal) return false;
  return true;
}

/**
 * Instance `ins` of `id`: at most one value per ballot among the acceptors,
 * and once a value is chosen (F+1 acceptors accepted it in one ballot), every
 * acceptor that accepted in that ballot or a later one accepted it.
 */
function checkInstance(
  id: TxnId,
  ins: NodeId,
  entries: readonly AcceptorEntry[],
  F: number,
  chosenByAcceptors: Map<string, PcValue>,
  out: string[],
): void {
  let chosen: Array<{ bal: Ballot; val: PcValue }> | null = null;
  for (let i = 0; i < entries.length; i++) {
    if (!firstInBallot(entries, i)) continue;
    // Gather the ballot's values, in order, and count its acceptors.
    const bal = entries[i]!.bal;
    const val = entries[i]!.val as PcValue;
    let other: PcValue | null = null;
    let count = 0;
    for (let k = i; k < entries.length; k++) {
      const f = entries[k]!;
      if (!accepted(f) || f.bal !== bal) continue;
      count++;
      if (f.val !== val && other === null) other = f.val as PcValue;
    }
    if (other !== null) out.push(`${id}/${ins}: ballot ${bal} accepted with ${val} and ${other}`);
    else if (count >= F + 1) (chosen ??= []).push({ bal, val });
  }
  if (chosen === null) return;
  if (chosen.some((c) => c.val !== chosen[0]!.val)) out.push(`${id}/${ins}: two values chosen`);
  for (const c of chosen) {
    chosenByAcceptors.set(`${id}|${ins}`, c.val);
    for (const e of entries) {
      if (e.bal >= c.bal && e.val !== c.val)
        out.push(
          `${id}/${ins}: ${c.val} chosen in ballot ${c.bal} but ${e.acc} accepted ${e.val} in ${e.bal}`,
        );
    }
  }
}

/** What the candidates checked so far claimed, across all of them. */
interface CandidateSeen {
  // Made when first needed: most checks of one transaction fill few or none of them.
  /** `txn|ins|ballot` → the value proposed in that ballot (phase 2a). */
  proposals: Map<string, PcValue> | null;
  /** `txn|ins` → the value a candidate learned as chosen. */
  learned: Map<string, PcValue> | null;
  decisions: Map<TxnId, Outcome> | null;
  /** `txn|ins` → the value the acceptors chose. */
  chosenByAcceptors: ReadonlyMap<string, PcValue>;
}

function checkCandidateTxn(
  c: CandidateState,
  id: TxnId,
  t: LeaderTxn,
  seen: CandidateSeen,
  out: string[],
): void {
  const n = c.config.candidates.length;
  for (const [ins, byBallot] of t.proposed) {
    for (const [bal, val] of byBallot) {
      if (bal <= 0 || bal % n !== c.index)
        out.push(`${c.self} ${id}/${ins}: proposed in ballot ${bal}, not its own`);
      const key = `${id}|${ins}|${bal}`;
      const proposals = (seen.proposals ??= new Map());
      const prev = proposals.get(key);
      if (prev !== undefined && prev !== val) out.push(`${id}/${ins}: two phase 2a in ballot ${bal}`);
      proposals.set(key, val);
    }
  }
  for (const [ins, val] of t.learner.chosen) {
    const key = `${id}|${ins}`;
    const learned = (seen.learned ??= new Map());
    const prev = learned.get(key) ?? seen.chosenByAcceptors.get(key);
    if (prev !== undefined && prev !== val)
      out.push(`${id}/${ins}: ${c.self} learned ${val}, elsewhere ${prev}`);
    learned.set(key, val);
  }
}

function checkDecision(id: TxnId, outcome: Outcome, seen: CandidateSeen, out: string[]): void {
  const decisions = (seen.decisions ??= new Map());
  const prev = decisions.get(id);
  if (prev !== undefined && prev !== outcome) out.push(`${id}: decided ${prev} and ${outcome}`);
  decisions.set(id, outcome);
}
