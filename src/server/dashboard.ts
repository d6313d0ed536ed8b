// The dashboard of `dtx serve`: a static page (./dashboard/: HTML, CSS and a
// small vanilla script, shipped in the package next to this module) served
// at `/` and `/dashboard/*` under a strict Content-Security-Policy, and the
// two JSON routes it reads besides the native API:
//
// - `GET /v1/overview`: every transaction not ended, the ones that need an
//   operator (stuck, in doubt, ended by hand) and the latest ended, each
//   with its phase (./phases.ts) and age;
// - `GET /v1/transactions/:id/timeline`: one transaction's records and
//   branch calls, as trace events and as the SVG the simulator's renderer
//   draws from them (./timeline.ts).
//
// The page itself holds no data and needs no token; it asks for one when the
// API answers 401 and sends it as a bearer token on its own requests.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Static, Type } from '@sinclair/typebox';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { renderTraceSvg } from '../render/trace.ts';
import { traceStyle } from '../render/trace-style.ts';
import type { Route } from './app.ts';
import { type Engine, newestFirst, type TxnView } from './engine.ts';
import { type Phase, type PhaseInput, phaseOf, twoPcProgressOf } from './phases.ts';
import { IdParams } from './schemas.ts';
import { timelineEvents, timelineSvg } from './timeline.ts';
import type { TwoPcCoordinatorService, TwoPcView } from './twopc.ts';

export const dashboardLimits = {
  /** Transactions not ended listed by the overview (newest first). */
  liveMax: 200,
  /** Ended transactions listed by the overview (newest first). */
  recentMax: 25,
  /** Transactions needing attention listed by the overview (oldest first: the longest waiting on top). */
  attentionMax: 200,
  /**
   * An overview is reused this long: building one reads every view the store
   * holds, and every open page asks for one every two seconds.
   */
  overviewReuseMs: 1000,
} as const;

/** The files of the page, by the name it is served under, with their types. */
const assets: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'dashboard.css': 'text/css; charset=utf-8',
  'dashboard.js': 'text/javascript; charset=utf-8',
};

const sha256 = (text: string) => `'sha256-${createHash('sha256').update(text).digest('base64')}'`;

/**
 * The inline styles of the timeline's SVG: its stylesheet and the few style
 * attributes of its legend. Constants of the renderer, not data: read from a
 * picture of nothing, so that they follow the renderer if it changes.
 */
const timelineStyles = [
  sha256(traceStyle),
  "'unsafe-hashes'",
  ...new Set(
    [...renderTraceSvg([], { title: '' }).matchAll(/ style="([^"]*)"/g)].map((m) => sha256(m[1] ?? '')),
  ),
];

