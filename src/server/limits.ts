// Every bound and default of `dtx serve`, each with its reason. The runtime's
// own (timings, HTTP call limits) are in ../runtime/limits.ts.

export const serverLimits = {
  /** Where the server listens by default: loopback, so that nothing is exposed without asking. DTM's port + 1. */
  listenDefault: '127.0.0.1:36790',
  /** Largest request body: a saga of 64 steps with payloads fits; a runaway client does not fill memory. */
  bodyBytesMax: 1024 * 1024,
  /** Transactions prepared at once (TCC and messages waiting for submit): each holds memory and a timer. */
  preparedMax: 100_000,
  /** Branches of one TCC transaction: the core's participants limit. */
  branchesMax: 64,
  /** gids remembered for idempotency and listings beyond what the logs retain: above the log's retention (100,000). */
  indexEntriesMax: 200_000,
  /** Compact the server log every this many appends. */
  serverCheckpointEvery: 1_000,
  /** How long a TCC or message may stay prepared by default (ms), when the request says nothing. */
  preparedTimeoutMsDefault: 30_000,
  /** Longest wait between two query_prepared checks (ms). */
  queryPreparedIntervalMsMax: 60_000,
  /** Longest `wait` a request may ask for (ms): a request holds a connection while it waits. */
  waitMsMax: 60_000,
  /** How often a `wait` for a transaction another server runs reads the store again (ms). */
  waitElsewherePollMs: 100,
  /** The owner leases' ttl with several servers on one store (ms): a dead server's transactions wait this long for a survivor. */
  leaseTtlMsDefault: 10_000,
  /** The shortest lease ttl `--lease-ttl-ms` accepts (ms): renewals go every ttl/3 over a real network. */
  leaseTtlMsMin: 500,
  /** Page size of the transaction listings. */
  pageDefault: 50,
  pageMax: 500,
} as const;
