// The real OpenTelemetry SDK, registered for a test process the way a program
// that links dtx would: a tracer provider exporting to memory, the async-hooks
// context manager, and the W3C propagator (which writes and reads
// `traceparent`). Tests read the finished spans from the exporter.

import { context, propagation, trace } from '@opentelemetry/api';
import { AsyncHooksContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

/** Registers the SDK globally; `disable()` unregisters it (call it after the tests). */
export function registerTestTracing(): { exporter: InMemorySpanExporter; disable(): void } {
  const exporter = new InMemorySpanExporter();
  trace.setGlobalTracerProvider(
    new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
  );
  context.setGlobalContextManager(new AsyncHooksContextManager().enable());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
  return {
    exporter,
    disable() {
      trace.disable();
      context.disable();
      propagation.disable();
    },
  };
}
