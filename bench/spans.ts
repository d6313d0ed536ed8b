// What OpenTelemetry spans cost the runtime when `@opentelemetry/api` is
// installed but no tracer provider is registered (no span is started then):
// per transaction with one branch call, two spans, one context switch for
// the call and one `traceparent` injection, as src/runtime/otel.ts does them.
// Compare with the milliseconds of a forced log write per transaction.
//
// Run: node --import tsx bench/spans.ts [--n 200000]

import { startSpan, traceHeaders, withSpan } from '../src/runtime/otel.ts';

const at = process.argv.indexOf('--n');
const n = at > 0 ? Number(process.argv[at + 1]) : 200_000;
for (let round = 1; round <= 3; round++) {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const txn = startSpan('dtx.saga', { 'dtx.transaction.id': 'x', 'dtx.transaction.type': 'saga' });
    const call = startSpan('dtx.branch.action', { 'dtx.branch.id': 'a' }, txn, 'client');
    withSpan(call, () => traceHeaders({}));
    call?.end({ 'dtx.branch.status': 'success' });
    txn?.end({ 'dtx.transaction.outcome': 'completed' });
  }
  const ns = Number(process.hrtime.bigint() - t0) / n;
  console.log(`round ${round}: ${ns.toFixed(0)} ns per transaction with one branch call (no provider)`);
}
