// Naive commit: the coordinator tells every participant COMMIT and each
// commits locally. There is no prepare phase, so a participant whose durable
// write fails has nothing to fall back on, while the others have already
// committed: the outcome is partial. dtx keeps this protocol as the failing
// baseline the others are measured against; the simulator reports its partial
// outcomes as the expected result, not as a checker failure.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { unreachable } from '../common/assert.ts';
import type { Effect, Input, NodeId, Role, TxnId } from '../common/types.ts';

export type NaiveMsg =
  | { type: 'COMMIT'; txn: TxnId }
  | { type: 'ACK'; txn: TxnId }
  /** The participant could not commit: its write failed or its work was already gone. */
  | { type: 'FAILED'; txn: TxnId };

export type NaiveRecord = { type: 'committed'; txn: TxnId; coordinator: NodeId };

export interface NaiveConfig {
  /** How long the coordinator waits for every participant's answer. */
  ackTimeoutMs: number;
  /** How long a participant holds work nobody commits before it drops it. */
  unvotedAbortMs: number;
}

export const defaultNaiveConfig: NaiveConfig = { ackTimeoutMs: 200, unvotedAbortMs: 1000 };

type Fx = Effect<NaiveMsg, NaiveRecord>;

interface NaiveCoordinatorTxn {
  participants: readonly NodeId[];
  client: NodeId;
  answers: Map<NodeId, boolean>;
}

export interface NaiveCoordinatorState {
  self: NodeId;
  config: NaiveConfig;
  txns: Map<TxnId, NaiveCoordinatorTxn>;
}

export interface NaiveParticipantState {
  self: NodeId;
  config: NaiveConfig;
  /** Transactions with work done here and not yet committed or dropped. */
  working: Set<TxnId>;
}

const ackTimer = (txn: TxnId) => `ack:${txn}`;
const workTimer = (txn: TxnId) => `work:${txn}`;
const timerTxn = (timer: string) => timer.slice(timer.indexOf(':') + 1);

function finish(state: NaiveCoordinatorState, txn: TxnId, t: NaiveCoordinatorTxn, fx: Fx[]): void {
  let ok = 0;
  for (const v of t.answers.values()) if (v) ok++;
  const outcome = ok === t.participants.length ? 'committed' : ok === 0 ? 'aborted' : 'partial';
  fx.push({ type: 'cancelTimer', timer: ackTimer(txn) });
  fx.push({ type: 'reportOutcome', txn, client: t.client, outcome, afterPersist: false });
  state.txns.delete(txn);
}

export const naiveCoordinator: Role<NaiveCoordinatorState, NaiveMsg, NaiveRecord, Partial<NaiveConfig>> = {
  init: (self, config) => ({ self, config: { ...defaultNaiveConfig, ...config }, txns: new Map() }),
  // Naive commit logs nothing, so a restarted coordinator knows nothing.
  recover: (self, config) => ({ state: naiveCoordinator.init(self, config), effects: [] }),
  step(state, input: Input<NaiveMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'begin': {
        if (state.txns.has(input.txn) || input.participants.length === 0) break;
        state.txns.set(input.txn, {
          participants: input.participants,
          client: input.client,
          answers: new Map(),
        });
        for (const p of input.participants)
          fx.push({ type: 'send', to: p, msg: { type: 'COMMIT', txn: input.txn } });
        fx.push({ type: 'setTimer', timer: ackTimer(input.txn), delayMs: state.config.ackTimeoutMs });
        break;
      }
      case 'receive': {
        const { msg, from } = input;
        const t = state.txns.get(msg.txn);
        if (t === undefined || msg.type === 'COMMIT' || !t.participants.includes(from)) break;
        if (t.answers.has(from)) break;
        t.answers.set(from, msg.type === 'ACK');
        if (t.answers.size === t.participants.length) finish(state, msg.txn, t, fx);
        break;
      }
      case 'timeout': {
        const txn = timerTxn(input.timer);
        const t = state.txns.get(txn);
        if (t !== undefined) finish(state, txn, t, fx);
        break;
      }
      case 'persistFailed':
      case 'executed':
      case 'wounded':
        break;
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};

export const naiveParticipant: Role<NaiveParticipantState, NaiveMsg, NaiveRecord, Partial<NaiveConfig>> = {
  init: (self, config) => ({
    self,
    config: { ...defaultNaiveConfig, ...config },
    working: new Set(),
  }),
  // Work that was not committed is lost with the process; committed work is
  // already applied. Nothing is in doubt because nothing was ever promised.
  recover: (self, config) => ({ state: naiveParticipant.init(self, config), effects: [] }),
  step(state, input: Input<NaiveMsg>) {
    const fx: Fx[] = [];
    switch (input.type) {
      case 'executed':
        state.working.add(input.txn);
        fx.push({ type: 'setTimer', timer: workTimer(input.txn), delayMs: state.config.unvotedAbortMs });
        break;
      case 'wounded':
        if (state.working.delete(input.txn)) {
          fx.push({ type: 'cancelTimer', timer: workTimer(input.txn) });
          fx.push({ type: 'resource', txn: input.txn, action: 'abort', afterPersist: false });
        }
        break;
      case 'receive': {
        const { msg, from } = input;
        if (msg.type !== 'COMMIT') break;
        if (!state.working.delete(msg.txn)) {
          // Work gone — or a duplicate COMMIT while our commit is being
          // written: waiting for our writes lets that ACK leave first.
          fx.push({ type: 'sendAfterPersist', to: from, msg: { type: 'FAILED', txn: msg.txn } });
          break;
        }
        fx.push({ type: 'cancelTimer', timer: workTimer(msg.txn) });
        fx.push({
          type: 'persist',
          force: true,
          record: { type: 'committed', txn: msg.txn, coordinator: from },
        });
        fx.push({ type: 'resource', txn: msg.txn, action: 'commit', afterPersist: true });
        fx.push({ type: 'sendAfterPersist', to: from, msg: { type: 'ACK', txn: msg.txn } });
        break;
      }
      case 'persistFailed': {
        // The local commit did not become durable: this node's part is lost
        // while the others may have committed. Nothing here can repair that.
        const { txn, coordinator } = input.record as NaiveRecord;
        fx.push({ type: 'resource', txn, action: 'abort', afterPersist: false });
        fx.push({ type: 'send', to: coordinator, msg: { type: 'FAILED', txn } });
        break;
      }
      case 'timeout': {
        const txn = timerTxn(input.timer);
        if (state.working.delete(txn))
          fx.push({ type: 'resource', txn, action: 'abort', afterPersist: false });
        break;
      }
      case 'begin':
        break;
      default:
        unreachable(input, 'input');
    }
    return { state, effects: fx };
  },
};
