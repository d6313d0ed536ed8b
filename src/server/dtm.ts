// DTM-compatible endpoints (`/api/dtmsvr/...`), so that DTM's SDKs work
// unchanged against `dtx serve`: the request fields, statuses and branch-call
// conventions of DTM's HTTP contract (docs/server.md has the table of what
// is covered). Success answers `{"dtm_result":"SUCCESS"}`; a refusal is a
// problem document carrying `dtm_result: "FAILURE"` (409 for a state
// conflict), which DTM's SDKs read as an error.

import { randomBytes } from 'node:crypto';
import type { Static } from '@sinclair/typebox';
import { checkBranchUrl } from '../adapters/http-branch.ts';
import { DtxError } from '../errors.ts';
import type { Route } from './app.ts';
import { type Engine, requestHash, type StepSpec, type TxnView } from './engine.ts';
import { serverLimits } from './limits.ts';
import { page } from './native.ts';
import { DtmAbort, DtmAllQuery, DtmQuery, DtmRegisterBranch, DtmTransaction } from './schemas.ts';
import type { MsgStepSpec, PreparedRequest } from './store.ts';

type DtmBody = Static<typeof DtmTransaction>;
const success = { dtm_result: 'SUCCESS' };
const supported = new Set(['saga', 'tcc', 'msg']);
const unsupported = new Set(['xa', 'workflow']);

/** DTM's branch id of step `i`: two digits from 01. */
export function dtmBranchId(i: number): string {
  return String(i + 1).padStart(2, '0');
}

function checkType(t: string, allowed: readonly string[]): void {
  if (unsupported.has(t))
    throw new DtxError(
      'DTX_UNSUPPORTED',
      `trans_type ${t} is not supported by dtx serve (saga, tcc and msg are)`,
    );
  if (!supported.has(t))
    throw new DtxError('DTX_INVALID_ARGUMENT', `unknown trans_type ${JSON.stringify(t)}`);
  if (!allowed.includes(t)) throw new DtxError('DTX_INVALID_ARGUMENT', `trans_type ${t} cannot be used here`);
}

function checkProtocol(b: { protocol?: string }): void {
  if (b.protocol !== undefined && b.protocol !== 'http' && b.protocol !== '') {
    throw new DtxError(
      'DTX_UNSUPPORTED',
      `protocol ${b.protocol} is not supported: dtx serve speaks HTTP only`,
    );
  }
}

/** A DTM transaction body whose protocol and type this route takes. */
function dtmBody(body: unknown, allowed: readonly string[]): DtmBody {
  const b = body as DtmBody;
  checkProtocol(b);
  checkType(b.trans_type, allowed);
  return b;
}

function url(value: string | undefined, where: string): string {
  if (value === undefined || value === '') throw new DtxError('DTX_INVALID_ARGUMENT', `${where} is required`);
  checkBranchUrl(value, where);
  return value;
}

/** The saga order graph of custom_data `{"concurrent": true, "orders": {"1": [0]}}`: step → steps it waits for. */
function ordersOf(customData: string | undefined, steps: number): (readonly string[] | undefined)[] {
  if (customData === undefined || customData === '') return Array(steps).fill(undefined);
  let c: { concurrent?: unknown; orders?: unknown };
  try {
    c = JSON.parse(customData) as typeof c;
  } catch {
    throw new DtxError('DTX_INVALID_ARGUMENT', 'custom_data is not JSON');
  }
  if (typeof c !== 'object' || c === null || c.concurrent !== true) return Array(steps).fill(undefined);
  const orders = (c.orders ?? {}) as Record<string, unknown>;
  if (typeof orders !== 'object' || orders === null || Array.isArray(orders))
    throw new DtxError('DTX_INVALID_ARGUMENT', 'custom_data.orders must be an object');
  const after: string[][] = Array.from({ length: steps }, () => []);
  for (const [k, v] of Object.entries(orders)) {
    const i = Number(k);
    if (!Number.isInteger(i) || i < 0 || i >= steps || !Array.isArray(v))
      throw new DtxError('DTX_INVALID_ARGUMENT', `custom_data.orders: bad entry ${k}`);
    for (const j of v) {
      if (!Number.isInteger(j) || j < 0 || j >= steps || j === i)
        throw new DtxError('DTX_INVALID_ARGUMENT', `custom_data.orders.${k}: bad step ${String(j)}`);
      after[i]!.push(dtmBranchId(j as number));
    }
  }
  return after;
}

