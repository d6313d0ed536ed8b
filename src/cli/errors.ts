// How the `dtx` command reports a failure. It owns three things: turning any
// thrown value (a DtxError, a command-line parse error, a driver or system
// error, a bug) into one stable shape with a code; printing that shape as one
// `error: CODE: message` line on stderr, with a `fix: ...` line after it only
// when there is a concrete fix; and keeping passwords out of everything the
// command prints. The exit status is 2 when the command line was wrong (a
// usage error: a bad flag, a malformed URL, credentials or a database the
// server does not accept) and 1 for every other failure.
//
// It may not decide anything about transactions: it only reads errors.

import { CommanderError } from 'commander';
import { networkErrorCodes } from '../adapters/internal.ts';
import { classifyMariaDbError } from '../adapters/mariadb.ts';
import { classifyPostgresError } from '../adapters/postgres.ts';
import { DtxError, type DtxErrorCode, isDtxError, ResourceUnavailableError } from '../errors.ts';
import { TraceFileError } from '../render/trace.ts';

/**
 * The codes the command prints: every DtxError code, plus `DTX_INTERNAL` for a
 * failure dtx did not expect (a bug), which exists only here so that even a
 * bug prints one line with a code.
 */
export type CliErrorCode = DtxErrorCode | 'DTX_INTERNAL';

export interface CliFailure {
  code: CliErrorCode;
  /** One line, passwords redacted. */
  message: string;
  /** What to do about it, when dtx knows; one line. */
  fix: string | undefined;
  /** 2 for a usage error, 1 otherwise. */
  exitCode: 1 | 2;
}

/** Codes that mean the command line itself was wrong: exit status 2. */
const usageCodes: ReadonlySet<CliErrorCode> = new Set([
  'DTX_INVALID_ARGUMENT',
  'DTX_INVALID_GID',
  'DTX_BAD_HISTORY',
]);

const fixSymbol = Symbol.for('dtx.cli.fix');

/** The fix for a server URL the command cannot use. */
export const serverUrlForms =
  'write it as postgres://USER@HOST:PORT/DB or mysql://USER@HOST:PORT/DB (with a password: USER:PASSWORD, ' +
  'percent-encoded; mariadb:// works too), or sqlite:PATH';

/**
 * Attaches the fix the command prints under `error`'s line. Code that knows the
 * remedy (run `--init` first, start the server) says it where it throws, so
 * that the reporter does not have to guess it back from the message.
 */
export function withFix<E extends Error>(error: E, fix: string): E {
  Object.defineProperty(error, fixSymbol, { value: fix, enumerable: false });
  return error;
}

// --- Redaction ---------------------------------------------------------------

/**
 * `scheme://user:password@` with the password replaced. The password part stops
 * at the last `@` before the host, so a password with an unencoded `@` or `:`
 * is still hidden whole.
 */
