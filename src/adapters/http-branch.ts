// The HTTP branch protocol: how a saga or TCC orchestrator calls a branch
// that a service in any language exposes over HTTP. See docs/saga-runtime.md
// ("HTTP branch protocol") for the contract services implement.
//
// Request: POST <branch URL>, `Content-Type: application/json`, body
// `{sagaId, branchId, op, payload}`, headers `Dtx-Saga-Id`, `Dtx-Branch-Id`,
// `Dtx-Op` and `Idempotency-Key` (`<sagaId>:<branchId>:<op>`, the same on
// every retry of one call), plus the branch's own headers (an auth token, a
// `traceparent`), which the protocol's headers override, and the trace
// headers of the active OpenTelemetry span when there is one and the branch
// sets none itself (../runtime/otel.ts). Answer, by status:
// - 200: success;
// - 409: business refusal (failure: compensate, never retry); the body's
//   `reason` (JSON) or text is the reason;
// - 202, 425, 503, any other 5xx, a network error or no answer within the
//   call's timeout: ongoing / unknown (retry with backoff);
// - 3xx: ongoing too. Redirects are never followed: a branch URL is a
//   definition registered in code, and following a `Location` would send the
//   call (and its headers, its token) somewhere the code never named. The
//   attempt fails with the redirect as its reason and is retried like any
//   transient answer, so a misconfigured URL shows up as retries and then a
//   stuck alert rather than as a business refusal, which it is not;
// - a body longer than `maxBodyBytes` (read as a stream, and dropped at the
//   limit): ongoing, since the answer could not be read;
// - any other 4xx (and any other status): failure.
//
// Owns: one call and nothing else; it never logs a header's value.

import { DtxError } from '../errors.ts';
import { httpBodyBytesMaxDefault, httpTimeoutMsDefault, httpTimeoutMsMax } from '../runtime/limits.ts';
import { traceHeaders } from '../runtime/otel.ts';
import { type HttpReply, HttpTimeout, httpExchange } from './http-call.ts';

export type HttpBranchOp = 'action' | 'compensation' | 'try' | 'confirm' | 'cancel';
/** The ops `dtx serve` sends a two-phase-commit participant (docs/server.md, "Two-phase commit across services"). */
export type HttpParticipantOp = 'prepare' | 'commit' | 'rollback';

export interface HttpBranchCall {
  sagaId: string;
  branchId: string;
  op: HttpBranchOp | HttpParticipantOp;
  /** Any JSON value; sent as `payload`. */
  payload: unknown;
  /** Per-call timeout; no answer by then counts as `ongoing`. A positive integer up to 600,000. Default 5000. */
  timeoutMs?: number;
  /** The branch's own headers (auth, tracing). Never logged. */
  headers?: Readonly<Record<string, string>>;
  /** Longest response body read; a longer one fails the attempt. Default 64 KiB. */
  maxBodyBytes?: number;
}

export interface HttpBranchAnswer {
  result: 'success' | 'failure' | 'ongoing';
  /** HTTP status, or 0 when no response came (timeout, connection refused). */
  status: number;
  /** Why: the refusal's reason, the status line, or the network error. */
  reason: string;
  /** The response body (parsed JSON, else text); undefined without a response. */
  body: unknown;
}

/** The `Idempotency-Key` of a call: stable across retries of one (saga, branch, op). */
export function branchIdempotencyKey(
  sagaId: string,
  branchId: string,
  op: HttpBranchOp | HttpParticipantOp,
): string {
  return `${sagaId}:${branchId}:${op}`;
}

/** Maps an HTTP status to a branch result, as the protocol defines it. */
export function classifyStatus(status: number): 'success' | 'failure' | 'ongoing' {
  if (status === 200) return 'success';
  if (status === 409) return 'failure';
  if (status === 202 || status === 425 || status === 503) return 'ongoing';
  if (status >= 500 && status <= 599) return 'ongoing';
  if (status >= 300 && status <= 399) return 'ongoing';
  return 'failure';
}

/**
 * Throws DTX_INVALID_ARGUMENT unless `url` parses and is http: or https:.
 * Other schemes (file:, data:, ...) are refused: a branch is a service.
 */
export function checkBranchUrl(url: unknown, where: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(String(url));
  } catch {
    throw new DtxError('DTX_INVALID_ARGUMENT', `${where}: ${JSON.stringify(String(url))} is not a URL`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `${where}: only http: and https: URLs are allowed, not ${parsed.protocol}`,
    );
  }
  return parsed;
}

