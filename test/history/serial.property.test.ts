// Property: a serial execution is strict-serializable, so the checker must
// find nothing in it, whatever the transactions do, whichever of them fail
// (their effects dropped) or end indeterminate (effects applied or not).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { checkHistoryText } from '../../src/history/check.ts';
import { isCycleWitness, type Model } from '../../src/history/types.ts';

interface PlannedTxn {
  process: number;
  mops: { write: boolean; key: number }[];
  outcome: 'ok' | 'fail' | 'info-applied' | 'info-lost';
}

const plannedTxn = fc.record({
  process: fc.integer({ min: 0, max: 3 }),
  mops: fc.array(fc.record({ write: fc.boolean(), key: fc.integer({ min: 0, max: 3 }) }), {
    minLength: 1,
    maxLength: 5,
  }),
  outcome: fc.constantFrom<PlannedTxn['outcome']>(
    'ok',
    'ok',
    'ok',
    'ok',
    'fail',
    'info-applied',
    'info-lost',
  ),
});

/** Runs `plan` one transaction at a time against an in-memory store and writes the JSONL history. */
function serialHistory(model: Model, plan: PlannedTxn[]): string {
  const lists = new Map<number, number[]>();
  const registers = new Map<number, number>();
  const lines: string[] = [];
  let index = 0;
  let fresh = 0;
  // A process whose transaction ended indeterminate is retired, as in Jepsen.
  let nextProcess = 100;
  const live = new Map<number, number>();
  for (const t of plan) {
    const process = live.get(t.process) ?? t.process;
    const applies = t.outcome === 'ok' || t.outcome === 'info-applied';
    // Work on copies; keep them only when the transaction's effects apply.
    const myLists = new Map([...lists].map(([k, v]) => [k, [...v]]));
    const myRegisters = new Map(registers);
    const invoked: unknown[] = [];
    const completed: unknown[] = [];
    for (const { write, key } of t.mops) {
      const value = fresh++;
      if (model === 'list-append') {
        if (write) {
          myLists.set(key, [...(myLists.get(key) ?? []), value]);
          invoked.push(['append', key, value]);
          completed.push(['append', key, value]);
        } else {
          invoked.push(['r', key, null]);
          completed.push(['r', key, t.outcome === 'ok' ? [...(myLists.get(key) ?? [])] : null]);
        }
      } else if (write) {
        myRegisters.set(key, value);
        invoked.push(['w', key, value]);
        completed.push(['w', key, value]);
      } else {
        invoked.push(['r', key, null]);
        completed.push(['r', key, t.outcome === 'ok' ? (myRegisters.get(key) ?? null) : null]);
      }
    }
    if (applies) {
      for (const [k, v] of myLists) lists.set(k, v);
      for (const [k, v] of myRegisters) registers.set(k, v);
    }
    const type = t.outcome.startsWith('info') ? 'info' : t.outcome;
    lines.push(JSON.stringify({ index: index++, process, type: 'invoke', value: invoked }));
    lines.push(JSON.stringify({ index: index++, process, type, value: completed }));
    if (type === 'info') live.set(t.process, nextProcess++);
  }
  return lines.join('\n');
}

for (const model of ['list-append', 'rw-register'] as const) {
  test(`${model}: every serial execution is valid, even under strict serializability`, () => {
    fc.assert(
      fc.property(
        fc.array(plannedTxn, { minLength: 1, maxLength: 40 }),
        fc.constantFrom('serializable', 'strong-session-serializable', 'strict-serializable' as const),
        (plan, consistency) => {
          const history = serialHistory(model, plan);
          const result = checkHistoryText(history, 'generated', { model, consistency });
          assert.deepEqual(
            result.anomalyTypes,
            [],
            `${JSON.stringify(result.anomalies).slice(0, 2000)}\n${history}`,
          );
        },
      ),
      { numRuns: 300 },
    );
  });
}

test('list-append: one stale read in a serial execution is always caught under strict serializability', () => {
  fc.assert(
    fc.property(fc.array(plannedTxn, { minLength: 2, maxLength: 40 }), fc.nat(), (plan, pick) => {
      const lines = serialHistory('list-append', plan).split('\n');
      // Reads that end on another committed transaction's append: drop that element. (An
      // indeterminate writer may take effect at any time after its invocation, so missing its
      // append is no anomaly.)
      const ops = lines.map(
        (line) => JSON.parse(line) as { type: string; value: [string, number, unknown][] },
      );
      const committed = new Set(
        ops
          .filter((op) => op.type === 'ok')
          .flatMap((op) => op.value.filter(([f]) => f === 'append').map(([, , v]) => v)),
      );
      const candidates: { line: number; mop: number }[] = [];
      ops.forEach((op, i) => {
        if (op.type !== 'ok') return;
        const own = new Set(op.value.filter(([f]) => f === 'append').map(([, , v]) => v));
        op.value.forEach(([f, , v], m) => {
          if (f !== 'r' || !Array.isArray(v) || v.length === 0) return;
          const last = v[v.length - 1];
          if (!own.has(last) && committed.has(last)) candidates.push({ line: i, mop: m });
        });
      });
      fc.pre(candidates.length > 0);
      const { line, mop } = candidates[pick % candidates.length]!;
      const op = JSON.parse(lines[line]!);
      op.value[mop][2].pop();
      lines[line] = JSON.stringify(op);
      const result = checkHistoryText(lines.join('\n'), 'generated', {
        model: 'list-append',
        consistency: 'strict-serializable',
      });
      assert.equal(result.valid, false, lines.join('\n'));
      // Every cycle witness is a simple cycle whose steps chain its transactions in order.
      for (const witnesses of Object.values(result.anomalies))
        for (const w of witnesses) {
          if (!isCycleWitness(w)) continue;
          const ids = w.txns.map((t) => t.index);
          assert.equal(new Set(ids).size, ids.length);
          w.steps.forEach((step, i) => {
            assert.equal(step.from, ids[i]);
            assert.equal(step.to, ids[(i + 1) % ids.length]);
          });
        }
    }),
    { numRuns: 300 },
  );
});
