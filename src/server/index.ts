// `dtx serve` as a function: open the store, recover, listen. The CLI
// (src/cli/commands/serve.ts) parses flags and calls `startServer`; tests
// call it in-process too.

import { isIP } from 'node:net';
import type { Logger as PinoLogger } from 'pino';
import { DtxError, isDtxError } from '../errors.ts';
import { assert } from '../protocol/common/assert.ts';
import type { SagaConfig } from '../protocol/saga/types.ts';
import { buildApp } from './app.ts';
import { checkServerId, defaultServerId } from './cluster.ts';
import { Engine } from './engine.ts';
import { serverLimits } from './limits.ts';
import { createServerLogger, type LogLevel, logEvents } from './logging.ts';
import { ServeMetrics } from './metrics.ts';
import { type StoreLocation, serveOwner } from './store.ts';
import { ServeTelemetry } from './telemetry.ts';
import { TwoPcCoordinatorService } from './twopc.ts';

export { defaultStorePath, parseStore, type StoreLocation } from './store.ts';

export interface ServeOptions {
  /** `HOST:PORT`; default 127.0.0.1:36790. A non-loopback host needs a token. */
  listen?: string;
  store: StoreLocation;
  /** The bearer token every route but /health requires. */
  token?: string;
  bodyLimitBytes?: number;
  timing?: Partial<Omit<SagaConfig, 'incarnation'>>;
  httpTimeoutMs?: number;
  /** The log: a pino logger, else one at `logLevel` on stdout. Default level `silent` (the CLI's is `info`). */
  logger?: PinoLogger;
  logLevel?: LogLevel;
  /**
   * This server's id among several on one PostgreSQL store (docs/server.md,
   * "Several servers"): `[A-Za-z0-9][A-Za-z0-9_.-]{0,47}`. Default: the host
   * name and the port. Ignored for a SQLite store (one server per store).
   */
  serverId?: string;
  /** PostgreSQL store: the owner leases' ttl (ms): how soon a dead server's transactions are taken over. */
  leaseTtlMs?: number;
}

export interface RunningServer {
  /** `http://HOST:PORT`. */
  url: string;
  engine: Engine;
  /** What `GET /metrics` shows. */
  metrics: ServeMetrics;
  logger: PinoLogger;
  twopc: TwoPcCoordinatorService;
  close(): Promise<void>;
}

/** Parses `HOST:PORT` (an IPv6 host in brackets). */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[3]);
  if (m === null || !(port >= 0 && port <= 65_535)) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `--listen must be HOST:PORT, got ${listen}`);
  }
  return { host: (m[1] ?? m[2])!, port };
}

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

export async function startServer(options: ServeOptions): Promise<RunningServer> {
  const { host, port } = parseListen(options.listen ?? serverLimits.listenDefault);
  if (!isLoopback(host) && (options.token === undefined || options.token === '')) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `--listen ${host} is not a loopback address: give a --token-file, so that nobody else can start or end transactions`,
    );
  }
  const leaseTtlMs = options.leaseTtlMs ?? serverLimits.leaseTtlMsDefault;
  if (!Number.isSafeInteger(leaseTtlMs) || leaseTtlMs < serverLimits.leaseTtlMsMin || leaseTtlMs > 600_000) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `--lease-ttl-ms must be an integer from ${serverLimits.leaseTtlMsMin} to 600000, got ${String(leaseTtlMs)}`,
    );
  }
  const serverId = checkServerId(options.serverId ?? defaultServerId(port));
  const logger = options.logger ?? createServerLogger(options.logLevel ?? 'silent');
  const metrics = new ServeMetrics();
  const own = 'postgres' in options.store ? serveOwner(serverId) : undefined;
  let twopc: TwoPcCoordinatorService | undefined;
  const engine = await Engine.open({
    store: options.store,
    hooks: new ServeTelemetry([metrics, logEvents(logger)]),
    ...('postgres' in options.store ? { cluster: { serverId, leaseTtlMs } } : {}),
    ...(options.timing === undefined ? {} : { timing: options.timing }),
    ...(options.httpTimeoutMs === undefined ? {} : { httpTimeoutMs: options.httpTimeoutMs }),
    // Each server keeps its 2PC log under its own owner; a server taking another's over opens that one's too.
    twoPc: async (owned, ownership) => {
      const service = await TwoPcCoordinatorService.open({
        store: options.store,
        ...(ownership === undefined ? {} : { ownership, takenOver: ownership.owner !== own }),
        ...(options.httpTimeoutMs === undefined ? {} : { httpTimeoutMs: options.httpTimeoutMs }),
        ...(options.timing?.retryBaseMs === undefined ? {} : { retryBaseMs: options.timing.retryBaseMs }),
        ...(options.timing?.retryCapMs === undefined ? {} : { retryCapMs: options.timing.retryCapMs }),
        usedElsewhere: async (gid) => {
          try {
            await owned.view(gid);
            return true;
          } catch (error) {
            if (isDtxError(error, 'DTX_NOT_FOUND')) return false;
            throw error;
          }
        },
      });
      if (ownership === undefined || ownership.owner === own) twopc = service;
      return service;
    },
  });
  try {
    assert(twopc !== undefined, 'Engine.open opens the 2PC coordinator of its own owner');
    const app = await buildApp({
      engine,
      twopc,
      ...(options.token === undefined ? {} : { token: options.token }),
      ...(options.bodyLimitBytes === undefined ? {} : { bodyLimitBytes: options.bodyLimitBytes }),
      metrics,
      logger,
    });
    await app.listen({
      host,
      port,
      // Fastify logs where it listens (at info): say it the way `dtx serve` always has.
      listenTextResolver: (address) => `dtx serve listening on ${address} (store ${engine.storeDescription})`,
    });
    const address = app.server.address();
    const bound = typeof address === 'object' && address !== null ? address.port : port;
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
    engine.setDtmUrl(`${url}/api/dtmsvr`);
    return {
      url,
      engine,
      metrics,
      logger,
      twopc,
      close: async () => {
        await app.close();
        // The engine closes its 2PC coordinator (and those of the owners it took over).
        await engine.close();
        logger.info('dtx serve stopped');
      },
    };
  } catch (error) {
    await engine.close();
    throw error;
  }
}
