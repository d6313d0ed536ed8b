// A throwaway PostgreSQL cluster for tests that need two-phase commit (the
// machine's own server runs with max_prepared_transactions = 0). The cluster
// itself is made and removed by scripts/pg-cluster.sh; this wrapper picks a
// port so that concurrent test runs in one checkout do not collide, and clears
// clusters left running by runs that were killed.
//
// Each cluster lives in /tmp/dtx-pg-<port> (not $TMPDIR: the `postgres` user
// must be able to reach it when tests run as root), next to an owner file
// /tmp/dtx-pg-<port>.owner holding the pid of the process that started it. A
// port is claimed by creating that file exclusively; a cluster whose owner pid
// is dead is a leftover and is stopped and deleted by the next run.

import { execFile } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { PoolConfig } from 'pg';

const run = promisify(execFile);
const script = fileURLToPath(new URL('../../scripts/pg-cluster.sh', import.meta.url));
const root = '/tmp';
/** dtx's tests use ports from here up; override with DTX_TEST_PG_PORT. */
const basePortDefault = 55491;
const portsToTry = 40;

export interface PgCluster {
  host: string;
  port: number;
  dir: string;
  /** Settings for `pg` (superuser `postgres`, database `postgres`, trust auth). */
  connection: PoolConfig;
  /** Stops the server (immediate mode) and deletes its directory. Idempotent. */
  stop(): Promise<void>;
}

class PortInUseError extends Error {}

async function cluster(command: 'start' | 'stop', dir: string, port: number): Promise<void> {
  try {
    // initdb alone took over 90 s on this 2-core machine under a soak at load 17.
    await run('bash', [script, command, dir, String(port)], { timeout: 240_000 });
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    if (/already in use/.test(stderr)) throw new PortInUseError(stderr);
    throw new Error(`scripts/pg-cluster.sh ${command} ${dir} ${port} failed: ${stderr}`, { cause: error });
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Stops clusters whose owner process is gone. */
async function sweepLeftovers(): Promise<void> {
  for (const name of readdirSync(root)) {
    const match = /^dtx-pg-(\d+)\.owner$/.exec(name);
    if (match === null) continue;
    const ownerFile = join(root, name);
    let pid: number;
    try {
      pid = Number(readFileSync(ownerFile, 'utf8').trim());
    } catch {
      continue;
    }
    if (Number.isSafeInteger(pid) && pid > 0 && isAlive(pid)) continue;
    const port = Number(match[1]);
    await cluster('stop', join(root, `dtx-pg-${port}`), port).catch(() => undefined);
    rmSync(ownerFile, { force: true });
  }
}

/** Starts a cluster on the first free port from DTX_TEST_PG_PORT (default 55491). */
export async function startPgCluster(): Promise<PgCluster> {
  await sweepLeftovers();
  const basePort = Number(process.env.DTX_TEST_PG_PORT ?? basePortDefault);
  for (let port = basePort; port < basePort + portsToTry; port++) {
    const dir = join(root, `dtx-pg-${port}`);
    const ownerFile = `${dir}.owner`;
    try {
      writeFileSync(ownerFile, String(process.pid), { flag: 'wx' });
    } catch {
      continue; // another live run owns this port
    }
    try {
      // Wipes a leftover cluster in `dir` (one with no owner file) before starting.
      await cluster('start', dir, port);
    } catch (error) {
      rmSync(ownerFile, { force: true });
      if (error instanceof PortInUseError) continue;
      throw error;
    }
    let stopped = false;
    return {
      host: '127.0.0.1',
      port,
      dir,
      connection: { host: '127.0.0.1', port, user: 'postgres', database: 'postgres', max: 8 },
      async stop() {
        if (stopped) return;
        stopped = true;
        try {
          await cluster('stop', dir, port);
        } finally {
          rmSync(ownerFile, { force: true });
        }
      },
    };
  }
  throw new Error(`no free port for a test PostgreSQL cluster in ${basePort}..${basePort + portsToTry - 1}`);
}
