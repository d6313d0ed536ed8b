// A scripted cluster for protocol cores, and the runner for the data-driven
// interaction tests in testdata/ (in the manner of etcd-io/raft's testdata:
// commands in, the exact trace of effects out, REWRITE=1 to regenerate).
//
// The cluster drives the very cores the simulator and the runtime drive,
// through the `Role` port, and carries out their effects under the ordering
// rule of src/protocol/common/types.ts. Nothing happens unless a command says
// so: messages are delivered, timers fired, writes completed and nodes crashed
// only on command. Every message crosses the wire codec and every log record
// the log codec (or JSON, for a core without codecs), so the scripts exercise
// those too.
//
// One runner serves every core: what differs between cores (the commands
// that create nodes, the codecs, which checks apply, the core's own
// invariants) is a `ScriptProtocol`, and ./script-cores.ts holds one per core.
//
// Script files
// ------------
// A file is a sequence of blocks. A block is one or more command lines, a line
// `----`, and the expected output, which runs to the next blank line (or the
// end of the file). Lines starting with `#` outside an output are comments.
// Each output line is `node: what happened`; a block whose commands print
// nothing expects `ok`.
//
// Commands (ids are node names, txn ids are transaction ids):
//   coordinator C...            create coordinators (the role's init)
//   participant P...            create participants
//   paxos-commit RM... [F=N] [faster] [colocated] [fanout=quorum|all]
//                               (Paxos Commit) create the RMs, the leader and
//                               the acceptors of that layout (script-cores.ts)
//   orchestrator O [key=value...] / service S... [nobarrier]
//                               (saga, TCC) create an orchestrator with that
//                               config over the core's defaults / services
//   saga O T STEP... / tcc O T BRANCH...
//                               (saga, TCC) the client asks O for a saga or a
//                               TCC transaction T; the step syntax and the
//                               services' handlers are in script-cores.ts
//   operator O T ACTION [outcome=X] REASON...
//                               (saga, TCC) an operator's message, with the
//                               core's verdict on it printed first
//   rows S... / stats S... / runs O
//                               (saga, TCC) a service's rows / barrier
//                               statistics, an orchestrator's open runs
//   begin C T P...              the client asks C to commit T over P...
//   executed P T C [read-only]  P's resource manager finished T's work; C decides
//   wounded P T                 P's resource manager must give T up
//   deliver FROM TO MSG         deliver a message FROM sent TO. MSG is its text
//                               (`VOTE t1 yes 1.1`) or a prefix of it
//                               (`VOTE t1 yes`) that names one message. The
//                               network is a set that only grows: any message
//                               ever sent may be delivered, again and again
//                               (duplicates), late (reordering) or never (loss).
//   inject FROM TO MSG          deliver a message nobody sent (MSG in full; its
//                               JSON for a core without a codec)
//   stabilize [lose RULE]...    deliver every undelivered message, oldest
//                               first, until none is left; a message matching
//                               a RULE is lost instead (see lossRules)
//   timeout N TIMER             fire one of N's armed timers
//   hold N...                   N's log writes stop completing on their own
//   flush N...                  every pending write of N completes (durable)
//   unhold N...                 flush, and complete writes on their own again
//   persisted N TYPE T          N's pending write of record TYPE for T completes
//                               alone (the writes after it stay pending)
//   persist-failed N TYPE T     N's pending write of record TYPE for T fails
//   crash N...                  N loses its state, timers, pending writes and
//                               every effect still waiting for them
//   crash-after-flush N         N's pending writes all become durable, and N
//                               crashes before carrying out anything that
//                               waited for them (fsync returned, then the
//                               process died)
//   recover N...                rebuild N with the role's recover() from its
//                               durable log
//   log N / timers N            show N's log (pending writes marked) / armed timers
//   undelivered                 messages sent more often than delivered
//   sent / writes               messages sent so far, by type / durable writes,
//                               forced and lazy, over every node
//   rm T                        each resource manager's state for T
//
// The disk rule: by default a node's writes complete (become durable) right
// after the step that issued them, before the next command, and that step's
// after-persist effects are then carried out; the trace shows them once, as
// the step's effects. After `hold N`, N's writes stay pending until `flush`,
// `persist-failed` or `crash`, and the trace shows each write completing
// (`durable ...`, `failed ...`) and each held effect being carried out
// (`released ...`), dropped because a write it waited for failed (`dropped
// ...`, followed by the core's `persistFailed` step), or lost in a crash
// (`lost ...`). An after-persist effect waits for every write its node issued
// up to its step; when a write fails, every later pending write of the node
// fails with it (a log is sequential), and the effects of its step and of
// every step queued behind it are dropped at once (the rule and its keeper,
// src/protocol/common/sequencer.ts, are the simulator's and the runtime's).
//
// Checks, on every step (a breach aborts the script with an error, so a
// script can never record one as expected output):
//   - every message encodes and every record round-trips through the codec;
//   - the core's own invariants (Paxos Commit: paxosInvariants, over every
//     node that is up);
//   - resource managers (cores checked for atomicity): a commit only when every participant of the
//     transaction is prepared (durable `prepared`), committed or left, and
//     never both a commit and an abort of one transaction (TCommit.tla's
//     TCConsistent and its refinement, PROTOCOLS.md section 1);
//   - (2PC only) VOTE yes only as `send-after-persist`, with `prepared` issued in that
//     step or earlier, and only leaving once `prepared` is durable;
//   - COMMIT from a coordinator only with a forced `commit` record issued in
//     that step or earlier, and only leaving once it is durable;
//   - ACK only leaving once the participant's `committed` is durable;
//   - no participant aborts a transaction once a coordinator's `commit`
//     record for it is durable (the decision is that record);
//   - the outcome reported for a transaction never changes.

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import type { Codec } from '../../src/protocol/common/codec.ts';
import { AfterPersistSequencer, type WriteFailure } from '../../src/protocol/common/sequencer.ts';
import type { Effect, Input, NodeId, Role, TxnId } from '../../src/protocol/common/types.ts';

