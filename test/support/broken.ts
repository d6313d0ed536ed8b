// Deliberately broken protocol variants, built by rewriting a correct core's
// effects. The swarm must catch each of them: a checker that cannot fail
// proves nothing.

import type { Effect, Role } from '../../src/protocol/common/types.ts';
import {
  type AnyRole,
  makeProtocol,
  type ProtocolOptions,
  type SimProtocol,
} from '../../src/sim/protocols.ts';

type AnyEffect = Effect<unknown, unknown>;

/** Wraps a role so that `rewrite` changes every list of effects it returns. */
function rewritingEffects(role: AnyRole, rewrite: (effects: AnyEffect[]) => AnyEffect[]): AnyRole {
  const wrapped: Role<unknown, unknown, unknown, unknown> = {
    init: (self, config) => role.init(self, config),
    recover(self, config, log) {
      const r = role.recover(self, config, log);
      return { state: r.state, effects: rewrite(r.effects) };
    },
    step(state, input) {
      const r = role.step(state, input);
      return { state: r.state, effects: rewrite(r.effects) };
    },
  };
  return wrapped;
}

/** Wraps a role so that every `sendAfterPersist` leaves at once, before the write it depends on is durable. */
export function sendingEagerly(role: AnyRole): AnyRole {
  return rewritingEffects(role, (effects) =>
    effects.map((e) => (e.type === 'sendAfterPersist' ? { type: 'send' as const, to: e.to, msg: e.msg } : e)),
  );
}

/** Wraps a role so that every outcome it reports to a client reads `aborted`, whatever it decided. */
export function reportingAborted(role: AnyRole): AnyRole {
  return rewritingEffects(role, (effects) =>
    effects.map((e) => (e.type === 'reportOutcome' ? { ...e, outcome: 'aborted' as const } : e)),
  );
}

/** 2PC whose coordinator runs `wrap(its role)`. */
function twoPcWithCoordinator(wrap: (role: AnyRole) => AnyRole): SimProtocol {
  const p = makeProtocol('2pc');
  const [coordinator] = p.nodes([]);
  return {
    ...p,
    nodes: (participants) =>
      p.nodes(participants).map((n) => (n.id === coordinator!.id ? { ...n, role: wrap(n.role) } : n)),
  };
}

/** 2PC whose coordinator sends COMMIT before its commit record is durable. */
export function twoPcCommitBeforeForce(): SimProtocol {
  return twoPcWithCoordinator(sendingEagerly);
}

/** 2PC whose participants vote YES before their prepared record is durable. */
export function twoPcYesBeforeForce(): SimProtocol {
  const p = makeProtocol('2pc');
  return { ...p, participantRole: sendingEagerly(p.participantRole) };
}

/** 2PC whose coordinator commits every transaction it decides to commit but tells the client `aborted`. */
export function twoPcReportsAbortedWhileCommitting(): SimProtocol {
  return twoPcWithCoordinator(reportingAborted);
}

/** Wraps a role so that its recovery reads back every log record but those of the `forgotten` types. */
function forgettingOnRestart(role: AnyRole, forgotten: string): AnyRole {
  return {
    init: (self, config) => role.init(self, config),
    recover: (self, config, log) =>
      role.recover(
        self,
        config,
        (log as Array<{ type: string }>).filter((record) => record.type !== forgotten),
      ),
    step: (state, input) => role.step(state, input),
  };
}

/** Paxos Commit whose every node, on a restart, ignores its log records of type `forgotten`. */
function paxosCommitForgetting(forgotten: string, options: ProtocolOptions = {}): SimProtocol {
  const p = makeProtocol('paxos-commit', options);
  return {
    ...p,
    nodes: (participants) =>
      p.nodes(participants).map((n) => ({ ...n, role: forgettingOnRestart(n.role, forgotten) })),
    participantRole: forgettingOnRestart(p.participantRole, forgotten),
  };
}

/**
 * Paxos Commit whose leader candidates forget their ballot round on a
 * restart (the `round` records are not read back), so that a recovering
 * candidate reuses ballots it already proposed in.
 */
export function paxosCommitForgettingRound(): SimProtocol {
  return paxosCommitForgetting('round');
}

/** Paxos Commit whose acceptors forget, on a restart, every value they accepted (the `acc` records). */
export function paxosCommitAmnesiacAcceptors(options: ProtocolOptions = {}): SimProtocol {
  return paxosCommitForgetting('acc', options);
}

/** Wraps a role so that its recovery leaves out every `resource commit` it would re-apply. */
function notReapplyingCommits(role: AnyRole): AnyRole {
  return {
    init: (self, config) => role.init(self, config),
    recover(self, config, log) {
      const r = role.recover(self, config, log);
      return {
        state: r.state,
        effects: r.effects.filter((e) => !(e.type === 'resource' && e.action === 'commit')),
      };
    },
    step: (state, input) => role.step(state, input),
  };
}

/**
 * 2PC whose participants, on a restart, do not re-apply the work of a
 * transaction whose `committed` record is durable: caught only when a crash
 * can land after the record is durable and before the work is applied.
 */
export function twoPcNotReapplyingCommitted(): SimProtocol {
  const p = makeProtocol('2pc');
  return { ...p, participantRole: notReapplyingCommits(p.participantRole) };
}