function sagaSteps(b: DtmBody): StepSpec[] {
  const steps = b.steps ?? [];
  if (steps.length === 0) throw new DtxError('DTX_INVALID_ARGUMENT', 'steps: a saga needs at least one step');
  const after = ordersOf(b.custom_data, steps.length);
  return steps.map((s, i) => ({
    branch: dtmBranchId(i),
    action: { url: url(s.action, `steps/${i}/action`), op: 'action' },
    compensation:
      s.compensate === undefined || s.compensate === ''
        ? null
        : { url: url(s.compensate, `steps/${i}/compensate`), op: 'compensate' },
    ...(after[i] === undefined ? {} : { after: after[i] }),
    body: b.payloads?.[i] ?? '',
  }));
}

function msgSteps(b: DtmBody): MsgStepSpec[] {
  return (b.steps ?? []).map((s, i) => ({
    branch: dtmBranchId(i),
    url: url(s.action, `steps/${i}/action`),
    body: b.payloads?.[i] ?? '',
  }));
}

/** The request as the hash sees it: what the caller asked, not how long it waits. */
function identity(b: DtmBody): unknown {
  const { wait_result: _w, ...rest } = b;
  return rest;
}

function preparedRequest(b: DtmBody, steps: MsgStepSpec[]): PreparedRequest {
  return {
    style: 'dtm',
    preparedTimeoutMs:
      b.timeout_to_fail !== undefined && b.timeout_to_fail > 0
        ? b.timeout_to_fail * 1000
        : serverLimits.preparedTimeoutMsDefault,
    queryPrepared:
      b.query_prepared === undefined || b.query_prepared === ''
        ? null
        : url(b.query_prepared, 'query_prepared'),
    headers: b.branch_headers ?? {},
    requestTimeoutMs:
      b.request_timeout !== undefined && b.request_timeout > 0 ? b.request_timeout * 1000 : null,
    steps,
  };
}

async function waitResult(engine: Engine, b: DtmBody): Promise<unknown> {
  if (b.wait_result !== true) return success;
  const view = await engine.wait(b.gid, serverLimits.waitMsMax);
  if (view === null) throw new DtxError('DTX_TIMEOUT', `${b.gid} has not ended yet (ONGOING)`);
  if (view.dtmStatus === 'failed')
    throw new DtxError('DTX_INVALID_STATE', `${b.gid} failed: ${view.reason ?? ''}`);
  return success;
}

function dtmTransaction(v: TxnView): unknown {
  return {
    gid: v.id,
    trans_type: v.type ?? 'saga',
    status: v.dtmStatus,
    create_time: v.startedAt,
    rollback_reason: v.dtmStatus === 'failed' || v.dtmStatus === 'aborting' ? (v.reason ?? '') : '',
  };
}

