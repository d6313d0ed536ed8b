// 50 SIGKILLs at random moments across the outbox bench's three parts, each
// its own process: the producer (`dtx bench --protocol outbox --part
// producer`), two relays at once (`dtx relay`, the relay started twice) and
// the consumer (`--part consumer`); the test's own nats-server is killed and
// restarted on its store twice on the way. In five rounds of ten kills, each
// ending with every part killed at once, then `dtx recover` and `dtx verify`:
// every committed debit credited exactly once, every time. The schedule comes from a seed,
// printed; DTX_KILL_SEED=N replays one.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Child, spawnDtx } from './processes.ts';
import { benchDatabases, type OwnNats, sleep, startOwnNats } from './support.ts';

const stream = 'KILL';
/** 50 kills in all, in rounds; each round ends with recover and verify. */
const rounds = 5;
const killsPerRound = 10;

/** mulberry32: a small seeded PRNG, so a failing schedule can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

let nats: OwnNats;

let databases: Awaited<ReturnType<typeof benchDatabases>>;

before(async () => {
  databases = await benchDatabases('dtx_obench_kill');
  nats = await startOwnNats();
});

after(async () => {
  await nats?.dispose();
  await databases?.drop();
});

/** Runs a dtx command to its end; its stdout parsed as JSON. */
async function dtxJson(args: string[]): Promise<Record<string, unknown>> {
  const child = spawnDtx(args);
  const { code } = await child.exited;
  assert.ok(code === 0 || code === 1, `dtx ${args[0]} exited ${code}:\n${child.stderr()}`);
  try {
    return JSON.parse(child.stdout()) as Record<string, unknown>;
  } catch {
    throw new Error(`dtx ${args[0]} printed no JSON (exit ${code}):\n${child.stdout()}\n${child.stderr()}`);
  }
}

test('outbox bench: 50 random SIGKILLs of producer, two relays and consumer, a broker restart; recover, then exactly once', async () => {
  const seed = Number(process.env.DTX_KILL_SEED ?? Math.floor(Math.random() * 2 ** 31));
  process.stdout.write(`outbox kill schedule seed: ${seed} (replay: DTX_KILL_SEED=${seed})\n`);
  const rand = prng(seed);
  const { pgUrl, myUrl } = databases;
  const dbs = ['--db', pgUrl, '--db', myUrl];
  const common = [...dbs, '--nats', nats.url, '--stream', stream];
  // No rollbacks in the set-up transfer: with the default share (5%) it would roll back one run in twenty.
  const init = await dtxJson([
    'bench',
    '--protocol',
    'outbox',
    ...common,
    '--init',
    '--txns',
    '1',
    '--abort-share',
    '0',
    '--json',
  ]);
  assert.equal(init.committed, 1);

  // The relay, started twice: both run at once on one outbox.
  const relay = [
    'relay',
    '--db',
    pgUrl,
    '--nats',
    nats.url,
    '--stream',
    stream,
    '--table',
    'dtx_obench_outbox',
    '--lease-ms',
    '3000',
  ];
  const commands: Record<string, string[]> = {
    producer: [
      'bench',
      '--protocol',
      'outbox',
      ...common,
      '--part',
      'producer',
      '--concurrency',
      '4',
      '--abort-share',
      '0.1',
      '--duration',
      '3600',
    ],
    relay1: relay,
    relay2: relay,
    consumer: ['bench', '--protocol', 'outbox', ...common, '--part', 'consumer', '--duration', '3600'],
  };
  const names = Object.keys(commands);
  const killed: Record<string, number> = { producer: 0, relay: 0, consumer: 0 };
  let killedRunning = 0;
  let lastProduced = 0;
  // The broker is killed and restarted in the middle of rounds 2 and 4.
  const brokerRestarts = new Set([
    Math.floor(killsPerRound / 2),
    Math.floor(killsPerRound / 2) + 2 * killsPerRound + 1,
  ]);
  for (let round = 0; round < rounds; round++) {
    const procs = new Map<string, Child>(names.map((n) => [n, spawnDtx(commands[n]!)]));
    try {
      for (let k = 0; k < killsPerRound; k++) {
        const i = round * killsPerRound + k;
        // Long enough on average for a restarted part to get going on a loaded machine (a dtx process takes about a second to start).
        await sleep(400 + Math.floor(rand() * 1200));
        const name = names[Math.floor(rand() * names.length)]!;
        const child = procs.get(name)!;
        if (child.proc.exitCode === null && child.proc.signalCode === null) killedRunning++;
        await child.kill9();
        killed[name.replace(/\d$/, '')]!++;
        procs.set(name, spawnDtx(commands[name]!));
        if (brokerRestarts.has(i)) {
          await nats.kill();
          await sleep(200 + Math.floor(rand() * 500));
          await nats.start();
        }
        // A part that started while the broker was down gave up (NATS unreachable at start): start it again.
        for (const [n, c] of procs) if (c.proc.exitCode !== null) procs.set(n, spawnDtx(commands[n]!));
      }
    } finally {
      // The round ends as a crash of everything at once.
      for (const c of procs.values()) await c.kill9();
    }
    // After every round: recover, then every committed debit is credited exactly once.
    const recovered = await dtxJson(['recover', ...common, '--json']);
    const report = await dtxJson(['verify', ...dbs, '--json']);
    process.stdout.write(
      `outbox round ${round + 1}: recover ${JSON.stringify(recovered)}; verify ${JSON.stringify(report)}\n`,
    );
    // A round whose producer was killed before it got going may add nothing; the run as a whole must.
    lastProduced = report.produced as number;
    assert.equal(report.missing, 0, `round ${round + 1}: every committed debit was credited`);
    assert.equal(report.duplicates, 0, `round ${round + 1}: no debit was credited twice`);
    assert.equal(report.unknown, 0, `round ${round + 1}: no credit without its debit`);
    assert.equal(report.total, report.expectedTotal);
    assert.equal(report.ok, true);
  }
  process.stdout.write(
    `outbox kills: ${JSON.stringify(killed)}, ${killedRunning} of ${rounds * killsPerRound} while running; broker restarted ${brokerRestarts.size} times\n`,
  );
  assert.equal(killed.producer! + killed.relay! + killed.consumer!, rounds * killsPerRound);
  assert.ok(lastProduced > 1, 'the producer committed transfers between the kills');
});
