// The native API v1 of `dtx serve` (docs/server.md): sagas, TCC, the
// transactions' views and the operator's actions. Branches are called under
// dtx's HTTP branch protocol (docs/saga-runtime.md, "HTTP branch protocol").

import type { Static, TSchema } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import { checkBranchUrl } from '../adapters/http-branch.ts';
import { DtxError } from '../errors.ts';
import type { Route } from './app.ts';
import { type Engine, requestHash, type TxnView } from './engine.ts';
import { serverLimits } from './limits.ts';
import {
  AbandonRequest,
  AbortRequest,
  IdParams,
  ListQuery,
  ResolveRequest,
  SagaRequest,
  SubmitRequest,
  TccBranchRequest,
  TccRequest,
} from './schemas.ts';

/** A page of a listing after `cursor` (opaque: the last item's time and id). */
export function page(
  all: TxnView[],
  limit: number,
  cursor: string | undefined,
): { items: TxnView[]; next: string | null } {
  let start = 0;
  if (cursor !== undefined && cursor !== '') {
    let after: [string, string];
    try {
      after = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as [string, string];
      if (!Array.isArray(after) || typeof after[0] !== 'string' || typeof after[1] !== 'string')
        throw new Error();
    } catch {
      throw new DtxError('DTX_INVALID_ARGUMENT', 'cursor is not one this server gave');
    }
    const at = all.findIndex(
      (v) => (v.startedAt ?? '') < after[0] || ((v.startedAt ?? '') === after[0] && v.id > after[1]),
    );
    start = at < 0 ? all.length : at;
  }
  const items = all.slice(start, start + limit);
  const last = items.at(-1);
  const next =
    start + limit < all.length && last !== undefined
      ? Buffer.from(JSON.stringify([last.startedAt ?? '', last.id])).toString('base64url')
      : null;
  return { items, next };
}

/** Answers with the transaction: 200 once ended, 202 while it goes on. */
async function answer(
  engine: Engine,
  reply: FastifyReply,
  id: string,
  waitMs: number | undefined,
): Promise<unknown> {
  const ended = waitMs === undefined || waitMs === 0 ? null : await engine.wait(id, waitMs);
  const view = ended ?? (await engine.view(id));
  const done = ['completed', 'compensated', 'resolved', 'abandoned'].includes(view.state);
  return reply.code(done ? 200 : 202).send(view);
}

