// Simulator throughput: simulated transactions per wall-clock second, and how
// much faster than real time the simulation runs, on the bank workload with
// three participants and a 1 ms simulated round trip. Run: npm run bench:sim
// [-- --txns N] [-- --protocols 2pc,naive].
//
// The young generation is enlarged for the same reason as in bin/dtx.js: a
// simulation allocates many short-lived objects, and the default semi-space
// makes the scavenger copy them over and over.
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--max-semi-space-size=64');

const { runSim } = await import('../src/sim/run.ts');
const { isProtocolName } = await import('../src/sim/protocols.ts');

const args = process.argv.slice(2);
const flag = (name: string, fallback: string) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const txns = Number(flag('--txns', '100000'));
const protocols = flag('--protocols', '2pc,paxos-commit,3pc,naive').split(',');

// Warm up the JIT on a short run so the measured runs compare steady states.
runSim({ protocol: '2pc', workload: 'bank', txns: 5000, seed: 99 });

const rows: {
  protocol: string;
  txnsPerSec: number;
  realTimeRatio: number;
  wallMs: number;
  simulatedMs: number;
}[] = [];
for (const protocol of protocols) {
  if (!isProtocolName(protocol)) throw new Error(`unknown protocol ${protocol}`);
  const { report } = runSim({ protocol, workload: 'bank', txns, seed: 1, participants: 3, rttMs: 1 });
  rows.push({
    protocol,
    txnsPerSec: Math.round((report.txns / report.wallMs) * 1000),
    realTimeRatio: Math.round((report.simulatedMs / report.wallMs) * 10) / 10,
    wallMs: report.wallMs,
    simulatedMs: report.simulatedMs,
  });
}
console.log(`bank workload, 3 participants, 1 ms RTT, ${txns} transactions per protocol, seed 1`);
console.log('protocol       simulated txns/s   x real time   wall ms   simulated ms');
for (const r of rows) {
  console.log(
    `${r.protocol.padEnd(14)} ${String(r.txnsPerSec).padStart(16)}   ${String(r.realTimeRatio).padStart(11)}   ${String(r.wallMs).padStart(7)}   ${r.simulatedMs}`,
  );
}
console.log(JSON.stringify({ txns, rows }));
