// `dtx serve`: the coordinator as an HTTP service (src/server, docs/server.md).

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { DtxError } from '../../errors.ts';

export interface ServeFlags {
  listen: string;
  store?: string;
  tokenFile?: string;
  logLevel: string;
  serverId?: string;
  leaseTtlMs?: string;
}

function readToken(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `--token-file ${path} cannot be read: ${(error as Error).message}`,
    );
  }
  const token = text.trim();
  if (token.length < 16 || /\s/.test(token)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `--token-file ${path} must hold one token of at least 16 characters`,
    );
  }
  return token;
}

function parseMs(text: string): number {
  if (!/^\d{1,9}$/.test(text)) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `--lease-ttl-ms must be a whole number of ms, got ${text}`);
  }
  return Number(text);
}

export function registerServeCommand(program: Command): void {
  program
    .command('serve')
    .description(
      'run the coordinator as an HTTP service: sagas, TCC, messages; DTM-compatible API (docs/server.md)',
    )
    .option(
      '--listen <host:port>',
      'where to listen (a non-loopback host needs --token-file)',
      '127.0.0.1:36790',
    )
    .option('--store <spec>', 'sqlite:PATH (default sqlite:.dtx/serve.sqlite) or a postgres:// URL')
    .option('--token-file <path>', 'file holding the bearer token every route but /health requires')
    .option(
      '--log-level <level>',
      'JSON log lines on stdout at this level and above: fatal, error, warn, info, debug, trace, silent',
      'info',
    )
    .option(
      '--server-id <id>',
      'this server among several on one PostgreSQL store (default: host name and port)',
    )
    .option(
      '--lease-ttl-ms <ms>',
      'PostgreSQL store: owner lease ttl, how soon another server takes over a dead one (default 10000)',
    )
    .action(async (flags: ServeFlags) => {
      const { startServer, parseStore } = await import('../../server/index.ts');
      const { checkLogLevel } = await import('../../server/logging.ts');
      const store = parseStore(flags.store);
      // Fastify logs `dtx serve listening on http://HOST:PORT (store ...)` at info once it listens.
      const server = await startServer({
        listen: flags.listen,
        store,
        logLevel: checkLogLevel(flags.logLevel),
        ...(flags.tokenFile === undefined ? {} : { token: readToken(flags.tokenFile) }),
        ...(flags.serverId === undefined ? {} : { serverId: flags.serverId }),
        ...(flags.leaseTtlMs === undefined ? {} : { leaseTtlMs: parseMs(flags.leaseTtlMs) }),
      });
      const lost = await new Promise<boolean>((resolve) => {
        const stop = () => resolve(false);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        // Another server took this one's logs over (it was paused past its lease): it may write
        // nothing more, so it stops; restarted, it waits for its logs to be handed back.
        void server.engine.lost.then(() => resolve(true));
      });
      await server.close();
      if (lost) {
        throw new DtxError(
          'DTX_LOG_FENCED',
          "another server took this server's logs over (its lease lapsed); restart it",
        );
      }
    });
}