/** Self only, but for the timeline's own inline styles, allowed by their hashes. */
export const dashboardCsp = [
  "default-src 'none'",
  "script-src 'self'",
  `style-src 'self' ${timelineStyles.join(' ')}`,
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The page's requests that need no token: the static files, which hold no data. */
export function isDashboardAsset(method: string, url: string): boolean {
  const path = url.split('?')[0] ?? '';
  if (method !== 'GET' && method !== 'HEAD') return false;
  // Exact names only: a prefix would let `/dashboard/../v1/...` past the token check.
  return path === '/' || (path.startsWith('/dashboard/') && Object.hasOwn(assets, path.slice(11)));
}

/** An overview row: the transaction's summary with its phase and age. */
export interface OverviewItem {
  id: string;
  type: string | null;
  state: string;
  phase: Phase;
  startedAt: string | null;
  /** Since its first record, in ms (null when the store keeps no times). */
  ageMs: number | null;
  reason: string | null;
}

/** A view's phase; a 2PC view's from its votes, durable decision and acknowledgements. */
export function phaseOfView(v: TxnView | TwoPcView): Phase {
  return v.type === '2pc'
    ? phaseOf({ type: '2pc', state: v.state, twoPc: twoPcProgressOf(v) })
    : phaseOf(v as PhaseInput);
}

function item(v: TxnView | TwoPcView, nowMs: number): OverviewItem {
  const started = v.startedAt === null ? Number.NaN : Date.parse(v.startedAt);
  return {
    id: v.id,
    type: v.type,
    state: v.state,
    phase: phaseOfView(v),
    startedAt: v.startedAt,
    ageMs: Number.isFinite(started) ? Math.max(0, nowMs - started) : null,
    reason: v.reason,
  };
}

/** What the dashboard's front page shows. */
export async function overview(engine: Engine, nowMs: number, twopc?: TwoPcCoordinatorService) {
  const views: (TxnView | TwoPcView)[] = [...(await engine.list({})), ...(twopc?.views() ?? [])];
  views.sort(newestFirst);
  const all = views.map((v) => item(v, nowMs));
  const live = all.filter((x) => !x.phase.ended);
  const ended = all.filter((x) => x.phase.ended);
  const attention = all
    .filter((x) => x.phase.attention !== null)
    .sort((a, b) => (b.ageMs ?? 0) - (a.ageMs ?? 0));
  const counts: Record<string, number> = {};
  for (const x of all) counts[x.phase.key] = (counts[x.phase.key] ?? 0) + 1;
  return {
    now: new Date(nowMs).toISOString(),
    total: all.length,
    counts,
    attention: attention.slice(0, dashboardLimits.attentionMax),
    live: live.slice(0, dashboardLimits.liveMax),
    liveTotal: live.length,
    recent: ended.slice(0, dashboardLimits.recentMax),
  };
}

export function dashboardRoutes(engine: Engine, twopc?: TwoPcCoordinatorService): Route[] {
  let last: { atMs: number; overview: ReturnType<typeof overview> } | null = null;
  const recentOverview = () => {
    const now = Date.now();
    if (last === null || now - last.atMs >= dashboardLimits.overviewReuseMs) {
      const built = overview(engine, now, twopc);
      last = { atMs: now, overview: built };
      // A failed build is not reused.
      built.catch(() => {
        if (last?.overview === built) last = null;
      });
    }
    return last.overview;
  };
  return [
    {
      method: 'GET',
      url: '/v1/overview',
      summary:
        'The dashboard: transactions not ended, those needing an operator (stuck, in doubt, ended by hand) and the latest ended, each with its phase and age',
      schema: { querystring: Type.Object({}, { additionalProperties: false }) },
      handler: async () => recentOverview(),
    },
    {
      method: 'GET',
      url: '/v1/transactions/:id/timeline',
      summary:
        "One transaction's records and the branch calls this process made, as trace events (ms since its start) and as an SVG space-time picture",
      schema: { params: IdParams },
      handler: async (request) => {
        const { id } = request.params as Static<typeof IdParams>;
        const tpc = twopc?.knows(id) === true;
        const view = tpc ? twopc!.view(id) : await engine.view(id);
        const { calls, dropped } = (tpc ? twopc!.calls : engine.calls).of(id);
        const input = { id, records: view.records, calls, callsDropped: dropped };
        const now = Date.now();
        const { events, t0Ms } = timelineEvents(input, now);
        return {
          id,
          phase: phaseOfView(view),
          t0: new Date(t0Ms).toISOString(),
          events,
          callsDropped: dropped,
          svg: timelineSvg(input, now),
        };
      },
    },
  ];
}

/** Serves the page at `/` and its files at `/dashboard/<name>`, read once from ./dashboard/. */
export function registerDashboardAssets(app: FastifyInstance): void {
  const dir = new URL('./dashboard/', import.meta.url);
  const files = new Map<string, Buffer>();
  for (const name of Object.keys(assets)) files.set(name, readFileSync(new URL(name, dir)));
  const send = (name: string) => async (_request: unknown, reply: FastifyReply) =>
    reply
      .header('content-security-policy', dashboardCsp)
      .header('x-content-type-options', 'nosniff')
      .header('referrer-policy', 'no-referrer')
      .header('cache-control', 'no-cache')
      .type(assets[name]!)
      .send(files.get(name));
  app.get('/', send('index.html'));
  for (const name of Object.keys(assets)) app.get(`/dashboard/${name}`, send(name));
}
