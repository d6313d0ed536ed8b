// Messages, log records and settings of two-phase commit with presumed abort
// (Mohan, Lindsay & Obermarck, "Transaction Management in the R* Distributed
// Database Management System", 1986). See ../../../docs/protocols/2pc.md.

import type { Hlc } from '../common/hlc.ts';
import type { NodeId, TxnId } from '../common/types.ts';

export type Vote = 'yes' | 'no' | 'readOnly';

/**
 * A transaction id is begun at most once: the runtime makes a fresh id for
 * every transaction, and the simulator's client requests never reach a
 * restarted coordinator. (A coordinator that forgot a transaction, and was then
 * asked to begin the same id again, could be told `committed` and `aborted`
 * for one id; PREPARE's attempt guards votes, not such a second begin.)
 *
 * `attempt` names one `begin` of a transaction at one coordinator incarnation.
 * A vote counts only for the attempt it answers: a delayed or duplicated YES
 * from an earlier attempt (one the coordinator may since have aborted, or
 * forgotten in a crash and presumed aborted) must never count towards a commit.
 */
export type TwoPcMsg =
  | { type: 'PREPARE'; txn: TxnId; attempt: string }
  /**
   * `evidence`, with a YES only: what the participant can later be asked about
   * to learn how its branch ended once it is no longer prepared (a real
   * database's transaction id). The core keeps it in the commit record and
   * never interprets it; the simulator never sets it.
   *
   * `ts`, with a YES only: the participant's prepare timestamp, a reading of
   * its hybrid logical clock (../common/hlc.ts) taken once its prepared
   * record was durable. The driver puts it there, as it puts the evidence:
   * the core has no clock.
   */
  | { type: 'VOTE'; txn: TxnId; attempt: string; vote: Vote; evidence?: string; ts?: Hlc }
  /** `ts`: the commit timestamp (see the `commit` record), when the votes carried any. */
  | { type: 'COMMIT'; txn: TxnId; ts?: Hlc }
  | { type: 'ABORT'; txn: TxnId }
  | { type: 'ACK'; txn: TxnId }
  | { type: 'INQUIRY'; txn: TxnId }
  /**
   * An operator, not a node, ends `txn` at the coordinator (see
   * docs/operations.md): a transaction still collecting votes is aborted; one
   * whose commit is durable stops being re-driven and gets an `end` record
   * carrying `reason`, although some participant never acknowledged. It never
   * turns a commit into an abort. The simulator never sends it.
   */
  | { type: 'OPERATOR_END'; txn: TxnId; action: OperatorAction; reason: string };

/** What an operator did to end a transaction by hand (see TwoPcMsg OPERATOR_END). */
export type OperatorAction = 'resolved' | 'abandoned';

/**
 * Log records. Presumed abort forces exactly three of them: the coordinator's
 * `commit` (before any COMMIT leaves) and the participant's `prepared` (before
 * its YES) and `committed`. `end` and `aborted` are lazy; losing them in a
 * crash only costs a repeated question, never a wrong answer.
 */
export type TwoPcRecord =
  /**
   * `evidence`: the YES voters' evidence (see VOTE), by participant, when any gave some.
   * `ts`: the commit timestamp, the latest of the YES voters' prepare
   * timestamps (each of which is already past the coordinator's clock when
   * it sent PREPARE: the PREPARE carried that clock), when they gave any.
   * Timestamp-ordered reads see the transaction at a snapshot at or after it.
   */
  | {
      type: 'commit';
      txn: TxnId;
      participants: NodeId[];
      client: NodeId;
      evidence?: Record<NodeId, string>;
      ts?: Hlc;
    }
  /**
   * `operator` and `reason` mark an end an operator forced (OPERATOR_END):
   * `resolved` (the operator settled the branches, or aborted an undecided
   * transaction) or `abandoned` (dtx stops retrying; what is still prepared is
   * the operator's to resolve), and why. Absent on every ordinary end.
   */
  | { type: 'end'; txn: TxnId; operator?: OperatorAction; reason?: string }
  | { type: 'prepared'; txn: TxnId; coordinator: NodeId }
  | { type: 'committed'; txn: TxnId }
  | { type: 'aborted'; txn: TxnId };

export interface TwoPcConfig {
  /**
   * Distinguishes this start of the node from every earlier one; the driver
   * supplies it (the simulator: a restart counter; the runtime: a random id),
   * because a core may not draw randomness itself. Attempt names embed it.
   */
  incarnation: string;
  /** How long the coordinator waits for all votes before it aborts. */
  voteTimeoutMs: number;
  /** How often the coordinator re-sends COMMIT to participants that have not acknowledged. */
  commitResendMs: number;
  /** How often an in-doubt participant asks the coordinator for the outcome. */
  inquiryMs: number;
  /** How long a participant that has done work waits for PREPARE before it aborts on its own. */
  unvotedAbortMs: number;
}

export const defaultTwoPcConfig: TwoPcConfig = {
  incarnation: '0',
  voteTimeoutMs: 100,
  commitResendMs: 50,
  inquiryMs: 50,
  unvotedAbortMs: 1000,
};
