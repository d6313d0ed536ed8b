// A Paxos Commit acceptor as its own process (`dtx acceptor`): the pure
// acceptor core (src/protocol/paxos-commit/acceptor.ts) driven by the runtime
// Driver, its state durable in a SQLite log (fsync'd and group-committed:
// src/runtime/log/sqlite.ts), reached over HTTP (./transport.ts).
//
// Owns: the data directory (`acceptor.json`: format version, cluster id, this
// acceptor's id; `acceptor.db`: the log), where replies go (the routes it
// learns from the batches it receives), the candidates' round store, and
// checkpoints. It makes no protocol decision: every message goes to the core,
// and every message the core sends leaves only once the records it reports
// are durable (the Driver's after-persist sequencer).
//
// Checkpoints: every `checkpointEveryAppends` appends the log is replaced by
// the latest record of each instance (what recovery reads, and all it reads),
// without the instances of transactions a leader process said are finished
// (FORGET: every RM applied the outcome, so no RM is in doubt and no leader
// will run a ballot for them again). Forgetting is the runtime's, not the
// core's: the core keeps every instance it ever touched (see
// src/protocol/paxos-commit/log.ts), which a process that runs for months
// cannot afford.
//
// The round store: leader candidates must never use a ballot twice, also
// across a restart, and keep no local log (a restarted leader recovers from
// the acceptors). A candidate writes its round to F+1 acceptors before it
// uses it and reads the highest from F+1 at start (./round-log.ts); two
// majorities meet, so it never reads less than it last wrote.

import { randomBytes } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  writeSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { DtxError } from '../../errors.ts';
import { isValidNodeId } from '../../protocol/common/limits.ts';
import type { NodeId } from '../../protocol/common/types.ts';
import { type AcceptorState, paxosAcceptor } from '../../protocol/paxos-commit/acceptor.ts';
import type {
  PaxosCommitConfig,
  PaxosCommitMsg,
  PaxosCommitRecord,
} from '../../protocol/paxos-commit/types.ts';
import { Driver } from '../driver.ts';
import { coordinatorIdPattern } from '../limits.ts';
import { openSqliteLog } from '../log/sqlite.ts';
import type { DurableLog } from '../log/types.ts';
import { PeerTransport, type Route } from './transport.ts';
import { type WireBatch, type WireItem, wireVersion } from './wire.ts';

/**
 * Log syncs in flight by default: with the leaders' votes held per
 * transaction, 2 gave 0.80x of dtx 2PC's throughput at concurrency 8 where 1
 * gave 0.76x to 0.78x (docs/protocols/paxos-commit.md).
 */
export const acceptorSyncsInFlightDefault = 2;

/** Appends between two checkpoints: a restart replays at most this many records beyond the live instances. */
export const checkpointEveryAppends = 5000;
/** Finished transactions remembered until the next checkpoint drops them. */
const finishedMax = 200_000;
/** Learned reply routes per transaction kept (the oldest are forgotten first): one per live transaction and RM. */
const routesMax = 400_000;
/** Learned routes of node ids (leader candidates and RMs, a few per deployment; the oldest are forgotten first). */
const nodeRoutesMax = 10_000;

/** A candidate's round, kept by the acceptor for it (not a protocol record). */
export interface CandidateRoundRecord {
  type: 'candidateRound';
  candidate: NodeId;
  round: number;
}

type AcceptorLogRecord = PaxosCommitRecord | CandidateRoundRecord;

/** An acceptor's counters since it started (`AcceptorServer.stats`, `GET /stats`). */
export interface AcceptorStats {
  sent: number;
  sentByType: Record<string, number>;
  /** The batches (stream writes or POSTs) that carried `sent`. */
  batches: number;
  /** Its log's fsyncs: one serves every record that arrived meanwhile (group commit). */
  flushes: number;
  /** Records its log wrote, every one forced before the message reporting it left. */
  records: number;
  /**
   * Hosted in a leader process (`hostAcceptor`): `sent`, `sentByType` and
   * `batches` are then 0, as its messages are counted by its host (those
   * over the network in the host's transport, those to the host's own
   * nodes with the host's in-process messages).
   */
  hosted: boolean;
}

export interface HostedAcceptorOptions extends Omit<AcceptorServerOptions, 'listen' | 'onHalt'> {
  /** Called when its log fails: from then on it answers nothing, and its host should stop. */
  onHalt(err: unknown): void;
  /** Carries a reply to `url` (where the message it answers came from). */
  send(url: string, item: WireItem): void;
}

