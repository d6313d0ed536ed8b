// Every bound dtx's protocol cores rely on, in one place, each with its reason.

export const limits = {
  /**
   * Longest transaction id. PostgreSQL's gid must be shorter than 200 bytes and
   * MariaDB's gtrid at most 64; dtx's own ids stay far below both so that a
   * prefix and a branch suffix still fit.
   */
  txnIdBytesMax: 48,
  /** Longest node id; node ids end up inside gids and log records. */
  nodeIdBytesMax: 32,
  /** Participants in one transaction: every one costs a forced write and four messages. */
  participantsPerTxnMax: 64,
  /**
   * Transactions a coordinator tracks at once. Past it, `begin` is refused with
   * an abort: a coordinator that cannot remember a transaction must not start it.
   */
  inFlightTxnsMax: 100_000,
  /**
   * A hybrid logical clock's counter (./hlc.ts). It grows only while a node
   * sees events faster than its physical clock moves past the largest
   * timestamp it knows; Kulkarni et al. bound it by the number of nodes times
   * the skew in ticks. A counter this large means a clock stood still or a
   * timestamp from far in the future arrived: a fault to stop at, not to wrap.
   */
  hlcLogicalMax: 1_000_000,
} as const;

const idPattern = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

/** True when `id` is a safe transaction id: bounded, and only characters that need no quoting anywhere. */
export function isValidTxnId(id: string): boolean {
  return id.length > 0 && id.length <= limits.txnIdBytesMax && idPattern.test(id);
}

export function isValidNodeId(id: string): boolean {
  return id.length > 0 && id.length <= limits.nodeIdBytesMax && idPattern.test(id);
}