export function nativeRoutes(engine: Engine): Route[] {
  /** `POST /v1/transactions/:id/<action>`: the action, then the transaction as it is now. */
  const operatorRoute = <B>(
    action: string,
    summary: string,
    body: TSchema | undefined,
    act: (id: string, body: B) => Promise<void>,
  ): Route => ({
    method: 'POST',
    url: `/v1/transactions/:id/${action}`,
    summary,
    schema: { params: IdParams, ...(body === undefined ? {} : { body }) },
    handler: async (request) => {
      const { id } = request.params as Static<typeof IdParams>;
      await act(id, request.body as B);
      return engine.view(id);
    },
  });
  return [
    {
      method: 'POST',
      url: '/v1/sagas',
      summary:
        'Submit a saga (idempotent by id: the same body again answers the same saga, another body is 409)',
      schema: { body: SagaRequest },
      handler: async (request, reply) => {
        const b = request.body as Static<typeof SagaRequest>;
        const names = new Set(b.steps.map((s) => s.name));
        if (names.size !== b.steps.length)
          throw new DtxError('DTX_INVALID_ARGUMENT', 'steps: two steps have the same name');
        for (const [i, s] of b.steps.entries()) {
          checkBranchUrl(s.action.url, `steps/${i}/action/url`);
          if (s.compensation !== null) checkBranchUrl(s.compensation.url, `steps/${i}/compensation/url`);
          for (const a of s.after ?? [])
            if (!names.has(a))
              throw new DtxError('DTX_INVALID_ARGUMENT', `steps/${i}/after names no step ${a}`);
        }
        const { wait: _wait, ...identity } = b;
        await engine.submitSaga({
          gid: b.id,
          style: 'dtx',
          steps: b.steps.map((s) => ({
            branch: s.name,
            action: { url: s.action.url, op: 'action' },
            compensation: s.compensation === null ? null : { url: s.compensation.url, op: 'compensation' },
            ...(s.after === undefined ? {} : { after: s.after }),
            body: JSON.stringify(s.payload ?? null),
            headers: { ...s.action.headers, ...(s.compensation?.headers ?? {}) },
          })),
          ...(b.timeoutMs === undefined ? {} : { timeoutMs: b.timeoutMs }),
          ...(b.retry === undefined ? {} : { actionAttemptsMax: b.retry.actionAttemptsMax }),
          headers: b.headers ?? {},
          ...(b.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: b.requestTimeoutMs }),
          hash: requestHash(identity),
        });
        return answer(engine, reply, b.id, b.wait?.timeoutMs);
      },
    },
    {
      method: 'POST',
      url: '/v1/tcc',
      summary: 'Begin a TCC transaction (prepared until submit or abort; aborted at timeoutMs)',
      schema: { body: TccRequest },
      handler: async (request, reply) => {
        const b = request.body as Static<typeof TccRequest>;
        const { created } = await engine.prepare(
          b.id,
          'tcc',
          {
            style: 'dtx',
            preparedTimeoutMs: b.timeoutMs ?? serverLimits.preparedTimeoutMsDefault,
            queryPrepared: null,
            headers: b.headers ?? {},
            requestTimeoutMs: b.requestTimeoutMs ?? null,
            steps: [],
          },
          requestHash(b),
        );
        return reply.code(created ? 201 : 200).send(await engine.view(b.id));
      },
    },
    {
      method: 'POST',
      url: '/v1/tcc/:id/branches',
      summary: 'Register a branch (its confirm and cancel URLs); the caller then calls its try itself',
      schema: { params: IdParams, body: TccBranchRequest },
      handler: async (request) => {
        const { id } = request.params as Static<typeof IdParams>;
        const b = request.body as Static<typeof TccBranchRequest>;
        checkBranchUrl(b.confirm, 'confirm');
        checkBranchUrl(b.cancel, 'cancel');
        await engine.registerBranch(id, {
          branch: b.branch,
          confirm: b.confirm,
          cancel: b.cancel,
          body: JSON.stringify(b.payload ?? null),
        });
        return engine.view(id);
      },
    },
    {
      method: 'POST',
      url: '/v1/tcc/:id/submit',
      summary: 'Submit: confirm every branch (retried until each succeeds)',
      schema: { params: IdParams, body: SubmitRequest },
      handler: async (request, reply) => {
        const { id } = request.params as Static<typeof IdParams>;
        const b = request.body as Static<typeof SubmitRequest>;
        await engine.submit(id, 'tcc');
        return answer(engine, reply, id, b.wait?.timeoutMs);
      },
    },
    {
      method: 'POST',
      url: '/v1/tcc/:id/abort',
      summary: 'Abort: cancel every branch',
      schema: { params: IdParams, body: AbortRequest },
      handler: async (request, reply) => {
        const { id } = request.params as Static<typeof IdParams>;
        const b = request.body as Static<typeof AbortRequest>;
        await engine.abort(id, 'tcc', b.reason);
        return answer(engine, reply, id, undefined);
      },
    },
    {
      method: 'GET',
      url: '/v1/transactions/:id',
      summary: 'One transaction: state, branches, every record with its time',
      schema: { params: IdParams },
      handler: async (request) => engine.view((request.params as Static<typeof IdParams>).id),
    },
    {
      method: 'GET',
      url: '/v1/transactions',
      summary: 'Transactions, newest first, by state and type, a page at a time (cursor)',
      schema: { querystring: ListQuery },
      handler: async (request) => {
        const q = request.query as Static<typeof ListQuery>;
        const limit = Math.min(Number(q.limit ?? serverLimits.pageDefault), serverLimits.pageMax);
        const all = await engine.list({
          ...(q.state === undefined ? {} : { state: q.state as TxnView['state'] }),
          ...(q.type === undefined ? {} : { type: q.type }),
        });
        const { items, next } = page(all, limit, q.cursor);
        return { transactions: items.map(({ records: _r, ...summary }) => summary), next };
      },
    },
    operatorRoute(
      'retry',
      'Call every outstanding branch now (a prepared message: ask query_prepared now)',
      undefined,
      (id) => engine.retry(id),
    ),
    operatorRoute(
      'resolve',
      'End it with the outcome an operator established by hand (force and a reason, recorded)',
      ResolveRequest,
      (id, b: Static<typeof ResolveRequest>) => engine.resolve(id, b.outcome, b.reason, b.force),
    ),
    operatorRoute(
      'abandon',
      'End it as it stands: nothing more is called (force and a reason, recorded)',
      AbandonRequest,
      (id, b: Static<typeof AbandonRequest>) => engine.abandon(id, b.reason, b.force),
    ),
  ];
}
