// `dtx/participant`: the participant side of `dtx serve`'s two-phase commit
// across services (docs/participant.md). A service does its business work in
// a database transaction held open under the branch's gid, and answers the
// server's PREPARE / COMMIT / ROLLBACK for it:
//
//   const participant = createParticipant({ adapter });       // PostgreSQL or MariaDB adapter
//   await participant.work(gid, 'stock', (branch) => branch.query('UPDATE ...', [...]));
//   http.createServer(participant.handler)                     // POST <base>/prepare|commit|rollback
//
// prepare  -> the adapter's prepare (PREPARE TRANSACTION / XA PREPARE): 200
//             {vote: yes|readOnly}, or 409 {vote: no, reason} (the branch is
//             then rolled back); 503 when the database could not be reached
//             (the server asks again, and aborts at its prepare timeout);
// commit   -> COMMIT PREPARED / XA COMMIT by gid: 200, also when the branch is
//             no longer prepared (an earlier commit whose answer was lost);
// rollback -> the open branch's ROLLBACK, or ROLLBACK PREPARED / XA ROLLBACK
//             by gid: 200, also when there is nothing left to roll back.
//
// Phase two works by gid alone, on any connection: a participant process that
// restarted answers commit and rollback for the branches it had prepared
// (`listPrepared` shows them); an open branch it lost in the restart was rolled
// back by its database, and a PREPARE for it votes no (presumed abort).
//
// Owns: the open branches of this process (one connection each), their idle
// timers, and the order of calls on one branch (work, prepare, commit and
// rollback on one gid run one after another).

import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ResourceAdapter, SqlBranch, Vote } from '../adapters/types.ts';
import { DtxError, isDtxError, ResourceUnavailableError } from '../errors.ts';
import { isValidTxnId } from '../protocol/common/limits.ts';
import { KeyedLocks } from '../runtime/keyed-lock.ts';

/** A branch id: no `.`, so that `<prefix><gid>.<branch>` names one branch of one transaction unambiguously. */
export const participantBranchPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$/;

export const participantLimits = {
  /** Prefix of the database's gid of every branch: tells this library's branches from others in one database. */
  gidPrefixDefault: 'dtxp.',
  /** An open branch not prepared within this long is rolled back: it holds a connection and locks. */
  idleTimeoutMsDefault: 60_000,
  /** Open branches at once: each holds a pooled connection. */
  openBranchesMaxDefault: 1_000,
  /** readOnly votes remembered, so that a repeated PREPARE answers the same. */
  votesRememberedMax: 10_000,
  /** Longest request body the handler reads. */
  bodyBytesMax: 64 * 1024,
} as const;

export type ParticipantOp = 'prepare' | 'commit' | 'rollback';
export const participantOps: readonly ParticipantOp[] = ['prepare', 'commit', 'rollback'];

export interface ParticipantOptions {
  /** The database: a PostgresAdapter (`dtx/postgres`) or MariaDbAdapter (`dtx/mysql`). Not closed by the participant. */
  adapter: ResourceAdapter<SqlBranch>;
  /** Prefix of every branch's database gid (default `dtxp.`): letters, digits, `_ . : -`. */
  gidPrefix?: string;
  /** Roll back a branch that has not been prepared this long after its last work (ms). Default 60,000. */
  idleTimeoutMs?: number;
  /** Branches open at once; one more is DTX_RESOURCE_UNAVAILABLE. Default 1,000. */
  openBranchesMax?: number;
}

/** An answer to the server: an HTTP status and a JSON body. */
export interface ParticipantAnswer {
  status: number;
  contentType: 'application/json' | 'application/problem+json';
  body: Record<string, unknown>;
}

/** A prepared branch found in the database. */
export interface PreparedParticipantBranch {
  gid: string;
  branch: string;
  /** The database's gid. */
  databaseGid: string;
}

