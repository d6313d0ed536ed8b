// The cores the script runner (./script.ts) drives, each described by what
// differs between them: the roles behind the commands that create nodes, the
// codecs (if the core has them), and which checks apply. Everything else —
// the commands, the disk rule, the trace — is the runner's, the same for all.

import { type Handler, type ServiceState, sagaService } from '../../src/protocol/branch/service.ts';
import type { OperatorMsg, ReportSaga } from '../../src/protocol/branch/types.ts';
import type { Codec } from '../../src/protocol/common/codec.ts';
import { naiveMsgCodec, naiveRecordCodec } from '../../src/protocol/common/codec.ts';
import { naiveCoordinator, naiveParticipant } from '../../src/protocol/naive/naive.ts';
import { paxosInvariants } from '../../src/protocol/paxos-commit/invariants.ts';
import { type PaxosCommitOptions, paxosCommitLayout } from '../../src/protocol/paxos-commit/layout.ts';
import { paxosCommitNode } from '../../src/protocol/paxos-commit/node.ts';
import { sagaOrchestrator } from '../../src/protocol/saga/orchestrator.ts';
import type { SagaPlan, SagaPlanStep } from '../../src/protocol/saga/types.ts';
import { tccCoordinator } from '../../src/protocol/tcc/coordinator.ts';
import type { TccPlan, TccPlanBranch } from '../../src/protocol/tcc/types.ts';
import { threePcCoordinator } from '../../src/protocol/threepc/coordinator.ts';
import { threePcParticipant } from '../../src/protocol/threepc/participant.ts';
import { twoPcMsgCodec, twoPcRecordCodec } from '../../src/protocol/twopc/codec.ts';
import { twoPcCoordinator } from '../../src/protocol/twopc/coordinator.ts';
import { twoPcParticipant } from '../../src/protocol/twopc/participant.ts';
import { payloadField } from '../../src/sim/branch/booking.ts';
import {
  type AnyRole,
  type Cluster,
  ScriptError,
  type ScriptNodeSpec,
  type ScriptProtocol,
  type Tagged,
} from './script.ts';

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