export function dtmRoutes(engine: Engine): Route[] {
  const refused = (what: string) => () => {
    throw new DtxError('DTX_UNSUPPORTED', `${what} is not supported by dtx serve (saga, tcc and msg are)`);
  };
  return [
    {
      method: 'GET',
      url: '/api/dtmsvr/newGid',
      summary: 'A fresh gid',
      schema: {},
      handler: async () => ({
        gid: `dtx${Date.now().toString(36)}${randomBytes(9).toString('hex')}`,
        dtm_result: 'SUCCESS',
      }),
    },
    {
      method: 'POST',
      url: '/api/dtmsvr/prepare',
      summary: 'Prepare a tcc or msg transaction',
      schema: { body: DtmTransaction },
      handler: async (request) => {
        const b = dtmBody(request.body, ['tcc', 'msg']);
        const steps = b.trans_type === 'msg' ? msgSteps(b) : [];
        await engine.prepare(
          b.gid,
          b.trans_type as 'tcc' | 'msg',
          preparedRequest(b, steps),
          requestHash(identity(b)),
        );
        return success;
      },
    },
    {
      method: 'POST',
      url: '/api/dtmsvr/submit',
      summary: 'Submit: start a saga, or confirm a tcc, or run a msg',
      schema: { body: DtmTransaction },
      handler: async (request) => {
        const b = dtmBody(request.body, ['saga', 'tcc', 'msg']);
        if (b.trans_type === 'saga') {
          await engine.submitSaga({
            gid: b.gid,
            style: 'dtm',
            steps: sagaSteps(b),
            ...(b.timeout_to_fail !== undefined && b.timeout_to_fail > 0
              ? { timeoutMs: b.timeout_to_fail * 1000 }
              : {}),
            ...(b.retry_limit !== undefined && b.retry_limit > 0
              ? { actionAttemptsMax: b.retry_limit + 1 }
              : {}),
            headers: b.branch_headers ?? {},
            ...(b.request_timeout !== undefined && b.request_timeout > 0
              ? { requestTimeoutMs: b.request_timeout * 1000 }
              : {}),
            hash: requestHash(identity(b)),
          });
        } else if (b.trans_type === 'msg') {
          const steps = msgSteps(b);
          const view = await engine.view(b.gid).catch(() => null);
          if (view === null) {
            // A message submitted without prepare: it runs at once.
            if (steps.length === 0)
              throw new DtxError('DTX_INVALID_ARGUMENT', 'steps: a msg needs at least one step');
            await engine.submitSaga(
              {
                gid: b.gid,
                style: 'dtm',
                steps: steps.map((s) => ({
                  branch: s.branch,
                  action: { url: s.url, op: 'action' },
                  compensation: null,
                  body: s.body,
                })),
                headers: b.branch_headers ?? {},
                ...(b.request_timeout !== undefined && b.request_timeout > 0
                  ? { requestTimeoutMs: b.request_timeout * 1000 }
                  : {}),
                hash: requestHash(identity(b)),
              },
              'msg',
            );
          } else {
            await engine.submit(b.gid, 'msg', steps);
          }
        } else {
          await engine.submit(b.gid, 'tcc');
        }
        return waitResult(engine, b);
      },
    },
    {
      method: 'POST',
      url: '/api/dtmsvr/abort',
      summary: 'Abort a prepared tcc (cancel every branch) or msg',
      schema: { body: DtmAbort },
      handler: async (request) => {
        const b = request.body as Static<typeof DtmAbort>;
        checkType(b.trans_type, ['tcc', 'msg']);
        await engine.abort(
          b.gid,
          b.trans_type as 'tcc' | 'msg',
          (b as { rollback_reason?: string }).rollback_reason || 'aborted by the caller',
        );
        return success;
      },
    },
    ...(['/api/dtmsvr/registerBranch', '/api/dtmsvr/registerTccBranch'] as const).map(
      (path): Route => ({
        method: 'POST',
        url: path,
        summary: 'Register a tcc branch (confirm and cancel URLs; the caller calls its try)',
        schema: { body: DtmRegisterBranch },
        handler: async (request) => {
          const b = request.body as Static<typeof DtmRegisterBranch>;
          checkType(b.trans_type, ['tcc']);
          await engine.registerBranch(b.gid, {
            branch: b.branch_id,
            confirm: url(b.confirm, 'confirm'),
            cancel: url(b.cancel, 'cancel'),
            body: b.data ?? '',
          });
          return success;
        },
      }),
    ),
    {
      method: 'POST',
      url: '/api/dtmsvr/registerXaBranch',
      summary: 'XA: not supported (answers DTX_UNSUPPORTED)',
      schema: {},
      handler: async () => refused('XA')(),
    },
    {
      method: 'GET',
      url: '/api/dtmsvr/query',
      summary: 'A transaction and its branches',
      schema: { querystring: DtmQuery },
      handler: async (request) => {
        const v = await engine.view((request.query as Static<typeof DtmQuery>).gid);
        return {
          transaction: dtmTransaction(v),
          branches: v.branches.map((x) => ({
            gid: v.id,
            branch_id: x.branch,
            op: x.op,
            url: x.url,
            status: x.status,
          })),
        };
      },
    },
    {
      method: 'GET',
      url: '/api/dtmsvr/all',
      summary: 'Transactions, newest first (limit, position)',
      schema: { querystring: DtmAllQuery },
      handler: async (request) => {
        const q = request.query as Static<typeof DtmAllQuery>;
        const limit = Math.min(Number(q.limit ?? serverLimits.pageDefault), serverLimits.pageMax);
        const { items, next } = page(await engine.list({}), limit, q.position);
        return { transactions: items.map(dtmTransaction), next_position: next ?? '' };
      },
    },
  ];
}
