// Deliberately broken saga and TCC variants. The swarm must catch each of
// them: a checker that cannot fail proves nothing.

import type { BranchMsg, ReportSaga } from '../../protocol/branch/types.ts';
import type { Effect, Input } from '../../protocol/common/types.ts';
import type { SagaOrchestratorState } from '../../protocol/saga/orchestrator.ts';
import type { TccCoordinatorState } from '../../protocol/tcc/coordinator.ts';
import type { SagaProtocolName } from '../protocols.ts';
import { type AnySagaRole, makeSagaProtocol, type SagaProtocol } from './protocols.ts';

/** Services run every call's handler: no idempotency, no null compensation, no hanging prevention. */
export function withoutBarrier(name: SagaProtocolName): SagaProtocol {
  const p = makeSagaProtocol(name);
  return {
    ...p,
    name: `${p.name}-no-barrier`,
    serviceConfig: (base) => ({ ...(p.serviceConfig(base) as object), barrier: false }),
  };
}

type AnyEffect = Effect<unknown, unknown> | ReportSaga;

/** Wraps an orchestrator so that every `sendAfterPersist` leaves at once, before the record it depends on is durable. */
function sendingEagerly(role: AnySagaRole): AnySagaRole {
  const eager = (effects: AnyEffect[]) =>
    effects.map((e) => (e.type === 'sendAfterPersist' ? { type: 'send' as const, to: e.to, msg: e.msg } : e));
  return {
    init: (self, config) => role.init(self, config),
    recover(self, config, log) {
      const r = role.recover(self, config, log);
      return { state: r.state, effects: eager(r.effects) };
    },
    step(state, input) {
      const r = role.step(state, input);
      return { state: r.state, effects: eager(r.effects) };
    },
  };
}

/** An orchestrator that calls services (actions and compensations) before logging that it does. */
export function callsBeforeLogging(name: SagaProtocolName): SagaProtocol {
  const p = makeSagaProtocol(name);
  return { ...p, name: `${p.name}-calls-before-logging`, orchestrator: sendingEagerly(p.orchestrator) };
}

/** An orchestrator that gives up on a saga silently: it never reports `stuck`. */
export function silentlyStuck(name: SagaProtocolName): SagaProtocol {
  const p = makeSagaProtocol(name);
  const role = p.orchestrator;
  const quiet = (effects: AnyEffect[]) =>
    effects.filter((e) => !(e.type === 'reportSaga' && e.outcome === 'stuck'));
  return {
    ...p,
    name: `${p.name}-silently-stuck`,
    orchestrator: {
      init: (self, config) => role.init(self, config),
      recover(self, config, log) {
        const r = role.recover(self, config, log);
        return { state: r.state, effects: quiet(r.effects) };
      },
      step(state, input) {
        const r = role.step(state, input);
        return { state: r.state, effects: quiet(r.effects) };
      },
    },
  };
}

/**
 * A saga orchestrator that forgets its order graph on the way back: every
 * step is compensated at once, instead of only after the steps that depend on it.
 */
export function compensatingAllAtOnce(): SagaProtocol {
  const p = makeSagaProtocol('saga');
  const role = p.orchestrator;
  const forget = (state: SagaOrchestratorState) => {
    for (const run of state.sagas.values()) for (const later of run.successors.values()) later.length = 0;
    return state;
  };
  return {
    ...p,
    name: `${p.name}-compensating-all-at-once`,
    orchestrator: {
      init: (self, config) => forget(role.init(self, config)),
      recover(self, config, log) {
        const r = role.recover(self, config, log);
        return { state: forget(r.state), effects: r.effects };
      },
      step(state, input) {
        const r = role.step(forget(state), input);
        return { state: forget(r.state), effects: r.effects };
      },
    },
  };
}

type TccReply = Extract<BranchMsg, { type: 'REPLY' }>;

/** The answer to a try that `input` delivers, or null when it delivers something else. */
function tryAnswer(input: Input<unknown>): TccReply | null {
  if (input.type !== 'receive') return null;
  const msg = input.msg as BranchMsg;
  return msg.type === 'REPLY' && msg.op === 'try' ? msg : null;
}

/** Wraps the TCC coordinator so that `before` may rewrite each input (and the state) before the core steps. */
function tccCoordinatorWith(
  name: string,
  before: (state: TccCoordinatorState, input: Input<unknown>) => Input<unknown>,
): SagaProtocol {
  const p = makeSagaProtocol('tcc');
  const role = p.orchestrator;
  return {
    ...p,
    name: `${p.name}-${name}`,
    orchestrator: {
      init: (self, config) => role.init(self, config),
      recover: (self, config, log) => role.recover(self, config, log),
      step: (state, input) => role.step(state, before(state, input)),
    },
  };
}

/** A TCC coordinator that reads a refused try as a success, and so confirms despite the refusal. */
export function confirmingDespiteRefusal(): SagaProtocol {
  return tccCoordinatorWith('confirming-despite-refusal', (_state, input) => {
    const answer = tryAnswer(input);
    if (answer === null || answer.result !== 'failure' || input.type !== 'receive') return input;
    return { ...input, msg: { ...answer, result: 'success' } };
  });
}

/**
 * A TCC coordinator that counts every unanswered try as a success once the
 * first try succeeds, and so confirms before every try answered.
 */
export function confirmingBeforeEveryTry(): SagaProtocol {
  return tccCoordinatorWith('confirming-before-every-try', (state, input) => {
    const answer = tryAnswer(input);
    const run = answer === null ? undefined : state.txns.get(answer.txn);
    const answered = run?.branches.get(answer?.branch ?? '');
    if (answer?.result !== 'success' || run?.phase !== 'trying' || answered?.tried !== 'pending')
      return input;
    if (input.type !== 'receive' || input.from !== answered.def.service) return input;
    for (const b of run.branches.values()) if (b.tried === 'pending' && b !== answered) b.tried = 'success';
    return input;
  });
}
