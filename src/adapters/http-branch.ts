// The HTTP branch protocol: how a saga or TCC orchestrator calls a branch
// that a service in any language exposes over HTTP. See docs/saga-runtime.md
// ("HTTP branch protocol") for the contract services implement.
//
// Request: POST <branch URL>, `Content-Type: application/json`, body
// `{sagaId, branchId, op, payload}`, headers `Dtx-Saga-Id`, `Dtx-Branch-Id`,
// `Dtx-Op` and `Idempotency-Key` (`<sagaId>:<branchId>:<op>`, the same on
// every retry of one call). Answer, by status:
// - 200: success;
// - 409: business refusal (failure: compensate, never retry); the body's
//   `reason` (JSON) or text is the reason;
// - 202, 425, 503, any other 5xx, a network error or no answer within the
//   call's timeout: ongoing / unknown (retry with backoff);
// - any other 4xx (and any other status): failure.

export type HttpBranchOp = 'action' | 'compensation' | 'try' | 'confirm' | 'cancel';

export interface HttpBranchCall {
  sagaId: string;
  branchId: string;
  op: HttpBranchOp;
  /** Any JSON value; sent as `payload`. */
  payload: unknown;
  /** Per-call timeout; no answer by then counts as `ongoing`. Default 5000. */
  timeoutMs?: number;
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
export function branchIdempotencyKey(sagaId: string, branchId: string, op: HttpBranchOp): string {
  return `${sagaId}:${branchId}:${op}`;
}

/** Maps an HTTP status to a branch result, as the protocol defines it. */
export function classifyStatus(status: number): 'success' | 'failure' | 'ongoing' {
  if (status === 200) return 'success';
  if (status === 409) return 'failure';
  if (status === 202 || status === 425 || status === 503) return 'ongoing';
  if (status >= 500 && status <= 599) return 'ongoing';
  return 'failure';
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

/** Calls one branch over HTTP. Never throws: every problem becomes an answer. */
export async function callHttpBranch(url: string, call: HttpBranchCall): Promise<HttpBranchAnswer> {
  const timeoutMs = call.timeoutMs ?? 5000;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const response = await fetch(url, {
      method: 'POST',
      signal: controller.signal,
      headers: {
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
    const text = await response.text();
    let body: unknown = text;
    try {
      body = text === '' ? undefined : JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    return {
      result: classifyStatus(response.status),
      status: response.status,
      reason: reasonOf(body, text, response.status),
      body,
    };
  } catch (error) {
    const reason = controller.signal.aborted
      ? `no answer within ${timeoutMs} ms`
      : `request failed: ${error instanceof Error ? ((error.cause as Error | undefined)?.message ?? error.message) : String(error)}`;
    return { result: 'ongoing', status: 0, reason, body: undefined };
  } finally {
    clearTimeout(timer);
  }
}
