// Reading a history: text in Jepsen's JSON form (as elle-cli reads it: one
// JSON array of ops, or one JSON object per line) into validated `Op`s. Every
// problem becomes a `HistoryFormatError` naming the source and the line, so a
// user can open the file at the right place; nothing is guessed or skipped
// silently except the nemesis's own ops, which are not transactions.
//
// Pure: takes the text, does no I/O.

import { DtxError } from '../errors.ts';
import type { Atom, MicroOp, Model, Op, OpType } from './types.ts';

export class HistoryFormatError extends DtxError {
  override name = 'HistoryFormatError';
  readonly line: number;

  constructor(source: string, line: number, message: string) {
    super('DTX_BAD_HISTORY', `${source} line ${line}: ${message}`);
    this.line = line;
  }
}

const opTypes: ReadonlySet<string> = new Set(['invoke', 'ok', 'fail', 'info']);

/** The micro-op functions each model takes. */
const functionsOf: Record<Model, ReadonlySet<string>> = {
  'list-append': new Set(['append', 'r']),
  'rw-register': new Set(['w', 'r']),
};

/** Elle's EDN keywords arrive in JSON as ":ok" or "ok"; both mean the same. */
function bare(s: string): string {
  return s.startsWith(':') ? s.slice(1) : s;
}

function isAtom(v: unknown): v is Atom {
  return (typeof v === 'number' && Number.isFinite(v)) || typeof v === 'string';
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/**
 * Validates one decoded op. Returns undefined for an op that is not part of
 * the transactional history (the nemesis's), throws for a malformed one.
 */
function toOp(
  raw: unknown,
  position: number,
  line: number,
  model: Model,
  fail: (m: string) => never,
): Op | undefined {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    fail(`expected an op object, got ${describe(raw)}`);
  const o = raw as Record<string, unknown>;
  const process = o.process;
  if (process === 'nemesis' || process === ':nemesis') return undefined;
  if (!isAtom(process)) fail(`"process" must be a number or a string, got ${describe(process)}`);
  const type = typeof o.type === 'string' ? bare(o.type) : undefined;
  if (type === undefined || !opTypes.has(type))
    fail(`"type" must be one of invoke, ok, fail, info, got ${describe(o.type)}`);
  let index = position;
  if (o.index !== undefined) {
    if (typeof o.index !== 'number' || !Number.isSafeInteger(o.index))
      fail(`"index" must be an integer, got ${describe(o.index)}`);
    index = o.index;
  }
  const value = o.value;
  // An indeterminate completion may carry no value: the invocation's stands.
  if ((value === null || value === undefined) && type === 'info')
    return { index, process, type: 'info', value: null, line };
  if (!Array.isArray(value))
    fail(`"value" must be a list of micro-ops [f, key, value], got ${describe(value)}`);
  const ops: MicroOp[] = [];
  for (const [i, mop] of value.entries()) ops.push(toMicroOp(mop, i, type as OpType, model, fail));
  return { index, process, type: type as OpType, value: ops, line };
}

function toMicroOp(mop: unknown, i: number, type: OpType, model: Model, fail: (m: string) => never): MicroOp {
  const where = `micro-op ${i}`;
  if (!Array.isArray(mop) || mop.length !== 3) fail(`${where} must be [f, key, value], got ${describe(mop)}`);
  const [rawF, key, v] = mop as unknown[];
  const f = typeof rawF === 'string' ? bare(rawF) : undefined;
  const allowed = functionsOf[model];
  if (f === undefined || !allowed.has(f))
    fail(`${where}: ${model} takes ${[...allowed].join(' and ')}, got ${describe(rawF)}`);
  if (!isAtom(key)) fail(`${where}: the key must be a number or a string, got ${describe(key)}`);
  if (f === 'append' || f === 'w') {
    if (!isAtom(v)) fail(`${where}: the written value must be a number or a string, got ${describe(v)}`);
    return [f, key, v];
  }
  // A read. Its value is unknown (null) in an invocation; a completion fills it in.
  if (v === null || v === undefined) return ['r', key, null];
  if (model === 'list-append') {
    if (!Array.isArray(v) || !v.every(isAtom))
      fail(`${where}: a list-append read must be a list of numbers or strings, got ${describe(v)}`);
  } else if (!isAtom(v))
    fail(`${where}: a register read must be a number, a string or null, got ${describe(v)}`);
  // What an invocation says it will read is not an observation.
  return ['r', key, type === 'invoke' ? null : v];
}

/**
 * The 1-based line on which each top-level element of a JSON array starts.
 * Used only to name the line of a bad element, so it can be slow-ish.
 */
function elementLines(text: string): number[] {
  const lines: number[] = [];
  let line = 1;
  let depth = 0;
  let inString = false;
  let expectElement = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '\n') line++;
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
      continue;
    }
    if (expectElement && depth === 1 && c !== ' ' && c !== '\n' && c !== '\r' && c !== '\t' && c !== ']') {
      lines.push(line);
      expectElement = false;
    }
    if (c === '"') inString = true;
    else if (c === '[' || c === '{') {
      depth++;
      if (depth === 1) expectElement = true;
    } else if (c === ']' || c === '}') depth--;
    else if (c === ',' && depth === 1) expectElement = true;
  }
  return lines;
}