export type Tagged = { type: string; txn: TxnId };
type AnyEffect = Effect<unknown, unknown>;
export type AnyRole = Role<unknown, unknown, unknown, unknown>;

/**
 * Which part a node plays, for the checks: participants run a resource
 * manager (their durable `prepared` record makes it prepared, a crash rolls
 * back its unprepared work); coordinators decide; acceptors only remember.
 */
export type NodeKind = 'coordinator' | 'participant' | 'acceptor';

/** A node that a setup command creates. */
export interface ScriptNodeSpec {
  id: NodeId;
  kind: NodeKind;
  role: AnyRole;
  /** The role config for the node's `incarnation`-th start (1, 2, ...). */
  config(incarnation: number): unknown;
}

/**
 * What the cluster needs to know about a core. The runner is the same for
 * every core; this is all that differs between them.
 */
export interface ScriptProtocol {
  name: string;
  /** The roles behind the `coordinator` and `participant` commands, for cores that have them. */
  coordinator?: AnyRole;
  participant?: AnyRole;
  /** The role config for a `coordinator` or `participant` node's `incarnation`-th start. */
  config(incarnation: number): unknown;
  /**
   * Further commands that create nodes, by name: each takes the command's
   * arguments and returns the nodes (a core whose nodes come as a layout, such
   * as Paxos Commit's acceptors and leader, is set up in one command).
   */
  setup?: Record<string, (args: string[]) => ScriptNodeSpec[]>;
  /**
   * The wire and log codecs. A core without one is sent through JSON, and its
   * messages and records are printed with their fields in declaration order.
   */
  msgCodec?: Codec<Tagged>;
  recordCodec?: Codec<Tagged>;
  /**
   * Whether atomicity is checked: resource managers never split, a commit only
   * once every participant prepared, the reported outcome never changes (naive
   * commit is allowed to end partial, and 3PC is shown splitting under a
   * partition, so they record what happens instead).
   */
  atomic: boolean;
  /** Whether the 2PC ordering rules on VOTE yes, COMMIT and ACK are checked (they name 2PC's messages). */
  twoPcRules: boolean;
  /**
   * The participant records that move its resource manager on once durable,
   * by record type: `prepared` (working → prepared) unless a core says more
   * (3PC's `precommitted`).
   */
  rmRecords?: Record<string, { from: RmState; to: RmState }>;
  /**
   * Commands of this core beyond the runner's, by name: how the core's own
   * inputs (a saga's BEGIN, an operator's message) are built from a command
   * line, and what its state looks like (a service's rows). Each drives the
   * cluster through `receive` and prints through `say`.
   */
  commands?: Record<string, (cluster: Cluster, args: string[]) => void>;
  /** How to print an effect that is not one of the common ones (the saga cores' `reportSaga`). */
  effectText?(effect: { type: string }): string;
  /** The core's own invariants over the states of the nodes that are up, checked after every step. */
  invariants?(states: unknown[]): string[];
}

/** A broken command (unknown node, a message nobody sent...) or a breached check. */
export class ScriptError extends Error {
  override name = 'ScriptError';
}

export const clientId = 'client';

type WriteStatus = 'pending' | 'durable' | 'failed' | 'lost';

interface Write {
  seq: number;
  record: Tagged;
  force: boolean;
  status: WriteStatus;
}

export interface ScriptNode {
  id: NodeId;
  kind: NodeKind;
  role: AnyRole;
  config(incarnation: number): unknown;
  up: boolean;
  incarnation: number;
  state: unknown;
  /** Armed timers and their delays. */
  timers: Map<string, number>;
  /** Every write ever issued, in issue order (`seq` is the sequencer's number). */
  writes: Write[];
  /** The ordering rule: which after-persist effects each completed write releases. */
  sequencer: AfterPersistSequencer<AnyEffect, Tagged>;
  hold: boolean;
}

interface Envelope {
  from: NodeId;
  to: NodeId;
  /** The message's text form: its type and field values, as printed. */
  text: string;
  /** What went over the wire. */
  wire: string;
  sent: number;
  delivered: number;
}

export type RmState = 'working' | 'prepared' | 'precommitted' | 'committed' | 'aborted' | 'left';

