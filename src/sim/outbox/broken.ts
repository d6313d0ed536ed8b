// Deliberately broken outbox and inbox variants. The swarm must catch each of
// them: a checker that cannot fail proves nothing.

import { type OutboxProtocol, outboxProtocol } from './world.ts';

/** The consumer acks a message before its transaction commits: a crash between the two loses the effect. */
export function ackBeforeCommit(): OutboxProtocol {
  return { ...outboxProtocol, name: 'outbox-ack-before-commit', consumer: 'ack-before-commit' };
}

/** The consumer commits the effect, then the inbox row in a transaction of its own: a crash between applies it twice. */
export function inboxInSeparateTransaction(): OutboxProtocol {
  return {
    ...outboxProtocol,
    name: 'outbox-inbox-separate-transaction',
    consumer: 'separate-inbox-transaction',
  };
}

/**
 * The producer commits the business change, then writes the outbox row in a
 * transaction of its own (a dual write): a crash between the two loses the message.
 */
export function publishAfterCommit(): OutboxProtocol {
  return { ...outboxProtocol, name: 'outbox-publish-after-commit', producer: 'after-commit' };
}

/**
 * The producer writes the outbox row in a transaction of its own before the
 * business transaction decides: a change that rolls back is still published.
 */
export function publishBeforeCommit(): OutboxProtocol {
  return { ...outboxProtocol, name: 'outbox-publish-before-commit', producer: 'before-commit' };
}

/** The relay publishes every row it claimed at once, not a key's rows one after another's ack: a key's order breaks. */
export function publishingAllAtOnce(): OutboxProtocol {
  return { ...outboxProtocol, name: 'outbox-publishing-all-at-once', relay: 'all-at-once' };
}

/** A relay that claims past a row another relay holds: its key's later rows overtake that one. */
export function claimingPastHeldRows(): OutboxProtocol {
  return { ...outboxProtocol, name: 'outbox-claiming-past-held-rows', relay: 'past-held-rows' };
}
