// OpenTelemetry spans, through `@opentelemetry/api` only, which is an
// optional peer dependency: when it is not installed every function here is
// a no-op and dtx runs as before; when it is installed but no tracer provider
// is registered, no span is started at all (the parent's context is passed
// along, as the API's no-op tracer would), so spans cost next to nothing.
// The program that links dtx chooses the SDK, the exporter and the
// propagator (the W3C one sends `traceparent`), as OpenTelemetry intends.
//
// The spans (docs/operations.md, "Tracing"):
// - one per transaction: `dtx.2pc` (one attempt of `transaction()`),
//   `dtx.saga`, `dtx.tcc`, from its start to its end, a child of the span
//   active where it was started;
// - one per branch call, a child of its transaction's: `dtx.branch.<op>`
//   (`prepare`, `commit`, `rollback`; `action`, `compensation`; `try`,
//   `confirm`, `cancel`), active while the call runs, so that an HTTP
//   branch's request carries its `traceparent` (../adapters/http-branch.ts)
//   and a local branch function's own spans are its children.
//
// The API is loaded with `require` (it ships CommonJS next to ESM, and keeps
// its registrations on a global, so both halves see one provider): loading
// stays synchronous and a missing package is a caught error, not a failed
// import of dtx.

import { createRequire } from 'node:module';

/** The part of `@opentelemetry/api` used here (typed locally: the package may be absent). */
interface OtelSpan {
  setAttributes(attributes: Attributes): unknown;
  setStatus(status: { code: number; message?: string }): unknown;
  recordException(exception: Error | string): unknown;
  end(): void;
}
interface OtelTracer {
  startSpan(name: string, options: { attributes?: Attributes; kind?: number }, context: unknown): OtelSpan;
}
interface OtelTracerProvider {
  getTracer(name: string): OtelTracer;
  /** On the API's proxy provider (the registered one): the registered SDK's tracer, undefined when none is. */
  getDelegateTracer?(name: string): OtelTracer | undefined;
}
interface OtelApi {
  trace: {
    getTracerProvider(): OtelTracerProvider;
    setSpan(context: unknown, span: OtelSpan): unknown;
    getSpanContext(context: unknown): unknown;
  };
  context: {
    active(): unknown;
    with<T>(context: unknown, fn: () => T): T;
  };
  propagation: {
    inject(context: unknown, carrier: Record<string, string>): void;
    extract(context: unknown, carrier: Record<string, string>): unknown;
  };
  ROOT_CONTEXT: unknown;
}

export type Attributes = Record<string, string | number | boolean>;

const spanKindInternal = 0;
const spanKindClient = 2;
const statusError = 2;

let api: OtelApi | null | undefined;

/** The API, or null when `@opentelemetry/api` is not installed (looked up once). */
function otel(): OtelApi | null {
  if (api === undefined) {
    try {
      api = createRequire(import.meta.url)('@opentelemetry/api') as OtelApi;
    } catch {
      api = null;
    }
  }
  return api;
}

/**
 * The tracer dtx's spans start on, or null when no tracer provider is
 * registered: the API's proxy then has no delegate, and its no-op tracer
 * would only make a non-recording span that carries the parent's span
 * context (none under `'root'`), which the parent's context carries already.
 * Asked at every span, so a provider registered later is used at once.
 */
function tracer(o: OtelApi): OtelTracer | null {
  const provider = o.trace.getTracerProvider();
  if (provider.getDelegateTracer === undefined) return provider.getTracer('dtx');
  return provider.getDelegateTracer('dtx') ?? null;
}

const endNothing = (): void => undefined;

/** A context a span can be started under: a dtx span's, or a caller's from its trace headers. */
export interface SpanParent {
  readonly context: unknown;
}

/** A started span and the context in which it is the active one. */
export interface SpanHandle extends SpanParent {
  /** Ends the span with final attributes; `error` marks it failed. */
  end(attributes?: Attributes, error?: unknown): void;
}