const defaultRmRecords: Record<string, { from: RmState; to: RmState }> = {
  prepared: { from: 'working', to: 'prepared' },
};

function formatValue(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(formatValue).join(' ')}]`;
  if (v !== null && typeof v === 'object') {
    const fields = Object.entries(v).map(([k, x]) => `${k}=${formatValue(x)}`);
    return `{${fields.join(' ')}}`;
  }
  return String(v);
}

/** What goes over the wire or into the log for a core without a codec. */
function viaJson<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export class Cluster {
  readonly nodes = new Map<NodeId, ScriptNode>();
  /** Every message ever sent, keyed by from, to and text, in order of first sending. */
  readonly network = new Map<string, Envelope>();
  /** Resource manager states by transaction, then participant. */
  readonly rms = new Map<TxnId, Map<NodeId, RmState>>();
  /** The participants of each transaction's latest begin. */
  readonly begins = new Map<TxnId, readonly NodeId[]>();
  /** Every outcome reported to the client, per transaction. */
  readonly outcomes = new Map<TxnId, string>();
  private out: string[] = [];

  constructor(readonly protocol: ScriptProtocol) {}

  // ------------------------------------------------------------- formatting

  // A message of a core with a codec prints its values in the codec's field
  // order (`VOTE t1 yes 1.1`); without one, fields are named, as in records,
  // because those messages carry more of them (`PHASE2A t1 bal=0 ...`).
  msgText(msg: unknown): string {
    const codec = this.protocol.msgCodec;
    if (codec === undefined) return this.tagged(msg as Tagged, undefined, true);
    return this.tagged(codec.check(msg), codec, false);
  }

  recordText(record: unknown): string {
    const codec = this.protocol.recordCodec;
    return this.tagged(codec === undefined ? (record as Tagged) : codec.check(record), codec, true);
  }

  private encodeMsg(msg: Tagged): { wire: string; msg: Tagged } {
    const codec = this.protocol.msgCodec;
    if (codec === undefined) return { wire: JSON.stringify(msg), msg: viaJson(msg) };
    const wire = codec.encode(msg);
    return { wire, msg: codec.decode(wire) };
  }

  private decodeMsg(wire: string): Tagged {
    const codec = this.protocol.msgCodec;
    return codec === undefined ? (JSON.parse(wire) as Tagged) : codec.decode(wire);
  }

  private roundTripRecord(record: Tagged): Tagged {
    const codec = this.protocol.recordCodec;
    return codec === undefined ? viaJson(record) : codec.decode(codec.encode(record));
  }

  private tagged(v: Tagged, codec: Codec<Tagged> | undefined, named: boolean): string {
    const parts = [v.type];
    const fields = v as unknown as Record<string, unknown>;
    const order =
      codec === undefined ? Object.keys(v).filter((f) => f !== 'type') : Object.keys(codec.shapes[v.type]!);
    for (const f of order) {
      // An optional field that is absent is not printed at all.
      if (!Object.hasOwn(fields, f)) continue;
      if (f === 'txn' || !named) parts.push(formatValue(fields[f]));
      else parts.push(`${f}=${formatValue(fields[f])}`);
    }
    return parts.join(' ');
  }

  effectText(e: AnyEffect): string {
    switch (e.type) {
      case 'persist':
        return `persist ${e.force ? 'force' : 'lazy'} ${this.recordText(e.record)}`;
      case 'send':
        return `send ${e.to} ${this.msgText(e.msg)}`;
      case 'sendAfterPersist':
        return `send-after-persist ${e.to} ${this.msgText(e.msg)}`;
      case 'setTimer':
        return `set-timer ${e.timer} ${e.delayMs}ms`;
      case 'cancelTimer':
        return `cancel-timer ${e.timer}`;
      case 'resource':
        return `resource ${e.action} ${e.txn}${e.afterPersist ? ' after-persist' : ''}`;
      case 'reportOutcome':
        return `outcome ${e.txn} ${e.outcome} to ${e.client}${e.afterPersist ? ' after-persist' : ''}`;
      default: {
        const other = e as { type: string };
        return this.protocol.effectText?.(other) ?? this.fail(`no way to print a ${other.type} effect`);
      }
    }
  }

  /** Print a line of a core's own command. */
  say(line: string): void {
    this.out.push(line);
  }

  /** `to` receives `msg` from `from`, who is outside the cluster (a client, an operator). */
  receive(to: NodeId, from: NodeId, msg: Tagged): void {
    this.stepCommand(to, { type: 'receive', from, msg: this.encodeMsg(msg).msg });
  }

  private print(node: NodeId, line: string): void {
    this.out.push(`${node}: ${line}`);
  }

  private fail(why: string): never {
    throw new ScriptError(why);
  }

  // ---------------------------------------------------------------- queries

  node(id: NodeId): ScriptNode {
    return this.nodes.get(id) ?? this.fail(`no node ${id}`);
  }

  private upNode(id: NodeId): ScriptNode {
    const n = this.node(id);
    if (!n.up) this.fail(`${id} is down`);
    return n;
  }

  durableLog(n: ScriptNode): Tagged[] {
    return n.writes.filter((w) => w.status === 'durable').map((w) => w.record);
  }

  pendingWrites(n: ScriptNode): Write[] {
    return n.writes.filter((w) => w.status === 'pending');
  }

  /** Messages sent more often than delivered, in order of first sending. */
  undelivered(): Envelope[] {
    return [...this.network.values()].filter((e) => e.sent > e.delivered);
  }

  rm(txn: TxnId, node: NodeId): RmState | undefined {
    return this.rms.get(txn)?.get(node);
  }

  // -------------------------------------------------------------- execution

  /** Run one command line; returns the lines it printed. */
  run(line: string): string[] {
    this.out = [];
    const [cmd, ...args] = line.trim().split(/\s+/);
    const need = (n: number, usage: string) => {
      if (args.length < n) this.fail(`usage: ${usage}`);
    };
    switch (cmd) {
      case 'coordinator':
      case 'participant': {
        need(1, `${cmd} ID...`);
        const role = this.protocol[cmd] ?? this.fail(`${this.protocol.name} has no ${cmd} role`);
        for (const id of args) this.create({ id, kind: cmd, role, config: this.protocol.config });
        break;
      }
      case 'begin': {
        need(3, 'begin COORDINATOR TXN PARTICIPANT...');
        const [c, txn, ...participants] = args as [string, string, ...string[]];
        this.begins.set(txn, participants);
        this.stepCommand(c, { type: 'begin', txn, participants, client: clientId });
        break;
      }
      case 'executed': {
        need(3, 'executed PARTICIPANT TXN COORDINATOR [read-only]');
        const [p, txn, c, flag] = args as [string, string, string, string?];
        if (flag !== undefined && flag !== 'read-only') this.fail(`executed: unknown flag ${flag}`);
        const rms = this.rmsOf(txn);
        if (!rms.has(p)) rms.set(p, 'working');
        this.stepCommand(p, { type: 'executed', txn, coordinator: c, readOnly: flag === 'read-only' });
        break;
      }
      case 'wounded': {
        need(2, 'wounded PARTICIPANT TXN');
        this.stepCommand(args[0]!, { type: 'wounded', txn: args[1]! });
        break;
      }
      case 'deliver':
      case 'inject': {
        need(3, `${cmd} FROM TO MSG`);
        const [from, to, ...tokens] = args as [string, string, ...string[]];
        if (cmd === 'deliver') this.deliver(from, to, tokens.join(' '));
        else this.inject(from, to, tokens);
        break;
      }
      case 'timeout': {
        need(2, 'timeout NODE TIMER');
        const n = this.upNode(args[0]!);
        const timer = args[1]!;
        if (!n.timers.has(timer))
          this.fail(`${n.id} has no timer ${timer} armed (armed: ${[...n.timers.keys()]})`);
        n.timers.delete(timer);
        this.stepCommand(n.id, { type: 'timeout', timer });
        break;
      }
      case 'hold':
      case 'flush':
      case 'unhold':
        need(1, `${cmd} NODE...`);
        for (const id of args) {
          const n = this.upNode(id);
          if (cmd === 'hold') n.hold = true;
          else this.flush(n, true);
          if (cmd === 'unhold') n.hold = false;
        }
        break;
      case 'persisted':
      case 'persist-failed': {
        need(3, `${cmd} NODE TYPE TXN`);
        const n = this.upNode(args[0]!);
        const w = this.pendingWrites(n).find((x) => x.record.type === args[1] && x.record.txn === args[2]);
        if (w === undefined) this.fail(`${n.id} has no pending write ${args[1]} ${args[2]} (is it held?)`);
        this.complete(n, w, cmd === 'persisted', true);
        break;
      }
      case 'crash':
        need(1, 'crash NODE...');
        for (const id of args) this.crash(this.upNode(id));
        break;
      case 'crash-after-flush': {
        need(1, 'crash-after-flush NODE');
        const n = this.upNode(args[0]!);
        for (const w of this.pendingWrites(n)) this.markDurable(n, w, true);
        this.crash(n);
        break;
      }
      case 'recover':
        need(1, 'recover NODE...');
        for (const id of args) this.recover(this.node(id));
        break;
      case 'log': {
        need(1, 'log NODE');
        const n = this.node(args[0]!);
        if (!n.writes.some((w) => w.status === 'durable' || w.status === 'pending'))
          this.print(n.id, 'log empty');
        for (const w of n.writes) {
          if (w.status === 'durable' || w.status === 'pending') {
            const mark = w.status === 'pending' ? ' (pending)' : '';
            this.print(n.id, `log ${w.force ? 'force' : 'lazy'} ${this.recordText(w.record)}${mark}`);
          }
        }
        break;
      }
      case 'timers': {
        need(1, 'timers NODE');
        const n = this.node(args[0]!);
        const armed = [...n.timers].map(([t, ms]) => `${t} ${ms}ms`);
        this.print(n.id, armed.length === 0 ? 'no timers' : `timers ${armed.join(', ')}`);
        break;
      }
      case 'undelivered': {
        const list = this.undelivered();
        if (list.length === 0) this.out.push('network: nothing undelivered');
        for (const e of list) this.out.push(`network: ${e.from} -> ${e.to} ${e.text}`);
        break;
      }
      case 'rm': {
        need(1, 'rm TXN');
        const rms = this.rms.get(args[0]!);
        const parts = [...(rms ?? [])].map(([p, s]) => `${p}=${s}`);
        this.out.push(`${args[0]}: ${parts.length === 0 ? 'no work anywhere' : parts.join(' ')}`);
        break;
      }
      case 'stabilize':
        this.stabilize(this.lossRules(args));
        break;
      case 'sent': {
        const counts = new Map<string, number>();
        for (const e of this.network.values()) {
          const type = e.text.split(' ')[0]!;
          counts.set(type, (counts.get(type) ?? 0) + e.sent);
        }
        const total = [...counts.values()].reduce((a, b) => a + b, 0);
        const parts = [...counts].map(([t, k]) => `${t}=${k}`);
        this.out.push(`network: sent ${total}${parts.length > 0 ? ` (${parts.join(' ')})` : ''}`);
        break;
      }
      case 'writes': {
        let forced = 0;
        let lazy = 0;
        for (const n of this.nodes.values()) {
          for (const w of n.writes) {
            if (w.status !== 'durable') continue;
            if (w.force) forced++;
            else lazy++;
          }
        }
        this.out.push(`disk: ${forced} forced, ${lazy} lazy`);
        break;
      }
      default: {
        const own = cmd === undefined ? undefined : this.protocol.commands?.[cmd];
        if (own !== undefined) {
          own(this, args);
          break;
        }
        const setup = cmd === undefined ? undefined : this.protocol.setup?.[cmd];
        if (setup === undefined) this.fail(`unknown command ${JSON.stringify(cmd)}`);
        for (const spec of setup(args)) this.create(spec);
      }
    }
    return this.out;
  }

  // `stabilize [lose RULE]...`: deliver every undelivered message, oldest
  // first, until none is left (a message sent twice is delivered twice). A
  // message matching a rule is lost instead: taken off the wire unseen. A rule
  // is `TYPE[,TYPE...]` (or `!TYPE,...`: any other type, or `*`) followed by
  // optional `from=N,...`, `from!=N,...`, `to=N,...`, `to!=N,...` and
  // `has=TOKEN` (the message's text has that word, e.g. `has=op=action`).
  private lossRules(args: string[]): ((e: Envelope) => boolean)[] {
    const rules: ((e: Envelope) => boolean)[] = [];
    for (let i = 0; i < args.length; ) {
      if (args[i] !== 'lose' || args[i + 1] === undefined)
        this.fail('usage: stabilize [lose TYPE[,TYPE] [from=N] [to!=N]...]...');
      const type = args[i + 1]!;
      const negated = type.startsWith('!');
      const types = new Set(type.replace(/^!/, '').split(','));
      const tests: ((e: Envelope) => boolean)[] = [
        (e) => type === '*' || types.has(e.text.split(' ')[0]!) !== negated,
      ];
      for (i += 2; i < args.length && args[i] !== 'lose'; i++) {
        if (args[i]!.startsWith('has=')) {
          const token = args[i]!.slice(4);
          tests.push((e) => e.text.split(' ').includes(token));
          continue;
        }
        const m = /^(from|to)(!?)=(.+)$/.exec(args[i]!) ?? this.fail(`stabilize: bad condition ${args[i]}`);
        const [, end, not, ids] = m as unknown as [string, 'from' | 'to', string, string];
        const names = new Set(ids.split(','));
        tests.push((e) => names.has(e[end]) !== (not === '!'));
      }
      rules.push((e) => tests.every((t) => t(e)));
    }
    return rules;
  }

  private stabilize(lose: ((e: Envelope) => boolean)[]): void {
    const deliveriesMax = 10_000; // A core that never settles must fail, not hang the suite.
    for (let k = 0; ; k++) {
      if (k >= deliveriesMax) this.fail(`messages do not settle after ${deliveriesMax} deliveries`);
      const env = [...this.network.values()].find((e) => e.sent > e.delivered);
      if (env === undefined) return;
      if (lose.some((rule) => rule(env))) {
        env.delivered++;
        this.out.push(`network: lost ${env.from} -> ${env.to} ${env.text}`);
        continue;
      }
      this.out.push(`network: ${env.from} -> ${env.to} ${env.text}`);
      this.deliverEnvelope(env);
    }
  }

  private create(spec: ScriptNodeSpec): void {
    const { id, kind, role, config } = spec;
    if (this.nodes.has(id)) this.fail(`node ${id} exists`);
    if (id === clientId) this.fail(`${clientId} is the client's name`);
    this.nodes.set(id, {
      id,
      kind,
      role,
      config,
      up: true,
      incarnation: 1,
      state: role.init(id, config(1)),
      timers: new Map(),
      writes: [],
      sequencer: new AfterPersistSequencer(),
      hold: false,
    });
  }

  private rmsOf(txn: TxnId): Map<NodeId, RmState> {
    let m = this.rms.get(txn);
    if (m === undefined) this.rms.set(txn, (m = new Map()));
    return m;
  }

  private stepCommand(id: NodeId, input: Input<unknown>): void {
    const n = this.upNode(id);
    const before = this.out.length;
    this.step(n, input);
    if (this.out.length === before) this.print(id, 'no effects');
  }

  private step(n: ScriptNode, input: Input<unknown>): void {
    const { state, effects } = n.role.step(n.state, input);
    n.state = state;
    this.execute(n, effects);
    this.checkInvariants(n);
  }

  private checkInvariants(after: ScriptNode): void {
    if (this.protocol.invariants === undefined) return;
    const live = [...this.nodes.values()].filter((n) => n.up).map((n) => n.state);
    const broken = this.protocol.invariants(live);
    if (broken.length > 0) this.fail(`invariants broken after a step of ${after.id}: ${broken.join('; ')}`);
  }

  private deliver(from: NodeId, to: NodeId, text: string): void {
    const matches = [...this.network.values()].filter(
      (e) => e.from === from && e.to === to && (e.text === text || e.text.startsWith(`${text} `)),
    );
    if (matches.length === 0) this.fail(`${from} never sent ${to} a message matching ${text}`);
    if (matches.length > 1) {
      this.fail(
        `${text} matches several messages from ${from} to ${to}: ${matches.map((e) => e.text).join(', ')}`,
      );
    }
    this.deliverEnvelope(matches[0]!);
  }

  private deliverEnvelope(env: Envelope): void {
    env.delivered++;
    const n = this.node(env.to);
    if (!n.up) {
      this.print(env.to, `down, drops ${env.text} from ${env.from}`);
      return;
    }
    this.stepCommand(env.to, { type: 'receive', from: env.from, msg: this.decodeMsg(env.wire) });
  }

  // With a codec, MSG is the message's text form; without one, its JSON.
  private inject(from: NodeId, to: NodeId, tokens: string[]): void {
    const codec = this.protocol.msgCodec;
    if (codec === undefined) {
      const msg = this.encodeMsg(JSON.parse(tokens.join(' ')) as Tagged).msg;
      this.stepCommand(to, { type: 'receive', from, msg });
      return;
    }
    const [type, ...values] = tokens as [string, ...string[]];
    const shape = codec.shapes[type] ?? this.fail(`inject: unknown message type ${type}`);
    const fields = Object.keys(shape);
    // Optional fields come last in every shape, so they may be left off the end.
    const required = fields.filter((f) => {
      const kind = shape[f];
      return !(typeof kind === 'object' && 'optional' in kind);
    });
    if (values.length < required.length || values.length > fields.length) {
      this.fail(`inject: ${type} takes ${fields.join(' ')}`);
    }
    const msg: Record<string, unknown> = { type };
    values.forEach((value, i) => {
      msg[fields[i]!] = value;
    });
    this.stepCommand(to, { type: 'receive', from, msg: this.encodeMsg(msg as Tagged).msg });
  }

  // Carrying out one step's effects, as the sequencer plans them (the rule
  // of src/protocol/common/types.ts, in src/protocol/common/sequencer.ts).
  // Writes first, so that the checks see what the step issued; every record
  // crosses the log codec on its way in.
  private execute(n: ScriptNode, effects: readonly AnyEffect[]): void {
    for (const e of effects) this.print(n.id, this.effectText(e));
    const plan = n.sequencer.step(
      effects.map((e) =>
        e.type === 'persist' ? { ...e, record: this.roundTripRecord(e.record as Tagged) } : e,
      ),
    );
    for (const a of plan.actions) {
      if (a.kind !== 'write') continue;
      const { seq, record, force } = a.write;
      n.writes.push({ seq, record: record as Tagged, force, status: 'pending' });
    }
    for (const e of effects) this.checkIssued(n, e);
    for (const a of plan.actions) if (a.kind === 'apply') this.apply(n, a.effect);
    for (const e of plan.afterPersist) this.apply(n, e);
    if (!n.hold) this.flush(n, false);
  }

  private flush(n: ScriptNode, verbose: boolean): void {
    for (const w of this.pendingWrites(n)) {
      if (w.status === 'pending' && n.up) this.complete(n, w, true, verbose);
    }
  }

  /** `w` is durable: what waited for it is released, but not yet carried out. */
  private markDurable(n: ScriptNode, w: Write, verbose: boolean): void {
    w.status = 'durable';
    n.sequencer.durable(w.seq);
    if (verbose) this.print(n.id, `durable ${this.recordText(w.record)}`);
    const move = (this.protocol.rmRecords ?? defaultRmRecords)[w.record.type];
    if (n.kind === 'participant' && move !== undefined) {
      // Work given up while its prepared record was in flight stays given up.
      const rms = this.rmsOf(w.record.txn);
      if (rms.get(n.id) === move.from) rms.set(n.id, move.to);
    }
  }

  private complete(n: ScriptNode, w: Write, ok: boolean, verbose: boolean): void {
    let failure: WriteFailure<AnyEffect, Tagged> | null = null;
    if (ok) {
      this.markDurable(n, w, verbose);
    } else {
      failure = n.sequencer.failed(w.seq);
      // The log is sequential: every later pending write fails with this one.
      for (const f of failure.failed) {
        const failed = n.writes.find((x) => x.seq === f.seq)!;
        failed.status = 'failed';
        if (verbose) this.print(n.id, `failed ${this.recordText(failed.record)}`);
      }
    }
    // Released effects come from steps before any dropped ones: print in step order.
    for (const e of n.sequencer.release()) {
      if (verbose) this.print(n.id, `released ${this.effectText(e)}`);
      this.apply(n, e);
    }
    if (failure === null) return;
    if (verbose) for (const e of failure.dropped) this.print(n.id, `dropped ${this.effectText(e)}`);
    for (const input of failure.inputs) this.step(n, input);
  }

  private apply(n: ScriptNode, e: AnyEffect): void {
    switch (e.type) {
      case 'send':
      case 'sendAfterPersist': {
        this.checkLeaving(n, e.to, e.msg as Tagged);
        const { wire, msg } = this.encodeMsg(e.msg as Tagged);
        const text = this.msgText(msg);
        const key = `${n.id}\u0000${e.to}\u0000${text}`;
        const env = this.network.get(key);
        if (env === undefined)
          this.network.set(key, { from: n.id, to: e.to, text, wire, sent: 1, delivered: 0 });
        else env.sent++;
        return;
      }
      case 'setTimer':
        n.timers.set(e.timer, e.delayMs);
        return;
      case 'cancelTimer':
        n.timers.delete(e.timer);
        return;
      case 'resource':
        this.applyResource(n, e.txn, e.action);
        return;
      case 'reportOutcome': {
        const prev = this.outcomes.get(e.txn);
        if (this.protocol.atomic && prev !== undefined && prev !== e.outcome) {
          this.fail(`${e.txn}: outcome reported as ${prev}, then as ${e.outcome}`);
        }
        this.outcomes.set(e.txn, e.outcome);
        return;
      }
      case 'persist':
        this.fail('persist effects are issued by execute()');
        return;
      default:
        // A core's own effect (a saga report) only shows in the trace.
        return;
    }
  }

  private applyResource(n: ScriptNode, txn: TxnId, action: 'commit' | 'abort' | 'release'): void {
    const rms = this.rmsOf(txn);
    const prev = rms.get(n.id);
    const next: RmState = action === 'commit' ? 'committed' : action === 'abort' ? 'aborted' : 'left';
    if (this.protocol.atomic) {
      // Aborting again is allowed: presumed abort writes `aborted` lazily, so a
      // participant that lost it recovers in doubt and is told ABORT again.
      // Committing again is allowed too: recovery re-applies every `committed`
      // record it finds (the work may not have been applied before the crash),
      // and a resource manager ignores a commit it already applied.
      const from: readonly (RmState | undefined)[] =
        action === 'commit'
          ? ['prepared', 'committed']
          : action === 'abort'
            ? ['working', 'prepared', 'aborted']
            : ['working'];
      if (!from.includes(prev))
        this.fail(`${n.id}: resource ${action} ${txn} while ${prev ?? 'never started'}`);
      if (action === 'commit') {
        for (const p of this.begins.get(txn) ?? []) {
          const s = rms.get(p);
          if (s !== 'prepared' && s !== 'committed' && s !== 'left') {
            this.fail(`${n.id} commits ${txn} while ${p} is ${s ?? 'never started'}`);
          }
        }
      }
      for (const [p, s] of rms) {
        if ((next === 'committed' && s === 'aborted') || (next === 'aborted' && s === 'committed')) {
          this.fail(`atomicity: ${n.id} ${next} ${txn} while ${p} ${s}`);
        }
      }
      if (this.protocol.twoPcRules && action === 'abort' && prev !== 'aborted') {
        for (const c of this.nodes.values()) {
          const decided = c.writes.some(
            (w) => w.status === 'durable' && w.record.type === 'commit' && w.record.txn === txn,
          );
          if (c.kind === 'coordinator' && decided) {
            this.fail(`${n.id} aborts ${txn} although ${c.id}'s commit record for it is durable`);
          }
        }
      }
    }
    rms.set(n.id, next);
  }

  // Checks on what a step issued (before anything is carried out).
  private checkIssued(n: ScriptNode, e: AnyEffect): void {
    if (!this.protocol.twoPcRules || (e.type !== 'send' && e.type !== 'sendAfterPersist')) return;
    const msg = e.msg as Tagged & { vote?: string };
    const live = (type: string, force: boolean) =>
      n.writes.some(
        (w) =>
          w.record.type === type &&
          w.record.txn === msg.txn &&
          (w.force || !force) &&
          (w.status === 'pending' || w.status === 'durable'),
      );
    if (n.kind === 'participant' && msg.type === 'VOTE' && msg.vote === 'yes') {
      if (e.type !== 'sendAfterPersist')
        this.fail(`${n.id} sends VOTE yes for ${msg.txn} without waiting to persist`);
      if (!live('prepared', true))
        this.fail(`${n.id} votes yes for ${msg.txn} without a forced prepared record`);
    }
    if (n.kind === 'coordinator' && msg.type === 'COMMIT' && !live('commit', true)) {
      this.fail(`${n.id} sends COMMIT for ${msg.txn} without a forced commit record`);
    }
  }

  // Checks on a message as it leaves (after every write it waited for).
  private checkLeaving(n: ScriptNode, to: NodeId, msg: Tagged & { vote?: string }): void {
    if (!this.protocol.twoPcRules) return;
    const durable = (type: string) =>
      n.writes.some((w) => w.record.type === type && w.record.txn === msg.txn && w.status === 'durable');
    if (n.kind === 'participant' && msg.type === 'VOTE' && msg.vote === 'yes' && !durable('prepared')) {
      this.fail(`${n.id}'s VOTE yes for ${msg.txn} leaves before its prepared record is durable`);
    }
    if (n.kind === 'coordinator' && msg.type === 'COMMIT' && !durable('commit')) {
      this.fail(`${n.id}'s COMMIT for ${msg.txn} to ${to} leaves before its commit record is durable`);
    }
    if (n.kind === 'participant' && msg.type === 'ACK' && !durable('committed')) {
      this.fail(`${n.id}'s ACK for ${msg.txn} leaves before its committed record is durable`);
    }
  }

  private crash(n: ScriptNode): void {
    n.up = false;
    n.state = null;
    n.timers.clear();
    this.print(n.id, 'crashed');
    const lost = n.sequencer.crash();
    for (const w of this.pendingWrites(n)) {
      w.status = 'lost';
      this.print(n.id, `lost write ${this.recordText(w.record)}`);
    }
    for (const e of lost.effects) this.print(n.id, `lost ${this.effectText(e)}`);
    if (n.kind === 'participant') {
      // A resource manager rolls back work that was not prepared when its process died.
      for (const [txn, rms] of this.rms) {
        if (rms.get(n.id) === 'working') {
          this.applyResource(n, txn, 'abort');
          this.print(n.id, `work of ${txn} rolled back`);
        }
      }
    }
  }

  private recover(n: ScriptNode): void {
    if (n.up) this.fail(`${n.id} is up; crash it first`);
    n.up = true;
    n.incarnation++;
    const log = this.durableLog(n).map((r) => this.roundTripRecord(r));
    const shown = log.map((r) => this.recordText(r)).join('; ');
    this.print(n.id, log.length === 0 ? 'recovered from an empty log' : `recovered from ${shown}`);
    const { state, effects } = n.role.recover(n.id, n.config(n.incarnation), log);
    n.state = state;
    this.execute(n, effects);
    this.checkInvariants(n);
  }
}

