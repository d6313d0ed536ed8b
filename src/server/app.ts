// `dtx serve`'s HTTP side: Fastify, with every route declared once in a table
// (method, path, schemas, handler) from which both Fastify's routes and the
// OpenAPI document (`/openapi.json`) are built. A request goes: bearer token
// (every route but /health) → body limit → schema (strict) → handler →
// engine (./engine.ts) → saga orchestrator and log → branch calls.
// `GET /metrics` (./metrics.ts) is behind the token like every other route;
// with a logger (./logging.ts), every request is logged at debug. A request's
// W3C trace headers are the parent of the spans its handler starts.
//
// Errors are RFC 9457 problem documents (`application/problem+json`) with a
// stable `code` (a DtxError code); on the DTM-compatible routes they also
// carry `dtm_result: "FAILURE"`, which DTM's SDKs look for.

import { timingSafeEqual } from 'node:crypto';
import Fastify, {
  type FastifyBaseLogger,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import { type DtxErrorCode, isDtxError } from '../errors.ts';
import { remoteParent, withSpan } from '../runtime/otel.ts';
import { dashboardRoutes, isDashboardAsset, registerDashboardAssets } from './dashboard.ts';
import { dtmRoutes } from './dtm.ts';
import type { Engine } from './engine.ts';
import { serverLimits } from './limits.ts';
import { ServeMetrics } from './metrics.ts';
import { nativeRoutes } from './native.ts';
import { openApiDocument } from './openapi.ts';
import type { RouteSchemas } from './schemas.ts';
import type { TwoPcCoordinatorService } from './twopc.ts';
import { twoPcRoutes } from './twopc-routes.ts';

export interface Route {
  method: 'GET' | 'POST';
  url: string;
  summary: string;
  schema: RouteSchemas;
  handler: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>;
}

export interface AppOptions {
  engine: Engine;
  /** Two-phase commit across services (./twopc.ts); its routes are left out without it. */
  twopc?: TwoPcCoordinatorService;
  /** Required on every route but /health when set. */
  token?: string;
  bodyLimitBytes?: number;
  /** The registry `GET /metrics` shows; default a new one, with only the engine's gauges fed. */
  metrics?: ServeMetrics;
  /** Fastify's logger: requests at debug, 500s at error. Default: none. */
  logger?: PinoLogger;
}

const statusByCode: Partial<Record<DtxErrorCode | 'DTX_INTERNAL', number>> = {
  DTX_INVALID_ARGUMENT: 400,
  DTX_INVALID_GID: 400,
  DTX_BAD_MESSAGE: 400,
  DTX_UNSUPPORTED: 400,
  DTX_UNAUTHORIZED: 401,
  DTX_NOT_FOUND: 404,
  DTX_INVALID_STATE: 409,
  DTX_DUPLICATE_GID: 409,
  DTX_RESOURCE_UNAVAILABLE: 503,
  DTX_OUTCOME_UNKNOWN: 503,
  DTX_TIMEOUT: 504,
  DTX_NOT_OWNER: 421,
};

/** Sends a problem document. */
export function problem(
  request: FastifyRequest,
  reply: FastifyReply,
  status: number,
  code: string,
  detail: string,
): FastifyReply {
  const dtm = request.url.startsWith('/api/dtmsvr/');
  return reply
    .code(status)
    .type('application/problem+json')
    .send({
      type: 'about:blank',
      title: code,
      status,
      code,
      detail,
      ...(dtm ? { dtm_result: 'FAILURE', message: detail } : {}),
    });
}

function tokenMatches(header: string | undefined, token: string): boolean {
  const given = Buffer.from(header ?? '');
  const wanted = Buffer.from(`Bearer ${token}`);
  return given.length === wanted.length && timingSafeEqual(given, wanted);
}

export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(options.logger === undefined
      ? { logger: false }
      : { loggerInstance: options.logger as FastifyBaseLogger }),
    // Fastify's own request lines (info) are off: the onResponse hook below logs one line per request at debug.
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: options.bodyLimitBytes ?? serverLimits.bodyBytesMax,
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    return503OnClosing: true,
  });
  const routes: Route[] = [
    ...nativeRoutes(options.engine, options.twopc),
    ...(options.twopc === undefined
      ? []
      : twoPcRoutes(options.twopc, (gid, create) => options.engine.twoPcFor(gid, create))),
    ...dashboardRoutes(options.engine, options.twopc),
    ...dtmRoutes(options.engine),
  ];

  app.addHook('onRequest', async (request, reply) => {
    if (options.token === undefined || request.url === '/health') return;
    // The dashboard's static files hold no data: the page asks for the token itself.
    if (isDashboardAsset(request.method, request.url)) return;
    if (!tokenMatches(request.headers.authorization, options.token)) {
      return problem(request, reply, 401, 'DTX_UNAUTHORIZED', 'a valid bearer token is required').header(
        'www-authenticate',
        'Bearer',
      );
    }
  });

  app.setErrorHandler(
    (
      error: Error & { validation?: unknown; validationContext?: string; statusCode?: number; code?: string },
      request,
      reply,
    ) => {
      if (error.validation !== undefined) {
        return problem(request, reply, 400, 'DTX_BAD_MESSAGE', error.message);
      }
      if (isDtxError(error)) {
        return problem(request, reply, statusByCode[error.code] ?? 500, error.code, error.message);
      }
      if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
        return problem(
          request,
          reply,
          413,
          'DTX_INVALID_ARGUMENT',
          `the body is over ${options.bodyLimitBytes ?? serverLimits.bodyBytesMax} bytes`,
        );
      }
      const status = error.statusCode ?? 500;
      if (status >= 400 && status < 500) {
        // Malformed JSON, an empty JSON body, an unsupported content type.
        return problem(request, reply, status, 'DTX_BAD_MESSAGE', error.message);
      }
      request.log.error({ err: error }, 'request failed');
      return problem(request, reply, 500, 'DTX_INTERNAL', error.message);
    },
  );
  app.setNotFoundHandler((request, reply) =>
    problem(request, reply, 404, 'DTX_NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`),
  );

  app.addHook('onResponse', async (request, reply) => {
    request.log.debug(
      {
        method: request.method,
        url: request.url,
        statusCode: reply.statusCode,
        durationMs: Math.round(reply.elapsedTime),
      },
      'request',
    );
  });

  app.get('/health', async () => ({ status: 'ok', store: options.engine.storeDescription }));
  const metrics = options.metrics ?? new ServeMetrics();
  metrics.readState(() => options.engine.counts());
  app.get('/metrics', async (_request, reply) => {
    const { text, contentType } = await metrics.render();
    return reply.type(contentType).send(text);
  });
  const doc = openApiDocument(routes);
  app.get('/openapi.json', async () => doc);
  registerDashboardAssets(app);
  for (const r of routes) {
    app.route({
      method: r.method,
      url: r.url,
      schema: r.schema,
      // A caller's `traceparent` is the active span context while the route
      // runs: a transaction begun here is its span's child (docs/server.md, "Tracing").
      handler: (request, reply) => withSpan(remoteParent(request.headers), () => r.handler(request, reply)),
    });
  }
  return app;
}
