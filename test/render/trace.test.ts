// Space-time pictures of simulated runs (src/render/trace.ts): the documents
// are well-formed, draw what the trace holds (a lane per node, lost messages,
// crashes, folded repeats, squeezed gaps), escape text, stay small on big
// runs, and focus on one transaction when asked.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  renderTraceHtml,
  renderTraceSvg,
  TraceFileError,
  traceDefaults,
  traceFileFor,
} from '../../src/render/trace.ts';
import type { TraceEvent } from '../../src/sim/commit-world.ts';
import { runSim } from '../../src/sim/run.ts';

/**
 * A tiny XML well-formedness check: tags balance, attributes are quoted, and
 * no raw `<` or unescaped `&` is left in text or attribute values.
 */
function assertWellFormed(doc: string): void {
  const body = doc.replace(/^<\?xml[^>]*\?>/, '').replace(/^<!doctype html>/i, '');
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  const voidHtml = new Set(['meta']);
  let i = 0;
  let text = '';
  while (i < body.length) {
    const lt = body.indexOf('<', i);
    text += lt < 0 ? body.slice(i) : body.slice(i, lt);
    if (lt < 0) break;
    tag.lastIndex = lt;
    const m = tag.exec(body);
    assert.ok(m !== null, `malformed tag at ${lt}: ${body.slice(lt, lt + 80)}`);
    const [, close, name, attrs, selfClose] = m;
    for (const v of attrs!.matchAll(/="([^"]*)"/g))
      assert.doesNotMatch(v[1]!, /&(?!amp;|lt;|gt;|quot;|#\d+;)/, `unescaped & in attribute ${v[1]}`);
    if (close === '/') assert.equal(stack.pop(), name, `</${name}> closes the wrong element`);
    else if (selfClose !== '/' && !voidHtml.has(name!)) stack.push(name!);
    i = tag.lastIndex;
  }
  assert.deepEqual(stack, [], 'unclosed elements');
  assert.doesNotMatch(text, /&(?!amp;|lt;|gt;|quot;|#\d+;)/, 'unescaped & in text');
  assert.doesNotMatch(text, />/, 'raw > in text');
}

const elementCount = (doc: string) => (doc.match(/<[A-Za-z]/g) ?? []).length;
const laneNames = (svg: string) => [...svg.matchAll(/class="hdrt">([^<]*)</g)].map((m) => m[1]);
const labelTexts = (svg: string) => [...svg.matchAll(/<text [^>]*>([^<]*)<\/text>/g)].map((m) => m[1]!);
/** `texts` has `want` (with a message: a bare assert.ok makes node re-parse the transpiled source). */
function hasLabel(texts: string[], want: string): void {
  assert.ok(texts.includes(want), `no label "${want}" among ${JSON.stringify(texts)}`);
}

const happy = runSim({ protocol: '2pc', workload: 'toy', txns: 3, seed: 1, trace: true });
const crash = runSim({
  protocol: '2pc',
  workload: 'toy',
  txns: 5,
  seed: 1,
  failRates: [0, 0, 0],
  scenario: { kind: 'coordinator-crash', downtimeMs: 5000 },
  trace: true,
});

test('the SVG and the HTML page are well-formed and self-contained', () => {
  const svg = renderTraceSvg(happy.trace!, { title: '2pc happy path' });
  assert.match(svg, /^<\?xml version="1.0" encoding="UTF-8"\?>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assertWellFormed(svg);
  const html = renderTraceHtml(happy.trace!, { title: '2pc happy path' });
  assert.match(html, /^<!doctype html>/);
  assertWellFormed(html);
  assert.match(html, /<table class="legend">/);
  assert.ok(html.includes('<svg xmlns="http://www.w3.org/2000/svg"'), 'the page holds the SVG inline');
  // No external resources: no src, no href, no url() other than the in-document markers.
  assert.doesNotMatch(html, /\ssrc=|\shref=|url\((?!#)/);
  assert.doesNotMatch(svg, /\ssrc=|\shref=|url\((?!#)/);
});

test('one lane per node of the trace, and labelled messages, records and decisions', () => {
  const svg = renderTraceSvg(happy.trace!, { title: 'lanes' });
  const nodes = new Set<string>();
  for (const e of happy.trace!) {
    if (e.kind === 'send') {
      nodes.add(e.from);
      nodes.add(e.to);
    } else if ('node' in e) nodes.add(e.node);
  }
  const lanes = laneNames(svg);
  // Each lane is labelled at the top and the bottom.
  assert.deepEqual([...new Set(lanes)].sort(), [...nodes].sort());
  assert.deepEqual([...new Set(lanes)], ['client', 'coord', 'A', 'B', 'C']);
  const texts = labelTexts(svg);
  for (const want of [
    'PREPARE t1',
    'VOTE t3 yes',
    'COMMIT t2',
    'prepared t1',
    't1 decided: commit',
    't3: committed',
  ])
    assert.ok(texts.includes(want), `missing label ${want}`);
  // A failed write (toy default fail rates; seed 2 fails C's prepared t3) is drawn red and said.
  const failing = renderTraceSvg(
    runSim({ protocol: '2pc', workload: 'toy', txns: 3, seed: 2, trace: true }).trace!,
    { title: 'a failed write' },
  );
  hasLabel(labelTexts(failing), 'prepared t3: write failed');
  assert.match(failing, /class="rec-fail"/);
  assert.match(svg, /class="rec-force"/);
  assert.match(svg, /class="rec-lazy"/);
  assert.match(svg, /class="lock"/);
  assert.match(svg, /class="rm-prepared"/);
  assert.match(svg, /class="rm-committed"/);
});

test('lanes come from the events: other protocols may have other nodes', () => {
  const trace: TraceEvent[] = [
    { t: 0, kind: 'send', from: 'leader', to: 'acc1', msg: 'PHASE2A t1', arrive: 0.5, dup: false },
    { t: 0.5, kind: 'send', from: 'acc1', to: 'P', msg: 'PHASE2B t1', arrive: 1, dup: false },
    { t: 1, kind: 'rm', node: 'P', txn: 't1', state: 'committed' },
  ];
  const svg = renderTraceSvg(trace, { title: 'paxos-ish' });
  assertWellFormed(svg);
  assert.deepEqual([...new Set(laneNames(svg))], ['leader', 'acc1', 'P']);
});

test('dropped messages, duplicates, crashes, restarts and downtime are marked', () => {
  const trace: TraceEvent[] = [
    { t: 0, kind: 'send', from: 'coord', to: 'A', msg: 'PREPARE t1', arrive: null, dup: false },
    { t: 0, kind: 'send', from: 'coord', to: 'B', msg: 'PREPARE t1', arrive: 0.5, dup: false },
    { t: 0, kind: 'send', from: 'coord', to: 'B', msg: 'PREPARE t1', arrive: 0.7, dup: true },
    { t: 1, kind: 'crash', node: 'B' },
    { t: 1.2, kind: 'send', from: 'coord', to: 'B', msg: 'PREPARE t1', arrive: 1.7, dup: false },
    { t: 40, kind: 'restart', node: 'B' },
  ];
  const svg = renderTraceSvg(trace, { title: 'faults' });
  assertWellFormed(svg);
  // Two lost messages: one dropped by the network, one arriving at a down node.
  assert.equal((svg.match(/class="lost"/g) ?? []).length, 2);
  assert.match(svg, /lost in the network/);
  assert.match(svg, /while B was down/);
  assert.match(svg, /class="m m-proto dup"/);
  assert.match(svg, /class="crash"/);
  assert.match(svg, /class="restart"/);
  assert.match(svg, /class="down"/);
  hasLabel(labelTexts(svg), 'B crashes (down 39 ms)');
  hasLabel(labelTexts(svg), 'B restarts');
  // A clean run has none of it.
  const clean = renderTraceSvg(happy.trace!, { title: 'clean' });
  assert.doesNotMatch(clean, /class="lost"|class="crash"|class="down"/);
});

test('text placed in the document is escaped', () => {
  const trace: TraceEvent[] = [
    { t: 0, kind: 'send', from: 'c<o>&rd', to: 'A\'"', msg: 'PREPARE <t&1> "x"', arrive: 0.5, dup: false },
    { t: 1, kind: 'persist', node: 'A\'"', record: 'prepared <t&1>', force: true, ok: true },
    { t: 1, kind: 'rm', node: 'A\'"', txn: '<t&1>', state: 'prepared' },
  ];
  for (const doc of [
    renderTraceSvg(trace, { title: '<script>alert("&")</script>' }),
    renderTraceHtml(trace, { title: '<script>alert("&")</script>' }),
  ]) {
    assertWellFormed(doc);
    for (const raw of ['<script>', '<t&1>', 'c<o>&rd'])
      assert.ok(!doc.includes(raw), `raw ${raw} in the document`);
    for (const escaped of [
      '&lt;script&gt;alert(&quot;&amp;&quot;)&lt;/script&gt;',
      'PREPARE &lt;t&amp;1&gt; &quot;x&quot;',
      'c&lt;o&gt;&amp;rd',
      'A&#39;&quot;',
    ])
      assert.ok(doc.includes(escaped), `${escaped} missing`);
  }
});

test('a big run stays small: the element cap holds and the caption says what was cut', () => {
  const big = runSim({ protocol: '2pc', workload: 'toy', txns: 5000, seed: 2, loss: 0.02, trace: true });
  const trace = big.trace!;
  assert.ok(trace.length > 50_000, String(trace.length));
  // The whole run asked for: capped.
  const all = renderTraceSvg(trace, { title: 'everything', from: 0 });
  assertWellFormed(all);
  assert.ok(all.length < 400_000, `${all.length} bytes`);
  assert.ok(elementCount(all) < traceDefaults.maxEvents * 5, `${elementCount(all)} elements`);
  assert.match(all, /Element cap: only the first 600 of these [\d,]+ events are drawn/);
  // A smaller cap draws less.
  const small = renderTraceSvg(trace, { title: 'capped', from: 0, maxEvents: 50 });
  assert.ok(elementCount(small) < 400, `${elementCount(small)} elements`);
  assert.match(small, /only the first 50 of these/);
  // By default: the first few transactions.
  const first = renderTraceSvg(trace, { title: 'default' });
  assert.match(first, /The first 5 of 5000 transactions/);
  assert.ok(first.length < 200_000, `${first.length} bytes`);
  const txns = new Set(labelTexts(first).flatMap((s) => s.match(/\bt\d+\b/g) ?? []));
  assert.ok(txns.has('t1') && !txns.has('t100'), [...txns].join(' '));
});

test('focusTxn draws one transaction and the crashes during it', () => {
  const svg = renderTraceSvg(crash.trace!, { title: 'focus', focusTxn: 't1' });
  assertWellFormed(svg);
  const texts = labelTexts(svg);
  hasLabel(texts, 'PREPARE t1');
  hasLabel(texts, 't1 decided: abort');
  hasLabel(texts, 'coord crashes (down 5.00 s)');
  hasLabel(texts, 'coord restarts');
  for (const s of texts) assert.doesNotMatch(s, /\bt[2-5]\b/, `another transaction drawn: ${s}`);
  assert.match(svg, /Transaction t1 only/);
  // t1 is not t10: a token match, not a substring one.
  const many = runSim({ protocol: '2pc', workload: 'toy', txns: 12, seed: 4, trace: true });
  const t1 = renderTraceSvg(many.trace!, { title: 'focus t1', focusTxn: 't1' });
  hasLabel(labelTexts(t1), 'PREPARE t1');
  for (const s of labelTexts(t1)) assert.doesNotMatch(s, /\bt1\d\b/);
  const t10 = renderTraceSvg(many.trace!, { title: 'focus t10', focusTxn: 't10' });
  hasLabel(labelTexts(t10), 'PREPARE t10');
  for (const s of labelTexts(t10)) assert.doesNotMatch(s, /\bt1\b/);
  // An unknown transaction: an empty picture that says so.
  const none = renderTraceSvg(crash.trace!, { title: 'none', focusTxn: 't999' });
  assertWellFormed(none);
  assert.match(none, /No event of transaction t999 in this trace/);
});

test('long blocking is squeezed and repeated inquiries folded', () => {
  const svg = renderTraceSvg(crash.trace!, { title: 'crash', focusTxn: 't1' });
  // The last vote was delivered: the coordinator crashed in the step it started.
  assert.equal(labelTexts(svg).filter((s) => s === 'VOTE t1 yes').length, 3);
  // The 5 s downtime is a band, not 5 s at the message scale.
  const height = Number(/height="(\d+)"/.exec(svg)![1]);
  assert.ok(height < 2000, String(height));
  hasLabel(labelTexts(svg), '+4.90 s');
  // 101 inquiries from each of A, B and C: the first two and last two of each are drawn.
  const note = '291 more × INQUIRY t1 (A, B, C → coord, every ~50 ms, all lost)';
  assert.ok(
    labelTexts(svg).some((s) => s.includes(note)),
    note,
  );
  assert.equal(labelTexts(svg).filter((s) => s === 'INQUIRY t1 (lost)').length, 9);
  assert.equal(labelTexts(svg).filter((s) => s === 'INQUIRY t1').length, 3);
  assert.match(svg, /Drawn: \d+ events\./);
  // The lock bars cross squeezed gaps, so they say how long they were held.
  hasLabel(labelTexts(svg), 't1 held 5.05 s');
});

test('a time window draws the events within it', () => {
  const svg = renderTraceSvg(happy.trace!, { title: 'window', from: 7, to: 12 });
  assertWellFormed(svg);
  const texts = labelTexts(svg);
  hasLabel(texts, 'PREPARE t2');
  for (const s of texts) assert.doesNotMatch(s, /^PREPARE t[13]$/);
  assert.match(svg, /Time window 7\.00 ms to 12\.0 ms/);
});

test('traceFileFor tells the format by extension, and rejects others with a typed error', () => {
  assert.equal(traceFileFor('out.svg'), 'svg');
  assert.equal(traceFileFor('/tmp/x.y/run.SVG'), 'svg');
  assert.equal(traceFileFor('run.html'), 'html');
  assert.equal(traceFileFor('C:\\runs\\run.htm'), 'html');
  for (const bad of ['run.png', 'run', '.svg', 'svg', 'dir.svg/run', 'run.svg.gz']) {
    assert.throws(
      () => traceFileFor(bad),
      (e: unknown) =>
        e instanceof TraceFileError &&
        e.code === 'DTX_TRACE_FILE' &&
        e.path === bad &&
        e.message.includes('.svg') &&
        e.message.includes('.html'),
      bad,
    );
  }
});
