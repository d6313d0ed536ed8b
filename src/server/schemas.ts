// The request schemas of `dtx serve`, in TypeBox: Fastify validates every
// request against them (strict: no type coercion, and unknown fields refused
// in the native API), and ./openapi.ts builds `/openapi.json` from the same
// objects, so the document cannot drift from what is enforced.
//
// DTM's request bodies allow fields dtx does not read: its SDKs send fields
// that differ between versions, and refusing them would break those SDKs.

import { type TSchema, Type } from '@sinclair/typebox';
import { httpTimeoutMsMax, timerDelayMsMax } from '../runtime/limits.ts';
import { serverLimits } from './limits.ts';

const strict = { additionalProperties: false } as const;

export const Gid = Type.String({
  pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,47}$',
  description: 'The transaction id, chosen by the caller: 1 to 48 of letters, digits, _ . : -',
});
export const BranchName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$' });
/** http: or https: only, checked by the schema so that the 400 names the field. */
export const Url = Type.String({ maxLength: 2048, pattern: '^[hH][tT][tT][pP][sS]?://[^\\s]+$' });
export const Headers = Type.Record(
  Type.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" }),
  Type.String({ maxLength: 8192, pattern: '^[^\\r\\n\\u0000]*$' }),
  {
    ...strict,
    maxProperties: 64,
    description: 'Headers sent with every branch call (never a protocol header)',
  },
);
const Ms = (max: number, description: string) => Type.Integer({ minimum: 1, maximum: max, description });
const Reason = Type.String({ minLength: 1, maxLength: 1000 });
const Wait = Type.Object(
  { timeoutMs: Type.Integer({ minimum: 0, maximum: serverLimits.waitMsMax }) },
  { ...strict, description: 'Answer once the transaction ends, or after timeoutMs with its current state' },
);

export const Endpoint = Type.Object({ url: Url, headers: Type.Optional(Headers) }, strict);

export const SagaStep = Type.Object(
  {
    name: BranchName,
    action: Endpoint,
    compensation: Type.Union([Endpoint, Type.Null()]),
    after: Type.Optional(
      Type.Array(BranchName, {
        maxItems: 64,
        description: 'Steps this one waits for; omitted: the previous step',
      }),
    ),
    payload: Type.Optional(Type.Unknown({ description: 'Any JSON, sent to the branch as `payload`' })),
  },
  strict,
);

export const SagaRequest = Type.Object(
  {
    id: Gid,
    steps: Type.Array(SagaStep, { minItems: 1, maxItems: 64 }),
    timeoutMs: Type.Optional(Ms(timerDelayMsMax, 'Compensate if not completed by then')),
    retry: Type.Optional(
      Type.Object({ actionAttemptsMax: Type.Integer({ minimum: 1, maximum: 1000 }) }, strict),
    ),
    headers: Type.Optional(Headers),
    requestTimeoutMs: Type.Optional(Ms(httpTimeoutMsMax, 'Timeout of each branch call')),
    wait: Type.Optional(Wait),
  },
  strict,
);

export const TccRequest = Type.Object(
  {
    id: Gid,
    timeoutMs: Type.Optional(Ms(timerDelayMsMax, 'Abort (cancel every branch) if not submitted by then')),
    headers: Type.Optional(Headers),
    requestTimeoutMs: Type.Optional(Ms(httpTimeoutMsMax, 'Timeout of each branch call')),
  },
  strict,
);

export const TccBranchRequest = Type.Object(
  { branch: BranchName, confirm: Url, cancel: Url, payload: Type.Optional(Type.Unknown()) },
  strict,
);

export const SubmitRequest = Type.Object({ wait: Type.Optional(Wait) }, strict);
export const AbortRequest = Type.Object({ reason: Type.Optional(Reason) }, strict);
export const ResolveRequest = Type.Object(
  {
    outcome: Type.Union(
      ['completed', 'compensated', 'committed', 'aborted'].map((o) => Type.Literal(o)),
      { description: 'Saga, TCC, message: completed or compensated; 2PC: committed or aborted' },
    ),
    force: Type.Literal(true),
    reason: Reason,
  },
  strict,
);
export const AbandonRequest = Type.Object({ force: Type.Literal(true), reason: Reason }, strict);

export const IdParams = Type.Object({ id: Gid }, strict);

export const ListQuery = Type.Object(
  {
    state: Type.Optional(
      Type.Union(
        [
          'prepared',
          'running',
          'compensating',
          'stuck',
          'completed',
          'compensated',
          'resolved',
          'abandoned',
          // 2PC (./twopc.ts)
          'open',
          'preparing',
          'committing',
          'aborting',
          'committed',
          'aborted',
        ].map((s) => Type.Literal(s)),
      ),
    ),
    type: Type.Optional(
      Type.Union([Type.Literal('saga'), Type.Literal('tcc'), Type.Literal('msg'), Type.Literal('2pc')]),
    ),
    limit: Type.Optional(Type.String({ pattern: `^[1-9][0-9]{0,2}$` })),
    cursor: Type.Optional(Type.String({ maxLength: 200, pattern: '^[A-Za-z0-9_-]*$' })),
  },
  strict,
);

// ------------------------------------------------------------------ DTM

const Seconds = Type.Integer({ minimum: 0, maximum: 86_400 });
export const DtmTransaction = Type.Object(
  {
    gid: Gid,
    trans_type: Type.String({ maxLength: 32 }),
    steps: Type.Optional(
      Type.Array(Type.Record(Type.String(), Type.String({ maxLength: 2048 })), { maxItems: 64 }),
    ),
    payloads: Type.Optional(
      Type.Array(Type.String({ maxLength: serverLimits.bodyBytesMax }), { maxItems: 64 }),
    ),
    custom_data: Type.Optional(Type.String({ maxLength: 65_536 })),
    query_prepared: Type.Optional(Type.String({ maxLength: 2048 })),
    wait_result: Type.Optional(Type.Boolean()),
    timeout_to_fail: Type.Optional(Seconds),
    request_timeout: Type.Optional(Seconds),
    retry_interval: Type.Optional(Seconds),
    retry_limit: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000 })),
    branch_headers: Type.Optional(Headers),
    passthrough_headers: Type.Optional(Type.Array(Type.String({ maxLength: 256 }), { maxItems: 64 })),
    rollback_reason: Type.Optional(Type.String({ maxLength: 1000 })),
    protocol: Type.Optional(Type.String({ maxLength: 16 })),
  },
  { description: "A DTM transaction; fields DTM's SDKs send that dtx does not read are ignored" },
);

export const DtmAbort = Type.Object({ gid: Gid, trans_type: Type.String({ maxLength: 32 }) });

export const DtmRegisterBranch = Type.Object({
  gid: Gid,
  trans_type: Type.String({ maxLength: 32 }),
  branch_id: BranchName,
  data: Type.Optional(Type.String({ maxLength: serverLimits.bodyBytesMax })),
  try: Type.Optional(Type.String({ maxLength: 2048 })),
  confirm: Type.Optional(Type.String({ maxLength: 2048 })),
  cancel: Type.Optional(Type.String({ maxLength: 2048 })),
});

export const DtmQuery = Type.Object({ gid: Gid });
export const DtmAllQuery = Type.Object({
  limit: Type.Optional(Type.String({ pattern: '^[1-9][0-9]{0,2}$' })),
  position: Type.Optional(Type.String({ maxLength: 200, pattern: '^[A-Za-z0-9_-]*$' })),
});

/** A route's schemas, as Fastify takes them and OpenAPI shows them. */
export interface RouteSchemas {
  body?: TSchema;
  querystring?: TSchema;
  params?: TSchema;
}
