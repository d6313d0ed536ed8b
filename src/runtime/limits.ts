// Every bound and default the runtime and the adapters rely on, in one place,
// each with its reason: timings for real databases and services, how often
// logs are checkpointed, the sweep for orphaned branches, the waits a caller
// may be held for, name patterns, and size limits. The protocol cores' own
// bounds are ../protocol/common/limits.ts; facts of a database's protocol (the
// 64-byte halves of a MariaDB XID) stay with the adapter that speaks it.

// ----------------------------------------------------------------- timings

/**
 * 2PC timing for real databases. The simulator's defaults assume a 1 ms
 * network; a real prepare includes the database's fsync and may queue behind
 * other work.
 */
export const twoPcRuntimeTiming = { voteTimeoutMs: 10_000, commitResendMs: 1_000 } as const;

/**
 * Saga and TCC timing for real services, which answer in milliseconds to
 * seconds, not the simulator's 1 ms. Calls that must succeed (compensations,
 * confirms, cancels) are retried for ever under the capped backoff; past 16
 * failed attempts of one (about 20 s at these timings) or a minute in that
 * phase the run is reported stuck as an alert, and goes on retrying.
 */
export const branchRuntimeTiming = {
  retryBaseMs: 50,
  retryCapMs: 2000,
  jitter: 0.5,
  compensationAttemptsMax: Number.POSITIVE_INFINITY,
  phaseTwoAttemptsMax: Number.POSITIVE_INFINITY,
  stuckAfterAttempts: 16,
  stuckAfterMs: 60_000,
};

/** Longest delay a timer can take (setTimeout's limit); a longer finite delay is refused. */
export const timerDelayMsMax = 2 ** 31 - 1;

// ------------------------------------------------------------ the caller's waits

/**
 * How long `transaction()` waits, after a durable commit decision, for every
 * branch to be committed before it rejects with DTX_DECIDED_NOT_APPLIED: long
 * enough for a database that restarts, short enough that a caller is not held
 * hostage by one that is gone (the commit still lands).
 */
export const commitWaitMsDefault = 30_000;

/**
 * Longest pause between two COMMIT attempts on a branch that keeps failing:
 * the pause doubles from the resend interval up to this, so a database that is
 * down is not hammered, and one that is back is found within half a minute.
 */
export const commitBackoffMsMaxDefault = 30_000;

// ------------------------------------------------------------------- logs

/**
 * Appends between two checkpoints of the 2PC coordinator's log. A checkpoint
 * rewrites what recovery needs; every 10,000 appends bounds the log (and the
 * time recovery takes to read it) at a cost of one rewrite per 10,000 writes.
 */
export const twoPcCheckpointEveryAppends = 10_000;

/** The same for saga and TCC logs, unless `checkpointEvery` says otherwise. */
export const branchCheckpointEveryDefault = 10_000;

/**
 * How long lazy records may wait for a write when no forced append comes
 * along: they ride on the next forced write almost always, and are never lost
 * for longer than this when none comes.
 */
export const lazyFlushDelayMsDefault = 10;

/**
 * How long an owner lease of the PostgreSQL log lasts without renewal: a
 * standby takes over this long after the owner died, and a live owner renews
 * well within it.
 */
export const ownerLeaseTtlMsDefault = 10_000;

/** One PostgreSQL identifier part: lowercase, so quoting never changes its meaning. */
export const identifierPattern = /^[a-z_][a-z0-9_]*$/;
/** Leaves room for the `_owner_seq` index suffix within PostgreSQL's 63-byte identifiers. */
export const tableNameCharsMax = 52;
/** PostgreSQL's identifier limit. */
export const schemaNameCharsMax = 63;
/** Owners, lease names and holders: kept short enough to quote into messages and rows. */
export const leaseFieldCharsMax = 200;

// ------------------------------------------------------------------ names

/**
 * Coordinator ids: they appear in gids (`dtx_<id>.`), transaction ids and
 * MariaDB xids, so only characters every resource accepts unquoted, and short.
 */
export const coordinatorIdPattern = /^[A-Za-z0-9][A-Za-z0-9-]{0,15}$/;
/** Length of a generated coordinator id: 36^10 ids make a collision between deployments negligible. */
export const coordinatorIdGeneratedChars = 10;
/** Resource names: they end up in gids and transaction ids, so the same safe characters, and short. */
export const resourceNamePattern = /^[A-Za-z0-9][A-Za-z0-9.-]{0,31}$/;
/** The barrier's table name: one unquoted identifier every database accepts (63 is PostgreSQL's limit). */
export const barrierTablePattern = /^[a-z_][a-z0-9_]{0,62}$/;

