// Simulator throughput: simulated transactions per wall-clock second, and how
// much faster than real time the simulation runs, on the bank workload with
// three participants and a 1 ms simulated round trip.
//
//   npm run bench:sim [-- --txns N] [--protocols 2pc,naive] [--repeat R]
//                     [--think-ms T] [--no-pin]
//
// Each protocol runs under two loads of the same bank workload (8 clients):
// - saturated: every client starts its next transfer the moment the last one
//   ends (closed loop, no pause), so the accounts are always contended;
// - think time: every client pauses T ms on average (exponential, default
//   1,000 ms, i.e. each client does about one transfer a second) between
//   transfers, as a real client population does.
// The simulator's cost per transaction is of the same order under both (think
// time adds an event per transaction but spares the lock waits, wounds and
// retries of a contended run, and is measured faster), while simulated time
// advances far more per transaction with think time: the ratio to real time is
// (transactions per wall second) / (transactions per simulated second), so a
// saturated load, which packs the most transactions into each simulated
// second, has the lowest ratio, and the ratio under think time grows with T.
// Both are printed; the verdict lines say which load each figure is from.
//
// "One core": unless --no-pin is given, the bench re-runs itself pinned to CPU
// 0 with `taskset` (when present), so the garbage collector's helper threads
// share the one core with the simulation; whether it runs on one core is read
// back from the process's CPU affinity, not assumed. Each figure is the median of R runs
// (default 3), the spread is printed beside it. The young generation is
// enlarged for the same reason as in bin/dtx.js: a simulation allocates many
// short-lived objects.
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};

const pinnedEnv = 'DTX_BENCH_PINNED';
if (!args.includes('--no-pin') && process.env[pinnedEnv] === undefined) {
  const self = fileURLToPath(import.meta.url);
  const child = spawnSync(
    'taskset',
    ['-c', '0', process.execPath, '--max-semi-space-size=64', '--import', 'tsx', self, ...args],
    { stdio: 'inherit', env: { ...process.env, [pinnedEnv]: '1' } },
  );
  if (child.error === undefined) process.exit(child.status ?? 1);
  process.stderr.write(`taskset unavailable (${child.error.message}); running unpinned\n`);
}

const { setFlagsFromString } = await import('node:v8');
setFlagsFromString('--max-semi-space-size=64');
const { runSim } = await import('../src/sim/run.ts');
const { isProtocolName } = await import('../src/sim/protocols.ts');

const txns = Number(flag('--txns', '100000'));
const repeat = Number(flag('--repeat', '3'));
const thinkMs = Number(flag('--think-ms', '1000'));
const protocols = flag('--protocols', '2pc,paxos-commit,3pc,naive').split(',');
for (const p of protocols) if (!isProtocolName(p)) throw new Error(`unknown protocol ${p}`);
if (!(txns > 0 && repeat > 0 && thinkMs > 0)) throw new Error('--txns, --repeat and --think-ms must be > 0');

// Warm up the JIT on a short run so the measured runs compare steady states.
runSim({ protocol: '2pc', workload: 'bank', txns: 5000, seed: 99 });

interface Row {
  protocol: string;
  load: string;
  thinkMs: number;
  /** Median, min and max over the repeats. */
  txnsPerSec: number;
  txnsPerSecMin: number;
  txnsPerSecMax: number;
  realTimeRatio: number;
  simulatedTxnsPerSimSecond: number;
  wallMs: number;
  simulatedMs: number;
  committed: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rows: Row[] = [];
for (const protocol of protocols) {
  for (const think of [0, thinkMs]) {
    const walls: number[] = [];
    let last: ReturnType<typeof runSim>['report'] | undefined;
    for (let r = 0; r < repeat; r++) {
      const { report } = runSim({
        protocol: protocol as '2pc',
        workload: 'bank',
        txns,
        seed: 1,
        participants: 3,
        rttMs: 1,
        thinkMs: think,
      });
      walls.push(Math.max(report.wallMs, 1));
      last = report;
    }
    const wall = median(walls);
    const rate = (ms: number) => Math.round((txns / ms) * 1000);
    rows.push({
      protocol,
      load: think === 0 ? 'saturated' : `think ${think} ms`,
      thinkMs: think,
      txnsPerSec: rate(wall),
      txnsPerSecMin: rate(Math.max(...walls)),
      txnsPerSecMax: rate(Math.min(...walls)),
      realTimeRatio: Math.round(last!.simulatedMs / wall),
      simulatedTxnsPerSimSecond: Math.round((txns / last!.simulatedMs) * 1000 * 10) / 10,
      wallMs: wall,
      simulatedMs: last!.simulatedMs,
      committed: last!.committed,
    });
  }
}

// availableParallelism() follows the CPU affinity mask (sched_getaffinity).
const pinned = availableParallelism() === 1;
console.log(
  `bank workload, 3 participants, 8 clients, 1 ms RTT, ${txns} transactions per run, seed 1, ` +
    `median of ${repeat}; ${pinned ? 'on one CPU' : `on ${availableParallelism()} CPUs (not pinned)`}`,
);
console.log(
  'protocol       load              sim txns/s (min-max)      x real time   txns per sim s   wall ms',
);
for (const r of rows) {
  const spread = `${r.txnsPerSec} (${r.txnsPerSecMin}-${r.txnsPerSecMax})`;
  console.log(
    `${r.protocol.padEnd(14)} ${r.load.padEnd(16)} ${spread.padStart(24)}   ${String(r.realTimeRatio).padStart(11)}   ${String(r.simulatedTxnsPerSimSecond).padStart(14)}   ${String(r.wallMs).padStart(7)}`,
  );
}
// The 2PC target, judged from the figures above: >= 20,000 simulated
// transactions per second on one core, and >= 1,000x real time.
for (const r of rows.filter((row) => row.protocol === '2pc')) {
  const speed = r.txnsPerSec >= 20_000 ? (pinned ? 'met' : 'met, but not pinned to one core') : 'NOT met';
  const ratio =
    r.realTimeRatio < 1000
      ? 'NOT met'
      : r.thinkMs > 0
        ? `met with ${r.thinkMs} ms of think time per client; the ratio grows with it`
        : 'met';
  console.log(
    `2pc ${r.load}: ${r.txnsPerSec} simulated txns/s (>= 20000: ${speed}), ${r.realTimeRatio}x real time (>= 1000x: ${ratio})`,
  );
}
console.log(JSON.stringify({ txns, repeat, pinned, rows }));