/** The line holding character `offset` of `text`. */
function lineAt(text: string, offset: number): number {
  let line = 1;
  for (let i = 0; i < offset && i < text.length; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}

/** JSON.parse's complaint, with the position (which we turn into a line) taken out. */
function syntaxProblem(err: unknown): { message: string; offset: number | undefined } {
  const message = err instanceof Error ? err.message : String(err);
  const at = /at position (\d+)/.exec(message);
  const clean = message
    .replace(/\s*in JSON at position \d+.*$/s, '')
    .replace(/\s*\(line \d+ column \d+\)/, '')
    .replace(/,?\s*"[^"]*" is not valid JSON$/, '');
  return { message: `not valid JSON: ${clean}`, offset: at === null ? undefined : Number(at[1]) };
}

/**
 * Validates ops already decoded (a history recorded in memory, in the same
 * shape as the JSON form). `lineOf` says where element i came from, for
 * messages; by default its 1-based position.
 */
export function parseOps(
  items: readonly unknown[],
  source: string,
  model: Model,
  lineOf: (i: number) => number = (i) => i + 1,
): Op[] {
  const ops: Op[] = [];
  for (const [i, item] of items.entries()) {
    const line = lineOf(i);
    const op = toOp(item, i, line, model, (m) => {
      throw new HistoryFormatError(source, line, m);
    });
    if (op !== undefined) ops.push(op);
  }
  return ops;
}

/**
 * Parses `text` (from `source`, a name for messages) as a history of `model`:
 * a JSON array of ops, or one JSON object per line (blank lines allowed).
 */
export function parseHistory(text: string, source: string, model: Model): Op[] {
  const start = text.search(/\S/);
  if (start === -1) throw new HistoryFormatError(source, 1, 'the history is empty');
  const ops: Op[] = [];
  if (text[start] === '[') {
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (err) {
      const { message, offset } = syntaxProblem(err);
      throw new HistoryFormatError(source, offset === undefined ? 1 : lineAt(text, offset), message);
    }
    if (!Array.isArray(raw)) throw new HistoryFormatError(source, 1, 'expected a JSON array of ops');
    const lines = elementLines(text);
    return parseOps(raw, source, model, (i) => lines[i] ?? 1);
  }
  let line = 0;
  let position = 0;
  for (let from = 0; from <= text.length; ) {
    let to = text.indexOf('\n', from);
    if (to === -1) to = text.length;
    line++;
    const content = text.slice(from, to).trim();
    from = to + 1;
    if (content === '') continue;
    let raw: unknown;
    try {
      raw = JSON.parse(content);
    } catch (err) {
      throw new HistoryFormatError(source, line, syntaxProblem(err).message);
    }
    const here = line;
    const op = toOp(raw, position++, here, model, (m) => {
      throw new HistoryFormatError(source, here, m);
    });
    if (op !== undefined) ops.push(op);
  }
  return ops;
}