/**
 * Starts a span named `name`, a child of `parent` (another dtx span), else
 * of the span active now; `'root'` starts a new trace. Undefined without the API.
 */
export function startSpan(
  name: string,
  attributes: Attributes,
  parent?: SpanParent | 'root',
  kind: 'internal' | 'client' = 'internal',
): SpanHandle | undefined {
  const o = otel();
  if (o === null) return undefined;
  const parentContext =
    parent === 'root' ? o.ROOT_CONTEXT : parent === undefined ? o.context.active() : parent.context;
  const t = tracer(o);
  // No tracer: nothing to record, and the parent's context propagates as the no-op span's would.
  if (t === null) return { context: parentContext, end: endNothing };
  const span = t.startSpan(
    name,
    { attributes, kind: kind === 'client' ? spanKindClient : spanKindInternal },
    parentContext,
  );
  const context = o.trace.setSpan(parentContext, span);
  let ended = false;
  return {
    context,
    end(final, error) {
      if (ended) return;
      ended = true;
      if (final !== undefined) span.setAttributes(final);
      if (error !== undefined && error !== null && error !== false) {
        const message = error instanceof Error ? error.message : String(error);
        if (error instanceof Error) span.recordException(error);
        span.setStatus({ code: statusError, message });
      }
      span.end();
    },
  };
}

/** Runs `fn` with `span` (or a remote parent) active (as is, without one or without the API). */
export function withSpan<T>(span: SpanParent | undefined, fn: () => T): T {
  const o = otel();
  if (o === null || span === undefined) return fn();
  return o.context.with(span.context, fn);
}

/**
 * The trace headers (`traceparent`, `tracestate`, ...) the registered
 * propagator writes for the active span, without any that `given` already
 * has (a caller's own `traceparent` wins). Empty without the API.
 */
export function traceHeaders(given: Readonly<Record<string, string>> = {}): Record<string, string> {
  const o = otel();
  if (o === null) return {};
  const carrier: Record<string, string> = {};
  o.propagation.inject(o.context.active(), carrier);
  const taken = new Set(Object.keys(given).map((k) => k.toLowerCase()));
  for (const k of Object.keys(carrier)) if (taken.has(k.toLowerCase())) delete carrier[k];
  return carrier;
}

/** The trace headers the W3C Trace Context names a caller's span with. */
const traceHeaderNames = ['traceparent', 'tracestate'] as const;

/**
 * The caller's span named by its trace headers (`traceparent`, `tracestate`;
 * names lower-case, as Node gives them), read by the registered propagator,
 * as a parent for `startSpan` / `withSpan`. Undefined without the API, without
 * a `traceparent`, or when the propagator finds no valid span context in it
 * (a malformed header is ignored, as the W3C recommendation asks).
 */
export function remoteParent(
  headers: Readonly<Record<string, string | readonly string[] | undefined>> | undefined,
): SpanParent | undefined {
  const o = otel();
  if (o === null || headers === undefined) return undefined;
  const carrier: Record<string, string> = {};
  for (const name of traceHeaderNames) {
    const value = headers[name];
    const one = typeof value === 'string' ? value : value?.[0];
    if (one !== undefined) carrier[name] = one;
  }
  if (carrier.traceparent === undefined) return undefined;
  const context = o.propagation.extract(o.ROOT_CONTEXT, carrier);
  return o.trace.getSpanContext(context) === undefined ? undefined : { context };
}

/**
 * The trace headers of the span active now, to keep with a transaction so
 * that its span can be parented the same way after a restart; undefined when
 * there is none (or no API).
 */
export function activeTraceHeaders(): Record<string, string> | undefined {
  const carrier = traceHeaders();
  const kept: Record<string, string> = {};
  for (const name of traceHeaderNames) if (carrier[name] !== undefined) kept[name] = carrier[name];
  return kept.traceparent === undefined ? undefined : kept;
}
