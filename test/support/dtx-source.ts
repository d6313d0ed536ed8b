// The `dtx` command run from the sources (DTX_FROM_SOURCE=1: no build
// needed), for tests of what the command line prints and exits with.

import { spawnSync } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

/** Runs `dtx args...`; each run compiles the sources through tsx, which is slow on a loaded machine. */
export function dtxFromSource(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'dtx.js'), ...args], {
    encoding: 'utf8',
    cwd: root,
    timeout: 600_000,
    env: { ...process.env, DTX_FROM_SOURCE: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}
