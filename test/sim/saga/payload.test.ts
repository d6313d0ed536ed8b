// The booking handlers read one payload field at a time without building the
// map `parsePayload` returns; the two must agree on every payload, including
// repeated names (the last wins), empty parts and values that are not numbers.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { parsePayload, payloadField } from '../../../src/sim/branch/booking.ts';

const names = ['b', 'seat', 'pending', 'amount', ''];
const part = fc.oneof(
  fc
    .tuple(fc.constantFrom(...names), fc.constantFrom('1', '42', '-3', '', 'x', '2.5'))
    .map(([k, v]) => `${k}=${v}`),
  fc.constantFrom('', '=', 'b', 'seat==1', 'pending=1=2'),
);

test('payloadField reads what parsePayload(payload).get(name) ?? 0 reads', () => {
  fc.assert(
    fc.property(fc.array(part, { maxLength: 6 }), fc.constantFrom(...names, 'missing'), (parts, name) => {
      const payload = parts.join(';');
      assert.ok(
        Object.is(payloadField(payload, name), parsePayload(payload).get(name) ?? 0),
        `${payload} ${name}`,
      );
    }),
    { numRuns: 2000 },
  );
});
