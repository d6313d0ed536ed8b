// What crosses the network between Paxos Commit processes (acceptors and
// leader processes), and the strict check every received batch goes through.
//
// Owns: the envelope (`WireBatch`) and the validation of Paxos Commit
// messages from an untrusted peer. The acceptor core asserts its invariants
// (one value per instance and ballot, ballot 0 only for an RM's own vote), so
// a malformed message must never reach it: a batch with anything the protocol
// does not declare is refused whole with DTX_BAD_MESSAGE, before any core sees
// any of it.
//
// The envelope carries who sent it (`origin`, the sender process's URL for
// replies) and which leader candidates that process hosts (`hosts`), so that
// an acceptor learns where to send a phase 2b addressed to a leader that
// never wrote to it (ballot-0 votes name the leader, but come from the RMs).

import { DtxError } from '../../errors.ts';
import { isValidNodeId, isValidTxnId, limits } from '../../protocol/common/limits.ts';
import type { NodeId } from '../../protocol/common/types.ts';
import type { PaxosCommitMsg } from '../../protocol/paxos-commit/types.ts';

/** Bumped when the envelope or the acceptor's data directory changes shape. */
export const wireVersion = 1;

/** Messages in one HTTP request, far above what one flush of a busy process gathers. */
export const batchMessagesMax = 4096;

/** Runtime-level notices that are not protocol messages. */
export type HostNotice =
  /** Leader process → acceptors: every RM of `txn` applied its outcome; its instances may be checkpointed away. */
  { type: 'FORGET'; txn: string };

export interface WireItem {
  from: NodeId;
  to: NodeId;
  msg: PaxosCommitMsg | HostNotice;
}

export interface WireBatch {
  v: number;
  cluster: string;
  /** Base URL of the sending process (`http://host:port`), where replies go. */
  origin: string;
  /** Leader candidates the sending process hosts. */
  hosts: NodeId[];
  items: WireItem[];
}

const bad = (why: string) => new DtxError('DTX_BAD_MESSAGE', `bad Paxos Commit batch: ${why}`);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function nodeId(v: unknown, what: string): NodeId {
  if (typeof v !== 'string' || !isValidNodeId(v)) throw bad(`${what} is not a node id`);
  return v;
}

function nodeIds(v: unknown, what: string, allowNull: boolean): NodeId[] | null {
  if (v === null && allowNull) return null;
  if (!Array.isArray(v) || v.length === 0 || v.length > limits.participantsPerTxnMax)
    throw bad(`${what} must list 1 to ${limits.participantsPerTxnMax} node ids`);
  const out = v.map((x) => nodeId(x, what));
  if (new Set(out).size !== out.length) throw bad(`${what} repeats a node`);
  return out;
}

function ballot(v: unknown, min: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw bad(`ballot ${String(v)}`);
  return v;
}

function pcValue(v: unknown, allowNone: boolean): 'prepared' | 'aborted' | 'none' {
  if (v === 'prepared' || v === 'aborted' || (allowNone && v === 'none')) return v;
  throw bad(`value ${String(v)}`);
}

function entries<T>(v: unknown, each: (e: Record<string, unknown>) => T): T[] {
  if (!Array.isArray(v) || v.length === 0 || v.length > limits.participantsPerTxnMax)
    throw bad('entries must hold 1 to participantsPerTxnMax items');
  return v.map((e) => {
    if (!isObject(e)) throw bad('an entry is not an object');
    return each(e);
  });
}

