// History checker benchmark: generates a list-append history of many
// transactions run by concurrent processes against an in-memory store that
// applies each transaction atomically at its completion (so the history is
// strict-serializable), checks it, then checks a copy with injected
// anomalies (reads that lost their last element, committed appends recorded
// as failed), and prints transactions checked per second for each. The time
// covers everything `dtx check-history` does after reading the file:
// parsing, pairing, inference, graph, cycle search, witnesses. It prints
// wall-clock and CPU time: on a shared machine the two differ.
//
// Run: node --import tsx bench/history.ts [--txns 100000] [--seed 1]

import { performance } from 'node:perf_hooks';
import { checkHistoryText } from '../src/history/check.ts';
import type { Consistency } from '../src/history/types.ts';
import { Prng } from '../src/sim/prng.ts';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const txnCount = Number(flag('--txns', '100000'));
const seed = Number(flag('--seed', '1'));

/** As in Jepsen's list-append workload: a few keys are live at a time, each retired after this many appends. */
const processes = 20;
const liveKeys = 10;
const appendsPerKeyMax = 32;

type Mop = [string, number, number | number[] | null];

function generate(rng: Prng): string[] {
  const lists = new Map<number, number[]>();
  const live = Array.from({ length: liveKeys }, (_, i) => i);
  const planned = new Map<number, number>();
  let nextKey = liveKeys;
  let nextValue = 0;
  let index = 0;
  const lines: string[] = [];
  const idle = Array.from({ length: processes }, (_, i) => i);
  let nextProcess = processes;
  const running: { process: number; mops: Mop[] }[] = [];
  let invoked = 0;
  while (invoked < txnCount || running.length > 0) {
    const invoke = invoked < txnCount && idle.length > 0 && (running.length === 0 || rng.chance(0.5));
    if (invoke) {
      const process = idle.splice(rng.int(idle.length), 1)[0]!;
      const mops: Mop[] = [];
      for (let n = 1 + rng.int(4); n > 0; n--) {
        const slot = rng.int(liveKeys);
        const key = live[slot]!;
        if (rng.chance(0.5)) {
          mops.push(['r', key, null]);
          continue;
        }
        mops.push(['append', key, nextValue++]);
        const count = (planned.get(key) ?? 0) + 1;
        planned.set(key, count);
        if (count >= appendsPerKeyMax) live[slot] = nextKey++;
      }
      running.push({ process, mops });
      lines.push(JSON.stringify({ index: index++, process, type: 'invoke', value: mops }));
      invoked++;
      continue;
    }
    const { process, mops } = running.splice(rng.int(running.length), 1)[0]!;
    const roll = rng.next();
    const type = roll < 0.97 ? 'ok' : roll < 0.99 ? 'fail' : 'info';
    const applies = type === 'ok' || (type === 'info' && rng.chance(0.5));
    const done: Mop[] = mops.map(([f, k, v]) => {
      if (f === 'append') {
        if (applies) {
          let list = lists.get(k);
          if (list === undefined) lists.set(k, (list = []));
          list.push(v as number);
        }
        return [f, k, v];
      }
      return [f, k, type === 'ok' ? [...(lists.get(k) ?? [])] : null];
    });
    lines.push(JSON.stringify({ index: index++, process, type, value: done }));
    // A process whose transaction ended indeterminate is retired, as in Jepsen.
    idle.push(type === 'info' ? nextProcess++ : process);
  }
  return lines;
}

/** Stale reads (a read missing its last element) and committed appends recorded as failed. */
function inject(lines: readonly string[], rng: Prng): string[] {
  return lines.map((line) => {
    const op = JSON.parse(line) as { type: string; value: Mop[] };
    if (op.type !== 'ok') return line;
    if (rng.chance(0.002)) {
      const read = op.value.find(([f, , v]) => f === 'r' && Array.isArray(v) && v.length > 0);
      if (read !== undefined) {
        (read[2] as number[]).pop();
        return JSON.stringify(op);
      }
    }
    if (rng.chance(0.001) && op.value.some(([f]) => f === 'append'))
      return JSON.stringify({ ...op, type: 'fail' });
    return line;
  });
}

function measure(label: string, text: string, consistency: Consistency): void {
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  const result = checkHistoryText(text, label, { model: 'list-append', consistency });
  const cpu = process.cpuUsage(cpuStarted);
  const elapsedMs = performance.now() - started;
  // CPU time too: on a shared machine the wall clock also counts other processes' turns.
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const counts = result.anomalyTypes.map((t) => `${t} ${result.anomalies[t]!.length}`).join(', ');
  console.log(
    `${label.padEnd(9)} ${consistency.padEnd(20)} ${txnCount} txns in ${elapsedMs.toFixed(0)} ms ` +
      `(${cpuMs.toFixed(0)} ms CPU): ${Math.round(txnCount / (elapsedMs / 1000))} txns/s ` +
      `(${Math.round(txnCount / (cpuMs / 1000))} per CPU second); ${result.valid ? 'valid' : `anomalies: ${counts}`}`,
  );
}

const rng = new Prng(seed);
const generatedAt = performance.now();
const valid = generate(rng);
const anomalous = inject(valid, rng.fork());
console.log(
  `generated ${txnCount} transactions (${valid.length} ops, ${processes} processes, seed ${seed}) ` +
    `in ${(performance.now() - generatedAt).toFixed(0)} ms`,
);
const validText = valid.join('\n');
const anomalousText = anomalous.join('\n');
for (const consistency of ['serializable', 'strict-serializable'] as const) {
  measure('valid', validText, consistency);
  measure('injected', anomalousText, consistency);
}
