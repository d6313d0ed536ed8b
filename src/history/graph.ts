// The dependency graph in compressed sparse row form: the out-edges of node
// v are positions start[v] .. start[v + 1] - 1 of `to` and `kind`. Parallel
// edges of different kinds stay separate, so that a search allowed only some
// kinds can still take the one it may. Built once, read by the SCC and cycle
// searches, which is what lets a 100,000-transaction history be checked in
// seconds.
//
// Pure.

import type { EdgeList } from './types.ts';

export interface Graph {
  nodes: number;
  start: Int32Array;
  to: Int32Array;
  kind: Uint8Array;
}

export function buildGraph(nodes: number, edges: EdgeList): Graph {
  const start = new Int32Array(nodes + 1);
  for (let i = 0; i < edges.length; i++) start[edges.from[i]! + 1]!++;
  for (let v = 0; v < nodes; v++) start[v + 1]! += start[v]!;
  const fill = start.slice(0, nodes);
  const to = new Int32Array(edges.length);
  const kind = new Uint8Array(edges.length);
  for (let i = 0; i < edges.length; i++) {
    const at = fill[edges.from[i]!]!++;
    to[at] = edges.to[i]!;
    kind[at] = edges.kind[i]!;
  }
  return { nodes, start, to, kind };
}