/** A well-formed protocol message or host notice, rebuilt field by field (nothing extra passes). */
export function checkMessage(m: unknown): PaxosCommitMsg | HostNotice {
  if (!isObject(m) || typeof m.txn !== 'string' || !isValidTxnId(m.txn)) throw bad('no valid txn');
  const txn = m.txn;
  switch (m.type) {
    case 'PREPARE': {
      const prepare: Extract<PaxosCommitMsg, { type: 'PREPARE' }> = {
        type: 'PREPARE',
        txn,
        participants: nodeIds(m.participants, 'participants', false)!,
        client: nodeId(m.client, 'client'),
      };
      if (m.voteTo !== undefined) prepare.voteTo = nodeIds(m.voteTo, 'voteTo', false)!;
      return prepare;
    }
    case 'PHASE2A': {
      const bal = ballot(m.bal, 0);
      const es = entries(m.entries, (e) => ({
        ins: nodeId(e.ins, 'ins'),
        val: pcValue(e.val, false) as 'prepared' | 'aborted',
      }));
      if (new Set(es.map((e) => e.ins)).size !== es.length) throw bad('PHASE2A repeats an instance');
      return {
        type: 'PHASE2A',
        txn,
        bal,
        entries: es,
        leader: nodeId(m.leader, 'leader'),
        participants: nodeIds(m.participants, 'participants', true),
        client: m.client === null ? null : nodeId(m.client, 'client'),
      };
    }
    case 'PHASE2B':
      return {
        type: 'PHASE2B',
        txn,
        acc: nodeId(m.acc, 'acc'),
        entries: entries(m.entries, (e) => ({
          ins: nodeId(e.ins, 'ins'),
          bal: ballot(e.bal, 0),
          val: pcValue(e.val, false) as 'prepared' | 'aborted',
        })),
      };
    case 'PHASE1A':
      return {
        type: 'PHASE1A',
        txn,
        bal: ballot(m.bal, 1),
        instances: nodeIds(m.instances, 'instances', false)!,
      };
    case 'PHASE1B':
      return {
        type: 'PHASE1B',
        txn,
        acc: nodeId(m.acc, 'acc'),
        bal: ballot(m.bal, 1),
        entries: entries(m.entries, (e) => {
          const bal = ballot(e.bal, -1);
          const val = pcValue(e.val, true);
          if ((val === 'none') !== (bal === -1)) throw bad('PHASE1B entry with a value and no ballot');
          return { ins: nodeId(e.ins, 'ins'), bal, val };
        }),
      };
    case 'REJECT':
      return {
        type: 'REJECT',
        txn,
        acc: nodeId(m.acc, 'acc'),
        bal: ballot(m.bal, 0),
        mbal: ballot(m.mbal, 0),
      };
    case 'COMMIT':
    case 'ABORT':
    case 'FORGET':
      return { type: m.type, txn };
    case 'INQUIRY':
      return {
        type: 'INQUIRY',
        txn,
        participants: nodeIds(m.participants, 'participants', false)!,
        client: m.client === null ? null : nodeId(m.client, 'client'),
      };
    default:
      throw bad(`unknown message type ${JSON.stringify(String(m.type)).slice(0, 40)}`);
  }
}

/** A batch from the network, checked whole: any bad part refuses all of it. */
export function checkBatch(value: unknown, cluster: string): WireBatch {
  if (!isObject(value)) throw bad('not an object');
  if (value.v !== wireVersion)
    throw bad(`wire version ${String(value.v)}, this process speaks ${wireVersion}`);
  if (value.cluster !== cluster)
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `a message of cluster ${JSON.stringify(String(value.cluster))} reached cluster ${JSON.stringify(cluster)}: refused`,
    );
  if (typeof value.origin !== 'string' || !/^http:\/\/[A-Za-z0-9.[\]:-]+:\d+$/.test(value.origin))
    throw bad('origin is not http://host:port');
  if (!Array.isArray(value.hosts) || value.hosts.length > limits.participantsPerTxnMax)
    throw bad('hosts is not a list');
  const hosts = value.hosts.map((h) => nodeId(h, 'hosts'));
  if (!Array.isArray(value.items) || value.items.length > batchMessagesMax) throw bad('items is not a list');
  const items = value.items.map((it) => {
    if (!isObject(it)) throw bad('an item is not an object');
    return { from: nodeId(it.from, 'from'), to: nodeId(it.to, 'to'), msg: checkMessage(it.msg) };
  });
  return { v: wireVersion, cluster, origin: value.origin, hosts, items };
}
