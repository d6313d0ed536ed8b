// A throwaway MariaDB server for tests that kill -9 a participant database:
// the machine's own server (port 3306) is shared and must never be killed.
// The server gets a data directory of its own, /tmp/dtx-maria-<port> (made by
// mariadb-install-db; root without a password, as on the shared server), and
// listens on 127.0.0.1:<port> only; `kill9()` SIGKILLs its process and
// `restart()` starts it again on the same directory, so that InnoDB's crash
// recovery brings its prepared XA branches back. When the tests run as root
// the server runs as the `mysql` user (mariadbd refuses root).
//
// The port: DTX_TEST_MARIA_PORT, default 23306, below Linux's ephemeral range
// (32768 and up), so that no client socket or port-0 listener of a parallel
// test can hold it by chance (a fixed port in that range once failed CI with
// "Address already in use"). A port taken anyway is skipped for the next one,
// up to 20; the data directory keeps the name of the first port tried.

import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mysql from 'mysql2/promise';

const run = promisify(execFile);

export interface MariaServer {
  port: number;
  dir: string;
  /** Connection settings for the adapter: root, no password, database `database`. */
  connection(database?: string): { host: string; port: number; user: string; database?: string };
  /** SIGKILLs the server process and waits until it is gone. */
  kill9(): Promise<void>;
  /** Starts the server again on its data directory and waits until it answers. */
  restart(): Promise<void>;
  /** Kills the server and deletes its data directory. Idempotent. */
  stop(): Promise<void>;
}

const asRoot = process.getuid?.() === 0;

async function answers(port: number, timeoutMs: number, proc: ChildProcess, log: string): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (proc.exitCode !== null || proc.signalCode !== null)
      throw new Error(`mariadbd exited (${proc.exitCode ?? proc.signalCode}); see ${log}`);
    try {
      const c = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', connectTimeout: 2000 });
      await c.end();
      return;
    } catch (error) {
      if (Date.now() > until) throw new Error(`mariadbd on ${port} did not answer: ${String(error)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

const portsToTry = 20;

/** What the server logged from byte `from` on ('' when there is no log yet). */
function logSince(log: string, from: number): string {
  try {
    return readFileSync(log).subarray(from).toString();
  } catch {
    return '';
  }
}

function logSize(log: string): number {
  try {
    return statSync(log).size;
  } catch {
    return 0;
  }
}

export async function startMariaServer(
  firstPort = Number(process.env.DTX_TEST_MARIA_PORT ?? 23306),
): Promise<MariaServer> {
  let port = firstPort;
  const dir = `/tmp/dtx-maria-${firstPort}`;
  const log = join(dir, 'server.log');
  rmSync(dir, { recursive: true, force: true });
  await run(
    'mariadb-install-db',
    [
      '--no-defaults',
      `--datadir=${dir}`,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      ...(asRoot ? ['--user=mysql'] : []),
    ],
    { timeout: 300_000 },
  );
  let proc: ChildProcess | null = null;
  const start = async () => {
    const p = spawn(
      'mariadbd',
      [
        '--no-defaults',
        `--datadir=${dir}`,
        `--port=${port}`,
        '--bind-address=127.0.0.1',
        `--socket=${join(dir, 'mariadbd.sock')}`,
        `--pid-file=${join(dir, 'mariadbd.pid')}`,
        `--log-error=${log}`,
        '--innodb-buffer-pool-size=32M',
        '--innodb-log-file-size=16M',
        ...(asRoot ? ['--user=mysql'] : []),
      ],
      { stdio: 'ignore' },
    );
    proc = p;
    await answers(port, 300_000, p, log);
  };
  const kill9 = async () => {
    const p = proc;
    if (p === null || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  };
  for (;;) {
    const from = logSize(log);
    try {
      await start();
      break;
    } catch (error) {
      const taken = /Address already in use/.test(logSince(log, from));
      if (!taken || port + 1 >= firstPort + portsToTry) throw error;
      port++;
    }
  }
  return {
    port,
    dir,
    connection: (database) => ({ host: '127.0.0.1', port, user: 'root', ...(database ? { database } : {}) }),
    kill9,
    restart: start,
    stop: async () => {
      await kill9();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
