// Strongly connected components (Tarjan 1972), iteratively so that a long
// chain of dependencies cannot overflow the call stack. Every cycle lies
// within one component, so the cycle search only looks inside the
// components of two or more transactions (edges to self are never added).
//
// Pure.

import type { Graph } from './graph.ts';

export interface Components {
  /** The component of each node. */
  of: Int32Array;
  /** The components with more than one node: the only places a cycle can be. */
  cyclic: Int32Array[];
}

export function stronglyConnected(graph: Graph): Components {
  const { nodes, start, to } = graph;
  const index = new Int32Array(nodes).fill(-1);
  const low = new Int32Array(nodes);
  const onStack = new Uint8Array(nodes);
  const stack = new Int32Array(nodes);
  const callNode = new Int32Array(nodes);
  const callEdge = new Int32Array(nodes);
  const of = new Int32Array(nodes).fill(-1);
  const cyclic: Int32Array[] = [];
  let sp = 0;
  let counter = 0;
  let components = 0;
  for (let root = 0; root < nodes; root++) {
    if (index[root] !== -1) continue;
    let depth = 0;
    const enter = (v: number) => {
      index[v] = low[v] = counter++;
      stack[sp++] = v;
      onStack[v] = 1;
      callNode[depth] = v;
      callEdge[depth] = start[v]!;
      depth++;
    };
    enter(root);
    while (depth > 0) {
      const v = callNode[depth - 1]!;
      const e = callEdge[depth - 1]!;
      if (e < start[v + 1]!) {
        callEdge[depth - 1] = e + 1;
        const w = to[e]!;
        if (index[w] === -1) enter(w);
        else if (onStack[w] === 1 && index[w]! < low[v]!) low[v] = index[w]!;
        continue;
      }
      if (low[v] === index[v]) {
        let size = 0;
        let w: number;
        do {
          w = stack[--sp]!;
          onStack[w] = 0;
          of[w] = components;
          size++;
        } while (w !== v);
        if (size > 1) cyclic.push(stack.slice(sp, sp + size));
        components++;
      }
      depth--;
      if (depth > 0) {
        const u = callNode[depth - 1]!;
        if (low[v]! < low[u]!) low[u] = low[v]!;
      }
    }
  }
  return { of, cyclic };
}
