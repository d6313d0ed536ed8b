// Log identity: what a log belongs to (protocol, coordinator id, creation
// time), written in the store itself when the log is created and checked by
// every opener. The stores (./sqlite.ts, ./postgres.ts) keep the stored value;
// this module decides, from the opener's options, whether to create one,
// adopt one, or refuse the log.

import { randomBytes } from 'node:crypto';
import { coordinatorIdGeneratedChars, coordinatorIdPattern } from '../limits.ts';
import { LogError } from './errors.ts';
import { type LogIdentity, type LogOptions, logProtocols } from './types.ts';

const idChars = 'abcdefghijklmnopqrstuvwxyz0123456789';

/**
 * A fresh coordinator id: 10 random characters of `[a-z0-9]` (about 51 bits),
 * so that two deployments never share one by accident, and short enough for
 * gids within MariaDB's 64-byte gtrid.
 */
export function generateCoordinatorId(): string {
  const bytes = randomBytes(coordinatorIdGeneratedChars);
  let id = '';
  for (const b of bytes) id += idChars[b % idChars.length];
  return id;
}

function checkRequested(options: LogOptions<unknown>): void {
  for (const part of [options.identity, options.expect]) {
    if (part?.protocol !== undefined && !logProtocols.includes(part.protocol)) {
      throw new TypeError(`protocol must be one of ${logProtocols.join(', ')}, got ${String(part.protocol)}`);
    }
    if (part?.coordinatorId !== undefined && !coordinatorIdPattern.test(part.coordinatorId)) {
      throw new TypeError(
        `coordinatorId ${JSON.stringify(part.coordinatorId)} must match ${coordinatorIdPattern}`,
      );
    }
  }
}

/** Validates the identity-related options before anything is opened. */
export function checkIdentityOptions(options: LogOptions<unknown>): void {
  checkRequested(options);
}

/** Parses a stored identity; a malformed one is `corrupt`. */
export function parseIdentity(description: string, text: string): LogIdentity {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new LogError('corrupt', `${description}: its identity record is not JSON`, { cause: error });
  }
  const v = value as Partial<LogIdentity> | null;
  if (
    typeof v !== 'object' ||
    v === null ||
    !logProtocols.includes(v.protocol as never) ||
    typeof v.coordinatorId !== 'string' ||
    !coordinatorIdPattern.test(v.coordinatorId) ||
    typeof v.createdAt !== 'string'
  ) {
    throw new LogError('corrupt', `${description}: its identity record is not valid: ${text}`);
  }
  return { protocol: v.protocol!, coordinatorId: v.coordinatorId, createdAt: v.createdAt };
}

/** The identity a log created (or adopted) now gets. */
export function newIdentity(options: LogOptions<unknown>, now: Date): LogIdentity {
  return {
    protocol: options.identity?.protocol ?? '2pc',
    coordinatorId: options.identity?.coordinatorId ?? generateCoordinatorId(),
    createdAt: now.toISOString(),
  };
}

/**
 * Refuses `stored` when the opener's `identity` or `expect` names a
 * different protocol or coordinator id: reason `mismatch`, naming both.
 */
export function checkIdentity(description: string, stored: LogIdentity, options: LogOptions<unknown>): void {
  for (const wanted of [options.expect, options.identity]) {
    if (wanted?.protocol !== undefined && wanted.protocol !== stored.protocol) {
      throw new LogError(
        'mismatch',
        `${description} is a ${stored.protocol} log, not ${wanted.protocol} ` +
          `(coordinator id ${stored.coordinatorId}, created ${stored.createdAt}); nothing was touched`,
      );
    }
    if (wanted?.coordinatorId !== undefined && wanted.coordinatorId !== stored.coordinatorId) {
      throw new LogError(
        'mismatch',
        `${description} belongs to coordinator id ${stored.coordinatorId}, not ${wanted.coordinatorId} ` +
          `(${stored.protocol}, created ${stored.createdAt}); nothing was touched`,
      );
    }
  }
}

/** The refusal for a log that exists but records no identity (written by an earlier dtx). */
export function noIdentity(description: string): LogError {
  return new LogError(
    'mismatch',
    `${description} records no identity (it was written by an earlier dtx); open it once with ` +
      '`create: true` (the CLI: `dtx bench --init`) to give it one, keeping its records',
  );
}
