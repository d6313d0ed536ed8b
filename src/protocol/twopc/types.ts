// Messages, log records and settings of two-phase commit with presumed abort
// (Mohan, Lindsay & Obermarck, "Transaction Management in the R* Distributed
// Database Management System", 1986). See ../../../docs/protocols/2pc.md.

import type { NodeId, TxnId } from '../common/types.ts';

export type Vote = 'yes' | 'no' | 'readOnly';

export type TwoPcMsg =
  | { type: 'PREPARE'; txn: TxnId }
  | { type: 'VOTE'; txn: TxnId; vote: Vote }
  | { type: 'COMMIT'; txn: TxnId }
  | { type: 'ABORT'; txn: TxnId }
  | { type: 'ACK'; txn: TxnId }
  | { type: 'INQUIRY'; txn: TxnId };

/**
 * Log records. Presumed abort forces exactly three of them: the coordinator's
 * `commit` (before any COMMIT leaves) and the participant's `prepared` (before
 * its YES) and `committed`. `end` and `aborted` are lazy; losing them in a
 * crash only costs a repeated question, never a wrong answer.
 */
export type TwoPcRecord =
  | { type: 'commit'; txn: TxnId; participants: NodeId[]; client: NodeId }
  | { type: 'end'; txn: TxnId }
  | { type: 'prepared'; txn: TxnId; coordinator: NodeId }
  | { type: 'committed'; txn: TxnId }
  | { type: 'aborted'; txn: TxnId };

export interface TwoPcConfig {
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
  voteTimeoutMs: 100,
  commitResendMs: 50,
  inquiryMs: 50,
  unvotedAbortMs: 1000,
};
