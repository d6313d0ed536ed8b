// The history checker: parse → pair into transactions → infer versions and
// dependencies (per model) → add real-time or process order (per consistency
// model) → build the graph → strongly connected components → shortest cycle
// of each class → witnesses. Each step is its own module; this one only
// wires them and turns edge positions into readable witnesses.
//
// Pure: the text comes in, the verdict goes out (./read.ts reads files).

import { cycleClasses, findCycles } from './cycles.ts';
import { buildGraph, type Graph } from './graph.ts';
import { inferListAppend } from './list-append.ts';
import { addProcessEdges, addRealtimeEdges } from './order.ts';
import { parseHistory, parseOps } from './parse.ts';
import { inferRwRegister } from './rw-register.ts';
import { stronglyConnected } from './scc.ts';
import { pairTxns } from './txns.ts';
import {
  type CheckResult,
  type Consistency,
  type CycleStep,
  type CycleWitness,
  type EdgeKind,
  edgeKindName,
  type Inference,
  type Model,
  nameOf,
  PROCESS,
  REALTIME,
  type Txn,
  viewOf,
  type Witness,
} from './types.ts';

export interface CheckOptions {
  model: Model;
  consistency: Consistency;
}

/** Anomalies found without a cycle, reported before the cycles. */
const caseTypes = ['G1a', 'G1b', 'internal', 'incompatible-order', 'duplicate-elements'] as const;
const typeRank = new Map<string, number>([...caseTypes, ...cycleClasses].map((t, i) => [t, i]));

export function checkHistoryText(text: string, source: string, options: CheckOptions): CheckResult {
  return checkTxns(pairTxns(parseHistory(text, source, options.model), source), source, options);
}

/** The same for a history recorded in memory: ops shaped as in the JSON form. */
export function checkHistoryOps(ops: readonly unknown[], source: string, options: CheckOptions): CheckResult {
  return checkTxns(pairTxns(parseOps(ops, source, options.model), source), source, options);
}

export function checkTxns(txns: readonly Txn[], source: string, options: CheckOptions): CheckResult {
  const inference =
    options.model === 'list-append' ? inferListAppend(txns, source) : inferRwRegister(txns, source);
  if (options.consistency === 'strict-serializable') addRealtimeEdges(txns, inference.edges);
  else if (options.consistency === 'strong-session-serializable') addProcessEdges(txns, inference.edges);
  const graph = buildGraph(txns.length, inference.edges);
  const anomalies: Record<string, Witness[]> = {};
  for (const [type, witnesses] of inference.cases) anomalies[type] = witnesses;
  for (const cycle of findCycles(graph, stronglyConnected(graph))) {
    (anomalies[cycle.type] ??= []).push(witnessOf(graph, txns, inference, cycle.start, cycle.edges));
  }
  const anomalyTypes = Object.keys(anomalies).sort(
    (a, b) => (typeRank.get(a) ?? typeRank.size) - (typeRank.get(b) ?? typeRank.size),
  );
  const ordered: Record<string, Witness[]> = {};
  for (const t of anomalyTypes) ordered[t] = anomalies[t]!;
  return { valid: anomalyTypes.length === 0, anomalyTypes, anomalies: ordered };
}

function orderWhy(from: Txn, to: Txn, kind: EdgeKind): string {
  if (kind === REALTIME) return `${nameOf(from)} completed before ${nameOf(to)} was invoked`;
  if (kind === PROCESS)
    return `${nameOf(to)} ran after ${nameOf(from)} on process ${JSON.stringify(from.process)}`;
  throw new Error(`not an order edge: ${kind}`);
}

function witnessOf(
  graph: Graph,
  txns: readonly Txn[],
  inference: Inference,
  start: number,
  edges: readonly number[],
): CycleWitness {
  const path: Txn[] = [];
  const steps: CycleStep[] = [];
  let at = start;
  for (const e of edges) {
    const from = txns[at]!;
    const to = txns[graph.to[e]!]!;
    const kind = graph.kind[e]! as EdgeKind;
    const rel = edgeKindName[kind];
    path.push(from);
    if (kind === REALTIME || kind === PROCESS) {
      steps.push({ from: from.index, to: to.index, rel, why: orderWhy(from, to, kind) });
    } else {
      const reason = inference.explain(from, to, kind);
      // Every data edge was added for a reason the model can state again: a miss is a bug here.
      if (reason === undefined)
        throw new Error(`no ${rel} justification for ${nameOf(from)} -> ${nameOf(to)}`);
      steps.push({ from: from.index, to: to.index, rel, ...reason });
    }
    at = to.id;
  }
  return { txns: path.map(viewOf), steps };
}
