// The native API's two-phase commit routes (docs/server.md, "Two-phase commit
// across services") and their schemas; the protocol is in ./twopc.ts. With
// several servers, each request goes to the coordinator its gid's claim
// names (Engine.twoPcFor): this server's, or one it took over; else 421.

import { type Static, Type } from '@sinclair/typebox';
import type { FastifyReply } from 'fastify';
import { httpTimeoutMsMax, timerDelayMsMax } from '../runtime/limits.ts';
import type { Route } from './app.ts';
import { requestHash } from './engine.ts';
import { serverLimits } from './limits.ts';
import { Gid, Headers, IdParams, Url } from './schemas.ts';
import { checkParticipantUrl, type TwoPcCoordinatorService, twoPcServeLimits } from './twopc.ts';

const strict = { additionalProperties: false } as const;
const Ms = (max: number, description: string) => Type.Integer({ minimum: 1, maximum: max, description });

export const TwoPcBeginRequest = Type.Object(
  {
    id: Gid,
    timeoutMs: Type.Optional(Ms(timerDelayMsMax, 'Abort (roll back every branch) if not committed by then')),
    prepareTimeoutMs: Type.Optional(
      Ms(
        twoPcServeLimits.prepareTimeoutMsMax,
        'Abort if every vote is not in by then (from the commit request)',
      ),
    ),
    headers: Type.Optional(Headers),
    requestTimeoutMs: Type.Optional(Ms(httpTimeoutMsMax, 'Timeout of each participant call')),
  },
  strict,
);

export const TwoPcBranchRequest = Type.Object(
  {
    branch: Type.String({
      pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$',
      description: 'The branch id: 1 to 32 of letters, digits, _ and - (no dot)',
    }),
    // The participant's base URL: the server calls <url>/prepare, /commit and /rollback.
    url: Url,
  },
  strict,
);

export const TwoPcCommitRequest = Type.Object(
  {
    wait: Type.Optional(
      Type.Object(
        { timeoutMs: Type.Integer({ minimum: 0, maximum: serverLimits.waitMsMax }) },
        { ...strict, description: 'Also wait for phase two to be acknowledged everywhere, up to timeoutMs' },
      ),
    ),
  },
  strict,
);

export const TwoPcAbortRequest = Type.Object(
  { reason: Type.Optional(Type.String({ minLength: 1, maxLength: 1000 })) },
  strict,
);

/** Answers with the transaction: 200 once phase two is acknowledged everywhere, 202 before. */
function answer(twopc: TwoPcCoordinatorService, reply: FastifyReply, id: string): unknown {
  const view = twopc.view(id);
  const ended = ['committed', 'aborted', 'resolved', 'abandoned'].includes(view.state);
  return reply.code(ended ? 200 : 202).send(view);
}

/** The coordinator that runs `gid` (`create`: a begin, which claims it). */
export type TwoPcAt = (gid: string, create?: { hash: string }) => Promise<TwoPcCoordinatorService>;

export function twoPcRoutes(own: TwoPcCoordinatorService, at: TwoPcAt = async () => own): Route[] {
  return [
    {
      method: 'POST',
      url: '/v1/2pc',
      summary:
        'Begin a two-phase commit transaction (idempotent by id; aborted at timeoutMs unless committed)',
      schema: { body: TwoPcBeginRequest },
      handler: async (request, reply) => {
        const b = request.body as Static<typeof TwoPcBeginRequest>;
        const hash = requestHash(b);
        const twopc = await at(b.id, { hash });
        const { created } = await twopc.begin(
          b.id,
          {
            timeoutMs: b.timeoutMs ?? twoPcServeLimits.timeoutMsDefault,
            prepareTimeoutMs: b.prepareTimeoutMs ?? twoPcServeLimits.prepareTimeoutMsDefault,
            headers: b.headers ?? {},
            requestTimeoutMs: b.requestTimeoutMs ?? null,
          },
          hash,
        );
        return reply.code(created ? 201 : 200).send(twopc.view(b.id));
      },
    },
    {
      method: 'POST',
      url: '/v1/2pc/:id/branches',
      summary: 'Register a participant branch (its base URL), durable before the answer',
      schema: { params: IdParams, body: TwoPcBranchRequest },
      handler: async (request) => {
        const { id } = request.params as Static<typeof IdParams>;
        const b = request.body as Static<typeof TwoPcBranchRequest>;
        checkParticipantUrl(b.url, 'url');
        const twopc = await at(id);
        await twopc.registerBranch(id, b.branch, b.url);
        return twopc.view(id);
      },
    },
    {
      method: 'POST',
      url: '/v1/2pc/:id/commit',
      summary:
        'Commit: prepare every branch, decide, then commit (or roll back) every branch; answers the outcome',
      schema: { params: IdParams, body: TwoPcCommitRequest },
      handler: async (request, reply) => {
        const { id } = request.params as Static<typeof IdParams>;
        const b = request.body as Static<typeof TwoPcCommitRequest>;
        const twopc = await at(id);
        await twopc.commit(id);
        await twopc.wait(id, b.wait?.timeoutMs ?? 0);
        return answer(twopc, reply, id);
      },
    },
    {
      method: 'POST',
      url: '/v1/2pc/:id/abort',
      summary: 'Abort: roll back every branch (refused once the commit is decided)',
      schema: { params: IdParams, body: TwoPcAbortRequest },
      handler: async (request, reply) => {
        const { id } = request.params as Static<typeof IdParams>;
        const b = request.body as Static<typeof TwoPcAbortRequest>;
        const twopc = await at(id);
        await twopc.abort(id, b.reason ?? 'aborted by request');
        return answer(twopc, reply, id);
      },
    },
    {
      method: 'GET',
      url: '/v1/2pc/:id',
      summary: 'One 2PC transaction: state, outcome, each branch with its vote, every record',
      schema: { params: IdParams },
      handler: async (request) => {
        const { id } = request.params as Static<typeof IdParams>;
        return (await at(id)).view(id);
      },
    },
  ];
}