/** Throws DTX_INVALID_ARGUMENT unless `ms` is a whole number of milliseconds in 1..600,000. */
export function checkHttpTimeoutMs(ms: unknown, where: string): number {
  if (typeof ms !== 'number' || !Number.isInteger(ms) || ms < 1 || ms > httpTimeoutMsMax) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `${where} must be an integer from 1 to ${httpTimeoutMsMax} (ms), got ${String(ms)}`,
    );
  }
  return ms;
}

// RFC 9110 token characters for a field name.
const headerNamePattern = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Throws DTX_INVALID_ARGUMENT unless `headers` is a record of valid header
 * names to string values without line breaks. The message names the header,
 * never its value (it may be a token).
 */
export function checkBranchHeaders(headers: unknown, where: string): Record<string, string> {
  if (typeof headers !== 'object' || headers === null || Array.isArray(headers)) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `${where}: headers must be an object of strings`);
  }
  for (const [name, value] of Object.entries(headers)) {
    if (!headerNamePattern.test(name)) {
      throw new DtxError('DTX_INVALID_ARGUMENT', `${where}: bad header name ${JSON.stringify(name)}`);
    }
    if (typeof value !== 'string' || /[\r\n\0]/.test(value)) {
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `${where}: header ${name} must be a string without line breaks`,
      );
    }
  }
  return headers as Record<string, string>;
}

function reasonOf(body: unknown, text: string, status: number): string {
  if (
    typeof body === 'object' &&
    body !== null &&
    typeof (body as { reason?: unknown }).reason === 'string'
  ) {
    return (body as { reason: string }).reason;
  }
  return text.trim() === '' ? `HTTP ${status}` : text.trim().slice(0, 500);
}

/**
 * Calls one branch over HTTP. Throws only DTX_INVALID_ARGUMENT for a bad
 * timeout, URL or header (a programming error); every problem of the call
 * itself becomes an answer.
 */
export async function callHttpBranch(url: string, call: HttpBranchCall): Promise<HttpBranchAnswer> {
  const timeoutMs = checkHttpTimeoutMs(call.timeoutMs ?? httpTimeoutMsDefault, 'timeoutMs');
  const maxBodyBytes = call.maxBodyBytes ?? httpBodyBytesMaxDefault;
  if (!Number.isSafeInteger(maxBodyBytes) || maxBodyBytes < 0) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `maxBodyBytes must be an integer >= 0, got ${String(maxBodyBytes)}`,
    );
  }
  const target = checkBranchUrl(url, 'branch URL');
  const own = call.headers === undefined ? {} : checkBranchHeaders(call.headers, 'branch headers');
  let reply: HttpReply;
  try {
    reply = await httpExchange(target, {
      method: 'POST',
      timeoutMs,
      maxBodyBytes,
      headers: {
        ...own,
        // The active span's `traceparent` (the branch call's, ../runtime/otel.ts), unless the branch sets its own.
        ...traceHeaders(own),
        'content-type': 'application/json',
        'dtx-saga-id': call.sagaId,
        'dtx-branch-id': call.branchId,
        'dtx-op': call.op,
        'idempotency-key': branchIdempotencyKey(call.sagaId, call.branchId, call.op),
      },
      body: JSON.stringify({
        sagaId: call.sagaId,
        branchId: call.branchId,
        op: call.op,
        payload: call.payload ?? null,
      }),
    });
  } catch (error) {
    return { result: 'ongoing', status: 0, reason: exchangeFailure(error), body: undefined };
  }
  const { status, text, location } = reply;
  if (status >= 300 && status <= 399) {
    return {
      result: 'ongoing',
      status,
      reason: `HTTP ${status} redirect${location === undefined ? '' : ` to ${location.slice(0, 200)}`} not followed: a branch URL must answer itself`,
      body: undefined,
    };
  }
  if (text === null) {
    return {
      result: 'ongoing',
      status,
      reason: `HTTP ${status} with a response body over ${maxBodyBytes} bytes: not read`,
      body: undefined,
    };
  }
  let body: unknown = text;
  try {
    body = text === '' ? undefined : JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { result: classifyStatus(status), status, reason: reasonOf(body, text, status), body };
}

/** Why an exchange got no answer, as an attempt's reason. */
export function exchangeFailure(error: unknown): string {
  if (error instanceof HttpTimeout) return error.message;
  return `request failed: ${error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error)}`;
}
