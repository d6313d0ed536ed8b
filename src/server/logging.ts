// The server's log: pino, one JSON object per line on stdout (or the stream a
// test gives), at `--log-level` (default info). What it says about
// transactions comes from the server's events (./telemetry.ts), so every line
// about one carries its id as `txn` and its `type`:
//
// - info: a transaction accepted (`transaction started`) and ended
//   (`transaction ended`, with `outcome`, `durationMs`, `reason`); a branch
//   that refused (`branch refused`); the server listening and stopping;
// - warn: a stuck alert (the run goes on retrying); error: a run stopped,
//   waiting for an operator; a request answered 500;
// - debug: every branch call and every request (method, url, status, time).
//
// Never logged: header values (branch headers may carry credentials), request
// bodies, the bearer token.

import { type DestinationStream, type Logger as PinoLogger, pino } from 'pino';
import { DtxError } from '../errors.ts';
import type { ServeEvents } from './telemetry.ts';

export const logLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof logLevels)[number];

/** Throws DTX_INVALID_ARGUMENT unless `level` is one of pino's levels. */
export function checkLogLevel(level: unknown): LogLevel {
  if (typeof level !== 'string' || !(logLevels as readonly string[]).includes(level)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `--log-level must be one of ${logLevels.join(', ')}, got ${JSON.stringify(level)}`,
    );
  }
  return level as LogLevel;
}

/** A pino logger at `level`, writing JSON lines to `destination` (default stdout). */
export function createServerLogger(level: LogLevel = 'info', destination?: DestinationStream): PinoLogger {
  return pino(
    {
      level: checkLogLevel(level),
      base: { service: 'dtx-serve', pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

/** The server's events as log lines (see the module comment for levels). */
export function logEvents(logger: PinoLogger): ServeEvents {
  return {
    begun: (e) => logger.info({ txn: e.gid, type: e.type }, 'transaction started'),
    ended: (e) =>
      logger.info(
        { txn: e.gid, type: e.type, outcome: e.outcome, durationMs: e.durationMs, reason: e.reason },
        'transaction ended',
      ),
    branchCalled: (e) => {
      const fields = {
        txn: e.gid,
        type: e.type,
        branch: e.branch,
        op: e.op,
        status: e.status,
        durationMs: Math.round(e.durationMs),
        reason: e.reason,
      };
      if (e.status === 'failure') logger.info(fields, 'branch refused');
      else logger.debug(fields, 'branch call');
    },
    stuck: (e) => {
      const fields = { txn: e.gid, type: e.type, reason: e.reason, retrying: e.retrying };
      if (e.retrying) logger.warn(fields, 'transaction stuck: still retrying');
      else logger.error(fields, 'transaction stuck: stopped, waiting for an operator');
    },
  };
}