export interface AcceptorMeta {
  v: number;
  cluster: string;
  id: NodeId;
  faster: boolean;
}

export interface AcceptorServerOptions {
  /** `host:port`; port 0 picks a free one. */
  listen: string;
  /** The data directory; created when missing. */
  dataDir: string;
  /** The cluster this acceptor belongs to (default `dtx`); must match an existing directory's. */
  cluster?: string;
  /** Faster Paxos Commit: phase 2b goes to the RMs too. Fixed when the directory is created. */
  faster?: boolean;
  /** Called when the log fails: the process must stop (default: exit 1). */
  onHalt?: (err: unknown) => void;
  /**
   * How many fdatasyncs of its log may be in flight at once (1 to 16,
   * default `acceptorSyncsInFlightDefault`). With 2, a vote that arrives
   * while a batch is syncing is written and synced at once instead of waiting
   * for that sync to end: less latency, a few more fsyncs per commit
   * (`npm run bench:2pc -- --compare-syncs` measures both).
   */
  syncsInFlight?: number;
}

const clusterPattern = coordinatorIdPattern;

function writeFileDurably(path: string, text: string): void {
  const tmp = `${path}.tmp`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  const dir = openSync(resolve(path, '..'), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** Reads (or creates) the directory's meta; refuses another version or another cluster. */
export function openAcceptorDir(dataDir: string, cluster: string, faster: boolean): AcceptorMeta {
  if (!clusterPattern.test(cluster))
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `cluster id ${JSON.stringify(cluster)} must match ${clusterPattern}`,
    );
  const path = join(dataDir, 'acceptor.json');
  if (!existsSync(path)) {
    mkdirSync(dataDir, { recursive: true });
    const meta: AcceptorMeta = { v: wireVersion, cluster, id: `a-${randomBytes(5).toString('hex')}`, faster };
    writeFileDurably(path, `${JSON.stringify(meta)}\n`);
    return meta;
  }
  let meta: AcceptorMeta;
  try {
    meta = JSON.parse(readFileSync(path, 'utf8')) as AcceptorMeta;
  } catch (error) {
    throw new DtxError('DTX_LOG_CORRUPT', `${path} is not JSON`, { cause: error });
  }
  if (meta.v !== wireVersion)
    throw new DtxError(
      'DTX_LOG_MISMATCH',
      `${path}: an acceptor data directory of format ${String(meta.v)}; this dtx reads format ${wireVersion} only`,
    );
  if (meta.cluster !== cluster)
    throw new DtxError(
      'DTX_LOG_MISMATCH',
      `${path} belongs to cluster ${JSON.stringify(meta.cluster)}, not ${JSON.stringify(cluster)}`,
    );
  if (!isValidNodeId(meta.id) || typeof meta.faster !== 'boolean')
    throw new DtxError('DTX_LOG_CORRUPT', `${path}: bad id or faster flag`);
  if (meta.faster !== faster)
    throw new DtxError(
      'DTX_LOG_MISMATCH',
      `${path} was created ${meta.faster ? 'with' : 'without'} --faster; start it the same way`,
    );
  return meta;
}

function decodeRecord(value: unknown): AcceptorLogRecord {
  const r = value as AcceptorLogRecord;
  if (r?.type === 'acc' && typeof r.txn === 'string' && typeof r.ins === 'string') return r;
  if (r?.type === 'candidateRound' && typeof r.candidate === 'string' && Number.isSafeInteger(r.round))
    return r;
  throw new Error(`not an acceptor record: ${JSON.stringify(value).slice(0, 80)}`);
}

export class AcceptorServer {
  private appendsSinceCheckpoint = 0;
  private checkpointing = false;
  private readonly finished = new Set<string>();
  /** Where each transaction's messages from an RM came from (`txn|rm`). */
  private readonly routes = new Map<string, string>();
  /** Where a node id's messages (or a batch hosting it) came from last. */
  private readonly nodeRoutes = new Map<NodeId, string>();
  private readonly rounds = new Map<NodeId, number>();

  private constructor(
    readonly meta: AcceptorMeta,
    private readonly log: DurableLog<AcceptorLogRecord>,
    private readonly driver: Driver<
      AcceptorState,
      PaxosCommitMsg,
      PaxosCommitRecord,
      Partial<PaxosCommitConfig>
    >,
    /** Its own transport; null when hosted (the host's transport carries its messages). */
    private readonly transport: PeerTransport | null,
    private readonly out: (url: string, item: WireItem) => void,
  ) {}

  /** Where it listens; a hosted acceptor listens where its host does. */
  get url(): string {
    if (this.transport === null)
      throw new DtxError('DTX_INVALID_STATE', 'a hosted acceptor has no transport of its own');
    return this.transport.url;
  }

  get id(): NodeId {
    return this.meta.id;
  }

  static async start(options: AcceptorServerOptions): Promise<AcceptorServer> {
    let server: AcceptorServer | undefined;
    const transport = await PeerTransport.listen({
      cluster: options.cluster ?? 'dtx',
      listen: options.listen,
      hosts: [],
      onBatch: (batch) => server?.onBatch(batch),
      routes: AcceptorServer.routes(() => server!),
    });
    try {
      server = await AcceptorServer.open(options, transport, (url, item) => transport.send(url, item));
    } catch (error) {
      await transport.close();
      throw error;
    }
    return server;
  }

  /** What an acceptor serves besides protocol messages, on whichever transport carries it (its own or its host's). */
  static routes(server: () => AcceptorServer): Record<string, Route> {
    return {
      '/info': () => server().info(),
      '/stats': () => server().stats,
      '/round': (body) => server().onRound(body),
    };
  }

  /**
   * An acceptor inside another process (a leader: `hostAcceptor` of the
   * Paxos Commit coordinator), on that process's transport: the host hands
   * it the batches addressed to its id (`onBatch`) and serves its routes
   * (`info`, `stats`, `onRound`); its replies go out through `send`, which
   * delivers those for the host's own nodes in-process. Its log, its
   * checkpoints and its round store are the same as a standalone acceptor's,
   * and so is its data directory: a hosted acceptor's directory can be
   * served later by `dtx acceptor`, and the other way round.
   */
  static host(options: HostedAcceptorOptions): Promise<AcceptorServer> {
    return AcceptorServer.open(options, null, options.send);
  }

  private static async open(
    options: Omit<AcceptorServerOptions, 'listen'>,
    transport: PeerTransport | null,
    send: (url: string, item: WireItem) => void,
  ): Promise<AcceptorServer> {
    const cluster = options.cluster ?? 'dtx';
    const meta = openAcceptorDir(options.dataDir, cluster, options.faster ?? false);
    const log = await openSqliteLog<AcceptorLogRecord>(join(options.dataDir, 'acceptor.db'), {
      create: true,
      decode: decodeRecord,
      identity: { protocol: 'paxos-acceptor', coordinatorId: meta.id },
      expect: { protocol: 'paxos-acceptor', coordinatorId: meta.id },
      syncsInFlight: options.syncsInFlight ?? acceptorSyncsInFlightDefault,
    });
    let server: AcceptorServer | undefined;
    const countingLog: DurableLog<PaxosCommitRecord> = {
      append: (records, force) => {
        server?.noteAppend();
        return log.append(records, force);
      },
      load: async () => (await log.load()) as PaxosCommitRecord[],
      checkpoint: (keep) => log.checkpoint(keep),
      close: () => log.close(),
      stats: log.stats,
    };
    const driver = new Driver(
      paxosAcceptor,
      meta.id,
      { faster: meta.faster },
      {
        log: countingLog,
        send: (to, msg) => server?.sendTo(to, msg),
        outcome: () => {},
        halted: (err) => (options.onHalt ?? defaultHalt)(err),
      },
    );
    server = new AcceptorServer(meta, log, driver, transport, send);
    try {
      const records = await log.load();
      for (const r of records)
        if (r.type === 'candidateRound')
          server.rounds.set(r.candidate, Math.max(server.rounds.get(r.candidate) ?? 0, r.round));
      await driver.start();
    } catch (error) {
      await log.close().catch(() => {});
      throw error;
    }
    return server;
  }

  /**
   * Messages this acceptor sent (in all, and by type), and its log's forced
   * writes (fsyncs) and records, for benchmarks; also served as `/stats`, so
   * that a bench can read an acceptor running as its own process.
   */
  get stats(): AcceptorStats {
    const t = this.transport;
    return {
      sent: t?.stats.sent ?? 0,
      sentByType: { ...t?.stats.sentByType },
      batches: t?.stats.batches ?? 0,
      flushes: this.log.stats.flushes,
      records: this.log.stats.records,
      hosted: t === null,
    };
  }

  info(): AcceptorMeta & { instances: number } {
    return { ...this.meta, instances: this.driver.peek().txns.size };
  }

  /**
   * Remembers that `key`'s replies go to `url`. Almost every batch repeats
   * what is known already: that costs one lookup, and only a new or moved
   * route is (re)inserted as the newest, to be forgotten last.
   */
  private static learn<K>(routes: Map<K, string>, key: K, url: string, max: number): void {
    const known = routes.get(key);
    if (known === url) return;
    if (known !== undefined) routes.delete(key);
    routes.set(key, url);
    if (routes.size > max) routes.delete(routes.keys().next().value!);
  }

  /** Takes the items of `batch` addressed to this acceptor (a host passes every batch it receives). */
  onBatch(batch: WireBatch): void {
    const origin = batch.origin;
    for (const h of batch.hosts) AcceptorServer.learn(this.nodeRoutes, h, origin, nodeRoutesMax);
    for (const { from, to, msg } of batch.items) {
      if (to !== this.meta.id) continue;
      AcceptorServer.learn(this.nodeRoutes, from, origin, nodeRoutesMax);
      AcceptorServer.learn(this.routes, `${msg.txn}|${from}`, origin, routesMax);
      if (msg.type === 'FORGET') {
        if (this.finished.size < finishedMax) this.finished.add(msg.txn);
        continue;
      }
      this.driver.input({ type: 'receive', from, msg });
    }
  }

  private sendTo(to: NodeId, msg: PaxosCommitMsg): void {
    // An RM's id names the same resource in every leader process: the reply
    // goes where that RM's message for this transaction came from.
    const url = this.routes.get(`${msg.txn}|${to}`) ?? this.nodeRoutes.get(to);
    if (url !== undefined) this.out(url, { from: this.meta.id, to, msg });
  }

  /** A candidate's round: store `round` if higher (durably) and answer the highest stored. */
  async onRound(body: unknown): Promise<{ round: number }> {
    const b = body as { candidate?: unknown; round?: unknown } | null;
    if (
      typeof b?.candidate !== 'string' ||
      !isValidNodeId(b.candidate) ||
      !Number.isSafeInteger(b.round) ||
      (b.round as number) < 0
    )
      throw new DtxError('DTX_BAD_MESSAGE', 'round: expected { candidate, round }');
    const candidate = b.candidate;
    const round = b.round as number;
    if (round > (this.rounds.get(candidate) ?? 0)) {
      await this.log.append([{ type: 'candidateRound', candidate, round }], true);
      this.rounds.set(candidate, Math.max(this.rounds.get(candidate) ?? 0, round));
    }
    return { round: this.rounds.get(candidate) ?? 0 };
  }

  private noteAppend(): void {
    if (++this.appendsSinceCheckpoint < checkpointEveryAppends || this.checkpointing) return;
    this.appendsSinceCheckpoint = 0;
    this.checkpointing = true;
    // Run between steps: every record the state reflects has had its append called.
    setImmediate(() => {
      this.checkpoint().finally(() => {
        this.checkpointing = false;
      });
    });
  }

  /** Replaces the log with the latest state of every live instance (and the rounds). */
  async checkpoint(): Promise<void> {
    try {
      await this.log.checkpoint(this.keepRecords());
    } catch (error) {
      this.driver.fail(error);
    }
  }

  /** What a checkpoint keeps; drops the finished transactions from the state. */
  private keepRecords(): AcceptorLogRecord[] {
    const state = this.driver.peek();
    const keep: AcceptorLogRecord[] = [];
    for (const [candidate, round] of this.rounds) keep.push({ type: 'candidateRound', candidate, round });
    for (const txn of this.finished) state.txns.delete(txn);
    this.finished.clear();
    for (const [txn, t] of state.txns)
      for (const [ins, a] of t.instances)
        keep.push({ type: 'acc', txn, ins, mbal: a.mbal, bal: a.bal, val: a.val });
    return keep;
  }

  async close(): Promise<void> {
    await this.transport?.close();
    // The FORGET notices since the last checkpoint are only in memory: a
    // checkpoint now, or a restart (a hosted acceptor's comes with every
    // restart of its leader) would keep those transactions for good. A log
    // that fails here loses them, as a crash would; nothing else.
    if (this.finished.size > 0 && !this.checkpointing)
      await this.log.checkpoint(this.keepRecords()).catch(() => {});
    await this.driver.close();
    await this.log.close();
  }
}

function defaultHalt(err: unknown): void {
  process.stderr.write(`dtx acceptor: the log failed, stopping: ${(err as Error)?.message ?? String(err)}\n`);
  process.exit(1);
}