// `paxos-commit RM... [F=N] [faster] [colocated] [fanout=quorum|all]` creates
// the RMs and the servers of src/protocol/paxos-commit/layout.ts: by default
// the leader `coord` (also acceptor 0) and acceptors `acc1` … `acc2F`;
// co-located, the first RM leads and the acceptors are `acc0` … `acc2F`.
// RMs vote to the first F+1 acceptors unless `fanout=all`.
function paxosCommitSetup(args: string[]): ScriptNodeSpec[] {
  const rms: string[] = [];
  const options: PaxosCommitOptions = {};
  for (const a of args) {
    if (a === 'faster') options.faster = true;
    else if (a === 'colocated') options.colocated = true;
    else if (a.startsWith('F=')) options.F = Number(a.slice(2));
    else if (a === 'fanout=quorum' || a === 'fanout=all')
      options.acceptorFanout = a === 'fanout=all' ? 'all' : 'quorum';
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

// ------------------------------------------------------------- saga and TCC

const flag = payloadField;

/**
 * The services' handlers, steered by the payload (flags `k=v`, separated by
 * `;`). Saga: `do` adds 1 to `done:<txn>:<branch>` and `undo` takes it back.
 * TCC: `reserve` (try) holds `held:<txn>:<branch>`, `commit` (confirm) turns
 * it into `final:...`, `release` (cancel) gives it back. `fail=1` refuses the
 * forward op, `pending=k` answers its first k attempts `ongoing`, `cfail=k`
 * fails the first k attempts of the compensation (saga) or confirm (TCC).
 */
export const branchHandlers: Record<string, Handler> = {
  do: (ctx) => {
    if (flag(ctx.payload, 'fail') === 1) return { result: 'failure', reason: 'refused by the test' };
    if (ctx.attempt <= flag(ctx.payload, 'pending')) return { result: 'ongoing', reason: 'pending' };
    return { result: 'success', writes: [{ key: `done:${ctx.txn}:${ctx.branch}`, delta: 1 }] };
  },
  undo: (ctx) => {
    if (ctx.attempt <= flag(ctx.payload, 'cfail'))
      return { result: 'failure', reason: 'compensation failed' };
    return { result: 'success', writes: [{ key: `done:${ctx.txn}:${ctx.branch}`, delta: -1 }] };
  },
  reserve: (ctx) => {
    if (flag(ctx.payload, 'fail') === 1) return { result: 'failure', reason: 'sold out' };
    if (ctx.attempt <= flag(ctx.payload, 'pending')) return { result: 'ongoing', reason: 'pending' };
    return { result: 'success', writes: [{ key: `held:${ctx.txn}:${ctx.branch}`, delta: 1 }] };
  },
  commit: (ctx) => {
    if (ctx.attempt <= flag(ctx.payload, 'cfail')) return { result: 'failure', reason: 'confirm failed' };
    const k = `${ctx.txn}:${ctx.branch}`;
    return {
      result: 'success',
      writes: [
        { key: `held:${k}`, delta: -1 },
        { key: `final:${k}`, delta: 1 },
      ],
    };
  },
  release: (ctx) => ({ result: 'success', writes: [{ key: `held:${ctx.txn}:${ctx.branch}`, delta: -1 }] }),
};

function scriptFail(why: string): never {
  throw new ScriptError(why);
}

/** `key=value` arguments as a config object (numbers where they parse as one). */
function configOf(args: readonly string[]): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  for (const a of args) {
    const eq = a.indexOf('=');
    if (eq <= 0) scriptFail(`expected key=value, got ${a}`);
    const v = a.slice(eq + 1);
    config[a.slice(0, eq)] = v === 'Infinity' || /^-?[0-9.]+$/.test(v) ? Number(v) : v;
  }
  return config;
}

// `orchestrator ID [key=value...]`: the orchestrator, with those config
// fields over the core's defaults. `service ID... [nobarrier]`: services
// running the handlers above, guarded by the barrier unless `nobarrier`.
function branchSetup(orchestrator: AnyRole): ScriptProtocol['setup'] {
  return {
    orchestrator: ([id, ...rest]) => {
      if (id === undefined) scriptFail('usage: orchestrator ID [key=value...]');
      const config = configOf(rest);
      return [{ id, kind: 'coordinator', role: orchestrator, config: () => config }];
    },
    service: (args) => {
      const barrier = !args.includes('nobarrier');
      const config = { handlers: branchHandlers, initialRows: [], barrier };
      return args
        .filter((a) => a !== 'nobarrier')
        .map((id) => ({ id, kind: 'participant', role: sagaService as AnyRole, config: () => config }));
    },
  };
}

/**
 * A step or branch token: `BRANCH@SERVICE[:PART]...`, where a PART is
 * `after=A+B` (`after=` for a root), `nocomp` (no compensation), or a payload
 * flag `k=v` (flags are joined with `;`).
 */
function parseBranch(token: string): {
  branch: string;
  service: string;
  payload: string;
  after?: string[];
  nocomp: boolean;
} {
  const [head, ...parts] = token.split(':');
  const [branch, service] = head!.split('@');
  if (branch === undefined || service === undefined)
    scriptFail(`expected BRANCH@SERVICE[:...], got ${token}`);
  const flags: string[] = [];
  let after: string[] | undefined;
  let nocomp = false;
  for (const p of parts) {
    if (p.startsWith('after=')) after = p.slice(6) === '' ? [] : p.slice(6).split('+');
    else if (p === 'nocomp') nocomp = true;
    else flags.push(p);
  }
  return { branch, service, payload: flags.join(';'), ...(after !== undefined ? { after } : {}), nocomp };
}

/** Splits `TOKEN... [timeout=MS] [forward] [entropy=N]` into branch tokens and options. */
function beginArgs(args: readonly string[], entropyDefault: number) {
  let timeoutMs: number | undefined;
  let forward = false;
  let entropy = entropyDefault;
  const tokens: string[] = [];
  for (const a of args) {
    if (a.startsWith('timeout=')) timeoutMs = Number(a.slice(8));
    else if (a.startsWith('entropy=')) entropy = Number(a.slice(8));
    else if (a === 'forward') forward = true;
    else tokens.push(a);
  }
  return { tokens, entropy, forward, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
}

/** Rows and statistics of a service, and the open runs of an orchestrator. */
function branchShowCommands(runsOf: (state: unknown) => Map<string, { status: string }>) {
  return {
    rows: (c: Cluster, ids: string[]) => {
      for (const id of ids) {
        const rows = (c.node(id).state as ServiceState).rows;
        const parts = [...rows].map(([k, v]) => `${k}=${v}`);
        c.say(`${id}: ${parts.length === 0 ? 'no rows' : parts.join(' ')}`);
      }
    },
    stats: (c: Cluster, ids: string[]) => {
      for (const id of ids) {
        const s = (c.node(id).state as ServiceState).stats;
        c.say(
          `${id}: ${Object.entries(s)
            .map(([k, v]) => `${k}=${v}`)
            .join(' ')}`,
        );
      }
    },
    runs: (c: Cluster, [id]: string[]) => {
      const runs = runsOf(c.node(id ?? scriptFail('usage: runs ORCHESTRATOR')).state);
      const parts = [...runs].map(([txn, r]) => `${txn}=${r.status}`);
      c.say(`${id}: ${parts.length === 0 ? 'no runs' : `runs ${parts.join(' ')}`}`);
    },
  };
}

// `operator ORCH TXN ACTION [outcome=O] REASON...`: an operator's message,
// from `ops`. The core's verdict on it (operatorProblem) is printed first, so
// a refusal shows why.
function operatorCommand(role: { operatorProblem(state: never, msg: OperatorMsg): string | null }) {
  return (c: Cluster, args: string[]) => {
    const [to, txn, action, ...rest] = args;
    if (to === undefined || txn === undefined || action === undefined) {
      scriptFail('usage: operator ORCH TXN ACTION [outcome=O] REASON...');
    }
    const outcome = rest[0]?.startsWith('outcome=') ? rest.shift()!.slice(8) : undefined;
    const msg = {
      type: 'OPERATOR',
      txn,
      action,
      ...(outcome !== undefined ? { outcome } : {}),
      reason: rest.join(' '),
    };
    const problem = role.operatorProblem(c.node(to).state as never, msg as OperatorMsg);
    c.say(`operator: ${problem === null ? 'accepted' : `refused: ${problem}`}`);
    c.receive(to, 'ops', msg);
  };
}

function reportText(e: { type: string }): string {
  if (e.type !== 'reportSaga') scriptFail(`no way to print a ${e.type} effect`);
  const r = e as ReportSaga;
  const reason = r.reason === null ? '' : ` reason="${r.reason}"`;
  const retrying = r.retrying === true ? ' retrying' : '';
  return `report ${r.txn} ${r.outcome}${reason}${retrying} to ${r.client}${r.afterPersist ? ' after-persist' : ''}`;
}

// `saga ORCH TXN STEP... [timeout=MS] [forward] [entropy=N]`: the client asks
// for a saga over those steps (Garcia-Molina & Salem 1987: a sequence by
// default, a graph with `after=`).
function sagaCommand(c: Cluster, args: string[]): void {
  const [to, txn, ...rest] = args;
  if (to === undefined || txn === undefined) scriptFail('usage: saga ORCH TXN STEP...');
  const { tokens, entropy, forward, timeoutMs } = beginArgs(rest, 7);
  const steps = tokens.map((t): SagaPlanStep => {
    const b = parseBranch(t);
    return {
      branch: b.branch,
      service: b.service,
      action: 'do',
      compensation: b.nocomp ? null : 'undo',
      payload: b.payload,
      ...(b.after !== undefined ? { after: b.after } : {}),
    };
  });
  const def: SagaPlan = {
    steps,
    ...(forward ? { recovery: 'forward' as const } : {}),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
  };
  c.receive(to, 'client', { type: 'BEGIN', txn, def, entropy } as unknown as Tagged);
}

// `tcc COORD TXN BRANCH... [timeout=MS] [entropy=N]`: the client asks for a
// TCC transaction over those branches (try `reserve`, confirm `commit`,
// cancel `release`).
function tccCommand(c: Cluster, args: string[]): void {
  const [to, txn, ...rest] = args;
  if (to === undefined || txn === undefined) scriptFail('usage: tcc COORD TXN BRANCH...');
  const { tokens, entropy, timeoutMs } = beginArgs(rest, 3);
  const branches = tokens.map((t): TccPlanBranch => {
    const b = parseBranch(t);
    return {
      branch: b.branch,
      service: b.service,
      try: 'reserve',
      confirm: 'commit',
      cancel: 'release',
      payload: b.payload,
    };
  });
  const def: TccPlan = { branches, ...(timeoutMs !== undefined ? { timeoutMs } : {}) };
  c.receive(to, 'client', { type: 'BEGIN', txn, def, entropy } as unknown as Tagged);
}

/**
 * A core of the saga family: its orchestrator, the command that begins a
 * transaction, and where its state keeps the open runs. The services, the
 * operator command and the report are the same for all of them.
 */
function branchFamilyProtocol(
  name: string,
  orchestrator: { operatorProblem(state: never, msg: OperatorMsg): string | null },
  begin: (c: Cluster, args: string[]) => void,
  runsOf: (state: unknown) => Map<string, { status: string }>,
): ScriptProtocol {
  return {
    name,
    config: () => ({}),
    setup: branchSetup(orchestrator as unknown as AnyRole),
    commands: { [name]: begin, operator: operatorCommand(orchestrator), ...branchShowCommands(runsOf) },
    effectText: reportText,
    atomic: false,
    twoPcRules: false,
  };
}

/** Sagas (src/protocol/saga): the orchestrator and the barrier-guarded service. */
export const sagaProtocol = branchFamilyProtocol(
  'saga',
  sagaOrchestrator,
  sagaCommand,
  (s) => (s as { sagas: Map<string, { status: string }> }).sagas,
);

/** TCC (src/protocol/tcc): the coordinator and the same barrier-guarded service. */
export const tccProtocol = branchFamilyProtocol(
  'tcc',
  tccCoordinator,
  tccCommand,
  (s) => (s as { txns: Map<string, { status: string }> }).txns,
);
