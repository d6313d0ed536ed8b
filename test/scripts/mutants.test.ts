// The mutant catalogue (scripts/mutant-catalogue.ts) must stay applicable to
// the sources, and its quick subset must be caught: a checker that stopped
// failing on a broken core would pass every other test.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { mutants } from '../../scripts/mutant-catalogue.ts';
import { checkEdit, runMutants } from '../../scripts/mutants.ts';

test('every mutant of the catalogue applies to the sources exactly once', () => {
  assert.ok(mutants.length >= 25, `only ${mutants.length} mutants`);
  assert.equal(new Set(mutants.map((m) => m.id)).size, mutants.length, 'mutant ids repeat');
  for (const m of mutants) assert.equal(checkEdit(m), null, m.id);
});

test('the quick mutants are each caught by their detector, which passes on the unmutated sources', async () => {
  const results = await runMutants({ quick: true, jobs: 2 });
  assert.ok(results.length >= 3, `only ${results.length} quick mutants`);
  for (const r of results) assert.equal(r.outcome, 'caught', `${r.id}: ${r.outcome} ${r.detail}`);
});
