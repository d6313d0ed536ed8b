// The wire and log codecs (src/protocol/common/codec.ts, src/protocol/twopc/codec.ts):
// every well-formed message and record survives a round trip unchanged and in
// canonical form, and everything else — garbage text, mutated JSON, values of
// the wrong kind — is refused with a CodecError, never another exception and
// never a value that breaks the protocol's own types.
//
// The value generators are derived from the codecs' own schemas, which the
// compiler checks against the protocol types, so a field added to a message
// is generated here without touching this file.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type Codec,
  CodecError,
  encodedCharsMax,
  type FieldKind,
  naiveMsgCodec,
  naiveRecordCodec,
  textCharsMax,
  tokenCharsMax,
} from '../../../src/protocol/common/codec.ts';
import { isValidNodeId, isValidTxnId, limits } from '../../../src/protocol/common/limits.ts';
import {
  decodeTwoPcMsg,
  decodeTwoPcRecord,
  encodeTwoPcMsg,
  encodeTwoPcRecord,
  twoPcMsgCodec,
  twoPcRecordCodec,
} from '../../../src/protocol/twopc/codec.ts';
import type { TwoPcMsg, TwoPcRecord } from '../../../src/protocol/twopc/types.ts';

type Tagged = { type: string };
const numRuns = 200;

const txnIdArb = fc.stringMatching(new RegExp(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,${limits.txnIdBytesMax - 1}}$`));
const nodeIdArb = fc.stringMatching(
  new RegExp(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,${limits.nodeIdBytesMax - 1}}$`),
);
const tokenArb = fc.stringMatching(new RegExp(`^[A-Za-z0-9_.:-]{1,${tokenCharsMax}}$`));

const isOptional = (
  kind: FieldKind,
): kind is { readonly optional: Exclude<FieldKind, { optional: unknown }> } =>
  typeof kind === 'object' && 'optional' in kind;

function fieldArb(kind: FieldKind): fc.Arbitrary<unknown> {
  if (isOptional(kind)) return fieldArb(kind.optional);
  if (kind === 'txnId') return txnIdArb;
  if (kind === 'text') return fc.string({ minLength: 1, maxLength: textCharsMax });
  if (kind === 'nodeTokens') {
    // A plain object, as JSON.parse makes (fast-check's dictionaries have no prototype).
    return fc.dictionary(nodeIdArb, tokenArb, { minKeys: 1, maxKeys: 5 }).map((d) => ({ ...d }));
  }
  if (kind === 'nodeId') return nodeIdArb;
  if (kind === 'token') return tokenArb;
  if (kind === 'nodeIds') {
    return fc.uniqueArray(nodeIdArb, { minLength: 1, maxLength: limits.participantsPerTxnMax });
  }
  if (kind === 'hlc') {
    // Quarters of a millisecond: fractional wall parts that JSON carries exactly.
    return fc
      .record({
        wallMs: fc.integer({ min: 0, max: 2 ** 40 }).map((n) => n / 4),
        logical: fc.integer({ min: 0, max: limits.hlcLogicalMax }),
      })
      .map((t) => ({ ...t })); // a plain object, as JSON.parse makes
  }
  return fc.constantFrom(...kind.oneOf);
}

/** Every well-formed value of a codec's union, from its schema. */
function valueArb<T extends Tagged>(codec: Codec<T>): fc.Arbitrary<T> {
  const perType = Object.entries(codec.shapes).map(([type, shape]) => {
    const fields: Record<string, fc.Arbitrary<unknown>> = {};
    const requiredKeys: string[] = [];
    for (const [f, kind] of Object.entries(shape)) {
      fields[f] = fieldArb(kind);
      if (!isOptional(kind)) requiredKeys.push(f);
    }
    return fc.record(fields, { requiredKeys }).map((v) => ({ type, ...v }) as unknown as T);
  });
  return fc.oneof(...perType);
}

const codecs: [string, Codec<Tagged>][] = [
  ['2PC messages', twoPcMsgCodec as unknown as Codec<Tagged>],
  ['2PC records', twoPcRecordCodec as unknown as Codec<Tagged>],
  ['naive messages', naiveMsgCodec as unknown as Codec<Tagged>],
  ['naive records', naiveRecordCodec as unknown as Codec<Tagged>],
];

