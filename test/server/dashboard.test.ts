// The dashboard of `dtx serve` in a real browser: Debian's chromium driven by
// playwright-core. A real server (in-process, SQLite store, a token) and a
// real node:http branch service whose `ship` step answers 503 until the test
// tells it to recover. The page is opened, asks for the token, finds the
// stuck saga under "needs attention", shows its timeline; the branch is
// healed and the Retry button clicked; the saga completes long before the
// runtime's own next retry was due. A second stuck saga is abandoned through
// the force dialog, which refuses to act without a reason. A screenshot of
// the stuck saga is taken every run; with DTX_UPDATE_SCREENSHOT=1 it
// replaces docs/img/dashboard.png (otherwise it goes to the temp directory,
// so that a test run leaves the work tree unchanged).
//
// The HTTP-only checks (CSP, the token, the routes in the OpenAPI document)
// run without a browser; the browser test skips, saying so, only where
// /usr/bin/chromium is missing (.ci/run installs it).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { dashboardCsp } from '../../src/server/dashboard.ts';
import { type RunningServer, startServer } from '../../src/server/index.ts';
import { type BranchService, branchService, call, until } from './helpers.ts';

const chromiumPath = '/usr/bin/chromium';
const screenshot =
  process.env.DTX_UPDATE_SCREENSHOT === '1'
    ? resolve(dirname(fileURLToPath(import.meta.url)), '../../docs/img/dashboard.png')
    : join(tmpdir(), `dtx-dashboard-${process.pid}.png`);
const dir = mkdtempSync(join(tmpdir(), 'dtx-serve-dashboard-'));
const token = 'dashboard-token-0123456789';
const auth = { authorization: `Bearer ${token}` };

/**
 * Retries without jitter, each wait four times the last from 100 ms: attempts
 * at 0, 0.1, 0.5, 2.1, 8.5, 34.1 s... The alert (stuck) is raised after 3
 * failures. After the fifth failure the runtime's own next try is 25.6 s away.
 */
const timing = { retryBaseMs: 100, retryFactor: 4, retryCapMs: 60_000, jitter: 0, stuckAfterAttempts: 3 };
const healAfterFailures = 5;
const nextTryAfterMs = 100 * 4 ** (healAfterFailures - 1);

let server: RunningServer;
let svc: BranchService;
let healthy = false;
/** When each failed and each successful call of order-stuck's `ship` came. */
const shipFailedAt: number[] = [];
const shipSuccessAt: number[] = [];

