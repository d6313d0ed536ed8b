// The three-phase commit coordinator (Skeen 1981).
//
// Owns: the normal-case decision. CAN_COMMIT collects votes; every YES leads
// to PRE_COMMIT, any NO (or the vote timeout) to ABORT; once every
// participant acknowledged PRE_COMMIT — or `ackTimeoutMs` passed with at least
// one acknowledgement, the silent being taken for crashed, as 3PC's failure
// model allows — COMMIT. It writes
// nothing to its log and rebuilds nothing after a crash: a participant that
// hears nothing in time runs the termination protocol (./participant.ts)
// instead of waiting, which is the point of 3PC.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { assert, unreachable } from '../common/assert.ts';
import { limits } from '../common/limits.ts';
import type { Effect, Input, NodeId, Role, StepResult, TxnId } from '../common/types.ts';
import { defaultThreePcConfig, type ThreePcConfig, type ThreePcMsg, type ThreePcRecord } from './types.ts';

type Fx = Effect<ThreePcMsg, ThreePcRecord>;

export interface ThreePcCoordinatorTxn {
  phase: 'collecting' | 'precommitting';
  participants: readonly NodeId[];
  client: NodeId;
  yes: Set<NodeId>;
  acked: Set<NodeId>;
}

export interface ThreePcCoordinatorState {
  self: NodeId;
  config: ThreePcConfig;
  txns: Map<TxnId, ThreePcCoordinatorTxn>;
}

const voteTimer = (txn: TxnId) => `vote:${txn}`;
const ackTimer = (txn: TxnId) => `ack:${txn}`;
const timerTxn = (timer: string) => timer.slice(timer.indexOf(':') + 1);

function abort(
  state: ThreePcCoordinatorState,
  txn: TxnId,
  t: ThreePcCoordinatorTxn,
  fx: Fx[],
  no?: NodeId,
): void {
  for (const p of t.participants) if (p !== no) fx.push({ type: 'send', to: p, msg: { type: 'ABORT', txn } });
  fx.push({ type: 'cancelTimer', timer: voteTimer(txn) });
  fx.push({ type: 'reportOutcome', txn, client: t.client, outcome: 'aborted', afterPersist: false });
  state.txns.delete(txn);
}

function commit(state: ThreePcCoordinatorState, txn: TxnId, t: ThreePcCoordinatorTxn, fx: Fx[]): void {
  for (const p of t.participants) fx.push({ type: 'send', to: p, msg: { type: 'COMMIT', txn } });
  fx.push({ type: 'cancelTimer', timer: ackTimer(txn) });
  fx.push({ type: 'reportOutcome', txn, client: t.client, outcome: 'committed', afterPersist: false });
  state.txns.delete(txn);
}

function onReceive(state: ThreePcCoordinatorState, from: NodeId, msg: ThreePcMsg, fx: Fx[]): void {
  const { txn } = msg;
  const t = state.txns.get(txn);
  // A transaction this coordinator does not know (finished, or begun before a
  // crash) is left alone: the participants terminate it themselves, and an
  // ABORT from here could contradict a termination that is committing it.
  if (t === undefined || !t.participants.includes(from)) return;
  switch (msg.type) {
    case 'VOTE':
      if (t.phase !== 'collecting') return;
      if (msg.vote === 'no') return abort(state, txn, t, fx, from);
      t.yes.add(from);
      if (t.yes.size < t.participants.length) return;
      t.phase = 'precommitting';
      fx.push({ type: 'cancelTimer', timer: voteTimer(txn) });
      for (const p of t.participants) fx.push({ type: 'send', to: p, msg: { type: 'PRE_COMMIT', txn } });
      fx.push({ type: 'setTimer', timer: ackTimer(txn), delayMs: state.config.ackTimeoutMs });
      return;
    case 'PRE_ACK':
      if (t.phase !== 'precommitting') return;
      t.acked.add(from);
      if (t.acked.size === t.participants.length) commit(state, txn, t, fx);
      return;
    case 'CAN_COMMIT':
    case 'PRE_COMMIT':
    case 'COMMIT':
    case 'ABORT':
    case 'STATE_REQ':
    case 'STATE':
      return; // participant-bound
    default:
      unreachable(msg, 'message');
  }
}

export const threePcCoordinator: Role<
  ThreePcCoordinatorState,
  ThreePcMsg,
  ThreePcRecord,
  Partial<ThreePcConfig>
> = {
  init(self, config) {
    return { self, config: { ...defaultThreePcConfig, ...config }, txns: new Map() };
  },

  /** The coordinator logs nothing: after a crash it knows nothing, and the participants terminate. */
  recover(self, config): StepResult<ThreePcCoordinatorState, ThreePcMsg, ThreePcRecord> {
    return { state: threePcCoordinator.init(self, config), effects: [] };
  },

  step(state, input: Input<ThreePcMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'begin': {
        const { txn, participants, client } = input;
        if (state.txns.has(txn)) break;
        if (
          participants.length === 0 ||
          participants.length > limits.participantsPerTxnMax ||
          state.txns.size >= limits.inFlightTxnsMax
        ) {
          fx.push({ type: 'reportOutcome', txn, client, outcome: 'aborted', afterPersist: false });
          break;
        }
        assert(new Set(participants).size === participants.length, `begin ${txn}: participants repeat`);
        state.txns.set(txn, {
          phase: 'collecting',
          participants: [...participants],
          client,
          yes: new Set(),
          acked: new Set(),
        });
        for (const p of participants) {
          fx.push({ type: 'send', to: p, msg: { type: 'CAN_COMMIT', txn, participants: [...participants] } });
        }
        fx.push({ type: 'setTimer', timer: voteTimer(txn), delayMs: state.config.voteTimeoutMs });
        break;
      }
      case 'receive':
        onReceive(state, input.from, input.msg, fx);
        break;
      case 'timeout': {
        const txn = timerTxn(input.timer);
        const t = state.txns.get(txn);
        if (t === undefined) break;
        if (input.timer.startsWith('vote:') && t.phase === 'collecting') abort(state, txn, t, fx);
        else if (input.timer.startsWith('ack:') && t.phase === 'precommitting') {
          // Commit only if some participant's pre-commit is known durable: a
          // recovering participant then finds it and commits too. With no
          // PRE_ACK at all every participant may have crashed before
          // pre-committing, and their recovery would abort; leave the
          // transaction to them and tell the client nothing.
          if (t.acked.size > 0) commit(state, txn, t, fx);
          else state.txns.delete(txn);
        }
        break;
      }
      case 'persistFailed':
      case 'executed':
      case 'wounded':
        break; // the coordinator writes nothing and holds no resources
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