// ------------------------------------------------------------------ scripts

interface Block {
  /** 1-based line of the block's first command. */
  line: number;
  commands: string[];
  expected: string[];
}

function parseScript(text: string): { lines: string[]; blocks: Block[] } {
  const lines = text.split('\n');
  const blocks: Block[] = [];
  let commands: string[] = [];
  let first = 0;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!.trim();
    if (l === '----') {
      const expected: string[] = [];
      let j = i + 1;
      for (; j < lines.length && lines[j]!.trim() !== ''; j++) expected.push(lines[j]!.trim());
      blocks.push({ line: first, commands, expected });
      commands = [];
      i = j;
    } else if (l !== '' && !l.startsWith('#')) {
      if (commands.length === 0) first = i + 1;
      commands.push(l);
    }
  }
  assert.equal(commands.length, 0, `commands after the last ---- (line ${first}) have no expected output`);
  return { lines, blocks };
}

/** Run a block's commands; its output, or `ok` when they printed nothing. */
function runBlock(cluster: Cluster, where: string, block: Block): string[] {
  const out: string[] = [];
  for (const [k, command] of block.commands.entries()) {
    try {
      out.push(...cluster.run(command));
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      throw new ScriptError(`${where}:${block.line + k}: ${command}: ${why}`, { cause: e });
    }
  }
  return out.length === 0 ? ['ok'] : out;
}

/**
 * Run the script at `path` against `protocol` and compare every block's
 * output with the expected one; with `rewrite`, write the actual outputs back
 * into the file instead.
 */
export function runScriptFile(path: string, protocol: ScriptProtocol, rewrite: boolean): void {
  const { lines, blocks } = parseScript(readFileSync(path, 'utf8'));
  const cluster = new Cluster(protocol);
  const outputs = blocks.map((b) => runBlock(cluster, path, b));
  if (!rewrite) {
    blocks.forEach((b, k) => {
      const got = outputs[k]!.join('\n');
      assert.equal(got, b.expected.join('\n'), `${path}:${b.line}: ${b.commands.join(' / ')}`);
    });
    return;
  }
  const next: string[] = [];
  let k = 0;
  for (let i = 0; i < lines.length; i++) {
    next.push(lines[i]!);
    if (lines[i]!.trim() !== '----') continue;
    next.push(...outputs[k++]!);
    while (i + 1 < lines.length && lines[i + 1]!.trim() !== '') i++;
  }
  writeFileSync(path, next.join('\n'));
}
