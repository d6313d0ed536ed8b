// Global transaction ids (gids) at the edge of real databases: the allow-list,
// the per-database length limits, and the only way a gid becomes SQL text.
//
// `PREPARE TRANSACTION`, `COMMIT PREPARED` and every `XA` statement take the gid
// as a literal: none of them accepts a bind parameter. So a gid is checked
// against a strict allow-list first and only then quoted as a string literal.
// The allow-list alone already excludes quotes, backslashes and NUL, and the
// quoting function refuses them again on its own, so neither check depends on
// the other. A gid that fails is rejected with `InvalidGidError` before any
// connection is touched.

import { InvalidGidError } from '../errors.ts';

/**
 * Letters, digits, `_`, `-`, `.` and `:`; the first character a letter or a
 * digit. ASCII only, so a gid's length in characters is its length in bytes.
 */
export const gidPattern = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

export const gidLimits = {
  /** PostgreSQL stores a gid in a 200-byte buffer, terminating NUL included. */
  postgresBytesMax: 199,
  /**
   * MariaDB's XID holds a gtrid and a bqual of at most 64 bytes each. A dtx gid
   * of up to 64 bytes is the gtrid with an empty bqual; a longer one is split
   * after its 64th byte.
   */
  mariadbBytesMax: 128,
  /** The SQLite participant has no server limit; it keeps PostgreSQL's. */
  sqliteBytesMax: 199,
  /** Valid on every adapter dtx ships: the smallest of the limits above. */
  portableBytesMax: 128,
} as const;

function describe(value: string): string {
  const shown = value.length > 40 ? `${value.slice(0, 40)}...` : value;
  return JSON.stringify(shown);
}

/**
 * Returns `gid` when it matches `gidPattern` and is at most `bytesMax` bytes;
 * throws `InvalidGidError` otherwise.
 */
export function checkGid(gid: unknown, bytesMax: number = gidLimits.portableBytesMax): string {
  if (typeof gid !== 'string') throw new InvalidGidError(`expected a string, got ${typeof gid}`);
  if (gid.length === 0) throw new InvalidGidError('empty gid');
  if (!gidPattern.test(gid)) {
    throw new InvalidGidError(
      `${describe(gid)} has characters outside [A-Za-z0-9_.:-] or does not start with a letter or digit`,
    );
  }
  // ASCII only past the pattern, so length is the byte length.
  if (gid.length > bytesMax) {
    throw new InvalidGidError(`${describe(gid)} is ${gid.length} bytes, the limit here is ${bytesMax}`);
  }
  return gid;
}

/** True when `checkGid(gid, bytesMax)` would accept `gid`. */
export function isValidGid(gid: unknown, bytesMax: number = gidLimits.portableBytesMax): gid is string {
  try {
    checkGid(gid, bytesMax);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks a prefix for `listPrepared`: empty, or the start of a valid gid.
 * Throws `InvalidGidError` otherwise.
 */
export function checkGidPrefix(prefix: unknown, bytesMax: number = gidLimits.portableBytesMax): string {
  if (typeof prefix !== 'string') throw new InvalidGidError(`expected a string prefix, got ${typeof prefix}`);
  if (prefix === '') return prefix;
  return checkGid(prefix, bytesMax);
}

/**
 * The conventional dtx gid for one branch of a transaction:
 * `dtx_<txnId>_<branch>`. Both parts must be gid-safe; the result is checked
 * against `bytesMax`.
 */
export function makeGid(
  txnId: string,
  branch: string,
  bytesMax: number = gidLimits.portableBytesMax,
): string {
  return checkGid(`dtx_${txnId}_${branch}`, bytesMax);
}

/**
 * `value` as a single-quoted SQL string literal, valid in PostgreSQL (with
 * standard_conforming_strings, the default since 9.1) and in MariaDB/MySQL
 * (with or without NO_BACKSLASH_ESCAPES): quotes are doubled, and backslashes
 * and NUL, which those dialects read differently, are refused outright.
 */
export function sqlStringLiteral(value: string): string {
  if (value.includes('\\') || value.includes('\0')) {
    throw new InvalidGidError(`${describe(value)} contains a backslash or NUL and cannot be quoted portably`);
  }
  return `'${value.replaceAll("'", "''")}'`;
}

/** Checks `gid` and returns it as a SQL literal: the only way a gid reaches SQL text. */
export function gidLiteral(gid: string, bytesMax: number): string {
  return sqlStringLiteral(checkGid(gid, bytesMax));
}