/** Decode `text`: a well-formed value, or `null` after a CodecError. Any other outcome fails. */
function decodeOrRefuse<T extends Tagged>(codec: Codec<T>, text: unknown): T | null {
  let value: T;
  try {
    value = codec.decode(text as string);
  } catch (e) {
    assert.ok(e instanceof CodecError, `not a CodecError: ${String(e)}`);
    assert.equal(e.code, 'DTX_BAD_MESSAGE');
    assert.match(e.message, /^bad /);
    return null;
  }
  // A value that comes out must be one the protocol could have produced.
  assert.deepEqual(codec.check(value), value);
  assert.deepEqual(codec.decode(codec.encode(value)), value);
  return value;
}

function refuses(codec: Codec<Tagged>, text: unknown): void {
  assert.equal(decodeOrRefuse(codec, text), null, 'accepted a malformed value');
}

/** A JSON value that is no field of any codec: never a well-formed id, list or vote. */
const wrongJsonArb = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.boolean(),
  fc.constant(null),
  fc.constant(''),
  fc.string().filter((s) => !isValidTxnId(s) && !isValidNodeId(s) && !/^[A-Za-z0-9_.:-]+$/.test(s)),
  // Never a map of node ids to tokens: its values are not strings.
  fc.dictionary(fc.string(), fc.oneof(fc.integer(), fc.boolean(), fc.constant(null)), { maxKeys: 3 }),
);

for (const [name, codec] of codecs) {
  describe(`codec: ${name}`, () => {
    const arb = valueArb(codec);

    test('round trip: decode(encode(v)) is v, and encoding is canonical', () => {
      fc.assert(
        fc.property(arb, (v) => {
          const text = codec.encode(v);
          const back = codec.decode(text);
          assert.deepEqual(back, v);
          assert.equal(codec.encode(back), text);
          // Canonical: `type` first, then the schema's field order.
          // An optional field that is absent stays absent.
          const present = Object.keys(codec.shapes[v.type]!).filter((f) => Object.hasOwn(v, f));
          assert.deepEqual(Object.keys(JSON.parse(text)), ['type', ...present]);
        }),
        { numRuns },
      );
    });

    test('any key order and whitespace decode to the same value', () => {
      fc.assert(
        fc.property(arb, fc.integer({ min: 0, max: 4 }), (v, indent) => {
          const reversed = Object.fromEntries(Object.entries(v).reverse());
          assert.deepEqual(codec.decode(JSON.stringify(reversed, null, indent)), v);
        }),
        { numRuns },
      );
    });

    test('garbage text is refused with a CodecError (or is a well-formed value)', () => {
      fc.assert(
        fc.property(fc.oneof(fc.string(), fc.string({ unit: 'binary' }), fc.json()), (text) => {
          decodeOrRefuse(codec, text);
        }),
        { numRuns },
      );
    });

    test('JSON values that are not objects of a known type are refused', () => {
      const notTagged = fc.jsonValue().filter((j) => {
        const o = j as Record<string, unknown> | null;
        return (
          typeof o !== 'object' ||
          o === null ||
          Array.isArray(o) ||
          !Object.hasOwn(codec.shapes, String(o.type))
        );
      });
      fc.assert(
        fc.property(notTagged, (j) => refuses(codec, JSON.stringify(j))),
        { numRuns },
      );
    });

    test('a value that is not text is refused', () => {
      fc.assert(
        fc.property(
          fc.anything().filter((x) => typeof x !== 'string'),
          (x) => refuses(codec, x),
        ),
        { numRuns: 100 },
      );
    });

    test('a missing field is refused', () => {
      fc.assert(
        fc.property(arb, fc.nat(), (v, k) => {
          // Only a required field: an optional one may be absent.
          const shape = codec.shapes[v.type]!;
          const keys = Object.keys(v).filter((f) => f === 'type' || !isOptional(shape[f]!));
          const drop = keys[k % keys.length]!;
          const o: Record<string, unknown> = { ...v };
          delete o[drop];
          refuses(codec, JSON.stringify(o));
        }),
        { numRuns },
      );
    });

    test('an extra field is refused', () => {
      fc.assert(
        fc.property(arb, fc.string(), fc.jsonValue(), (v, key, value) => {
          fc.pre(!Object.hasOwn(v, key));
          refuses(codec, JSON.stringify({ ...v, [key]: value }));
        }),
        { numRuns },
      );
    });

    test('a field of the wrong kind is refused', () => {
      fc.assert(
        fc.property(arb, fc.nat(), wrongJsonArb, (v, k, wrong) => {
          // Free text accepts any string, so only other fields have a wrong kind of string.
          const shape = codec.shapes[v.type]!;
          const keys = Object.keys(v).filter((f) => {
            const kind = shape[f];
            const base = kind !== undefined && isOptional(kind) ? kind.optional : kind;
            return f !== 'type' && base !== 'text';
          });
          fc.pre(keys.length > 0);
          refuses(codec, JSON.stringify({ ...v, [keys[k % keys.length]!]: wrong }));
        }),
        { numRuns },
      );
    });

    test('any field replaced by any JSON value: refused or well formed', () => {
      fc.assert(
        fc.property(arb, fc.nat(), fc.jsonValue(), (v, k, value) => {
          const keys = Object.keys(v);
          decodeOrRefuse(codec, JSON.stringify({ ...v, [keys[k % keys.length]!]: value }));
        }),
        { numRuns },
      );
    });

    test('mutated text (a character changed, inserted or deleted; truncation): refused or well formed', () => {
      const edit = fc.record({
        at: fc.nat(),
        kind: fc.constantFrom('replace', 'insert', 'delete', 'truncate'),
        ch: fc.string({ minLength: 1, maxLength: 1, unit: 'binary' }),
      });
      fc.assert(
        fc.property(arb, edit, (v, { at, kind, ch }) => {
          const text = codec.encode(v);
          const i = at % text.length;
          const mutated =
            kind === 'replace'
              ? text.slice(0, i) + ch + text.slice(i + 1)
              : kind === 'insert'
                ? text.slice(0, i) + ch + text.slice(i)
                : kind === 'delete'
                  ? text.slice(0, i) + text.slice(i + 1)
                  : text.slice(0, i);
          const got = decodeOrRefuse(codec, mutated);
          if (kind === 'truncate') assert.equal(got, null);
        }),
        { numRuns },
      );
    });

    test('encode refuses a malformed value instead of writing it', () => {
      fc.assert(
        fc.property(arb, fc.nat(), wrongJsonArb, (v, k, wrong) => {
          // Free text accepts any string, so only other fields have a wrong kind of string.
          const shape = codec.shapes[v.type]!;
          const keys = Object.keys(v).filter((f) => {
            const kind = shape[f];
            const base = kind !== undefined && isOptional(kind) ? kind.optional : kind;
            return f !== 'type' && base !== 'text';
          });
          fc.pre(keys.length > 0);
          const bad = { ...v, [keys[k % keys.length]!]: wrong };
          assert.throws(() => codec.encode(bad), CodecError);
        }),
        { numRuns },
      );
    });
  });
}

