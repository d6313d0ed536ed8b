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
import type { AcceptorState } from './acceptor.ts';
import type { CandidateState } from './leader.ts';
import type { Ballot, PcValue } from './types.ts';

interface Parts {
  acceptor: AcceptorState | null;
  candidate: CandidateState | null;
}

function partsOf(state: unknown): Parts {
  const s = state as {
    kind?: string;
    acceptor?: AcceptorState | null;
    candidate?: CandidateState | null;
  } | null;
  if (s === null || typeof s !== 'object') return { acceptor: null, candidate: null };
  if (s.kind === 'node') return { acceptor: s.acceptor ?? null, candidate: s.candidate ?? null };
  if (s.kind === 'acceptor') return { acceptor: state as AcceptorState, candidate: null };
  if (s.kind === 'candidate') return { acceptor: null, candidate: state as CandidateState };
  return { acceptor: null, candidate: null };
}

/**
 * Checks the Paxos Commit invariants over the states of every live node (any
 * mix of RM, acceptor, candidate and composite states; others are ignored).
 * With `txn`, only that transaction's instances are checked (cheap enough to
 * run after every step). Returns one line per violation; empty when all hold.
 */
export function paxosInvariants(states: Iterable<unknown>, txn?: TxnId): string[] {
  const out: string[] = [];
  const acceptors: AcceptorState[] = [];
  const candidates: CandidateState[] = [];
  for (const s of states) {
    const p = partsOf(s);
    if (p.acceptor !== null) acceptors.push(p.acceptor);
    if (p.candidate !== null) candidates.push(p.candidate);
  }
  const txns = txn !== undefined ? [txn] : [...new Set(acceptors.flatMap((a) => [...a.txns.keys()]))];
  const F = acceptors[0]?.config.F ?? candidates[0]?.config.F ?? 0;

  // Acceptors: local shape, one value per ballot, stickiness of the chosen value.
  const chosenByAcceptors = new Map<string, PcValue>();
  for (const id of txns) {
    const byIns = new Map<NodeId, Array<{ acc: NodeId; bal: Ballot; val: PcValue | 'none' }>>();
    for (const a of acceptors) {
      for (const [ins, st] of a.txns.get(id)?.instances ?? []) {
        if (st.bal > st.mbal) out.push(`${a.self} ${id}/${ins}: bal ${st.bal} > mbal ${st.mbal}`);
        if ((st.val === 'none') !== (st.bal === -1))
          out.push(`${a.self} ${id}/${ins}: val ${st.val} with bal ${st.bal}`);
        let list = byIns.get(ins);
        if (list === undefined) byIns.set(ins, (list = []));
        list.push({ acc: a.self, bal: st.bal, val: st.val });
      }
    }
    for (const [ins, list] of byIns) {
      const perBallot = new Map<Ballot, { vals: Set<PcValue>; count: number }>();
      for (const { bal, val } of list) {
        if (bal < 0 || val === 'none') continue;
        let b = perBallot.get(bal);
        if (b === undefined) perBallot.set(bal, (b = { vals: new Set(), count: 0 }));
        b.vals.add(val);
        b.count++;
      }
      const chosen: Array<{ bal: Ballot; val: PcValue }> = [];
      for (const [bal, b] of perBallot) {
        if (b.vals.size > 1)
          out.push(`${id}/${ins}: ballot ${bal} accepted with ${[...b.vals].join(' and ')}`);
        if (b.count >= F + 1 && b.vals.size === 1) chosen.push({ bal, val: [...b.vals][0]! });
      }
      if (new Set(chosen.map((c) => c.val)).size > 1) out.push(`${id}/${ins}: two values chosen`);
      for (const c of chosen) {
        chosenByAcceptors.set(`${id}|${ins}`, c.val);
        for (const e of list) {
          if (e.bal >= c.bal && e.val !== c.val) {
            out.push(
              `${id}/${ins}: ${c.val} chosen in ballot ${c.bal} but ${e.acc} accepted ${e.val} in ${e.bal}`,
            );
          }
        }
      }
    }
  }

  // Candidates: own ballots, one phase 2a per (instance, ballot) across all of
  // them, learned values and decisions that agree.
  const proposals = new Map<string, PcValue>();
  const learned = new Map<string, PcValue>();
  const decisions = new Map<TxnId, Outcome>();
  for (const c of candidates) {
    const n = c.config.candidates.length;
    // With one transaction to check, look it up rather than walk them all:
    // this runs after every simulated step.
    const txnsToCheck =
      txn === undefined ? c.txns : new Map(c.txns.has(txn) ? [[txn, c.txns.get(txn)!] as const] : []);
    for (const [id, t] of txnsToCheck) {
      for (const [ins, byBallot] of t.proposed) {
        for (const [bal, val] of byBallot) {
          if (bal <= 0 || bal % n !== c.index)
            out.push(`${c.self} ${id}/${ins}: proposed in ballot ${bal}, not its own`);
          const key = `${id}|${ins}|${bal}`;
          const prev = proposals.get(key);
          if (prev !== undefined && prev !== val) out.push(`${id}/${ins}: two phase 2a in ballot ${bal}`);
          proposals.set(key, val);
        }
      }
      for (const [ins, val] of t.learner.chosen) {
        const key = `${id}|${ins}`;
        const prev = learned.get(key) ?? chosenByAcceptors.get(key);
        if (prev !== undefined && prev !== val)
          out.push(`${id}/${ins}: ${c.self} learned ${val}, elsewhere ${prev}`);
        learned.set(key, val);
      }
    }
    const decidedToCheck =
      txn === undefined
        ? c.decided
        : new Map(c.decided.has(txn) ? [[txn, c.decided.get(txn)!] as const] : []);
    for (const [id, outcome] of decidedToCheck) {
      const prev = decisions.get(id);
      if (prev !== undefined && prev !== outcome) out.push(`${id}: decided ${prev} and ${outcome}`);
      decisions.set(id, outcome);
    }
  }
  return out;
}
