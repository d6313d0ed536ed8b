// The wire and log codec of two-phase commit: JSON text for every `TwoPcMsg`
// a node sends and every `TwoPcRecord` it logs (./types.ts), decoded strictly
// (see ../common/codec.ts for the rules and the `CodecError` it throws).
//
// The durable log stores these records, so a decoder that accepted a
// malformed record would let recovery rebuild a coordinator or participant
// from state no step ever produced; the shapes here are therefore exactly the
// types, checked against them by the compiler.
//
// May not touch: I/O, clocks, anything outside src/protocol (pure code).

import { CodecError, makeCodec } from '../common/codec.ts';
import type { OperatorAction, TwoPcMsg, TwoPcRecord, Vote } from './types.ts';

export { CodecError };

// A record over `Vote`, so that a vote added to the type and not here does not compile.
const voteSet: Record<Vote, true> = { yes: true, no: true, readOnly: true };
export const votes = Object.keys(voteSet) as readonly Vote[];
const operatorActionSet: Record<OperatorAction, true> = { resolved: true, abandoned: true };
const operatorActions = Object.keys(operatorActionSet) as readonly OperatorAction[];

export const twoPcMsgCodec = makeCodec<TwoPcMsg>('2PC message', {
  PREPARE: { txn: 'txnId', attempt: 'token' },
  VOTE: {
    txn: 'txnId',
    vote: { oneOf: votes },
    attempt: 'token',
    evidence: { optional: 'token' },
    ts: { optional: 'hlc' },
  },
  COMMIT: { txn: 'txnId', ts: { optional: 'hlc' } },
  ABORT: { txn: 'txnId' },
  ACK: { txn: 'txnId' },
  INQUIRY: { txn: 'txnId' },
  OPERATOR_END: { txn: 'txnId', action: { oneOf: operatorActions }, reason: 'text' },
});

export const twoPcRecordCodec = makeCodec<TwoPcRecord>('2PC log record', {
  commit: {
    txn: 'txnId',
    participants: 'nodeIds',
    client: 'nodeId',
    evidence: { optional: 'nodeTokens' },
    ts: { optional: 'hlc' },
  },
  end: { txn: 'txnId', operator: { optional: { oneOf: operatorActions } }, reason: { optional: 'text' } },
  prepared: { txn: 'txnId', coordinator: 'nodeId' },
  committed: { txn: 'txnId' },
  aborted: { txn: 'txnId' },
});

/** Canonical JSON text of `msg`; throws `CodecError` when it is not a well-formed message. */
export function encodeTwoPcMsg(msg: TwoPcMsg): string {
  return twoPcMsgCodec.encode(msg);
}

/** The message `text` encodes; throws `CodecError` on anything else. */
export function decodeTwoPcMsg(text: string): TwoPcMsg {
  return twoPcMsgCodec.decode(text);
}

/** Canonical JSON text of `record`; throws `CodecError` when it is not a well-formed record. */
export function encodeTwoPcRecord(record: TwoPcRecord): string {
  return twoPcRecordCodec.encode(record);
}

/** The record `text` encodes; throws `CodecError` on anything else. */
export function decodeTwoPcRecord(text: string): TwoPcRecord {
  return twoPcRecordCodec.decode(text);
}
