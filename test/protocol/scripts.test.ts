// Data-driven interaction tests of the protocol cores: every
// testdata/<core>/*.txt script is run by ../support/script.ts (which documents
// the format) against its core (../support/script-cores.ts), and its trace
// compared exactly with the expected one.
// REWRITE=1 regenerates the expected traces in place; review the diff.

import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { runScriptFile, type ScriptProtocol } from '../support/script.ts';
import {
  naiveProtocol,
  paxosCommitProtocol,
  sagaProtocol,
  tccProtocol,
  threePcProtocol,
  twoPcProtocol,
} from '../support/script-cores.ts';

const rewrite = process.env.REWRITE === '1';
const root = join(import.meta.dirname, '..', '..', 'testdata');

const suites: [string, ScriptProtocol][] = [
  ['twopc', twoPcProtocol],
  ['naive', naiveProtocol],
  ['paxos-commit', paxosCommitProtocol],
  ['threepc', threePcProtocol],
  ['saga', sagaProtocol],
  ['tcc', tccProtocol],
];

for (const [dir, protocol] of suites) {
  describe(`${dir} scripts`, () => {
    const files = readdirSync(join(root, dir))
      .filter((f) => f.endsWith('.txt'))
      .sort();
    test('there are scripts', () => {
      assert.ok(files.length > 0, `no scripts in testdata/${dir}`);
    });
    for (const file of files) {
      test(file, () => runScriptFile(join(root, dir, file), protocol, rewrite));
    }
  });
}
