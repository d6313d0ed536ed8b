// The wire and log codec every dtx protocol shares: a small, schema-driven
// JSON encoder and a strict decoder for the flat tagged unions the protocol
// cores exchange (messages) and log (records).
//
// Owns: the one rule for what a well-formed message or record is. Bytes from a
// peer or from a disk are untrusted: decoding accepts exactly the shapes the
// protocol declares (a known `type`, every field present with the right kind,
// no other field, ids that pass ./limits.ts) and refuses anything else with a
// `CodecError`, never another exception and never a half-valid value. Encoding
// checks the same rules, so a record that could not be read back is refused
// before it reaches the log, not discovered after a crash.
//
// Encoding is canonical: `type` first, then the fields in declaration order,
// so `encode(decode(text)) === text` for every text `encode` produced.
//
// May not touch: I/O, clocks, anything outside src/protocol (pure code).

import { DtxError } from './errors.ts';
import { type Hlc, isHlc } from './hlc.ts';
import { isValidNodeId, isValidTxnId, limits } from './limits.ts';

/**
 * Malformed input: not JSON, an unknown type, a missing, extra or ill-typed
 * field, a bad id. A `DtxError` (DTX_BAD_MESSAGE, not retryable), so a caller
 * handles it by `code` like every other dtx failure.
 */
export class CodecError extends DtxError {
  override name = 'CodecError';
  declare readonly code: 'DTX_BAD_MESSAGE';

  constructor(message: string) {
    super('DTX_BAD_MESSAGE', message);
  }
}

/**
 * Longest encoded text accepted. The largest legal value, a commit record
 * naming `participantsPerTxnMax` participants of the longest id, is about
 * 2.5 KB; refusing anything far bigger before parsing bounds the work a
 * hostile peer can cause.
 */
export const encodedCharsMax = 16 * 1024;

/**
 * Longest `token`. Tokens are names a node makes up (2PC's attempt names: an
 * incarnation id the driver chose, a dot, a counter); 64 leaves room for a
 * UUID incarnation and any counter while keeping a hostile one short.
 */
export const tokenCharsMax = 64;

/**
 * Longest `text`: an operator's reason for ending a transaction by hand, a
 * sentence or two. Bounded like every other field so a record stays small.
 */
export const textCharsMax = 500;

const tokenPattern = /^[A-Za-z0-9_.:-]+$/;

/** Longest piece of an offending value quoted back in an error message. */
const quotedCharsMax = 60;

/**
 * What a field may hold.
 * - `txnId`: a string that passes `isValidTxnId`;
 * - `nodeId`: a string that passes `isValidNodeId`;
 * - `nodeIds`: 1..`participantsPerTxnMax` distinct node ids;
 * - `token`: 1..`tokenCharsMax` characters from `[A-Za-z0-9_.:-]`, an opaque name;
 * - `text`: 1..`textCharsMax` characters of free text (an operator's reason);
 * - `nodeTokens`: an object mapping 1..`participantsPerTxnMax` node ids to tokens;
 * - `hlc`: a hybrid logical clock timestamp (./hlc.ts: `{ wallMs, logical }`);
 * - `{ oneOf }`: one of the listed strings;
 * - `{ optional }`: absent, or a value of the wrapped kind. An absent field
 *   stays absent when encoded, so adding an optional field to a record leaves
 *   the text of every record without it unchanged.
 */
export type FieldKind = RequiredKind | { readonly optional: RequiredKind };
type RequiredKind =
  | 'txnId'
  | 'nodeId'
  | 'nodeIds'
  | 'token'
  | 'text'
  | 'nodeTokens'
  | 'hlc'
  | { readonly oneOf: readonly string[] };

type RequiredKindFor<V> = [V] extends [Hlc]
  ? 'hlc'
  : [V] extends [readonly string[]]
    ? 'nodeIds'
    : [V] extends [string]
      ? string extends V
        ? 'txnId' | 'nodeId' | 'token' | 'text'
        : { readonly oneOf: readonly V[] }
      : [V] extends [Readonly<Record<string, string>>]
        ? 'nodeTokens'
        : never;

/** An optional field must be declared `{ optional: kind }`; a required one must not. */
type KindFor<V, Optional extends boolean> = Optional extends true
  ? { readonly optional: RequiredKindFor<Exclude<V, undefined>> }
  : RequiredKindFor<V>;

type IsOptional<T, F extends keyof T> = object extends Pick<T, F> ? true : false;

/**
 * The schema of a tagged union `T`: for every `type`, the kind of every other
 * field. Checked against `T` by the compiler, so a field added to a message
 * type and forgotten here does not compile.
 */
export type ShapesFor<T extends { type: string }> = {
  readonly [K in T['type']]: {
    readonly [F in Exclude<keyof Extract<T, { type: K }>, 'type'>]-?: KindFor<
      Extract<T, { type: K }>[F],
      IsOptional<Extract<T, { type: K }>, F>
    >;
  };
};

export type Shape = Readonly<Record<string, FieldKind>>;

export interface Codec<T extends { type: string }> {
  /** What is being coded, for error messages ("2PC message"). */
  readonly what: string;
  /** Field kinds per type, in canonical order. */
  readonly shapes: Readonly<Record<string, Shape>>;
  /** Canonical JSON text of `value`; throws `CodecError` when `value` is not well formed. */
  encode(value: T): string;
  /** The value `text` encodes; throws `CodecError` on anything but a well-formed value. */
  decode(text: string): T;
  /** A canonical copy of `value` when it is well formed; throws `CodecError` otherwise. */
  check(value: unknown): T;
}

