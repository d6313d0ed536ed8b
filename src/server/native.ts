// The native API v1 of `dtx serve` (docs/server.md): sagas, TCC, the
// transactions' views and the operator's actions — for every transaction the
// server runs, its two-phase commits (./twopc.ts) included. Branches are
// called under dtx's HTTP branch protocol (docs/saga-runtime.md, "HTTP
// branch protocol").

import type { Static, TSchema } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import { checkBranchUrl } from '../adapters/http-branch.ts';
import { DtxError } from '../errors.ts';
import type { Route } from './app.ts';
import { phaseOfView } from './dashboard.ts';
import { type Engine, newestFirst, requestHash, type TxnView } from './engine.ts';
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
import type { TwoPcCoordinatorService, TwoPcView } from './twopc.ts';

/** What the transactions' routes answer: a view of any type, with its phase (./phases.ts). */
function withPhase(v: TxnView | TwoPcView) {
  return { ...v, phase: phaseOfView(v) };
}

/** A page of a listing after `cursor` (opaque: the last item's time and id). */
export function page<V extends { id: string; startedAt: string | null }>(
  all: V[],
  limit: number,
  cursor: string | undefined,
): { items: V[]; next: string | null } {
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

export function nativeRoutes(engine: Engine, twopc?: TwoPcCoordinatorService): Route[] {
  /** The 2PC coordinator when it runs `id`: one gid namespace, so a gid is one or the other. */
  const twoPcOf = (id: string) => (twopc?.knows(id) === true ? twopc : undefined);
  const view = async (id: string) => withPhase(twoPcOf(id)?.view(id) ?? (await engine.view(id)));
  /** `POST /v1/transactions/:id/<action>`: the action, then the transaction as it is now. */
  const operatorRoute = <B>(
    action: string,
    summary: string,
    body: TSchema | undefined,
    act: (id: string, body: B) => Promise<void>,
    actTwoPc: (tpc: TwoPcCoordinatorService, id: string, body: B) => Promise<void>,
  ): Route => ({
    method: 'POST',
    url: `/v1/transactions/:id/${action}`,
    summary,
    schema: { params: IdParams, ...(body === undefined ? {} : { body }) },
    handler: async (request) => {
      const { id } = request.params as Static<typeof IdParams>;
      const tpc = twoPcOf(id);
      await (tpc === undefined ? act(id, request.body as B) : actTwoPc(tpc, id, request.body as B));
      return view(id);
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
      summary: 'One transaction (any type, 2PC included): state, phase, branches, every record with its time',
      schema: { params: IdParams },
      handler: async (request) => view((request.params as Static<typeof IdParams>).id),
    },
    {
      method: 'GET',
      url: '/v1/transactions',
      summary: 'Transactions, newest first, by state and type, a page at a time (cursor)',
      schema: { querystring: ListQuery },
      handler: async (request) => {
        const q = request.query as Static<typeof ListQuery>;
        const limit = Math.min(Number(q.limit ?? serverLimits.pageDefault), serverLimits.pageMax);
        const all: (TxnView | TwoPcView)[] =
          q.type === '2pc'
            ? []
            : await engine.list({
                ...(q.state === undefined ? {} : { state: q.state as TxnView['state'] }),
                ...(q.type === undefined ? {} : { type: q.type }),
              });
        if (twopc !== undefined && (q.type === undefined || q.type === '2pc')) {
          all.push(...twopc.views().filter((v) => q.state === undefined || v.state === q.state));
          all.sort(newestFirst);
        }
        const { items, next } = page(all, limit, q.cursor);
        const transactions = items.map((v) => {
          const { records: _r, ...summary } = withPhase(v);
          return summary;
        });
        return { transactions, next };
      },
    },
    operatorRoute(
      'retry',
      'Call every outstanding branch now (a prepared message: ask query_prepared now; 2PC: send its pending PREPARE, COMMIT or ROLLBACK calls now)',
      undefined,
      (id) => engine.retry(id),
      (tpc, id) => tpc.retry(id),
    ),
    operatorRoute(
      'resolve',
      'End it with the outcome an operator established by hand (force and a reason, recorded): completed or compensated; 2PC: committed (only once the commit is durable) or aborted (never once it is)',
      ResolveRequest,
      (id, b: Static<typeof ResolveRequest>) => {
        if (b.outcome !== 'completed' && b.outcome !== 'compensated')
          throw wrongOutcome(id, b.outcome, 'completed or compensated');
        return engine.resolve(id, b.outcome, b.reason, b.force);
      },
      (tpc, id, b: Static<typeof ResolveRequest>) => {
        if (b.outcome !== 'committed' && b.outcome !== 'aborted')
          throw wrongOutcome(id, b.outcome, 'committed or aborted');
        return tpc.resolve(id, b.outcome, b.reason);
      },
    ),
    operatorRoute(
      'abandon',
      'End it as it stands: nothing more is called (force and a reason, recorded); an undecided 2PC transaction is decided abort',
      AbandonRequest,
      (id, b: Static<typeof AbandonRequest>) => engine.abandon(id, b.reason, b.force),
      (tpc, id, b: Static<typeof AbandonRequest>) => tpc.abandon(id, b.reason),
    ),
  ];
}

/** A resolve whose outcome is not one of the transaction's type. */
function wrongOutcome(id: string, outcome: string, allowed: string): DtxError {
  return new DtxError(
    'DTX_INVALID_ARGUMENT',
    `outcome ${outcome} does not apply to ${id}: its outcomes are ${allowed}`,
    { gid: id },
  );
}
