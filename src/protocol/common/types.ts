// The vocabulary every dtx protocol core shares: identifiers, the inputs a core
// accepts, and the effects it asks its driver to carry out.
//
// A protocol core is a synchronous pure step function:
//
//     step(state, input) -> { state, effects }
//
// It never performs I/O, never reads a clock and never draws a random number;
// time arrives as timer expiries and randomness (where a protocol needs any)
// arrives inside inputs. The same core is driven by the deterministic simulator
// (src/sim) and by the real runtime (src/runtime).
//
// Ordering rule, carried by the effect types themselves (compare the `Ready`
// struct of etcd's raft): every `persist` effect of one step must be durable
// before any effect of that step marked "after persist" is carried out
// (`sendAfterPersist`, and `resource`/`reportOutcome` with `afterPersist: true`).
// More precisely, they wait for every write the node has issued so far (a log
// is sequential), so an after-persist effect in a step that wrote nothing
// still waits for the writes of earlier steps, and they are carried out in
// step order. If a persist fails (the disk refused, fsync returned an error),
// the driver drops the after-persist effects of the step that wrote it and of
// every later step queued behind it (all computed by a core that believed the
// write would land), and feeds the core a `persistFailed` input naming the
// record. If the node crashes first — also after the write is durable but
// before they are carried out — they are simply lost, and recovery must finish
// from the log what they would have done. Plain `send` effects carry no
// promise and may leave at once. Every driver keeps this rule through one
// structure, ./sequencer.ts.

/** A node in a deployment: a coordinator, a participant, an acceptor. */
export type NodeId = string;
/** A global transaction id. Validated by `checkTxnId` wherever one enters. */
export type TxnId = string;
/**
 * Names a timer inside one node; setting a timer that is already set re-arms
 * it. By convention `<what>:<txn>` (e.g. `vote:t7`), so that a driver can
 * tell which transaction a timeout is about.
 */
export type TimerId = string;

/** What the client is told about its transaction. */
export type Outcome = 'committed' | 'aborted' | 'partial';

/** The abstract state of one resource manager in one transaction (TCommit.tla). */
export type RmState = 'working' | 'prepared' | 'committed' | 'aborted';

export type Input<M> =
  /** A message arrived from another node. */
  | { type: 'receive'; from: NodeId; msg: M }
  /** A timer set earlier by this node fired. */
  | { type: 'timeout'; timer: TimerId }
  /** A durable write asked for in an earlier step failed; its after-persist effects were dropped. */
  | { type: 'persistFailed'; record: unknown }
  /** Client request to the coordinator: commit transaction `txn` over `participants`. */
  | { type: 'begin'; txn: TxnId; participants: readonly NodeId[]; client: NodeId }
  /**
   * The local resource manager finished the transaction's work here (locks
   * held). `readOnly` when it wrote nothing. `coordinator` is who will decide.
   */
  | { type: 'executed'; txn: TxnId; coordinator: NodeId; readOnly: boolean }
  /** The local resource manager must give the transaction up (wounded by an older one). */
  | { type: 'wounded'; txn: TxnId };

export type Effect<M, R> =
  /** Write `record` to this node's log; `force` means it must reach stable storage (fsync). */
  | { type: 'persist'; record: R; force: boolean }
  /** Send now; the message promises nothing that is not yet durable. */
  | { type: 'send'; to: NodeId; msg: M }
  /** Send only once every persist of this step is durable. */
  | { type: 'sendAfterPersist'; to: NodeId; msg: M }
  | { type: 'setTimer'; timer: TimerId; delayMs: number }
  | { type: 'cancelTimer'; timer: TimerId }
  /**
   * Apply (commit) or discard (abort) the transaction's local work and release
   * its locks; `release` lets a read-only participant leave (nothing to apply).
   */
  | { type: 'resource'; txn: TxnId; action: 'commit' | 'abort' | 'release'; afterPersist: boolean }
  /** Tell the client how its transaction ended. */
  | { type: 'reportOutcome'; txn: TxnId; client: NodeId; outcome: Outcome; afterPersist: boolean };

export interface StepResult<S, M, R> {
  state: S;
  effects: Effect<M, R>[];
}

/**
 * A protocol role: how to make a node's initial state, how to rebuild it from
 * its durable log after a crash, and how to step it. `state` is owned by the
 * caller; `step` may update it in place and returns it.
 */
export interface Role<S, M, R, C = unknown> {
  init(self: NodeId, config: C): S;
  recover(self: NodeId, config: C, log: readonly R[]): StepResult<S, M, R>;
  step(state: S, input: Input<M>): StepResult<S, M, R>;
}
