// `dtx serve`: the coordinator as an HTTP service (src/server, docs/server.md).

import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { DtxError } from '../../errors.ts';

export interface ServeFlags {
  listen: string;
  store?: string;
  tokenFile?: string;
  logLevel: string;
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
      });
      await new Promise<void>((resolve) => {
        const stop = () => resolve();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      await server.close();
    });
}
