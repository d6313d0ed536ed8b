// The port between a two-phase-commit runtime and one real resource manager
// (a database). The runtime owns decisions and its log; an adapter owns one
// database's side: opening a branch of a global transaction, preparing it, and
// later resolving it by gid alone.
//
// Resolution by gid is what makes recovery possible: a coordinator that crashed
// constructs a fresh adapter, calls `listPrepared(prefix)` to find the branches
// it left in doubt, and commits or rolls back each one by gid. Nothing in a
// `Branch` object is needed after `prepare()` has voted.
//
// Lifecycle of a branch, as seen through this port:
//
//   begin(gid) -> active --query--> active
//                  |--prepare()--> 'yes'      -> prepared on the server, resolve by gid
//                  |--prepare()--> 'readOnly' -> already finished, nothing to resolve
//                  |--rollback()-> rolledBack
//   any failed query or failed prepare -> rolledBack (the error says why)
//   connection lost during prepare     -> inDoubt (resolve by gid)
//
// Presumed abort: an active branch whose process or connection dies is rolled
// back by the database and leaves no trace; only prepared branches survive.

/** A participant's vote. A NO vote is a rejected `prepare()` (the branch is then rolled back). */
export type Vote = 'yes' | 'readOnly';

/**
 * What `commitPrepared`/`rollbackPrepared` did. `done`: this call found the
 * prepared branch and finished it. `unknown`: no prepared branch with that gid
 * exists here (never prepared, or already resolved by an earlier call). The
 * database keeps no memory of resolved branches, so `unknown` cannot say which.
 * A coordinator retrying after a crash expects `unknown` for branches it
 * already resolved; seeing it for a branch it never resolved means someone else
 * did (a heuristic decision, or a foreign recovery tool). Failures to reach or
 * to act on the branch reject with a DtxError instead.
 */
export type Resolution = 'done' | 'unknown';

/**
 * How a branch that is no longer prepared ended, as far as the resource can
 * still tell (see `ResourceAdapter.fateOf`). `unknown`: it cannot tell — no
 * evidence was kept, or the evidence is too old to answer.
 */
export type BranchFate = 'committed' | 'rolledBack' | 'unknown';

/**
 * Where a `Branch` object is in its life. `inDoubt`: the connection broke while
 * the prepare was in flight, so the branch may or may not be prepared on the
 * server; only resolving it by gid settles it.
 */
export type BranchState = 'active' | 'prepared' | 'readOnly' | 'rolledBack' | 'inDoubt';

/** A branch of a global transaction on one resource. */
export interface Branch {
  readonly gid: string;
  readonly state: BranchState;
  /**
   * After a `'yes'` vote, what `ResourceAdapter.fateOf` needs to learn later
   * how this branch ended (PostgreSQL: its transaction id). The coordinator
   * keeps it in its commit record. Undefined where the adapter keeps none.
   */
  readonly evidence?: string | undefined;
  /**
   * Phase one. Resolves to `'yes'` once the branch is durably prepared (it then
   * holds its locks until resolved by gid), or to `'readOnly'` when the branch
   * changed nothing: it has been finished locally and needs no phase two.
   * Rejects with a `DtxError` on a NO vote; the branch is then rolled back,
   * except after a `ResourceUnavailableError` with `inDoubt: true`, where it
   * may be prepared and must be resolved by gid.
   */
  prepare(): Promise<Vote>;
  /** Rolls back an unprepared branch. No-op once rolled back or finished read-only. */
  rollback(): Promise<void>;
}

export type SqlRow = Record<string, unknown>;

export interface SqlResult<Row extends SqlRow = SqlRow> {
  /** Rows returned by the statement; empty for statements that return none. */
  rows: Row[];
  /** Rows returned, or rows affected for INSERT/UPDATE/DELETE. */
  rowCount: number;
}

