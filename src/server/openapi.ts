// A small OpenAPI 3.1 generator: the document at `/openapi.json` is built from
// the same route table and TypeBox schemas Fastify validates with (./app.ts),
// so what it says is what is enforced. OpenAPI 3.1 takes JSON Schema as is.

import type { TSchema } from '@sinclair/typebox';
import type { Route } from './app.ts';

/** A schema as plain JSON (TypeBox marks its objects with symbols, which JSON drops). */
function plain(schema: TSchema): unknown {
  return JSON.parse(JSON.stringify(schema));
}

function parameters(schema: TSchema | undefined, where: 'path' | 'query'): unknown[] {
  if (schema === undefined) return [];
  const props = (schema as { properties?: Record<string, TSchema> }).properties ?? {};
  const required = new Set((schema as { required?: string[] }).required ?? []);
  return Object.entries(props).map(([name, s]) => ({
    name,
    in: where,
    required: where === 'path' || required.has(name),
    schema: plain(s),
  }));
}

const problemResponse = {
  description: 'An error: a problem document with a stable `code`',
  content: { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
};

export function openApiDocument(routes: readonly Route[]): unknown {
  const paths: Record<string, Record<string, unknown>> = {
    '/health': {
      get: { summary: 'Liveness; needs no token', security: [], responses: { 200: { description: 'ok' } } },
    },
    '/metrics': {
      get: {
        summary: 'Prometheus metrics (text exposition format); needs the token like every route',
        responses: {
          200: { description: 'the metrics', content: { 'text/plain': { schema: { type: 'string' } } } },
          default: problemResponse,
        },
      },
    },
  };
  for (const r of routes) {
    const path = r.url.replace(/:([A-Za-z]+)/g, '{$1}');
    paths[path] ??= {};
    paths[path][r.method.toLowerCase()] = {
      summary: r.summary,
      parameters: [...parameters(r.schema.params, 'path'), ...parameters(r.schema.querystring, 'query')],
      ...(r.schema.body === undefined
        ? {}
        : {
            requestBody: {
              required: true,
              content: { 'application/json': { schema: plain(r.schema.body) } },
            },
          }),
      responses: {
        200: { description: 'done' },
        202: { description: 'accepted, not ended yet' },
        default: problemResponse,
      },
    };
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'dtx serve',
      version: '1',
      description:
        'The dtx coordinator over HTTP: native API v1 and DTM-compatible endpoints. See docs/server.md.',
    },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: {
        Problem: {
          type: 'object',
          properties: {
            type: { type: 'string' },
            title: { type: 'string' },
            status: { type: 'integer' },
            code: { type: 'string', description: 'A stable DtxError code' },
            detail: { type: 'string' },
          },
          required: ['status', 'code', 'detail'],
        },
      },
    },
    security: [{ bearer: [] }],
    paths,
  };
}