export interface Participant {
  /**
   * Runs `work` in the branch's transaction (begun on first use, held open
   * until the server's prepare or rollback). A `work` that throws rolls the
   * branch back (a later PREPARE votes no) and rejects with its error. Work
   * after the branch voted is DTX_INVALID_STATE.
   */
  work<T>(gid: string, branch: string, work: (branch: SqlBranch) => Promise<T>): Promise<T>;
  /** One server call, framework-agnostic: `op` from the URL, `body` the parsed JSON body. */
  answer(op: string, body: unknown): Promise<ParticipantAnswer>;
  /** A node:http handler for POST `.../prepare`, `.../commit`, `.../rollback` (mount it at the URL you register). */
  readonly handler: (request: IncomingMessage, response: ServerResponse) => void;
  /** The branches of this participant's prefix that are prepared in the database (after a restart: the in-doubt ones). */
  listPrepared(): Promise<PreparedParticipantBranch[]>;
  /** The database gid of a branch. */
  databaseGid(gid: string, branch: string): string;
  /** Rolls back every open branch; prepared branches stay for the server to resolve. */
  close(): Promise<void>;
}

interface OpenBranch {
  branch: SqlBranch;
  timer: ReturnType<typeof setTimeout> | undefined;
}

function problem(
  status: number,
  code: string,
  detail: string,
  extra: Record<string, unknown> = {},
): ParticipantAnswer {
  return {
    status,
    contentType: 'application/problem+json',
    body: { type: 'about:blank', title: code, status, code, detail, reason: detail, ...extra },
  };
}