/** A branch on a SQL database: run any statement inside it before `prepare()`. */
export interface SqlBranch extends Branch {
  /**
   * Runs `sql` inside the branch with bound `params` (`$1` placeholders on
   * PostgreSQL, `?` on MariaDB). A failed statement rolls the whole branch back
   * and rejects with a `DtxError` whose `cause` is the driver's error.
   */
  query<Row extends SqlRow = SqlRow>(sql: string, params?: readonly unknown[]): Promise<SqlResult<Row>>;
  /**
   * A locking read: runs `sql` (one SELECT, no `;`, no locking clause of its
   * own) with the database's shared row lock added (`FOR SHARE` on
   * PostgreSQL, `LOCK IN SHARE MODE` on MariaDB), held until the branch ends.
   * With `wait: false` the read never waits for a lock (`NOWAIT`): rows
   * locked by others fail it at once with DTX_LOCK_CONFLICT. A branch that
   * ran nothing but locking reads votes `readOnly` at prepare (see
   * docs/isolation.md). Bad SQL is DTX_INVALID_ARGUMENT, nothing sent.
   */
  lockingRead?<Row extends SqlRow = SqlRow>(
    sql: string,
    params: readonly unknown[],
    options: { wait: boolean },
  ): Promise<SqlResult<Row>>;
}

/**
 * A read-only session on one database, pinned to one snapshot (PostgreSQL:
 * REPEATABLE READ READ ONLY, pinned by a first statement; MariaDB: START
 * TRANSACTION WITH CONSISTENT SNAPSHOT). It takes no locks and blocks no writer.
 */
export interface SnapshotSession {
  query<Row extends SqlRow = SqlRow>(sql: string, params?: readonly unknown[]): Promise<SqlResult<Row>>;
  /** Ends the session's transaction and gives its connection back. Idempotent. */
  close(): Promise<void>;
}

/** One prepared branch found by recovery. */
export interface PreparedBranchInfo {
  gid: string;
  /** When it was prepared, where the resource records it (PostgreSQL, SQLite). */
  preparedAt?: Date;
}

/** One database taking part in two-phase commit. */
export interface ResourceAdapter<B extends Branch = Branch> {
  /** `'postgres'`, `'mariadb'`, `'sqlite'`, ... */
  readonly kind: string;
  /** Longest gid this adapter accepts, in bytes. */
  readonly gidBytesMax: number;
  /**
   * Opens a branch for `gid`. Throws `InvalidGidError` (nothing sent to the
   * server) when the gid is not acceptable here.
   */
  begin(gid: string): Promise<B>;
  /** Phase two, commit. Idempotent: see `Resolution`. */
  commitPrepared(gid: string): Promise<Resolution>;
  /** Phase two, rollback. Idempotent: see `Resolution`. */
  rollbackPrepared(gid: string): Promise<Resolution>;
  /**
   * How branch `gid` ended, when `commitPrepared`/`rollbackPrepared` answered
   * `unknown` (no such prepared branch): `evidence` is what the branch gave
   * with its vote (`Branch.evidence`), if the caller kept it. Lets a
   * coordinator tell its own earlier commit whose reply was lost (or that a
   * crash hid) from a branch someone rolled back by hand. Optional: a
   * resource without it can never tell, and every `unknown` stays ambiguous.
   */
  fateOf?(gid: string, evidence: string | undefined): Promise<BranchFate>;
  /**
   * Opens a snapshot session (see SnapshotSession): resolves once its
   * snapshot is taken. Optional: `coordinator.snapshot()` refuses a resource
   * without it.
   */
  openSnapshot?(): Promise<SnapshotSession>;
  /** Prepared branches whose gid starts with `prefix` (all when empty), sorted by gid. */
  listPrepared(prefix?: string): Promise<PreparedBranchInfo[]>;
  /**
   * Rolls back active branches and releases connections. Prepared branches stay
   * prepared on the server, to be resolved by gid by this or another process.
   */
  close(): Promise<void>;
}