// ---------------------------------------------------------- orphan sweep

/**
 * How often the orphan sweep runs: a zombie's prepared branches hold locks
 * until rolled back, so they are looked for every few seconds.
 */
export const orphanSweepIntervalMsDefault = 5_000;
/**
 * How old a prepared branch must be before the sweep counts it as orphaned:
 * far longer than a prepare-to-commit round trip, so a live transaction's
 * branch is never taken for a zombie's.
 */
export const orphanGraceMsDefault = 30_000;

// ----------------------------------------------------------- adapters

/** How long the SQLite participant waits for another connection's write lock on its file. */
export const sqliteBusyTimeoutMsDefault = 5000;
/** Longest SQLite participant key, in UTF-16 code units. Keys are bound parameters; the bound only keeps rows small. */
export const sqliteKeyLengthMax = 1024;

/**
 * How long the MariaDB adapter keeps a commit marker: a marker is the evidence
 * that a branch which vanished committed, and recovery runs within a day of a
 * crash in any deployment we can imagine.
 */
export const markerRetentionMsDefault = 86_400_000;
/** A marker purge runs at most this often per adapter, so it costs nothing on the hot path. */
export const markerPurgeEveryMs = 600_000;
/** Rows a marker purge deletes per statement, so it never holds locks for long. */
export const markerPurgeBatch = 1_000;

// -------------------------------------------------------------- HTTP branches

/** Longest per-call timeout accepted: a branch that takes longer should answer 202 and be asked again. */
export const httpTimeoutMsMax = 600_000;
/** A branch call unanswered after this counts as `ongoing` and is retried. */
export const httpTimeoutMsDefault = 5000;
/** Response bodies are read up to this many bytes by default; a branch's answer is a status and a short reason. */
export const httpBodyBytesMaxDefault = 64 * 1024;

// ------------------------------------------------------ outbox and inbox

/**
 * A message subject: NATS tokens of safe characters separated by dots, no
 * wildcards (a published subject names one place), and short enough for an
 * indexed column.
 */
export const outboxSubjectPattern = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;
export const outboxSubjectCharsMax = 255;
/** A message id: it becomes `Nats-Msg-Id` and the inbox's primary key, so safe characters and bounded. */
export const outboxIdPattern = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** An ordering key travels as a header value: printable ASCII, no line breaks. */
export const outboxKeyPattern = /^[\x20-\x7e]{1,128}$/;
/** A relay's id is stored in every row it claims. */
export const relayIdPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** NATS refuses messages above its max_payload (1 MiB by default); headers need room too. */
export const outboxPayloadBytesMax = 1_000_000;
/** Rows a relay claims per round: enough to fill the pipe to JetStream, few enough to keep a claim short. */
export const relayBatchDefault = 256;
/** How many unsent rows a relay reads to plan a claim, as a multiple of the batch (keys blocked by others are skipped). */
export const relayScanFactor = 4;
/**
 * How long a relay's claim on a row lasts. Another relay takes the row over
 * only after this, so it bounds how long a dead relay's rows wait; the
 * stream's duplicate window must be longer than this plus the publish timeout
 * for a takeover's republish to be deduplicated (see docs/outbox.md).
 */
export const relayLeaseMsDefault = 30_000;
/** The JetStream ack a relay waits for before it counts a publish as failed. */
export const relayPublishTimeoutMsDefault = 5_000;
/** How long an idle relay sleeps before it looks for new rows again. */
export const relayPollMsDefault = 50;
/** Backoff while NATS or the database is down: from 100 ms, doubling, to 5 s. */
export const relayBackoffMs = { baseMs: 100, maxMs: 5_000 } as const;
/** Sent rows are kept this long (for audit and for a late duplicate check), then pruned. */
export const outboxRetentionMsDefault = 86_400_000;
/** A prune deletes at most this many rows per statement and runs at most every `outboxPruneEveryMs`. */
export const outboxPruneBatch = 1_000;
export const outboxPruneEveryMs = 60_000;
/** Deliveries of one message before the inbox dead-letters it. */
export const inboxAttemptsMaxDefault = 5;
/** Redelivery delay after a failed handler: from 200 ms, doubling, to 30 s. */
export const inboxRetryMs = { baseMs: 200, maxMs: 30_000 } as const;
/** JetStream's ack wait for a consumer the inbox creates: a handler's transaction must finish well within it. */
export const inboxAckWaitMsDefault = 30_000;
/** Messages a consumer pulls ahead of the one being handled. */
export const inboxPrefetchDefault = 64;
