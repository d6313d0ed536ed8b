// The cores the script runner (./script.ts) drives, each described by what
// differs between them: the roles behind the commands that create nodes, the
// codecs (if the core has them), and which checks apply. Everything else —
// the commands, the disk rule, the trace — is the runner's, the same for all.

import type { Codec } from '../../src/protocol/common/codec.ts';
import { naiveMsgCodec, naiveRecordCodec } from '../../src/protocol/common/codec.ts';
import { naiveCoordinator, naiveParticipant } from '../../src/protocol/naive/naive.ts';
import { paxosInvariants } from '../../src/protocol/paxos-commit/invariants.ts';
import { type PaxosCommitOptions, paxosCommitLayout } from '../../src/protocol/paxos-commit/layout.ts';
import { paxosCommitNode } from '../../src/protocol/paxos-commit/node.ts';
import { threePcCoordinator } from '../../src/protocol/threepc/coordinator.ts';
import { threePcParticipant } from '../../src/protocol/threepc/participant.ts';
import { twoPcMsgCodec, twoPcRecordCodec } from '../../src/protocol/twopc/codec.ts';
import { twoPcCoordinator } from '../../src/protocol/twopc/coordinator.ts';
import { twoPcParticipant } from '../../src/protocol/twopc/participant.ts';
import type { AnyRole, ScriptNodeSpec, ScriptProtocol, Tagged } from './script.ts';

export const twoPcProtocol: ScriptProtocol = {
  name: '2pc',
  coordinator: twoPcCoordinator as AnyRole,
  participant: twoPcParticipant as AnyRole,
  config: (incarnation) => ({ incarnation: String(incarnation) }),
  msgCodec: twoPcMsgCodec as unknown as Codec<Tagged>,
  recordCodec: twoPcRecordCodec as unknown as Codec<Tagged>,
  atomic: true,
  twoPcRules: true,
};

export const naiveProtocol: ScriptProtocol = {
  name: 'naive',
  coordinator: naiveCoordinator as AnyRole,
  participant: naiveParticipant as AnyRole,
  config: () => ({}),
  msgCodec: naiveMsgCodec as unknown as Codec<Tagged>,
  recordCodec: naiveRecordCodec as unknown as Codec<Tagged>,
  atomic: false,
  twoPcRules: false,
};

// `paxos-commit RM... [F=N] [faster] [colocated]` creates the RMs and the
// servers of src/protocol/paxos-commit/layout.ts: by default the leader
// `coord` (also acceptor 0) and acceptors `acc1` … `acc2F`; co-located, the
// first RM leads and the acceptors are `acc0` … `acc2F`.
function paxosCommitSetup(args: string[]): ScriptNodeSpec[] {
  const rms: string[] = [];
  const options: PaxosCommitOptions = {};
  for (const a of args) {
    if (a === 'faster') options.faster = true;
    else if (a === 'colocated') options.colocated = true;
    else if (a.startsWith('F=')) options.F = Number(a.slice(2));
    else rms.push(a);
  }
  const layout = paxosCommitLayout(rms, options);
  const role = paxosCommitNode as AnyRole;
  const servers = layout.servers
    .filter((s) => !rms.includes(s.id))
    .map(
      (s): ScriptNodeSpec => ({
        id: s.id,
        kind: s.id === layout.leader ? 'coordinator' : 'acceptor',
        role,
        config: () => s.config,
      }),
    );
  const rmNodes = rms.map(
    (id): ScriptNodeSpec => ({ id, kind: 'participant', role, config: () => layout.rmConfig }),
  );
  return [...servers, ...rmNodes];
}

export const paxosCommitProtocol: ScriptProtocol = {
  name: 'paxos-commit',
  config: () => ({}),
  setup: { 'paxos-commit': paxosCommitSetup },
  atomic: true,
  twoPcRules: false,
  invariants: (states) => paxosInvariants(states),
};

/**
 * 3PC is not checked for atomicity: under a partition it splits, and the
 * scripts show that run (testdata/threepc/partition-splits.txt). Its traces
 * and `rm` lines carry the outcome of every crash-only script instead.
 */
export const threePcProtocol: ScriptProtocol = {
  name: '3pc',
  coordinator: threePcCoordinator as AnyRole,
  participant: threePcParticipant as AnyRole,
  config: () => ({}),
  atomic: false,
  twoPcRules: false,
  rmRecords: {
    prepared: { from: 'working', to: 'prepared' },
    precommitted: { from: 'prepared', to: 'precommitted' },
  },
};