before(async () => {
  svc = await branchService((c) => {
    if (c.path === '/refuse' && c.op === 'action') return { status: 409, body: '{"reason":"out of stock"}' };
    if (c.path === '/lost') return { status: 503, body: '{"reason":"carrier gone"}' };
    if (c.path === '/ship' && !healthy) {
      shipFailedAt.push(Date.now());
      return { status: 503, body: '{"reason":"warehouse down"}' };
    }
    if (c.path === '/ship') shipSuccessAt.push(Date.now());
    return { status: 200 };
  });
  server = await startServer({
    listen: '127.0.0.1:0',
    store: { sqlite: join(dir, 'store.sqlite') },
    token,
    timing,
    httpTimeoutMs: 2000,
  });
});
after(async () => {
  await server?.close();
  await svc?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** The status of a GET of `path` exactly as written, with no token. */
function rawStatus(path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(`${server.url}/`, { path, method: 'GET' }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end();
  });
}

const post = (path: string, body: unknown) => call(server.url, 'POST', path, body, auth);
const step = (name: string, path = name, compensable = true) => ({
  name,
  action: { url: `${svc.url}/${path}` },
  compensation: compensable ? { url: `${svc.url}/${path}-undo` } : null,
});

test('the page and its files need no token, carry a self-only CSP, and nothing else is let past the token', async () => {
  const page = await fetch(`${server.url}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type') ?? '', /^text\/html/);
  const csp = page.headers.get('content-security-policy') ?? '';
  assert.equal(csp, dashboardCsp);
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.match(csp, /connect-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
  const html = await page.text();
  // Nothing from elsewhere, no inline script or style.
  assert.doesNotMatch(html, /https?:\/\//);
  assert.doesNotMatch(html, /<script>|<style|style=/);
  for (const [file, type] of [
    ['dashboard.js', /^text\/javascript/],
    ['dashboard.css', /^text\/css/],
  ] as const) {
    const r = await fetch(`${server.url}/dashboard/${file}`);
    assert.equal(r.status, 200, file);
    assert.match(r.headers.get('content-type') ?? '', type);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff');
  }
  assert.equal((await fetch(`${server.url}/dashboard/other.js`)).status, 401);
  // Sent as is (fetch would normalise the dot segments away).
  assert.equal(await rawStatus('/dashboard/../v1/overview'), 401);
  assert.equal(await rawStatus('/dashboard/%2e%2e/v1/overview'), 401);
  assert.equal((await fetch(`${server.url}/v1/overview`)).status, 401);
  const o = await call(server.url, 'GET', '/v1/overview', undefined, auth);
  assert.equal(o.status, 200);
  assert.ok(Array.isArray(o.json.live) && Array.isArray(o.json.attention) && Array.isArray(o.json.recent));
  const doc = await call(server.url, 'GET', '/openapi.json', undefined, auth);
  assert.ok(doc.json.paths['/v1/overview'].get);
  assert.ok(doc.json.paths['/v1/transactions/{id}/timeline'].get);
  const missing = await call(server.url, 'GET', '/v1/transactions/nope/timeline', undefined, auth);
  assert.equal(missing.status, 404);
  assert.equal(missing.json.code, 'DTX_NOT_FOUND');
});

test('a 2PC transaction shows open, then decided (durable) while COMMIT is unanswered, then all acknowledged', async () => {
  // A participant that votes yes and answers COMMIT only once told to.
  let commitAnswers = false;
  const participant = await branchService((c) => {
    if (c.path === '/p/prepare') return { status: 200, body: '{"vote":"yes"}' };
    if (c.path === '/p/commit') return commitAnswers ? { status: 200 } : { status: 503 };
    return { status: 200 };
  });
  try {
    const phaseIn = async (id: string) => {
      const o = await call(server.url, 'GET', '/v1/overview', undefined, auth);
      return [...o.json.live, ...o.json.recent].find((x: { id: string }) => x.id === id)?.phase;
    };
    const waitPhase = async (id: string, key: string) => {
      const deadline = Date.now() + 20_000;
      for (;;) {
        const p = await phaseIn(id);
        if (p?.key === key) return p;
        assert.ok(Date.now() < deadline, `${id} never showed ${key}: ${JSON.stringify(p)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    assert.equal((await post('/v1/2pc', { id: 'tpc-1' })).status, 201);
    assert.equal((await waitPhase('tpc-1', 'open')).committed, false);
    await post('/v1/2pc/tpc-1/branches', { branch: 'a', url: `${participant.url}/p` });
    const decided = await post('/v1/2pc/tpc-1/commit', {});
    assert.equal(decided.json.state, 'committing');
    const d = await waitPhase('tpc-1', 'decided');
    assert.equal(d.committed, true);
    assert.equal(d.ended, false);
    const t = await call(server.url, 'GET', '/v1/transactions/tpc-1/timeline', undefined, auth);
    assert.equal(t.status, 200);
    assert.equal(t.json.phase.key, 'decided');
    // The forced decision is drawn as the renderer's decision point; the unanswered COMMITs as calls.
    assert.match(t.json.svg, /decision for tpc-1: commit/);
    assert.match(t.json.svg, />CALL prepare</);
    assert.match(t.json.svg, /retry: /);
    commitAnswers = true;
    const done = await waitPhase('tpc-1', 'acknowledged');
    assert.equal(done.ended, true);
  } finally {
    await participant.close();
  }
});

test('in chromium: find the stuck saga, see its timeline, heal the branch, retry it, see it complete; abandon another with a reason', {
  skip: existsSync(chromiumPath)
    ? false
    : `${chromiumPath} is missing (install Debian's chromium: apt-get install chromium); the browser test did not run`,
  timeout: 120_000,
}, async () => {
  const { chromium } = await import('playwright-core');
  // Some company for the stuck sagas: one completed, one compensated.
  await post('/v1/sagas', {
    id: 'order-ok',
    steps: [step('debit'), step('credit')],
    wait: { timeoutMs: 10_000 },
  });
  await post('/v1/sagas', { id: 'order-refused', steps: [step('debit'), step('refuse')] });
  await until(server.url, 'order-refused', (v) => v.state === 'compensated', 20_000, auth);
  // `ship` cannot be undone: it is retried until it succeeds, and reported stuck on the way.
  await post('/v1/sagas', { id: 'order-stuck', steps: [step('pack'), step('ship', 'ship', false)] });
  await post('/v1/sagas', { id: 'order-lost', steps: [step('ship', 'lost', false)] });

  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ['--no-sandbox', '--disable-background-networking'],
  });
  const problems: string[] = [];
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on('console', (m) => {
      // The 401s before the token is given are how the page learns that it needs one.
      if (m.type() === 'error' && !/status of 401/.test(m.text())) problems.push(m.text());
    });
    page.on('pageerror', (e) => problems.push(e.message));
    page.on('request', (r) => {
      if (!r.url().startsWith(server.url)) problems.push(`request elsewhere: ${r.url()}`);
    });
    await page.goto(`${server.url}/`);

    // The API answered 401: the page asks for the token, keeps it in sessionStorage.
    await page.locator('#token-form').waitFor({ state: 'visible' });
    await page.fill('#token-input', token);
    await page.click('#token-form button[type=submit]');
    await page.locator('#token-form').waitFor({ state: 'hidden' });
    assert.equal(await page.evaluate("sessionStorage.getItem('dtx-serve-token')"), token);

    // The stuck saga, under "needs attention", with its reason and age.
    const stuckRow = page.locator('#attention tr[data-id="order-stuck"][data-phase="stuck"]');
    await stuckRow.waitFor({ timeout: 20_000 });
    assert.match((await stuckRow.textContent()) ?? '', /stuck, still retrying/);
    assert.match((await stuckRow.textContent()) ?? '', /failed 3 times/);
    assert.match((await stuckRow.textContent()) ?? '', /\d(\.\d)? s|\d+ ms/);
    await page.locator('#recent tr[data-id="order-ok"][data-phase="completed"]').waitFor();
    await page.locator('#recent tr[data-id="order-refused"][data-phase="compensated"]').waitFor();

    await stuckRow.locator('button').click();
    await page.locator('#detail[data-phase="stuck"]').waitFor();
    assert.match((await page.locator('#detail-durable').textContent()) ?? '', /Not committed/);
    // The timeline: the simulator's renderer, lanes for the server and each branch, the failed calls.
    const svg = page.locator('#timeline svg');
    await svg.waitFor();
    await page.locator('#timeline svg text', { hasText: 'retry: warehouse down' }).first().waitFor();
    const svgText = await svg.textContent();
    for (const lane of ['dtx serve', 'pack', 'ship']) assert.ok(svgText?.includes(lane), lane);
    assert.match(svgText ?? '', /stuck: action/);
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });

    // Heal the branch once its fifth attempt has failed: the runtime's own next try is 25.6 s away.
    const deadline = Date.now() + 30_000;
    while (shipFailedAt.length < healAfterFailures) {
      assert.ok(Date.now() < deadline, `attempt ${healAfterFailures} did not come`);
      await new Promise((r) => setTimeout(r, 10));
    }
    healthy = true;
    await page.click('#retry');
    await page.locator('#detail[data-phase="completed"]').waitFor({ timeout: 20_000 });
    assert.equal(shipFailedAt.length, healAfterFailures);
    assert.equal(shipSuccessAt.length, 1);
    // A timer never fires early: a success before the next try was due is the button's.
    const after = shipSuccessAt[0]! - shipFailedAt.at(-1)!;
    assert.ok(
      after < nextTryAfterMs,
      `the success came ${after} ms after the last failure: not the button's`,
    );
    assert.match((await page.locator('#detail-durable').textContent()) ?? '', /success is durable/);
    await page.locator('#recent tr[data-id="order-stuck"][data-phase="completed"]').waitFor();
    const done = (await call(server.url, 'GET', '/v1/transactions/order-stuck', undefined, auth)).json;
    assert.equal(done.state, 'completed');
    assert.equal(svc.count('order-stuck:ship:action'), healAfterFailures + 1);

    // Abandon: the dialog refuses without a reason and the confirmation; nothing is recorded until both.
    await page.locator('#attention tr[data-id="order-lost"] button').click();
    await page.locator('#detail[data-phase="stuck"]').waitFor();
    await page.click('#abandon-open');
    await page.locator('#force-dialog').waitFor({ state: 'visible' });
    await page.click('#force-submit');
    assert.equal(
      (await call(server.url, 'GET', '/v1/transactions/order-lost', undefined, auth)).json.state,
      'stuck',
    );
    await page.fill('#force-reason', '   ');
    await page.check('#force-confirm');
    await page.click('#force-submit');
    assert.match(
      (await page.locator('#force-error').textContent()) ?? '',
      /reason and the confirmation are required/,
    );
    assert.equal(
      (await call(server.url, 'GET', '/v1/transactions/order-lost', undefined, auth)).json.state,
      'stuck',
    );
    await page.fill('#force-reason', 'the warehouse closed; refunded by hand, ticket 81');
    await page.click('#force-submit');
    await page.locator('#force-dialog').waitFor({ state: 'hidden' });
    await page.locator('#detail[data-phase="abandoned"]').waitFor();
    const lost = (await call(server.url, 'GET', '/v1/transactions/order-lost', undefined, auth)).json;
    assert.equal(lost.state, 'abandoned');
    assert.match(lost.reason, /ticket 81/);
    await page.locator('#attention tr[data-id="order-lost"][data-phase="abandoned"]').waitFor();
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});
