// Finding and classifying dependency cycles, Adya-style (Adya 1999,
// "Weak consistency", chapter 4; the names follow Elle):
//
//   G0         only ww edges                    (write cycle)
//   G1c        ww and wr, at least one wr       (circular information flow)
//   G-single   exactly one rw                   (read skew; single anti-dependency)
//   G2-item    two or more rw                   (write skew and other item anti-dependency cycles)
//
// and, when the cycle needs a real-time or process-order edge, the same name
// with `-realtime` or `-process` (G-single-realtime: a read that missed a
// write completed before it began).
//
// Inside one strongly connected component, a breadth-first search from a
// start transaction runs over states (transaction, what the path so far
// holds: rw count 0/1/2+, any wr, any realtime, any process edge), so the
// first time it comes back to the start in a given state is the shortest
// cycle through the start of that class. Each component is searched from
// its transactions in turn, keeping the shortest witness per class, until
// all have been tried or the work budget runs out (then the witnesses are
// genuine cycles of their class but perhaps not the shortest). A closed walk
// that passes a transaction twice is not taken as a witness: it is two
// cycles, each with a class of its own. A class whose
// witness covers exactly the transactions of a weaker class's witness in the
// same component is the same anomaly seen through parallel edges, and is
// not reported again.
//
// Pure.

import type { Graph } from './graph.ts';
import type { Components } from './scc.ts';
import { PROCESS, REALTIME, RW, WR } from './types.ts';

/** Classes from weakest to strongest, which is also the order they are reported in. */
export const cycleClasses = [
  'G0',
  'G1c',
  'G-single',
  'G2-item',
  'G0-process',
  'G1c-process',
  'G-single-process',
  'G2-item-process',
  'G0-realtime',
  'G1c-realtime',
  'G-single-realtime',
  'G2-item-realtime',
] as const;
export type CycleClass = (typeof cycleClasses)[number];

const STATES = 24;

/** Path state after taking an edge of `kind` in `state` (rw count 0..2 × wr × realtime × process). */
function next(state: number, kind: number): number {
  let rw = state >> 3;
  let rest = state & 7;
  if (kind === RW) rw = rw === 2 ? 2 : rw + 1;
  else if (kind === WR) rest |= 4;
  else if (kind === REALTIME) rest |= 2;
  else if (kind === PROCESS) rest |= 1;
  return (rw << 3) | rest;
}

function classOf(state: number): number {
  const rw = state >> 3;
  const base = rw === 0 ? ((state & 4) === 0 ? 0 : 1) : rw === 1 ? 2 : 3;
  const suffix = (state & 2) !== 0 ? 8 : (state & 1) !== 0 ? 4 : 0;
  return base + suffix;
}

/** A cycle as the edge positions (into the graph's `to`/`kind`) it takes, starting at `start`. */
export interface FoundCycle {
  type: CycleClass;
  start: number;
  edges: number[];
}

/** Edge relaxations one component may spend on its search before it settles for what it found. */
const searchStepsPerComponentMax = 4_000_000;

export function findCycles(graph: Graph, components: Components): FoundCycle[] {
  const found: FoundCycle[] = [];
  // Each transaction's position within its component, for the per-component state arrays.
  const local = new Int32Array(graph.nodes);
  for (const members of components.cyclic) {
    for (let i = 0; i < members.length; i++) local[members[i]!] = i;
    found.push(...searchComponent(graph, components.of, members, local));
  }
  return found;
}

function searchComponent(
  graph: Graph,
  componentOf: Int32Array,
  members: Int32Array,
  local: Int32Array,
): FoundCycle[] {
  const { start: first, to, kind } = graph;
  const component = componentOf[members[0]!]!;
  const size = members.length;
  const seen = new Int32Array(size * STATES).fill(-1);
  const parentState = new Int32Array(size * STATES);
  const parentEdge = new Int32Array(size * STATES);
  const queue = new Int32Array(size * STATES);
  const best: (FoundCycle | undefined)[] = new Array(cycleClasses.length).fill(undefined);
  let steps = 0;

  for (let s = 0; s < size && (s === 0 || steps < searchStepsPerComponentMax); s++) {
    const startNode = members[s]!;
    const closed = new Set<number>();
    let head = 0;
    let tail = 0;
    seen[s * STATES] = s;
    queue[tail++] = s * STATES;
    while (head < tail) {
      const st = queue[head++]!;
      const v = members[Math.floor(st / STATES)]!;
      const flags = st % STATES;
      for (let e = first[v]!; e < first[v + 1]!; e++) {
        const w = to[e]!;
        if (componentOf[w] !== component) continue;
        steps++;
        const nf = next(flags, kind[e]!);
        if (w === startNode) {
          const c = classOf(nf);
          if (closed.has(c)) continue;
          const edges = [e];
          for (let at = st; at !== s * STATES; at = parentState[at]!) edges.push(parentEdge[at]!);
          // A walk through some transaction twice is two cycles, each of a class of its own (two
          // G-single loops are not a G2-item): only a simple cycle is a witness.
          if (new Set(edges.map((x) => to[x]!)).size !== edges.length) continue;
          closed.add(c);
          edges.reverse();
          const current = best[c];
          if (current === undefined || edges.length < current.edges.length)
            best[c] = { type: cycleClasses[c]!, start: startNode, edges };
          continue;
        }
        const ns = local[w]! * STATES + nf;
        if (seen[ns] === s) continue;
        seen[ns] = s;
        parentState[ns] = st;
        parentEdge[ns] = e;
        queue[tail++] = ns;
      }
    }
  }

  // The same transactions through parallel edges of another kind: keep the weakest reading.
  const kept: FoundCycle[] = [];
  const covered = new Set<string>();
  for (const cycle of best) {
    if (cycle === undefined) continue;
    const nodes = cycle.edges.map((e) => to[e]!).sort((a, b) => a - b);
    const signature = nodes.join(',');
    if (covered.has(signature)) continue;
    covered.add(signature);
    kept.push(cycle);
  }
  return kept;
}
