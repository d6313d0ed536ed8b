// Where Paxos Commit's roles run, for a given F and placement: which nodes are
// acceptors, which are leader candidates (in ballot order), which one leads,
// and the configuration each node starts with. Shared by the simulator
// (src/sim/protocols.ts) and anything else that deploys Paxos Commit.
//
// - Separate leader (the default): node `coord` is the leader and acceptor 0;
//   nodes `acc1` … `acc2F` are the other acceptors, each also a leader
//   candidate. The RMs' votes go to the first F+1 acceptors (the `quorum`
//   fanout), so the leader's own acceptor is always one of them. With F = 0 this is two-phase commit: one acceptor, on the
//   leader's node, and no other candidate.
// - Co-located leader: the initiating RM (the first participant) is the
//   leader; nodes `acc0` … `acc2F` are the acceptors and the other candidates.
//
// May not touch: clocks, I/O, randomness (see ../common/types.ts).

import { assert } from '../common/assert.ts';
import type { NodeId } from '../common/types.ts';
import type { PaxosNodeConfig } from './node.ts';
import { type AcceptorFanout, defaultPaxosCommitConfig, type PaxosCommitConfig } from './types.ts';

export interface PaxosCommitOptions {
  /** Acceptor failures tolerated (2F+1 acceptors); default 1. */
  F?: number;
  /** Faster Paxos Commit. */
  faster?: boolean;
  /** Where RMs send their votes: the first F+1 acceptors (default, the paper's normal case) or all 2F+1. */
  acceptorFanout?: AcceptorFanout;
  /** The leader runs on the initiating RM's node. */
  colocated?: boolean;
  /** Multiplies every timeout (e.g. the network round trip in ms, when it is above 1). */
  timeScale?: number;
}

export interface PaxosCommitLayout {
  /** The node that takes `begin`. */
  leader: NodeId;
  /** Nodes that are not RMs, the leader first when it is one of them. */
  servers: Array<{ id: NodeId; config: PaxosNodeConfig }>;
  /** The configuration of every RM node (the leader's too, when co-located). */
  rmConfig: PaxosNodeConfig;
  config: PaxosCommitConfig;
}

/** Largest F accepted: 2F+1 acceptors each write every vote. */
export const faultsMax = 10;

export function paxosCommitLayout(
  participants: readonly NodeId[],
  options: PaxosCommitOptions = {},
): PaxosCommitLayout {
  const F = options.F ?? 1;
  assert(
    Number.isInteger(F) && F >= 0 && F <= faultsMax,
    `F must be an integer in 0..${faultsMax}, not ${F}`,
  );
  const scale = Math.max(1, options.timeScale ?? 1);
  const colocated = options.colocated ?? false;
  assert(!colocated || participants.length > 0, 'a co-located leader needs the initiating RM');
  const leader = colocated ? participants[0]! : 'coord';
  const acceptors = colocated
    ? Array.from({ length: 2 * F + 1 }, (_, i) => `acc${i}`)
    : [leader, ...Array.from({ length: 2 * F }, (_, i) => `acc${i + 1}`)];
  const candidates = colocated ? [leader, ...acceptors] : acceptors;
  const d = defaultPaxosCommitConfig;
  const config: PaxosCommitConfig = {
    ...d,
    F,
    acceptors,
    candidates,
    faster: options.faster ?? false,
    acceptorFanout: options.acceptorFanout ?? 'quorum',
    voteTimeoutMs: d.voteTimeoutMs * scale,
    recoveryMs: d.recoveryMs * scale,
    inquiryMs: d.inquiryMs * scale,
    unvotedAbortMs: d.unvotedAbortMs * scale,
    bundleMs: d.bundleMs * scale,
  };
  const server = (id: NodeId) => ({ id, config: { ...config, parts: { acceptor: true, candidate: true } } });
  return {
    leader,
    servers: acceptors.map(server),
    rmConfig: { ...config, parts: { rm: true, candidate: colocated } },
    config,
  };
}
