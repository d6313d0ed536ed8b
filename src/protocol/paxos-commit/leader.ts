// The Paxos Commit leader and its would-be successors, the leader candidates
// (Gray & Lamport 2006, section "Paxos Commit"; PaxosCommit.tla's Phase1a, Phase2a and
// Decide actions, which "any process that believes itself to be the current
// leader" may take).
//
// Owns: the decision of the transactions it leads or recovers, and nothing
// durable but its ballot round. The leader takes the client's `begin`, sends
// PREPARE to the RMs and learns from the acceptors' phase 2b which value each
// instance chose; once every instance chose `prepared` it broadcasts COMMIT,
// once any chose `aborted` it broadcasts ABORT. The acceptors' records are
// the decision's durable form, so the leader writes nothing in the normal
// case and may forget a transaction as soon as it has decided it.
//
// Recovery: a candidate that is asked about a transaction it cannot answer
// (an in-doubt RM's INQUIRY), or the leader whose votes did not all arrive,
// runs phase 1 in a ballot of its own (ballot = round × candidates + index,
// round > 0, so that no two candidates share a ballot and no candidate's
// ballot is 0, the RMs' own) on every instance not known chosen, and in phase
// 2 proposes, per instance, the value of the highest-ballot phase 1b among
// F+1 promises, or `aborted` where none of them accepted anything. It forces
// its `round` before the phase 1a leaves, so that after a crash it never uses
// a ballot twice (the spec's "at most one phase 2a per (instance, ballot)",
// which this module also asserts). Several candidates recovering the same
// transaction at once are safe — that is Paxos — and at worst slow each other
// down; each gives up an attempt after `recoveryMs` (the leader retries it;
// the others wait for the next inquiry, which RMs send to candidates in turn).
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { assert, unreachable } from '../common/assert.ts';
import { limits } from '../common/limits.ts';
import type { Effect, Input, NodeId, Outcome, Role, StepResult, TxnId } from '../common/types.ts';
import { type Learner, learn, newLearner, outcomeOf } from './learner.ts';
import {
  type Ballot,
  defaultPaxosCommitConfig,
  noBallot,
  type PaxosCommitConfig,
  type PaxosCommitMsg,
  type PaxosCommitRecord,
  type PcValue,
  type Phase1bEntry,
  type Phase2aEntry,
  quorum,
} from './types.ts';

type Fx = Effect<PaxosCommitMsg, PaxosCommitRecord>;
type Msg<T extends PaxosCommitMsg['type']> = Extract<PaxosCommitMsg, { type: T }>;

export interface LeaderTxn {
  participants: NodeId[];
  client: NodeId | null;
  /** This candidate took the client's `begin`: it owns the normal case and retries until decided. */
  leading: boolean;
  phase: 'collecting' | 'recovering' | 'idle';
  /** Vote timer expiries so far: the first re-sends PREPARE, the next starts phase 1. */
  voteTimeouts: number;
  /** The ballot of the current phase 1, or -1. */
  ballot: Ballot;
  /** Phase 1b for `ballot`: per instance, per acceptor. */
  promises: Map<NodeId, Map<NodeId, Phase1bEntry>>;
  learner: Learner;
  /** Every phase 2a this candidate sent: per instance, per ballot, the value. */
  proposed: Map<NodeId, Map<Ballot, PcValue>>;
}

export interface CandidateState {
  kind: 'candidate';
  self: NodeId;
  config: PaxosCommitConfig;
  /** Position in `config.candidates`: this candidate's ballots are ≡ index (mod candidates). */
  index: number;
  /** Highest round used (and durable, or about to be). */
  round: number;
  /** Highest ballot seen in an acceptor's promise: the next round must exceed it. */
  maxSeen: Ballot;
  txns: Map<TxnId, LeaderTxn>;
  /** Recent decisions (oldest first), to answer inquiries without running Paxos again. */
  decided: Map<TxnId, Outcome>;
}

const voteTimer = (txn: TxnId) => `vote:${txn}`;
const recoverTimer = (txn: TxnId) => `recover:${txn}`;
const timerTxn = (timer: string) => timer.slice(timer.indexOf(':') + 1);

export const ballotOwner = (bal: Ballot, candidates: number): number => bal % candidates;

function newTxn(participants: NodeId[], client: NodeId | null, leading: boolean): LeaderTxn {
  return {
    participants,
    client,
    leading,
    phase: leading ? 'collecting' : 'idle',
    voteTimeouts: 0,
    ballot: noBallot,
    promises: new Map(),
    learner: newLearner(),
    proposed: new Map(),
  };
}

function decisionMsg(txn: TxnId, outcome: Outcome): PaxosCommitMsg {
  return outcome === 'committed' ? { type: 'COMMIT', txn } : { type: 'ABORT', txn };
}

function remember(state: CandidateState, txn: TxnId, outcome: Outcome): void {
  state.decided.delete(txn);
  state.decided.set(txn, outcome);
  if (state.decided.size > state.config.decidedMax) state.decided.delete(state.decided.keys().next().value!);
}

