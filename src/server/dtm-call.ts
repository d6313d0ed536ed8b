// Calling a branch the way DTM's SDKs expect (the DTM-compatible side of
// `dtx serve`, see docs/server.md): `POST <url>?gid=G&trans_type=T&branch_id=B&op=O&dtm=<server>`
// with the step's payload as the body, as-is, and the transaction's
// `branch_headers`. The answer: 425 or a body with `ONGOING` = not finished
// (retry); 409 or a body with `FAILURE` = failure; any other status than 200
// = unknown (retry); 200 = success. Redirects are never followed and bodies
// are read up to a limit, as for dtx's own HTTP branches
// (../adapters/http-branch.ts), for the same reasons.
//
// Owns: one call; never logs a header's value.

import { exchangeFailure } from '../adapters/http-branch.ts';
import { type HttpReply, httpExchange } from '../adapters/http-call.ts';
import { traceHeaders } from '../runtime/otel.ts';

export interface DtmBranchCall {
  method: 'POST' | 'GET';
  /** Query parameters added to the URL (gid, trans_type, branch_id, op, dtm). */
  query: Readonly<Record<string, string>>;
  /** The payload, sent as the body unchanged (POST only). */
  body: string;
  headers: Readonly<Record<string, string>>;
  timeoutMs: number;
  maxBodyBytes: number;
}

export interface DtmAnswer {
  result: 'success' | 'failure' | 'ongoing';
  reason: string;
}

/** DTM's reading of a branch's answer (DTM-HTTP.md, "How the server calls a branch"). */
export function classifyDtmAnswer(status: number, body: string): DtmAnswer['result'] {
  if (status === 425 || body.includes('ONGOING')) return 'ongoing';
  if (status === 409 || body.includes('FAILURE')) return 'failure';
  return status === 200 ? 'success' : 'ongoing';
}

export async function callDtmBranch(url: string, call: DtmBranchCall): Promise<DtmAnswer> {
  const target = new URL(url);
  for (const [k, v] of Object.entries(call.query)) target.searchParams.set(k, v);
  let reply: HttpReply;
  try {
    reply = await httpExchange(target, {
      method: call.method,
      timeoutMs: call.timeoutMs,
      maxBodyBytes: call.maxBodyBytes,
      // The branch call's `traceparent` (../runtime/otel.ts) unless `branch_headers` carry one.
      headers: { ...call.headers, ...traceHeaders(call.headers), 'content-type': 'application/json' },
      ...(call.method === 'POST' ? { body: call.body } : {}),
    });
  } catch (error) {
    return { result: 'ongoing', reason: exchangeFailure(error) };
  }
  const { status, text } = reply;
  if (status >= 300 && status <= 399)
    return { result: 'ongoing', reason: `HTTP ${status} redirect not followed` };
  if (text === null)
    return { result: 'ongoing', reason: `HTTP ${status}: body over ${call.maxBodyBytes} bytes` };
  const result = classifyDtmAnswer(status, text);
  const shown = text.trim().slice(0, 300);
  return { result, reason: `HTTP ${status}${shown === '' ? '' : `: ${shown}`}` };
}
