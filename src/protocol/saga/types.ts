// Plans, messages, log records and settings of the saga orchestrator
// (Garcia-Molina & Salem, "Sagas", SIGMOD 1987): what is particular to a
// saga. The branch vocabulary it shares with TCC is ../branch/types.ts. See
// ../../../docs/protocols/saga.md.
//
// May not touch: clocks, I/O, randomness, anything outside src/protocol.

import type { BranchConfig, CommonRecord, RunMsg } from '../branch/types.ts';
import { checkBranchNames, defaultBranchConfig } from '../branch/types.ts';
import { limits } from '../common/limits.ts';
import type { NodeId, TxnId } from '../common/types.ts';

// ------------------------------------------------------------- definitions

/** One step of a saga: an action on a service and its compensation. */
export interface SagaPlanStep {
  /** Names the step (the branch) inside its saga; a node-id-like token. */
  branch: string;
  service: NodeId;
  /** The service's handler for the forward step. */
  action: string;
  /**
   * The handler that undoes it, or null for a step that cannot be undone
   * (a notification). Such a step is a point of no return: once it has
   * started, the saga only goes forward (see `checkSagaPlan`).
   */
  compensation: string | null;
  payload: string;
  /**
   * The order graph: the branches that must have succeeded before this one
   * starts. Omitted, the step follows the previous one in the list, so a plain
   * list is a sequence; `[]` makes it a root that starts at once.
   */
  after?: readonly string[];
}

export interface SagaPlan {
  steps: readonly SagaPlanStep[];
  /**
   * `backward` (the default): give up on failure and compensate. `forward`:
   * retry every step until it answers (no attempt limit, no timeout); a
   * business refusal still compensates, since retrying cannot change it.
   * Garcia-Molina & Salem §3 (backward and forward recovery).
   */
  recovery?: 'backward' | 'forward';
  /** Per-saga timeout overriding `SagaConfig.sagaTimeoutMs`. */
  timeoutMs?: number;
}

/** A step with its `after` made explicit. */
export interface NormalizedStep extends SagaPlanStep {
  after: readonly string[];
}

/** `def`'s steps with every `after` explicit (a missing one names the previous step). */
export function normalizeSteps(def: SagaPlan): NormalizedStep[] {
  return def.steps.map((s, i) => ({
    ...s,
    after: s.after ?? (i === 0 ? [] : [def.steps[i - 1]!.branch]),
  }));
}

/** The step ids of `steps` in a topological order of the graph, or null when it has a cycle. */
export function topologicalOrder(steps: readonly NormalizedStep[]): string[] | null {
  const indegree = new Map(steps.map((s) => [s.branch, s.after.length]));
  const next = new Map<string, string[]>(steps.map((s) => [s.branch, []]));
  for (const s of steps) for (const a of s.after) next.get(a)?.push(s.branch);
  const order: string[] = [];
  const ready = steps.filter((s) => s.after.length === 0).map((s) => s.branch);
  while (ready.length > 0) {
    const b = ready.shift()!;
    order.push(b);
    for (const n of next.get(b)!) {
      const d = indegree.get(n)! - 1;
      indegree.set(n, d);
      if (d === 0) ready.push(n);
    }
  }
  return order.length === steps.length ? order : null;
}

/** Transitive predecessors of every branch. */
function ancestors(steps: readonly NormalizedStep[], order: readonly string[]): Map<string, Set<string>> {
  const byId = new Map(steps.map((s) => [s.branch, s]));
  const out = new Map<string, Set<string>>();
  for (const b of order) {
    const set = new Set<string>();
    for (const a of byId.get(b)!.after) {
      set.add(a);
      for (const x of out.get(a)!) set.add(x);
    }
    out.set(b, set);
  }
  return out;
}

/**
 * Why `def` cannot run, or null when it can. Beyond well-formed names and an
 * acyclic order graph: every step that has a compensation must come before
 * (be an ancestor of) every step that has none. A step without compensation
 * cannot be undone, so when it starts nothing else may still be able to fail
 * and force a rollback.
 */
export function checkSagaPlan(def: SagaPlan): string | null {
  if (!Array.isArray(def.steps) || def.steps.length === 0) return 'a saga needs at least one step';
  if (def.steps.length > limits.participantsPerTxnMax)
    return `${def.steps.length} steps, more than ${limits.participantsPerTxnMax}`;
  if (def.recovery !== undefined && def.recovery !== 'backward' && def.recovery !== 'forward')
    return `unknown recovery mode ${String(def.recovery)}`;
  if (def.timeoutMs !== undefined && !(def.timeoutMs > 0)) return 'timeoutMs must be positive';
  const seen = new Set<string>();
  for (const s of def.steps) {
    const problem = checkBranchNames(s, seen);
    if (problem !== null) return problem;
    if (typeof s.action !== 'string' || s.action === '') return `${s.branch} has no action`;
    if (s.compensation !== null && (typeof s.compensation !== 'string' || s.compensation === ''))
      return `${s.branch} has a bad compensation`;
  }
  const steps = normalizeSteps(def);
  for (const s of steps) {
    for (const a of s.after) {
      if (!seen.has(a)) return `${s.branch} comes after unknown branch ${a}`;
      if (a === s.branch) return `${s.branch} comes after itself`;
    }
  }
  const order = topologicalOrder(steps);
  if (order === null) return 'the order graph has a cycle';
  const anc = ancestors(steps, order);
  for (const last of steps) {
    if (last.compensation !== null) continue;
    for (const s of steps) {
      if (s.compensation !== null && !anc.get(last.branch)!.has(s.branch)) {
        return `${s.branch} can be compensated but is not ordered before ${last.branch}, which cannot`;
      }
    }
  }
  return null;
}

export type SagaMsg = RunMsg<SagaPlan>;

/**
 * The orchestrator's log, every record forced (§3: the saga execution
 * component logs each step's start and end before it moves on):
 * - `begin` before any call leaves (it holds the definition recovery needs);
 * - `start` of each action or compensation before its call leaves;
 * - `result` of each definitive answer before the move it causes;
 * - `rollback` (the decision to compensate, with its reason) before any
 *   compensation leaves;
 * - `stuck` before the saga is reported stuck (an alert when `retrying`);
 *   `end` before it is reported finished (by an operator when `operator`).
 */
export type SagaRecord =
  | CommonRecord<SagaPlan>
  | { type: 'start'; txn: TxnId; branch: string; op: 'action' | 'compensate' }
  | {
      type: 'result';
      txn: TxnId;
      branch: string;
      op: 'action' | 'compensate';
      result: 'success' | 'failure';
      reason: string;
    }
  | { type: 'rollback'; txn: TxnId; reason: string };

export interface SagaConfig extends BranchConfig {
  /** Attempts of an action that gets no definitive answer before the saga gives up and compensates. */
  actionAttemptsMax: number;
  /**
   * Attempts of a compensation before the saga is hard-stopped as stuck
   * (waiting for an operator's retry, resolve or abandon). The runtime sets
   * Infinity: compensations are retried for ever, and `stuckAfterAttempts`
   * only raises an alert.
   */
  compensationAttemptsMax: number;
  /** A saga still going forward after this long is compensated (backward recovery only). */
  sagaTimeoutMs: number;
}

export const defaultSagaConfig: SagaConfig = {
  ...defaultBranchConfig,
  actionAttemptsMax: 8,
  compensationAttemptsMax: 16,
  sagaTimeoutMs: 30_000,
};