function quote(value: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(value) ?? String(value);
  } catch {
    s = Object.prototype.toString.call(value);
  }
  return s.length > quotedCharsMax ? `${s.slice(0, quotedCharsMax)}...` : s;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function checkField(what: string, type: string, field: string, kind: RequiredKind, value: unknown): unknown {
  const bad = (why: string) => new CodecError(`bad ${what}: ${type}.${field} ${why}, got ${quote(value)}`);
  if (kind === 'hlc') {
    if (!isHlc(value))
      throw bad(
        `must be { wallMs, logical }: a finite wallMs >= 0, an integer logical 0..${limits.hlcLogicalMax}`,
      );
    return { wallMs: value.wallMs, logical: value.logical };
  }
  if (kind === 'nodeTokens') {
    if (!isPlainObject(value)) throw bad('must be an object mapping node ids to tokens');
    const entries = Object.entries(value);
    if (entries.length === 0 || entries.length > limits.participantsPerTxnMax) {
      throw bad(`must name 1 to ${limits.participantsPerTxnMax} nodes`);
    }
    const out: Record<string, string> = {};
    for (const [id, token] of entries) {
      if (!isValidNodeId(id)) throw bad('must have only valid node ids as keys');
      checkField(what, type, `${field}.${id}`, 'token', token);
      out[id] = token as string;
    }
    return out;
  }
  if (kind === 'nodeIds') {
    if (!Array.isArray(value)) throw bad('must be an array of node ids');
    if (value.length === 0 || value.length > limits.participantsPerTxnMax) {
      throw bad(`must name 1 to ${limits.participantsPerTxnMax} nodes`);
    }
    const seen = new Set<string>();
    for (const id of value) {
      if (typeof id !== 'string' || !isValidNodeId(id)) throw bad('must hold only valid node ids');
      if (seen.has(id)) throw bad(`must not repeat ${quote(id)}`);
      seen.add(id);
    }
    return [...value];
  }
  if (typeof value !== 'string') throw bad('must be a string');
  if (kind === 'txnId') {
    if (!isValidTxnId(value)) throw bad('must be a valid transaction id');
  } else if (kind === 'nodeId') {
    if (!isValidNodeId(value)) throw bad('must be a valid node id');
  } else if (kind === 'text') {
    if (value.length === 0 || value.length > textCharsMax)
      throw bad(`must be 1 to ${textCharsMax} characters`);
  } else if (kind === 'token') {
    if (value.length === 0 || value.length > tokenCharsMax || !tokenPattern.test(value)) {
      throw bad(`must be 1 to ${tokenCharsMax} characters of [A-Za-z0-9_.:-]`);
    }
  } else if (!kind.oneOf.includes(value)) {
    throw bad(`must be one of ${kind.oneOf.join(', ')}`);
  }
  return value;
}

/** Build the codec of a tagged union from its schema. */
export function makeCodec<T extends { type: string }>(what: string, shapes: ShapesFor<T>): Codec<T> {
  const table = shapes as unknown as Readonly<Record<string, Shape>>;

  function check(value: unknown): T {
    if (!isPlainObject(value))
      throw new CodecError(`bad ${what}: expected a JSON object, got ${quote(value)}`);
    const type = value.type;
    if (typeof type !== 'string' || !Object.hasOwn(table, type)) {
      throw new CodecError(`bad ${what}: unknown type ${quote(type)}`);
    }
    const shape = table[type]!;
    for (const key of Object.keys(value)) {
      if (key !== 'type' && !Object.hasOwn(shape, key)) {
        throw new CodecError(`bad ${what}: ${type} has no field ${quote(key)}`);
      }
    }
    const out: Record<string, unknown> = { type };
    for (const [field, kind] of Object.entries(shape)) {
      const optional = typeof kind === 'object' && 'optional' in kind;
      if (!Object.hasOwn(value, field) || (optional && value[field] === undefined)) {
        if (optional) continue;
        throw new CodecError(`bad ${what}: ${type}.${field} is missing`);
      }
      out[field] = checkField(
        what,
        type,
        field,
        optional ? kind.optional : (kind as RequiredKind),
        value[field],
      );
    }
    return out as T;
  }

  return {
    what,
    shapes: table,
    check,
    encode(value) {
      return JSON.stringify(check(value));
    },
    decode(text) {
      if (typeof text !== 'string') throw new CodecError(`bad ${what}: expected text, got ${typeof text}`);
      if (text.length > encodedCharsMax) {
        throw new CodecError(`bad ${what}: ${text.length} characters, more than ${encodedCharsMax}`);
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new CodecError(`bad ${what}: not JSON: ${quote(text)}`);
      }
      return check(parsed);
    },
  };
}

// ------------------------------------------------------------ naive commit
//
// Naive commit's codec lives here, beside the machinery, because it is four
// lines; it moves to ../naive/ if that protocol ever grows a module of its own.

import type { NaiveMsg, NaiveRecord } from '../naive/naive.ts';

const naiveMsgCodec = makeCodec<NaiveMsg>('naive message', {
  COMMIT: { txn: 'txnId' },
  ACK: { txn: 'txnId' },
  FAILED: { txn: 'txnId' },
});

const naiveRecordCodec = makeCodec<NaiveRecord>('naive log record', {
  committed: { txn: 'txnId', coordinator: 'nodeId' },
});

export const encodeNaiveMsg = (msg: NaiveMsg): string => naiveMsgCodec.encode(msg);
export const decodeNaiveMsg = (text: string): NaiveMsg => naiveMsgCodec.decode(text);
export const encodeNaiveRecord = (record: NaiveRecord): string => naiveRecordCodec.encode(record);
export const decodeNaiveRecord = (text: string): NaiveRecord => naiveRecordCodec.decode(text);
export { naiveMsgCodec, naiveRecordCodec };