describe('codec: 2PC examples', () => {
  const bad = (text: string, why: RegExp) =>
    assert.throws(
      () => decodeTwoPcMsg(text),
      (e: unknown) => e instanceof CodecError && e.code === 'DTX_BAD_MESSAGE' && why.test(e.message),
    );
  const badRecord = (text: string, why: RegExp) =>
    assert.throws(
      () => decodeTwoPcRecord(text),
      (e: unknown) => e instanceof CodecError && why.test(e.message),
    );

  test('the wire form of each message', () => {
    const msgs: [TwoPcMsg, string][] = [
      [{ type: 'PREPARE', txn: 't1', attempt: '1.1' }, '{"type":"PREPARE","txn":"t1","attempt":"1.1"}'],
      [
        { type: 'VOTE', txn: 't1', vote: 'readOnly', attempt: '1.1' },
        '{"type":"VOTE","txn":"t1","vote":"readOnly","attempt":"1.1"}',
      ],
      [{ type: 'COMMIT', txn: 't1' }, '{"type":"COMMIT","txn":"t1"}'],
      [{ type: 'ABORT', txn: 't1' }, '{"type":"ABORT","txn":"t1"}'],
      [{ type: 'ACK', txn: 't1' }, '{"type":"ACK","txn":"t1"}'],
      [{ type: 'INQUIRY', txn: 't1' }, '{"type":"INQUIRY","txn":"t1"}'],
    ];
    for (const [msg, text] of msgs) {
      assert.equal(encodeTwoPcMsg(msg), text);
      assert.deepEqual(decodeTwoPcMsg(text), msg);
    }
  });

  test('the log form of each record', () => {
    const records: [TwoPcRecord, string][] = [
      [
        { type: 'commit', txn: 't1', participants: ['p1', 'p2'], client: 'client' },
        '{"type":"commit","txn":"t1","participants":["p1","p2"],"client":"client"}',
      ],
      [{ type: 'end', txn: 't1' }, '{"type":"end","txn":"t1"}'],
      [{ type: 'prepared', txn: 't1', coordinator: 'c' }, '{"type":"prepared","txn":"t1","coordinator":"c"}'],
      [{ type: 'committed', txn: 't1' }, '{"type":"committed","txn":"t1"}'],
      [{ type: 'aborted', txn: 't1' }, '{"type":"aborted","txn":"t1"}'],
    ];
    for (const [record, text] of records) {
      assert.equal(encodeTwoPcRecord(record), text);
      assert.deepEqual(decodeTwoPcRecord(text), record);
    }
  });

  test('what is refused, and the error says why', () => {
    bad('', /not JSON/);
    bad('{"type":"COMMIT","txn":"t1"', /not JSON/);
    bad('null', /expected a JSON object/);
    bad('[{"type":"COMMIT","txn":"t1"}]', /expected a JSON object/);
    bad('{"type":"PREPARED","txn":"t1","attempt":"1.1"}', /unknown type "PREPARED"/);
    bad('{"type":"commit","txn":"t1"}', /unknown type "commit"/); // a record is no message
    bad('{"txn":"t1"}', /unknown type undefined/);
    bad('{"type":"COMMIT"}', /COMMIT.txn is missing/);
    bad('{"type":"COMMIT","txn":"t1","vote":"yes"}', /COMMIT has no field "vote"/);
    bad('{"type":"COMMIT","txn":"t1","__proto__":{"x":1}}', /COMMIT has no field "__proto__"/);
    bad(
      '{"type":"VOTE","txn":"t1","vote":"maybe","attempt":"1.1"}',
      /VOTE.vote must be one of yes, no, readOnly/,
    );
    bad('{"type":"VOTE","txn":"t1","vote":"YES","attempt":"1.1"}', /VOTE.vote must be one of/);
    bad('{"type":"COMMIT","txn":7}', /COMMIT.txn must be a string/);
    bad('{"type":"COMMIT","txn":""}', /valid transaction id/);
    bad('{"type":"COMMIT","txn":"t 1"}', /valid transaction id/);
    bad('{"type":"COMMIT","txn":"-t1"}', /valid transaction id/);
    bad(`{"type":"COMMIT","txn":"${'t'.repeat(limits.txnIdBytesMax + 1)}"}`, /valid transaction id/);
    bad('{"type":"PREPARE","txn":"t1","attempt":""}', /PREPARE.attempt must be 1 to/);
    bad(`"${'x'.repeat(encodedCharsMax)}"`, /more than/);
    badRecord('{"type":"commit","txn":"t1","participants":[],"client":"c"}', /must name 1 to 64 nodes/);
    badRecord('{"type":"commit","txn":"t1","participants":["p1","p1"],"client":"c"}', /must not repeat "p1"/);
    badRecord('{"type":"commit","txn":"t1","participants":"p1","client":"c"}', /must be an array/);
    badRecord('{"type":"commit","txn":"t1","participants":["p1",2],"client":"c"}', /only valid node ids/);
    const many = Array.from({ length: limits.participantsPerTxnMax + 1 }, (_, i) => `"p${i}"`).join(',');
    badRecord(`{"type":"commit","txn":"t1","participants":[${many}],"client":"c"}`, /must name 1 to 64/);
    badRecord('{"type":"prepared","txn":"t1","coordinator":"c/1"}', /valid node id/);
    badRecord('{"type":"COMMIT","txn":"t1"}', /unknown type "COMMIT"/);
  });

  test('a decoded value shares nothing with the parsed text', () => {
    const r = decodeTwoPcRecord('{"type":"commit","txn":"t1","participants":["p1"],"client":"c"}');
    const e = { type: 'commit', txn: 't1', participants: ['p1'], client: 'c' } satisfies TwoPcRecord;
    const encoded = encodeTwoPcRecord(e);
    e.participants.push('p2');
    assert.equal(encoded, '{"type":"commit","txn":"t1","participants":["p1"],"client":"c"}');
    assert.deepEqual(r, { type: 'commit', txn: 't1', participants: ['p1'], client: 'c' });
  });

  test('CodecError is an Error with a stable code', () => {
    const e = new CodecError('bad 2PC message: x');
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'CodecError');
    assert.equal(e.code, 'DTX_BAD_MESSAGE');
  });
});