/** PaxosCommit.tla's Decide. Everything it sends waits for every write so far (see ./node.ts). */
function decide(state: CandidateState, txn: TxnId, t: LeaderTxn, outcome: Outcome, fx: Fx[]): void {
  fx.push({ type: 'cancelTimer', timer: voteTimer(txn) });
  fx.push({ type: 'cancelTimer', timer: recoverTimer(txn) });
  // In Faster Paxos Commit the RMs learned the normal-case outcome from the
  // acceptors themselves; after a recovery the leader tells them anyway.
  if (!(state.config.faster && t.phase === 'collecting')) {
    for (const p of t.participants)
      fx.push({ type: 'sendAfterPersist', to: p, msg: decisionMsg(txn, outcome) });
  }
  if (t.client !== null)
    fx.push({ type: 'reportOutcome', txn, client: t.client, outcome, afterPersist: true });
  remember(state, txn, outcome);
  state.txns.delete(txn);
}

function tryDecide(state: CandidateState, txn: TxnId, t: LeaderTxn, fx: Fx[]): void {
  const outcome = outcomeOf(t.learner, t.participants);
  if (outcome !== null) decide(state, txn, t, outcome, fx);
}

/** Phase 1a in a fresh ballot of this candidate's, for every instance not known chosen. */
function startRecovery(state: CandidateState, txn: TxnId, t: LeaderTxn, fx: Fx[]): void {
  const n = state.config.candidates.length;
  state.round = Math.max(state.round + 1, Math.floor(state.maxSeen / n) + 1);
  const bal = state.round * n + state.index;
  assert(bal > t.ballot, `${txn}: ballot ${bal} not above ${t.ballot}`);
  t.phase = 'recovering';
  t.ballot = bal;
  t.promises = new Map();
  const instances = t.participants.filter((p) => !t.learner.chosen.has(p));
  fx.push({ type: 'persist', force: true, record: { type: 'round', round: state.round } });
  const msg: PaxosCommitMsg = { type: 'PHASE1A', txn, bal, instances };
  for (const acc of state.config.acceptors) fx.push({ type: 'sendAfterPersist', to: acc, msg });
  fx.push({ type: 'setTimer', timer: recoverTimer(txn), delayMs: state.config.recoveryMs });
}

/** PaxosCommit.tla's Phase2a, once F+1 acceptors promised `t.ballot` in an instance. */
function onPhase1b(state: CandidateState, msg: Msg<'PHASE1B'>, fx: Fx[]): void {
  const t = state.txns.get(msg.txn);
  if (t === undefined || t.phase !== 'recovering' || msg.bal !== t.ballot) return;
  if (!state.config.acceptors.includes(msg.acc)) return;
  const bal = t.ballot;
  const entries: Phase2aEntry[] = [];
  for (const e of msg.entries) {
    if (!t.participants.includes(e.ins)) continue;
    let byAcc = t.promises.get(e.ins);
    if (byAcc === undefined) {
      byAcc = new Map();
      t.promises.set(e.ins, byAcc);
    }
    // Propose exactly when the promises first reach a majority (later and
    // repeated phase 1b change nothing).
    if (byAcc.has(msg.acc)) continue;
    byAcc.set(msg.acc, e);
    if (byAcc.size !== quorum(state.config)) continue;
    let proposed = t.proposed.get(e.ins);
    if (proposed === undefined) {
      proposed = new Map();
      t.proposed.set(e.ins, proposed);
    }
    // The spec's first conjunct of Phase2a: at most one phase 2a per (instance, ballot).
    assert(
      !proposed.has(bal) && bal > 0 && ballotOwner(bal, state.config.candidates.length) === state.index,
      `${msg.txn}/${e.ins}: a second phase 2a in ballot ${bal}, or a ballot not ours`,
    );
    let best: Phase1bEntry | null = null;
    for (const p of byAcc.values()) if (best === null || p.bal > best.bal) best = p;
    const val: PcValue = best === null || best.val === 'none' ? 'aborted' : best.val;
    proposed.set(bal, val);
    entries.push({ ins: e.ins, val });
  }
  if (entries.length === 0) return;
  const p2a: PaxosCommitMsg = {
    type: 'PHASE2A',
    txn: msg.txn,
    bal,
    entries,
    leader: state.self,
    participants: t.participants,
    client: t.client,
  };
  for (const acc of state.config.acceptors) fx.push({ type: 'sendAfterPersist', to: acc, msg: p2a });
}

function validParticipants(participants: readonly NodeId[]): boolean {
  return (
    participants.length > 0 &&
    participants.length <= limits.participantsPerTxnMax &&
    new Set(participants).size === participants.length
  );
}

