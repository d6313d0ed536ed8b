// Child processes for the outbox crash tests: `dtx relay` (the real command,
// from source) and the consumer fixture, with their output collected so a
// test can wait for a line, and SIGKILL or SIGTERM them.

import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { waitFor } from './support.ts';

const dtxBin = fileURLToPath(new URL('../../bin/dtx.js', import.meta.url));
const consumerFixture = fileURLToPath(new URL('./fixtures/consumer.ts', import.meta.url));

export interface Child {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Waits until stdout or stderr contains `text`. */
  waitForOutput(text: string | RegExp, timeoutMs?: number): Promise<void>;
  kill9(): Promise<void>;
  /** SIGTERM, then waits for the exit. */
  stop(): Promise<void>;
}

function track(proc: ChildProcess): Child {
  let out = '';
  let err = '';
  proc.stdout?.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let done = false;
  void exited.then(() => {
    done = true;
  });
  const matches = (text: string | RegExp) =>
    typeof text === 'string' ? out.includes(text) || err.includes(text) : text.test(out) || text.test(err);
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    exited,
    async waitForOutput(text, timeoutMs = 60_000) {
      await waitFor(
        `${JSON.stringify(String(text))} from pid ${proc.pid}`,
        () => {
          if (done && !matches(text))
            throw new Error(`pid ${proc.pid} exited; stdout:\n${out}\nstderr:\n${err}`);
          return matches(text);
        },
        timeoutMs,
      );
    },
    async kill9() {
      if (!done) proc.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (!done) proc.kill('SIGTERM');
      await exited;
    },
  };
}

export function spawnRelay(args: string[]): Child {
  return spawnDtx(['relay', ...args]);
}

/** Any `dtx` command, from source. */
export function spawnDtx(args: string[]): Child {
  return track(
    spawn(process.execPath, [dtxBin, ...args], {
      env: { ...process.env, DTX_FROM_SOURCE: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

export interface ConsumerConfig {
  nats: string;
  stream: string;
  durable: string;
  kind: 'postgres' | 'mariadb';
  inboxTable: string;
  effectsTable: string;
  ackWaitMs: number;
  crashAfterCommits?: number;
}

export function spawnConsumer(cfg: ConsumerConfig): Child {
  return track(
    spawn(process.execPath, ['--import', 'tsx', consumerFixture, JSON.stringify(cfg)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}