function ok(body: Record<string, unknown>): ParticipantAnswer {
  return { status: 200, contentType: 'application/json', body };
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** The answer for a database failure: 503, which the server retries. */
function failed(error: unknown, what: string): ParticipantAnswer {
  const code = isDtxError(error) ? error.code : 'DTX_RESOURCE_UNAVAILABLE';
  return problem(503, code, `${what}: ${messageOf(error)}`);
}

class ParticipantImpl implements Participant {
  private readonly open = new Map<string, OpenBranch>();
  private readonly votes = new Map<string, Vote>();
  private readonly locks = new KeyedLocks();
  private readonly prefix: string;
  private readonly idleTimeoutMs: number;
  private readonly openBranchesMax: number;
  private closed = false;

  constructor(private readonly options: ParticipantOptions) {
    this.prefix = options.gidPrefix ?? participantLimits.gidPrefixDefault;
    if (!/^[A-Za-z0-9][A-Za-z0-9_.:-]{0,31}$/.test(this.prefix)) {
      throw new DtxError('DTX_INVALID_ARGUMENT', 'gidPrefix: 1 to 32 of letters, digits, _ . : -');
    }
    this.idleTimeoutMs = checkPositive(
      options.idleTimeoutMs,
      participantLimits.idleTimeoutMsDefault,
      'idleTimeoutMs',
    );
    this.openBranchesMax = checkPositive(
      options.openBranchesMax,
      participantLimits.openBranchesMaxDefault,
      'openBranchesMax',
    );
  }

  readonly handler = (request: IncomingMessage, response: ServerResponse): void => {
    void this.serve(request, response);
  };

  databaseGid(gid: string, branch: string): string {
    if (typeof gid !== 'string' || !isValidTxnId(gid)) {
      throw new DtxError(
        'DTX_INVALID_GID',
        `gid must be 1 to 48 of letters, digits, _ . : - (starting with a letter or digit), got ${JSON.stringify(gid)?.slice(0, 60)}`,
      );
    }
    if (typeof branch !== 'string' || !participantBranchPattern.test(branch)) {
      throw new DtxError(
        'DTX_INVALID_ARGUMENT',
        `branch must be 1 to 32 of letters, digits, _ and - (no dot), got ${JSON.stringify(branch)?.slice(0, 60)}`,
      );
    }
    const dbGid = `${this.prefix}${gid}.${branch}`;
    if (dbGid.length > this.options.adapter.gidBytesMax) {
      throw new DtxError(
        'DTX_INVALID_GID',
        `${dbGid} is longer than ${this.options.adapter.gidBytesMax} bytes, the ${this.options.adapter.kind} limit`,
      );
    }
    return dbGid;
  }

  async work<T>(gid: string, branchId: string, work: (branch: SqlBranch) => Promise<T>): Promise<T> {
    const dbGid = this.databaseGid(gid, branchId);
    return this.locked(dbGid, async () => {
      if (this.closed) throw new DtxError('DTX_RESOURCE_UNAVAILABLE', 'the participant is closed');
      let entry = this.open.get(dbGid);
      if (entry === undefined) {
        if (this.votes.has(dbGid)) {
          throw new DtxError(
            'DTX_INVALID_STATE',
            `branch ${branchId} of ${gid} has voted: no more work in it`,
            {
              gid,
            },
          );
        }
        if (this.open.size >= this.openBranchesMax) {
          throw new DtxError('DTX_RESOURCE_UNAVAILABLE', `${this.openBranchesMax} branches are open here`);
        }
        entry = { branch: await this.options.adapter.begin(dbGid), timer: undefined };
        this.open.set(dbGid, entry);
      }
      clearTimeout(entry.timer);
      try {
        const result = await work(entry.branch);
        this.armIdle(dbGid, entry);
        return result;
      } catch (error) {
        this.open.delete(dbGid);
        await entry.branch.rollback().catch(() => undefined);
        throw error;
      }
    });
  }

  async answer(op: string, body: unknown): Promise<ParticipantAnswer> {
    if (!participantOps.includes(op as ParticipantOp)) {
      return problem(
        404,
        'DTX_NOT_FOUND',
        `no participant op ${JSON.stringify(op).slice(0, 40)}: prepare, commit or rollback`,
      );
    }
    const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
    // dtx's HTTP branch protocol envelope carries the gid as sagaId and the branch as branchId.
    const gid = b.sagaId ?? b.gid;
    const branch = b.branchId ?? b.branch;
    if (b.op !== undefined && b.op !== op) {
      return problem(400, 'DTX_BAD_MESSAGE', `the body's op ${JSON.stringify(b.op)} is not the URL's ${op}`);
    }
    let dbGid: string;
    try {
      dbGid = this.databaseGid(gid as string, branch as string);
    } catch (error) {
      const code = isDtxError(error) ? error.code : 'DTX_BAD_MESSAGE';
      return problem(400, code, messageOf(error));
    }
    return this.locked(dbGid, () => {
      switch (op as ParticipantOp) {
        case 'prepare':
          return this.onPrepare(dbGid);
        case 'commit':
          return this.onCommit(dbGid);
        case 'rollback':
          return this.onRollback(dbGid);
      }
    });
  }

  async listPrepared(): Promise<PreparedParticipantBranch[]> {
    const found = await this.options.adapter.listPrepared(this.prefix);
    const out: PreparedParticipantBranch[] = [];
    for (const { gid: databaseGid } of found) {
      const rest = databaseGid.slice(this.prefix.length);
      const dot = rest.lastIndexOf('.');
      if (dot <= 0) continue;
      out.push({ gid: rest.slice(0, dot), branch: rest.slice(dot + 1), databaseGid });
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    const open = [...this.open.entries()];
    this.open.clear();
    for (const [, entry] of open) clearTimeout(entry.timer);
    await Promise.allSettled(open.map(([, entry]) => entry.branch.rollback()));
  }

  // ------------------------------------------------------------ the three calls

  private async onPrepare(dbGid: string): Promise<ParticipantAnswer> {
    const entry = this.open.get(dbGid);
    if (entry !== undefined) {
      clearTimeout(entry.timer);
      this.open.delete(dbGid);
      try {
        const vote = await entry.branch.prepare();
        this.remember(dbGid, vote);
        return ok({ vote });
      } catch (error) {
        if (error instanceof ResourceUnavailableError && error.inDoubt) {
          // It may be prepared: the server asks again (and finds it listed), or aborts and rolls it back by gid.
          return failed(error, 'the prepare is in doubt');
        }
        return problem(
          409,
          isDtxError(error) ? error.code : 'DTX_INVALID_STATE',
          `vote no: ${messageOf(error)}`,
          {
            vote: 'no',
          },
        );
      }
    }
    // A repeated PREPARE (the first answer was lost), or one for work this process no longer holds.
    const vote = this.votes.get(dbGid);
    if (vote === 'readOnly') return ok({ vote });
    try {
      const listed = await this.options.adapter.listPrepared(dbGid);
      if (listed.some((p) => p.gid === dbGid)) {
        this.remember(dbGid, 'yes');
        return ok({ vote: 'yes' });
      }
    } catch (error) {
      return failed(error, 'could not list prepared branches');
    }
    return problem(
      409,
      'DTX_NOT_FOUND',
      'vote no: no work under this branch here (never begun, rolled back, or lost when this process restarted)',
      { vote: 'no' },
    );
  }

  private async onCommit(dbGid: string): Promise<ParticipantAnswer> {
    if (this.open.has(dbGid)) {
      return problem(409, 'DTX_INVALID_STATE', 'the branch is open, not prepared: it cannot be committed');
    }
    try {
      const resolution = await this.options.adapter.commitPrepared(dbGid);
      this.votes.delete(dbGid);
      // `unknown`: no longer prepared, so an earlier COMMIT did it (the server commits only YES voters).
      return ok({ result: resolution === 'done' ? 'committed' : 'alreadyDone' });
    } catch (error) {
      return failed(error, 'commit failed');
    }
  }

  private async onRollback(dbGid: string): Promise<ParticipantAnswer> {
    const entry = this.open.get(dbGid);
    if (entry !== undefined) {
      clearTimeout(entry.timer);
      this.open.delete(dbGid);
      await entry.branch.rollback().catch(() => undefined);
      return ok({ result: 'rolledBack' });
    }
    try {
      const resolution = await this.options.adapter.rollbackPrepared(dbGid);
      this.votes.delete(dbGid);
      return ok({ result: resolution === 'done' ? 'rolledBack' : 'alreadyDone' });
    } catch (error) {
      return failed(error, 'rollback failed');
    }
  }

  // ------------------------------------------------------------ plumbing

  private armIdle(dbGid: string, entry: OpenBranch): void {
    entry.timer = setTimeout(() => {
      void this.locked(dbGid, async () => {
        if (this.open.get(dbGid) !== entry) return;
        this.open.delete(dbGid);
        await entry.branch.rollback().catch(() => undefined);
      });
    }, this.idleTimeoutMs);
    entry.timer.unref?.();
  }

  private remember(dbGid: string, vote: Vote): void {
    this.votes.delete(dbGid);
    this.votes.set(dbGid, vote);
    while (this.votes.size > participantLimits.votesRememberedMax)
      this.votes.delete(this.votes.keys().next().value!);
  }

  private async serve(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const send = (a: ParticipantAnswer) => {
      response.writeHead(a.status, { 'content-type': a.contentType });
      response.end(JSON.stringify(a.body));
    };
    try {
      if (request.method !== 'POST') {
        send(problem(405, 'DTX_BAD_MESSAGE', 'participant calls are POST'));
        request.resume();
        return;
      }
      const path = new URL(request.url ?? '/', 'http://participant').pathname;
      const op = path.slice(path.lastIndexOf('/') + 1);
      const text = await readBody(request);
      if (text === null) {
        send(
          problem(413, 'DTX_INVALID_ARGUMENT', `the body is over ${participantLimits.bodyBytesMax} bytes`),
        );
        return;
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        send(problem(400, 'DTX_BAD_MESSAGE', 'the body is not JSON'));
        return;
      }
      send(await this.answer(op, body));
    } catch (error) {
      if (!response.headersSent) send(problem(500, 'DTX_INTERNAL', messageOf(error)));
      else response.destroy();
    }
  }

  /** Runs `work` after every earlier call on `key` has finished. */
  private locked<T>(key: string, work: () => Promise<T>): Promise<T> {
    return this.locks.run(key, work);
  }
}

function checkPositive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new DtxError('DTX_INVALID_ARGUMENT', `${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

/** The body as text, or null past the limit. */
function readBody(request: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > participantLimits.bodyBytesMax) over = true;
      else chunks.push(chunk);
    });
    request.on('end', () => resolve(over ? null : Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

/** A participant over one database adapter. */
export function createParticipant(options: ParticipantOptions): Participant {
  if (typeof options !== 'object' || options === null || typeof options.adapter?.begin !== 'function') {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      'createParticipant needs { adapter } (a PostgreSQL or MariaDB adapter)',
    );
  }
  return new ParticipantImpl(options);
}
