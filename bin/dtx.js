#!/usr/bin/env node
// The dtx command. It runs the compiled JavaScript in dist/, so that an
// installed package needs no TypeScript loader: `npm install` in a clone
// builds dist/ through the `prepare` script, and the published package ships
// it. DTX_FROM_SOURCE=1 runs the TypeScript sources in src/ through tsx (a
// development dependency) instead, for working on dtx without rebuilding;
// the processes dtx starts itself (the demo's coordinator) inherit it.
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';

// Simulations allocate many short-lived objects; a larger young generation
// spares the scavenger most of its copying (measured: about 1.5x faster runs).
setFlagsFromString('--max-semi-space-size=64');

async function load() {
  if (process.env.DTX_FROM_SOURCE === '1') {
    const { register } = await import('tsx/esm/api');
    register();
    return import('../src/cli/main.ts');
  }
  const entry = new URL('../dist/cli/main.js', import.meta.url);
  try {
    return await import(entry.href);
  } catch (err) {
    // Only the entry itself missing means "not built"; anything else is a real failure.
    if (err?.code !== 'ERR_MODULE_NOT_FOUND' || !String(err.message).includes(fileURLToPath(entry)))
      throw err;
    process.stderr.write(
      'dtx: dist/ is not built: run `npm run build` (npm install does it), ' +
        'or set DTX_FROM_SOURCE=1 to run the TypeScript sources\n',
    );
    process.exit(1);
  }
}

const { main } = await load();
process.exitCode = await main(process.argv);
