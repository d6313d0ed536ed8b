// Several active `dtx serve` servers on one PostgreSQL store (docs/server.md,
// "Several servers").
//
// Each server has an id (`--server-id`) and its own owner `dtx-serve:<id>` in
// the shared log tables: the transactions it begins are in its logs, held by
// its owner leases (src/runtime/log/postgres.ts), so each transaction is run
// by one server at a time. This module adds what the servers share:
//
// - the gid claims, `dtx_serve_gid(gid PRIMARY KEY, owner, type, hash)`: a
//   transaction's gid is claimed for its server's owner before its first
//   record (the `begin`, a TCC's or message's `prepare`, a 2PC transaction's
//   `tpc-begin`) is written, so the same gid sent to two servers is begun
//   once, by one protocol. The claim is an intent: the
//   holder of the claim's owner begins the transaction when its log does not
//   have it yet (a server that died between the claim and the `begin` left
//   a claim its adopter honours on the caller's retry);
// - the takeover: every server watches the other owners' leases; once one has
//   lapsed (its server died or stopped) and its logs may hold open
//   transactions, a survivor acquires that owner's leases (the log's own
//   fencing makes a paused old holder's writes fail), recovers its logs in an
//   extra engine (every unfinished saga resumed, calls that were out sent
//   again, prepared transactions re-armed, 2PC transactions finished with
//   presumed abort as a restart would), runs them to their end and gives
//   the leases up once nothing is open there. A server restarted under the
//   same id asks for its logs back and waits for them (the adopter gives them
//   up at once; the restarted server resumes what was open);
// - reading another owner's transactions from the store, for queries and for
//   repeats of a request another server has begun.
//
// Owns: the pool of connections for these queries (the logs keep their own
// connections), the adopted engines, the watcher's timer. Every value reaches
// SQL as a bound parameter; table names are fixed.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Pool } from 'pg';
import { DtxError } from '../errors.ts';
import type { SagaRecord } from '../protocol/saga/types.ts';
import type { Engine, TransType } from './engine.ts';
import { type ServerRecord, serveOwner } from './store.ts';

/** A server id: what names its owner and its lease holders. */
const serverIdPattern = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$/;

/** Throws DTX_INVALID_ARGUMENT unless `id` is a valid server id. */
export function checkServerId(id: string): string {
  if (!serverIdPattern.test(id)) {
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `--server-id must be 1 to 48 letters, digits and _ . - (starting with a letter or digit), got ${JSON.stringify(id).slice(0, 80)}`,
    );
  }
  return id;
}

/**
 * The default server id: the host name and the port it listens on, so that
 * a server restarted where it ran takes its own logs back. (Port 0 has no
 * stable number: the host name alone; a second server on the host then needs
 * its own `--server-id`.)
 */
export function defaultServerId(port: number): string {
  const host =
    hostname()
      .replace(/[^A-Za-z0-9_.-]/g, '-')
      .replace(/^[^A-Za-z0-9]+/, '')
      .slice(0, 40) || 'dtx';
  return port === 0 ? host : `${host}-${port}`;
}

/** What a gid is claimed for: a transaction of the engine, or a 2PC transaction. */
export type ClaimType = TransType | '2pc';

/** A gid's claim: which owner's log holds (or is to hold) it, for which request. */
export interface Claim {
  owner: string;
  type: ClaimType;
  hash: string;
}

/** A gid another server's owner holds: the claim, and which live server holds that owner now (null: none). */
export interface Remote extends Claim {
  gid: string;
  heldBy: string | null;
}

export interface ClusterOptions {
  postgres: string;
  serverId: string;
  /** The owner leases' ttl: how long a dead server's transactions wait before a survivor takes them over. */
  leaseTtlMs: number;
  /** The servers run 2PC too: an owner's `dtx_serve_twopc` log (and its lease) counts in the takeover. */
  twoPc: boolean;
  /** Opens an engine on another owner's logs (their leases taken, everything recovered). */
  adopt: (owner: string, holder: string) => Promise<Engine>;
}

const claimTable = 'dtx_serve_gid';
/** The lease a restarted server takes to ask for its logs back (followed by its owner). */
const wantsPrefix = 'dtx-serve-wants:';
const sagaTable = 'dtx_serve_saga';
const serverTable = 'dtx_serve_server';
/** The 2PC log (./twopc.ts). */
const twoPcTable = 'dtx_serve_twopc';
/** The owners a server may adopt: every server's, and the one of stores written before servers had ids. */
const ownerFilter = `(m.owner = 'dtx-serve' OR m.owner LIKE 'dtx-serve:%')`;

