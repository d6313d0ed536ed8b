// The protocol cores' boundary, checked mechanically: src/protocol imports
// nothing outside itself and touches no clock, randomness, timer or Node API.
// The simulator's determinism and the runtime's correctness both rest on it.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const protocolDir = join(root, 'src', 'protocol');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return sources(path);
    return path.endsWith('.ts') ? [path] : [];
  });
}

const forbidden: [RegExp, string][] = [
  [/\bDate\b/, 'Date (time must come in as input)'],
  [/\bMath\.random\b/, 'Math.random (randomness must come in as input)'],
  [
    /\b(setTimeout|setInterval|setImmediate|clearTimeout|clearInterval|queueMicrotask)\b/,
    'timers (use setTimer effects)',
  ],
  [/\bperformance\b/, 'performance (no clocks)'],
  [/\bprocess\b/, 'process (no Node APIs)'],
  [/\b(require|Buffer|globalThis|WeakRef|FinalizationRegistry)\b/, 'host APIs'],
  [/\b(async|await)\b/, 'async code (cores are synchronous)'],
  [/\bcrypto\b/, 'crypto (randomness must come in as input)'],
];

/** Source text without comments and string contents, so that prose may mention what code may not use. */
function code(text: string): string {
  return text
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/\/\/.*$/gm, '')
    .replace(/`(?:\\.|[^`\\])*`/g, '``')
    .replace(/'(?:\\.|[^'\\])*'/g, "''");
}

test('src/protocol imports only from inside src/protocol', () => {
  const files = sources(protocolDir);
  assert.ok(files.length > 0);
  for (const file of files) {
    const text = readFileSync(file, 'utf8');
    for (const m of text.matchAll(
      /(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]/g,
    )) {
      const spec = m[1] ?? m[2]!;
      assert.ok(spec.startsWith('.'), `${relative(root, file)} imports package "${spec}"`);
      const target = resolve(dirname(file), spec);
      assert.ok(
        target.startsWith(protocolDir + '/'),
        `${relative(root, file)} imports ${spec}, outside src/protocol`,
      );
    }
  }
});

test('src/protocol uses no clock, randomness, timers or host APIs', () => {
  for (const file of sources(protocolDir)) {
    const text = code(readFileSync(file, 'utf8'));
    for (const [pattern, what] of forbidden) {
      const hit = text.match(pattern);
      assert.equal(hit, null, `${relative(root, file)} uses ${what}`);
    }
  }
});

test('the check itself catches a violation', () => {
  const sample = code("import { x } from 'node:fs';\nconst t = Date.now(); // Date in a comment is fine\n");
  assert.ok(forbidden.some(([p]) => p.test(sample)));
  assert.ok(
    !forbidden.some(([p]) => p.test(code("// Date.now and Math.random in prose\nconst s = 'Date';\n"))),
  );
});