const urlUserInfo = /([a-z][a-z0-9+.-]*:\/\/[^\s/?#@:'"]*):[^\s/?#'"]*@/gi;
/** `password=...` in key/value connection strings and query strings. */
const passwordPair = /\b(password|passwd|pwd)=([^\s&;'"]+)/gi;

/** Shorter secrets are not replaced as plain text: hiding every "ab" would garble the output. */
const plainSecretLengthMin = 4;

/**
 * Hides passwords in `text`: every `scheme://user:password@` becomes
 * `scheme://user:***@`, every `password=...` becomes `password=***`, and each
 * of `secrets` (passwords taken from the command line, as typed and decoded)
 * is replaced wherever it appears, for driver messages that quote a password
 * outside a URL.
 */
export function redact(text: string, secrets: readonly string[] = []): string {
  let out = text.replace(urlUserInfo, '$1:***@').replace(passwordPair, '$1=***');
  for (const secret of secrets) {
    if (secret.length >= plainSecretLengthMin) out = out.split(secret).join('***');
  }
  return out;
}

/** The passwords in the URLs among `args`, both as typed and percent-decoded. */
export function secretsIn(args: readonly string[]): string[] {
  const secrets = new Set<string>();
  for (const arg of args) {
    for (const match of arg.matchAll(/[a-z][a-z0-9+.-]*:\/\/[^\s/?#@:]*:([^\s/?#]*)@/gi)) {
      const password = match[1] ?? '';
      if (password === '') continue;
      secrets.add(password);
      try {
        secrets.add(decodeURIComponent(password));
      } catch {
        // A malformed escape: the typed form is the only one that can appear.
      }
    }
    for (const match of arg.matchAll(passwordPair)) if (match[2]) secrets.add(match[2]);
  }
  // Longest first, so that a secret containing another is replaced whole.
  return [...secrets].sort((a, b) => b.length - a.length);
}

/**
 * Makes every later write to `stream` go through `redact`. Drivers, Node's
 * warnings and progress lines can all quote a connection string by paths the
 * command does not control, so the streams themselves are filtered: a password
 * given on the command line is never printed, whoever prints it.
 */
export function redactStream(stream: NodeJS.WriteStream, secrets: readonly string[]): void {
  const write = stream.write.bind(stream) as (...args: unknown[]) => boolean;
  stream.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (typeof chunk === 'string') return write(redact(chunk, secrets), ...rest);
    if (chunk instanceof Uint8Array)
      return write(redact(Buffer.from(chunk).toString('utf8'), secrets), ...rest);
    return write(chunk, ...rest);
  }) as NodeJS.WriteStream['write'];
}

// --- Classification ----------------------------------------------------------

function field(error: unknown, name: string): unknown {
  return typeof error === 'object' && error !== null ? (error as Record<string, unknown>)[name] : undefined;
}

/** `error`, its cause, its cause's cause... (bounded: a cause cycle must not hang the reporter). */
function causeChain(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = error, depth = 0; e !== undefined && e !== null && depth < 8; depth++) {
    if (chain.includes(e)) break;
    chain.push(e);
    e = field(e, 'cause');
  }
  return chain;
}

function isPgServerError(error: unknown): boolean {
  return typeof field(error, 'severity') === 'string' && typeof field(error, 'code') === 'string';
}

function isMysqlServerError(error: unknown): boolean {
  return typeof field(error, 'sqlMessage') === 'string' || typeof field(error, 'sqlState') === 'string';
}

/** Node's system errors for a file path the command was given. */
const pathErrorCodes = new Set(['ENOENT', 'ENOTDIR', 'EISDIR', 'EACCES', 'EPERM', 'EROFS', 'EEXIST']);
/**
 * System errors for which retrying can help: a full disk, a failing device, and
 * the network failures the adapters already know (without ENOENT, which on the
 * command line means a missing file, not a missing unix socket).
 */
const unavailableErrorCodes = new Set([
  'ENOSPC',
  'EIO',
  'EMFILE',
  'ENFILE',
  ...[...networkErrorCodes].filter((code) => code !== 'ENOENT'),
]);

/** A DtxError for anything thrown that is not one, or undefined when nothing fits (a bug). */
function asDtxError(error: unknown): DtxError | undefined {
  if (isDtxError(error)) return error;
  // Driver errors that escaped an adapter (plain SQL sessions the command runs
  // itself) get the adapters' own classification, so they read the same.
  if (isPgServerError(error)) return classifyPostgresError(error, { what: 'a query' });
  if (isMysqlServerError(error)) return classifyMariaDbError(error, { what: 'a query' });
  const code = field(error, 'code');
  const message = error instanceof Error ? error.message : String(error);
  if (typeof code === 'string' && typeof field(error, 'syscall') === 'string') {
    if (pathErrorCodes.has(code) && typeof field(error, 'path') === 'string')
      return new DtxError('DTX_INVALID_ARGUMENT', message, { cause: error });
    if (unavailableErrorCodes.has(code)) return new ResourceUnavailableError(message, { cause: error });
  }
  if (error instanceof URIError || code === 'ERR_INVALID_URL')
    return new DtxError('DTX_INVALID_ARGUMENT', message, { cause: error });
  return undefined;
}

/**
 * The text of the URL that Node's URL parser rejected somewhere along
 * `error`'s causes (its `input`), when one did: a driver or a log handed it a
 * URL the command took without checking, and the command line is to blame.
 */
function invalidUrlInput(error: unknown): string | undefined {
  for (const e of causeChain(error)) {
    if (field(e, 'code') !== 'ERR_INVALID_URL') continue;
    const input = field(e, 'input');
    return typeof input === 'string' ? input : '';
  }
  return undefined;
}

/** System error codes and server error numbers/SQLSTATEs found along `error`'s causes. */
function causeCodes(error: unknown): Set<string> {
  const codes = new Set<string>();
  for (const e of causeChain(error)) {
    for (const name of ['code', 'errno', 'sqlState']) {
      const v = field(e, name);
      if (typeof v === 'string' || typeof v === 'number') codes.add(String(v));
    }
  }
  return codes;
}

/** What to do about `error`, when dtx knows. */
function fixFor(error: unknown, code: CliErrorCode): string | undefined {
  for (const e of causeChain(error)) {
    const fix = typeof e === 'object' && e !== null ? (e as Record<symbol, unknown>)[fixSymbol] : undefined;
    if (typeof fix === 'string') return fix;
  }
  const codes = causeCodes(error);
  const has = (...cs: string[]) => cs.some((c) => codes.has(c));
  // PostgreSQL SQLSTATEs 28P01/28000 and MariaDB errors 1045/1698: the login was refused.
  if (has('28P01', '28000', '1045', '1698', 'ER_ACCESS_DENIED_ERROR'))
    return 'check the user name and password in the URL (percent-encode special characters: @ is %40, : is %3A)';
  // PostgreSQL 3D000 and MariaDB 1049: no such database; MariaDB 1044: not allowed to use it.
  if (has('3D000', '1049', 'ER_BAD_DB_ERROR'))
    return 'create the database first, or name an existing one in the URL';
  if (has('1044', 'ER_DBACCESS_DENIED_ERROR'))
    return 'grant the user access to the database named in the URL';
  if (code === 'DTX_RESOURCE_UNAVAILABLE') {
    if (has('ECONNREFUSED'))
      return 'check that the server is running and listening at the host and port in the URL';
    if (has('ENOTFOUND', 'EAI_AGAIN')) return 'check the host name in the URL';
    if (has('ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN'))
      return 'check the host and port in the URL, and that the network lets this machine reach them';
  }
  return undefined;
}

/** Longest message printed: a driver can put a whole query or document in one. */
const messageCharsMax = 2_000;

/** `text` on one line (the shape is one line per failure, whatever the driver wrote), bounded. */
function oneLine(text: string): string {
  const line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join(' ');
  if (line === '') return '(no message)';
  return line.length > messageCharsMax ? `${line.slice(0, messageCharsMax)}...` : line;
}

/** Classifies anything the command threw. */
export function describeFailure(error: unknown, secrets: readonly string[] = []): CliFailure {
  const clean = (text: string) => redact(oneLine(text), secrets);
  // Command-line parse errors, and InvalidArgumentError (a CommanderError)
  // thrown by an action's own checks: the command line was wrong.
  if (error instanceof CommanderError) {
    // Commander puts its suggestion on a line of its own: "(Did you mean sim?)".
    const [first = '', ...rest] = error.message.replace(/^error:\s*/, '').split('\n');
    const suggestion = /^\((did you mean .+\?)\)$/i.exec(rest.join(' ').trim())?.[1];
    return {
      code: 'DTX_INVALID_ARGUMENT',
      message: clean(suggestion === undefined ? error.message.replace(/^error:\s*/, '') : first),
      fix: suggestion === undefined ? undefined : redact(suggestion.replace(/^Did/, 'did'), secrets),
      exitCode: 2,
    };
  }
  if (error instanceof TraceFileError) {
    return { code: 'DTX_INVALID_ARGUMENT', message: clean(error.message), fix: undefined, exitCode: 2 };
  }
  const dtx = asDtxError(error);
  if (dtx === undefined) {
    const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
    return {
      code: 'DTX_INTERNAL',
      message: clean(message),
      fix: 'this is a bug in dtx: run again with --verbose and report the stack trace',
      exitCode: 1,
    };
  }
  const badUrl = invalidUrlInput(dtx);
  if (badUrl !== undefined) {
    // Some drivers blank the input themselves, so that it cannot leak a password.
    const named = badUrl === '' || /REDACTED/i.test(badUrl) ? '' : ` (${JSON.stringify(badUrl)})`;
    return {
      code: 'DTX_INVALID_ARGUMENT',
      message: clean(`${dtx.message}${named}`),
      fix: serverUrlForms,
      exitCode: 2,
    };
  }
  // `dtx` is `error`, or wraps it as its cause: its chain covers both.
  const fix = fixFor(dtx, dtx.code);
  return {
    code: dtx.code,
    message: clean(dtx.message),
    fix: fix === undefined ? undefined : redact(fix, secrets),
    exitCode: usageCodes.has(dtx.code) ? 2 : 1,
  };
}

/** The lines printed for `failure`: `error: CODE: message`, then `fix: ...` when there is one. */
export function formatFailure(failure: CliFailure): string {
  return `error: ${failure.code}: ${failure.message}\n${failure.fix === undefined ? '' : `fix: ${failure.fix}\n`}`;
}

/** The stack trace and causes of `error`, for --verbose and DEBUG=dtx. */
export function formatStack(error: unknown, secrets: readonly string[] = []): string {
  const parts: string[] = [];
  for (const [i, e] of causeChain(error).entries()) {
    const text = e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e);
    parts.push(i === 0 ? text : `caused by: ${text}`);
  }
  return `${redact(parts.join('\n'), secrets)}\n`;
}

/** True when DEBUG names dtx (`DEBUG=dtx`, `DEBUG=dtx:*`, `DEBUG=*`, comma or space separated). */
export function debugEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return (env.DEBUG ?? '')
    .split(/[\s,]+/)
    .some((name) => name === '*' || name === 'dtx' || name.startsWith('dtx:'));
}