interface Adopted {
  engine: Engine;
  /** Resolves when the adopted logs are lost to another server. */
  lost: Promise<unknown>;
}

export class Cluster {
  readonly owner: string;
  private readonly adopted = new Map<string, Adopted>();
  private readonly adopting = new Set<string>();
  private timer: ReturnType<typeof setInterval> | undefined;
  private scanning = false;
  private closed = false;

  private constructor(
    private readonly pool: Pool,
    readonly options: ClusterOptions,
  ) {
    this.owner = serveOwner(options.serverId);
  }

  /** Connects and creates the claim table (and the index that finds a gid's records) on first use. */
  static async open(options: ClusterOptions): Promise<Cluster> {
    checkServerId(options.serverId);
    const { default: pg } = await import('pg');
    const pool = new pg.Pool({ connectionString: options.postgres, max: 4, application_name: 'dtx-serve' });
    pool.on('error', () => undefined); // an idle connection that breaks is replaced on next use
    try {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['dtx_serve:cluster']);
        await client.query(
          `CREATE TABLE IF NOT EXISTS ${claimTable} (gid text PRIMARY KEY, owner text NOT NULL, ` +
            'type text NOT NULL, hash text NOT NULL, at timestamptz NOT NULL DEFAULT now())',
        );
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw error;
      } finally {
        client.release();
      }
    } catch (error) {
      await pool.end().catch(() => undefined);
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', `the store failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
    return new Cluster(pool, options);
  }

  /** A fresh lease holder id naming this server. */
  holder(): string {
    return `${this.options.serverId}/${randomBytes(6).toString('hex')}`;
  }

  /**
   * Whether this server's own logs are held by another server now (one that
   * adopted them while this server was down): then opening them must wait.
   * A holder with this server's id is this server's previous life (or a
   * second server started with the same id): opening fails as usual.
   */
  async ownLogsHeldElsewhere(): Promise<boolean> {
    const holder = await this.liveHolder(this.owner).catch(() => null);
    return holder !== null && holder !== this.options.serverId;
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    while (this.scanning) await new Promise((resolve) => setTimeout(resolve, 10));
    for (const [owner, a] of [...this.adopted]) {
      this.adopted.delete(owner);
      await a.engine.close().catch(() => undefined);
    }
    await this.pool.end().catch(() => undefined);
  }

  /**
   * Asks for this server's own logs back while it waits for them: a lease
   * `dtx-serve-wants:<owner>` (in the saga log's lease table), renewed until
   * the returned function is called. The server running them gives them up
   * at its next round, even with transactions open (this server resumes
   * them), and no other server takes them over meanwhile.
   */
  async askOwnLogsBack(): Promise<() => Promise<void>> {
    const name = `${wantsPrefix}${this.owner}`;
    const holder = this.holder();
    const renew = () =>
      this.query(
        `INSERT INTO ${sagaTable}_lease (name, holder, expires_at) ` +
          `VALUES ($1, $2, now() + $3::float8 * interval '1 millisecond') ` +
          'ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at',
        [name, holder, this.options.leaseTtlMs],
      );
    await renew();
    const timer = setInterval(
      () => void renew().catch(() => undefined),
      Math.max(50, Math.floor(this.options.leaseTtlMs / 3)),
    );
    timer.unref();
    return async () => {
      clearInterval(timer);
      await this.query(`DELETE FROM ${sagaTable}_lease WHERE name = $1 AND holder = $2`, [
        name,
        holder,
      ]).catch(() => undefined);
    };
  }

  /** The engines of the owners this server runs now besides its own. */
  adoptedEngines(): Engine[] {
    return [...this.adopted.values()].map((a) => a.engine);
  }

  /**
   * Where a request on `gid` goes: `local` (this server's own engine), an
   * adopted engine, or a `Remote`. With `create`, an unclaimed gid is claimed
   * for this server first (the request begins a transaction), and a gid
   * claimed for another type is DTX_DUPLICATE_GID wherever it runs.
   */
  async route(
    gid: string,
    local: Engine,
    create?: { type: ClaimType; hash: string },
  ): Promise<Engine | Remote> {
    let claim = await this.claimOf(gid);
    if (claim === undefined) {
      if (create === undefined) return local;
      claim = await this.claim(gid, create);
    }
    const { owner, type, hash, holder } = claim;
    if (create !== undefined && type !== create.type) {
      throw new DtxError('DTX_DUPLICATE_GID', `gid ${gid} is already used by a ${type} transaction`, { gid });
    }
    if (owner === this.owner) return local;
    const adopted = this.adopted.get(owner);
    if (adopted !== undefined) return adopted.engine;
    return { gid, owner, type, hash, heldBy: holder === null ? null : holder.split('/')[0]! };
  }

  /** Claims `gid` for this server; the claim that stands (ours, or one made first elsewhere). */
  private async claim(
    gid: string,
    create: { type: ClaimType; hash: string },
  ): Promise<Claim & { holder: string | null }> {
    const r = await this.query<Claim>(
      `INSERT INTO ${claimTable} (gid, owner, type, hash) VALUES ($1, $2, $3, $4) ` +
        'ON CONFLICT (gid) DO NOTHING RETURNING owner, type, hash',
      [gid, this.owner, create.type, create.hash],
    );
    if (r[0] !== undefined) return { ...r[0], holder: null };
    return (await this.claimOf(gid))!;
  }

  /** The claim of `gid` and the live holder of its owner's saga log (null: none). */
  private async claimOf(gid: string): Promise<(Claim & { holder: string | null }) | undefined> {
    const r = await this.query<Claim & { holder: string | null }>(
      `SELECT g.owner, g.type, g.hash, l.holder FROM ${claimTable} g LEFT JOIN ${sagaTable}_lease l ` +
        `ON l.name = 'dtx-log:' || g.owner AND l.expires_at > now() WHERE g.gid = $1`,
      [gid],
    );
    return r[0];
  }

  /** The server id of the live holder of `owner`'s saga log, or null when its lease has lapsed or was given up. */
  private async liveHolder(owner: string): Promise<string | null> {
    const r = await this.query<{ holder: string }>(
      `SELECT holder FROM ${sagaTable}_lease WHERE name = $1 AND expires_at > now()`,
      [`dtx-log:${owner}`],
    );
    const holder = r[0]?.holder;
    return holder === undefined ? null : holder.split('/')[0]!;
  }

  /** Every record `owner`'s logs hold for `gid`, with the time it was written. */
  async records(
    owner: string,
    gid: string,
  ): Promise<{
    saga: { at: Date; record: SagaRecord }[];
    server: { at: Date; record: ServerRecord }[];
  }> {
    const rows = await this.query<{ log: 'saga' | 'server'; record: SagaRecord & ServerRecord; at: Date }>(
      `SELECT 'saga' AS log, record, at, seq FROM ${sagaTable} WHERE owner = $1 AND record->>'txn' = $2 ` +
        `UNION ALL SELECT 'server', record, at, seq FROM ${serverTable} WHERE owner = $1 AND record->>'txn' = $2 ` +
        'ORDER BY log, seq',
      [owner, gid],
    );
    const of = (log: 'saga' | 'server') =>
      rows.filter((row) => row.log === log).map((row) => ({ at: row.at, record: row.record }));
    return { saga: of('saga'), server: of('server') };
  }

  private async query<T>(sql: string, params: unknown[]): Promise<T[]> {
    try {
      return (await this.pool.query(sql, params)).rows as T[];
    } catch (error) {
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', `the store failed: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }

  // ------------------------------------------------------------ takeover

  /**
   * Creates the indexes the queries above need (the log tables exist once
   * this server's own logs are open), then watches the other owners' leases
   * every half ttl.
   */
  async watch(): Promise<void> {
    const client = await this.pool.connect().catch((error: unknown) => {
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', `the store failed: ${(error as Error).message}`, {
        cause: error,
      });
    });
    try {
      // CREATE INDEX IF NOT EXISTS is not safe against a concurrent creator.
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', ['dtx_serve:cluster']);
      const opening: [string, string][] = [
        [sagaTable, `'begin', 'prepare'`],
        [serverTable, `'begin', 'prepare'`],
        ...(this.options.twoPc ? [[twoPcTable, `'tpc-begin'`] as [string, string]] : []),
      ];
      for (const [table, types] of opening) {
        await client.query(`CREATE INDEX IF NOT EXISTS ${table}_txn ON ${table} ((record->>'txn'))`);
        await client.query(
          `CREATE INDEX IF NOT EXISTS ${table}_opening ON ${table} (owner) WHERE record->>'type' IN (${types})`,
        );
      }
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw new DtxError('DTX_RESOURCE_UNAVAILABLE', `the store failed: ${(error as Error).message}`, {
        cause: error,
      });
    } finally {
      client.release();
    }
    const every = Math.max(100, Math.floor(this.options.leaseTtlMs / 2));
    this.timer = setInterval(() => void this.scan(), every);
    this.timer.unref();
  }

  /** One round of the watcher: give back the adopted owners with nothing open; adopt every lapsed owner with something open. */
  private async scan(): Promise<void> {
    if (this.scanning || this.closed) return;
    this.scanning = true;
    try {
      const wanted = new Set(
        (
          await this.query<{ owner: string }>(
            `SELECT substr(name, ${wantsPrefix.length + 1}) AS owner FROM ${sagaTable}_lease ` +
              'WHERE name LIKE $1 AND expires_at > now()',
            [`${wantsPrefix}%`],
          )
        ).map((r) => r.owner),
      );
      for (const [owner, a] of [...this.adopted]) {
        // Given back once nothing is open there, or at once when its server is back and asks for them.
        if (!a.engine.idle() && !wanted.has(owner)) continue;
        this.adopted.delete(owner);
        await a.engine.close().catch(() => undefined);
      }
      for (const owner of await this.orphans()) {
        if (this.closed) return;
        if (this.adopted.has(owner) || this.adopting.has(owner)) continue;
        await this.adoptOwner(owner);
      }
    } catch {
      // The store failed: the next round tries again.
    } finally {
      this.scanning = false;
    }
  }

  /**
   * The other owners whose saga lease has lapsed (or was given up) and whose
   * logs hold an open transaction: a saga `begin` without a later `end`, a
   * `prepare` without a later `started` or `end`, or a `tpc-begin` without a
   * later `tpc-end`. With 2PC, the owner's 2PC lease must have lapsed too
   * (each log renews its own, a few ms apart): else opening its 2PC log
   * would fail and the takeover would be tried again next round.
   */
  private async orphans(): Promise<string[]> {
    const open = (table: string, opening: string, closing: string) =>
      `EXISTS (SELECT 1 FROM ${table} b WHERE b.owner = m.owner AND b.record->>'type' IN (${opening}) ` +
      `AND NOT EXISTS (SELECT 1 FROM ${table} e WHERE e.record->>'txn' = b.record->>'txn' ` +
      `AND e.owner = m.owner AND e.seq > b.seq AND e.record->>'type' IN (${closing})))`;
    const rows = await this.query<{ owner: string }>(
      `SELECT m.owner FROM ${sagaTable}_meta m WHERE ${ownerFilter} AND m.owner <> $1 ` +
        `AND NOT EXISTS (SELECT 1 FROM ${sagaTable}_lease l ` +
        `WHERE l.expires_at > now() AND (l.name = 'dtx-log:' || m.owner OR l.name = '${wantsPrefix}' || m.owner)) ` +
        (this.options.twoPc
          ? `AND NOT EXISTS (SELECT 1 FROM ${twoPcTable}_lease t ` +
            `WHERE t.expires_at > now() AND t.name = 'dtx-log:' || m.owner) `
          : '') +
        `AND (${open(sagaTable, `'begin'`, `'end'`)} ` +
        `OR ${open(serverTable, `'prepare'`, `'started', 'end'`)}` +
        (this.options.twoPc ? ` OR ${open(twoPcTable, `'tpc-begin'`, `'tpc-end'`)}` : '') +
        ')',
      [this.owner],
    );
    return rows.map((r) => r.owner);
  }

  private async adoptOwner(owner: string): Promise<void> {
    this.adopting.add(owner);
    try {
      const engine = await this.options.adopt(owner, this.holder());
      if (this.closed) {
        await engine.close();
        return;
      }
      const lost = engine.lost.then(async () => {
        // Another server took these logs over (this one was too slow to renew): let them go.
        if (this.adopted.get(owner)?.engine !== engine) return;
        this.adopted.delete(owner);
        await engine.close().catch(() => undefined);
      });
      this.adopted.set(owner, { engine, lost });
    } catch {
      // Another server adopted it first (its lease is held), or the store failed: the next round sees.
    } finally {
      this.adopting.delete(owner);
    }
  }
}
