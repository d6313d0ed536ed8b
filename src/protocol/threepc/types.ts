// Messages, log records and settings of three-phase commit (Skeen,
// "Nonblocking Commit Protocols", SIGMOD 1981) with its termination protocol.
// dtx keeps it as the counter-example: it does not block when the coordinator
// fails, but only because it trusts timeouts to tell a crashed node from an
// unreachable one. See ../../../docs/protocols/3pc.md.

import type { NodeId, TxnId } from '../common/types.ts';

/**
 * What a participant reports to a termination protocol. `unknown`: it never
 * durably voted YES (never worked on the transaction, or lost or gave up its
 * work before voting), so the transaction cannot have committed.
 */
export type ReportedState = 'unknown' | 'prepared' | 'precommitted' | 'committed' | 'aborted';

export type ThreePcMsg =
  /** Coordinator → participants: phase 1, can you commit? */
  | { type: 'CAN_COMMIT'; txn: TxnId; participants: NodeId[] }
  | { type: 'VOTE'; txn: TxnId; vote: 'yes' | 'no' }
  /** Coordinator (or a termination protocol's new coordinator) → participants: phase 2. */
  | { type: 'PRE_COMMIT'; txn: TxnId }
  | { type: 'PRE_ACK'; txn: TxnId }
  /** Phase 3, from the coordinator or a new one. */
  | { type: 'COMMIT'; txn: TxnId }
  | { type: 'ABORT'; txn: TxnId }
  /** Termination protocol: a participant that timed out asks every other participant. */
  | { type: 'STATE_REQ'; txn: TxnId }
  /** `recovering`: the sender crashed since it voted and has not learned the outcome yet. */
  | { type: 'STATE'; txn: TxnId; state: ReportedState; recovering: boolean };

/**
 * Participant log records, all forced: `prepared` before its YES leaves,
 * `precommitted` before it acknowledges PRE_COMMIT, `committed` before it
 * applies the work, `aborted` (only once prepared) before it discards it. The
 * coordinator writes nothing: when it fails, the participants terminate the
 * transaction among themselves.
 */
export type ThreePcRecord =
  | { type: 'prepared'; txn: TxnId; participants: NodeId[]; coordinator: NodeId }
  | { type: 'precommitted'; txn: TxnId }
  | { type: 'committed'; txn: TxnId }
  | { type: 'aborted'; txn: TxnId };

export interface ThreePcConfig {
  /** How long the coordinator waits for every vote before it aborts. */
  voteTimeoutMs: number;
  /** How long the coordinator waits for PRE_ACKs; then it commits, taking the silent for crashed. */
  ackTimeoutMs: number;
  /**
   * How long a participant that voted YES (or pre-committed) waits to hear
   * from the coordinator before it runs the termination protocol. Must exceed
   * `voteTimeoutMs` and `ackTimeoutMs` plus any message delay: 3PC's
   * "failure detection" is this timeout, and the protocol is only as safe as
   * the timeout is accurate.
   */
  waitMs: number;
  /** How long a termination protocol collects STATE answers (and PRE_ACKs) before it acts. */
  collectMs: number;
  /** How long a participant that has done work waits for CAN_COMMIT before it aborts on its own. */
  unvotedAbortMs: number;
  /** Set by the driver at every start; 3PC does not need it. */
  incarnation?: string;
}

export const defaultThreePcConfig: ThreePcConfig = {
  voteTimeoutMs: 100,
  ackTimeoutMs: 50,
  waitMs: 300,
  collectMs: 20,
  unvotedAbortMs: 1000,
};