function onBegin(
  state: CandidateState,
  input: Extract<Input<PaxosCommitMsg>, { type: 'begin' }>,
  fx: Fx[],
): void {
  const { txn, participants, client } = input;
  const known = state.decided.get(txn);
  if (known !== undefined) {
    fx.push({ type: 'reportOutcome', txn, client, outcome: known, afterPersist: true });
    return;
  }
  if (state.txns.has(txn)) return; // a duplicate request
  if (
    state.txns.size >= limits.inFlightTxnsMax ||
    participants.length === 0 ||
    participants.length > limits.participantsPerTxnMax
  ) {
    fx.push({ type: 'reportOutcome', txn, client, outcome: 'aborted', afterPersist: false });
    return;
  }
  assert(new Set(participants).size === participants.length, `begin ${txn}: participants repeat`);
  state.txns.set(txn, newTxn([...participants], client, true));
  for (const p of participants) {
    fx.push({ type: 'send', to: p, msg: { type: 'PREPARE', txn, participants: [...participants], client } });
  }
  fx.push({ type: 'setTimer', timer: voteTimer(txn), delayMs: state.config.voteTimeoutMs });
}

function onInquiry(state: CandidateState, from: NodeId, msg: Msg<'INQUIRY'>, fx: Fx[]): void {
  const known = state.decided.get(msg.txn);
  if (known !== undefined) {
    fx.push({ type: 'sendAfterPersist', to: from, msg: decisionMsg(msg.txn, known) });
    return;
  }
  let t = state.txns.get(msg.txn);
  if (t === undefined) {
    if (!validParticipants(msg.participants) || !msg.participants.includes(from)) return;
    if (state.txns.size >= limits.inFlightTxnsMax) return; // the RM asks again
    t = newTxn([...msg.participants], msg.client, false);
    state.txns.set(msg.txn, t);
  }
  if (t.client === null) t.client = msg.client;
  // Collecting: the leader's own vote timer is running. Recovering: under way.
  if (t.phase === 'idle') startRecovery(state, msg.txn, t, fx);
}

function onReceive(state: CandidateState, from: NodeId, msg: PaxosCommitMsg, fx: Fx[]): void {
  switch (msg.type) {
    case 'PHASE2B': {
      const t = state.txns.get(msg.txn);
      if (t === undefined) return;
      learn(t.learner, msg.txn, state.config.acceptors, quorum(state.config), msg.acc, msg.entries);
      tryDecide(state, msg.txn, t, fx);
      return;
    }
    case 'PHASE1B':
      return onPhase1b(state, msg, fx);
    case 'REJECT':
      // A higher promise exists: the next attempt must use a higher round.
      state.maxSeen = Math.max(state.maxSeen, msg.mbal);
      return;
    case 'INQUIRY':
      return onInquiry(state, from, msg, fx);
    case 'PREPARE':
    case 'PHASE2A':
    case 'PHASE1A':
    case 'COMMIT':
    case 'ABORT':
      return; // RM- and acceptor-bound
    default:
      unreachable(msg, 'message');
  }
}

function onTimeout(state: CandidateState, timer: string, fx: Fx[]): void {
  const txn = timerTxn(timer);
  const t = state.txns.get(txn);
  if (t === undefined) return;
  if (timer.startsWith('vote:') && t.phase === 'collecting') {
    if (t.voteTimeouts++ === 0) {
      // Some vote (or its phase 2b) is missing: ask once more before
      // deciding for the RM. An RM that voted repeats the same vote.
      for (const p of t.participants) {
        if (!t.learner.chosen.has(p)) {
          fx.push({
            type: 'send',
            to: p,
            msg: { type: 'PREPARE', txn, participants: t.participants, client: t.client! },
          });
        }
      }
      fx.push({ type: 'setTimer', timer, delayMs: state.config.voteTimeoutMs });
    } else {
      startRecovery(state, txn, t, fx);
    }
  } else if (timer.startsWith('recover:') && t.phase === 'recovering') {
    // The leader owns the client's request and retries until it decides.
    // Another candidate forgets the attempt (new ballots never reuse it) and
    // waits for the next inquiry, so an abandoned transaction costs nothing.
    if (t.leading) startRecovery(state, txn, t, fx);
    else state.txns.delete(txn);
  }
}

export const paxosCandidate: Role<
  CandidateState,
  PaxosCommitMsg,
  PaxosCommitRecord,
  Partial<PaxosCommitConfig>
> = {
  init(self, config) {
    const c = { ...defaultPaxosCommitConfig, ...config };
    const index = c.candidates.indexOf(self);
    assert(index >= 0, `${self} is not a leader candidate`);
    return {
      kind: 'candidate',
      self,
      config: c,
      index,
      round: 0,
      maxSeen: noBallot,
      txns: new Map(),
      decided: new Map(),
    };
  },

  /** Only the highest round survives a crash; transactions are recovered when RMs ask. */
  recover(self, config, log): StepResult<CandidateState, PaxosCommitMsg, PaxosCommitRecord> {
    const state = paxosCandidate.init(self, config);
    for (const r of log) if (r.type === 'round') state.round = Math.max(state.round, r.round);
    return { state, effects: [] };
  },

  step(state, input: Input<PaxosCommitMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'begin':
        onBegin(state, input, fx);
        break;
      case 'receive':
        onReceive(state, input.from, input.msg, fx);
        break;
      case 'timeout':
        onTimeout(state, input.timer, fx);
        break;
      case 'persistFailed':
        // A `round` that did not become durable: its phase 1a were dropped
        // with it, so that ballot was never used. The attempt times out and
        // the next one writes a higher round.
        break;
      case 'executed':
      case 'wounded':
        break; // resource-manager notices
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
