// The real-time order is kept as a transitive reduction (a frontier of
// completed transactions): checked against the full relation, computed the
// obvious quadratic way, on random interleavings. And Tarjan's components
// against reachability on small random graphs.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { buildGraph } from '../../src/history/graph.ts';
import { addRealtimeEdges } from '../../src/history/order.ts';
import { stronglyConnected } from '../../src/history/scc.ts';
import { EdgeList, type Txn } from '../../src/history/types.ts';

/** Which nodes each node reaches by one or more edges. */
function reach(nodes: number, edges: EdgeList): boolean[][] {
  const r = Array.from({ length: nodes }, () => new Array<boolean>(nodes).fill(false));
  for (let i = 0; i < edges.length; i++) r[edges.from[i]!]![edges.to[i]!] = true;
  for (let k = 0; k < nodes; k++)
    for (let i = 0; i < nodes; i++)
      if (r[i]![k]) for (let j = 0; j < nodes; j++) if (r[k]![j]) r[i]![j] = true;
  return r;
}

/** Random histories: each step invokes a transaction or completes a running one (ok, fail or info). */
const interleaving = fc.array(fc.tuple(fc.boolean(), fc.nat(), fc.constantFrom('ok', 'ok', 'fail', 'info')), {
  minLength: 1,
  maxLength: 60,
});

test('real-time edges: their transitive closure is exactly "completed before invoked"', () => {
  fc.assert(
    fc.property(interleaving, (steps) => {
      const txns: Txn[] = [];
      const running: Txn[] = [];
      let at = 0;
      for (const [invoke, pick, outcome] of steps) {
        if (invoke || running.length === 0) {
          const t: Txn = {
            id: txns.length,
            type: 'info',
            process: txns.length,
            index: at,
            invokedAt: at++,
            completedAt: Number.POSITIVE_INFINITY,
            ops: [],
            line: 0,
          };
          txns.push(t);
          running.push(t);
        } else {
          const [t] = running.splice(pick % running.length, 1);
          t!.type = outcome as Txn['type'];
          if (outcome !== 'info') t!.completedAt = at;
          at++;
        }
      }
      const edges = new EdgeList();
      addRealtimeEdges(txns, edges);
      const closure = reach(txns.length, edges);
      for (const a of txns)
        for (const b of txns) {
          const expected =
            a.type === 'ok' && b.type !== 'fail' && a.id !== b.id && a.completedAt < b.invokedAt;
          assert.equal(closure[a.id]![b.id], expected, `T${a.id} -> T${b.id}`);
        }
    }),
    { numRuns: 300 },
  );
});

test('strongly connected components: two nodes share one exactly when each reaches the other', () => {
  fc.assert(
    fc.property(
      fc
        .integer({ min: 1, max: 12 })
        .chain((n) =>
          fc.tuple(fc.constant(n), fc.array(fc.tuple(fc.nat(n - 1), fc.nat(n - 1)), { maxLength: 30 })),
        ),
      ([n, pairs]) => {
        const edges = new EdgeList();
        for (const [a, b] of pairs) edges.add(a, b, 1);
        const { of, cyclic } = stronglyConnected(buildGraph(n, edges));
        const r = reach(n, edges);
        for (let a = 0; a < n; a++)
          for (let b = 0; b < n; b++)
            if (a !== b) assert.equal(of[a] === of[b], r[a]![b]! && r[b]![a]!, `${a} ~ ${b}`);
        const inCyclic = new Set(cyclic.flatMap((c) => [...c]));
        for (let a = 0; a < n; a++) assert.equal(inCyclic.has(a), r[a]![a]!, `${a} on a cycle`);
      },
    ),
    { numRuns: 300 },
  );
});
