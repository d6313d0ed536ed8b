// Crash tests of the saga runtime: run a fixture script in its own process
// until it prints CRASH-POINT (the state to crash in is durable), then
// SIGKILL it, as a real crash would.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';

/** Runs `node --import tsx fixture ...args` until CRASH-POINT, SIGKILLs it, and returns what it printed. */
export async function runUntilCrashPoint(
  fixture: string,
  args: readonly string[],
  env: Record<string, string> = {},
): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', fixture, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<NodeJS.Signals | number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(signal ?? code)),
  );
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('CRASH-POINT')) resolve();
    });
    child.on('exit', () => reject(new Error(`fixture exited before its crash point: ${out}\n${err}`)));
  });
  process.kill(child.pid!, 'SIGKILL');
  assert.equal(await exited, 'SIGKILL');
  return out;
}
