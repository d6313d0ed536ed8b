// The durable log port: the group-commit core (./group-commit.ts) against a
// scripted backend, where batching and failures are deterministic, and the
// SQLite store against real files — durability across a SIGKILL'd child
// process, the one-process lock, checkpoints and corrupt rows.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { pbkdf2, pbkdf2Sync } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fstatSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readlinkSync,
  rmSync,
  unlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { twoPcRecordCodec } from '../../../src/protocol/twopc/codec.ts';
import { compactTwoPcLog } from '../../../src/protocol/twopc/log.ts';
import type { TwoPcRecord } from '../../../src/protocol/twopc/types.ts';
import { isLogError, type LogError, type LogErrorReason } from '../../../src/runtime/log/errors.ts';
import { GroupCommitLog, type LogBackend, type WriteBatch } from '../../../src/runtime/log/group-commit.ts';
import { openSqliteLog } from '../../../src/runtime/log/sqlite.ts';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const sqliteModule = fileURLToPath(new URL('../../../src/runtime/log/sqlite.ts', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'dtx-log-test-'));
let fileSeq = 0;
const nextPath = () => join(dir, `log-${++fileSeq}.sqlite`);

after(() => rmSync(dir, { recursive: true, force: true }));

async function rejectsWithReason(promise: Promise<unknown>, reason: LogErrorReason): Promise<LogError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(isLogError(error), `expected a LogError ${reason}, got ${String(error)}`);
    assert.equal(error.reason, reason, error.message);
    return error;
  }
  assert.fail(`expected a rejection with reason ${reason}`);
}

const sleep = (durationMs: number) => new Promise((resolve) => setTimeout(resolve, durationMs));

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(2);
  }
}

/** An in-memory backend whose writes can be slowed down or made to fail. */
class ScriptedBackend implements LogBackend {
  readonly description = 'scripted log';
  readonly batches: WriteBatch[] = [];
  rows: string[] = [];
  writeDelayMs = 0;
  failNextWrite = false;
  closedBroken: boolean | undefined;

  async write(batch: WriteBatch): Promise<void> {
    if (this.writeDelayMs > 0) await sleep(this.writeDelayMs);
    if (this.failNextWrite) {
      this.failNextWrite = false;
      throw new Error('EIO: the disk refused');
    }
    this.batches.push({ replace: batch.replace, texts: [...batch.texts] });
    if (batch.replace) this.rows = [];
    this.rows.push(...batch.texts);
  }

  async read() {
    return this.rows.map((text, i) => ({ seq: String(i + 1), text }));
  }

  async close(broken: boolean): Promise<void> {
    this.closedBroken = broken;
  }
}

describe('group commit core', () => {
  test('appends waiting while a write is in flight all go into the next write', async () => {
    const backend = new ScriptedBackend();
    backend.writeDelayMs = 20;
    const log = new GroupCommitLog<{ n: number }>(backend);
    const first = log.append([{ n: 0 }], true);
    await new Promise((resolve) => setImmediate(resolve)); // the first write is now in flight
    const rest = Array.from({ length: 50 }, (_, i) => log.append([{ n: i + 1 }], true));
    await Promise.all([first, ...rest]);
    assert.equal(backend.batches.length, 2);
    assert.deepEqual(backend.batches[0]!.texts, ['{"n":0}']);
    assert.equal(backend.batches[1]!.texts.length, 50);
    assert.deepEqual(log.stats, { flushes: 2, records: 51 });
    assert.deepEqual(
      (await log.load()).map((r) => r.n),
      Array.from({ length: 51 }, (_, i) => i),
    );
  });

  test('a checkpoint replaces exactly the appends called before it, in the same write', async () => {
    const backend = new ScriptedBackend();
    const log = new GroupCommitLog<string>(backend);
    await log.append(['old'], true);
    const before = log.append(['before'], true);
    const checkpoint = log.checkpoint(['kept']);
    const afterwards = log.append(['after'], false);
    await Promise.all([before, checkpoint, afterwards]);
    assert.deepEqual(await log.load(), ['kept', 'after']);
    assert.deepEqual(backend.batches[1], { replace: true, texts: ['"kept"', '"after"'] });
    assert.equal(log.stats.records, 3);
  });

  test('lazy appends resolve at once and are written after the delay, or with the next forced append', async () => {
    const backend = new ScriptedBackend();
    const log = new GroupCommitLog<string>(backend, { lazyFlushDelayMs: 5 });
    await log.append(['lazy-1'], false);
    assert.equal(backend.batches.length, 0);
    await waitFor(() => backend.batches.length > 0, 'the lazy write');
    assert.deepEqual(backend.batches, [{ replace: false, texts: ['"lazy-1"'] }]);
    await log.append(['lazy-2'], false);
    await log.append(['forced'], true);
    assert.deepEqual(backend.batches[1], { replace: false, texts: ['"lazy-2"', '"forced"'] });
    await sleep(20);
    assert.equal(backend.batches.length, 2, 'the timer was cleared by the forced write');
  });

  test('load sees every append called before it, lazy ones included', async () => {
    const log = new GroupCommitLog<string>(new ScriptedBackend());
    void log.append(['a'], false);
    void log.append(['b'], true);
    assert.deepEqual(await log.load(), ['a', 'b']);
  });

  test('a failed write poisons the log: its appends, queued ones and later calls all reject', async () => {
    const backend = new ScriptedBackend();
    backend.writeDelayMs = 10;
    const log = new GroupCommitLog<string>(backend);
    await log.append(['ok'], true);
    backend.failNextWrite = true;
    const failing = log.append(['lost?'], true);
    await new Promise((resolve) => setImmediate(resolve));
    const queued = log.append(['queued'], true);
    const order: string[] = [];
    const heard = Promise.all([track(failing, 'failing', order), track(queued, 'queued', order)]);
    const error = await rejectsWithReason(failing, 'failed');
    await heard;
    assert.deepEqual(order, ['failing rejected', 'queued rejected'], 'the failed batch hears first');
    assert.equal(error.code, 'DTX_RESOURCE_UNAVAILABLE');
    assert.match(error.message, /may or may not be durable/);
    assert.match(String((error.cause as Error).message), /EIO/);
    assert.equal(await rejectsWithReason(queued, 'failed'), error);
    assert.equal(await rejectsWithReason(log.append(['later'], false), 'failed'), error);
    await rejectsWithReason(log.load(), 'failed');
    await log.close();
    assert.equal(backend.closedBroken, true);
  });

  test('records that are not plain JSON are refused with a TypeError and do not poison the log', async () => {
    const log = new GroupCommitLog<unknown>(new ScriptedBackend());
    const bad: unknown[] = [
      undefined,
      Number.NaN,
      { x: Infinity },
      10n,
      'a\u0000b',
      { 'k\u0000': 1 },
      '\ud800',
    ];
    for (const record of bad) {
      await assert.rejects(log.append([record], true), TypeError, `should refuse ${String(record)}`);
    }
    await assert.rejects(log.checkpoint([undefined]), TypeError);
    await log.append(['fine', '\ud83d\ude00'], true);
    assert.deepEqual(await log.load(), ['fine', '\ud83d\ude00']);
  });

  test('records are serialized at call time', async () => {
    const log = new GroupCommitLog<{ v: number }>(new ScriptedBackend());
    const record = { v: 1 };
    const done = log.append([record], true);
    record.v = 2;
    await done;
    assert.deepEqual(await log.load(), [{ v: 1 }]);
  });

  test('close writes lazy records, is idempotent, and later calls reject with closed', async () => {
    const backend = new ScriptedBackend();
    const log = new GroupCommitLog<string>(backend, { lazyFlushDelayMs: 60_000 });
    await log.append(['lazy'], false);
    await Promise.all([log.close(), log.close()]);
    assert.deepEqual(backend.rows, ['"lazy"']);
    assert.equal(backend.closedBroken, false);
    const error = await rejectsWithReason(log.append(['x'], true), 'closed');
    assert.equal(error.code, 'DTX_INVALID_STATE');
    await rejectsWithReason(log.load(), 'closed');
  });
});

/**
 * A backend that applies each batch when `write` is called and then waits for
 * the test to finish (or fail) its sync, batch by batch, in any order.
 */
class OverlappingBackend implements LogBackend {
  readonly description = 'overlapping log';
  readonly overlapsSyncs = true;
  readonly applied: string[][] = [];
  readonly syncs: { ok(): void; fail(error: Error): void }[] = [];
  rows: string[] = [];
  inFlight = 0;
  inFlightMax = 0;

  write(batch: WriteBatch): Promise<void> {
    this.applied.push([...batch.texts]);
    if (batch.replace) this.rows = [];
    this.rows.push(...batch.texts);
    this.inFlightMax = Math.max(this.inFlightMax, ++this.inFlight);
    return new Promise<void>((ok, fail) =>
      this.syncs.push({
        ok: () => {
          this.inFlight--;
          ok();
        },
        fail: (error) => {
          this.inFlight--;
          fail(error);
        },
      }),
    );
  }

  async read() {
    return this.rows.map((text, i) => ({ seq: String(i + 1), text }));
  }

  async close(): Promise<void> {}
}

/** Settles as `promise` does, recording 'ok' or 'rejected' into `into` under `name` when it happens. */
function track(promise: Promise<unknown>, name: string, into: string[]): Promise<void> {
  return promise.then(
    () => void into.push(`${name} ok`),
    () => void into.push(`${name} rejected`),
  );
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** A log allowing three syncs in flight, with three one-record batches written and all three syncing. */
async function threeSyncing() {
  const backend = new OverlappingBackend();
  const log = new GroupCommitLog<number>(backend, {}, undefined, { syncsInFlight: 3 });
  const settled: string[] = [];
  const done: Promise<void>[] = [];
  for (const [i, name] of ['first', 'second', 'third'].entries()) {
    done.push(track(log.append([i + 1], true), name, settled));
    await waitFor(() => backend.applied.length === i + 1, `the ${name} write`);
  }
  return { backend, log, settled, done };
}

describe('group commit with several syncs in flight', () => {
  test('an append made while a write is syncing is written and its sync started at once, up to the limit', async () => {
    const backend = new OverlappingBackend();
    const log = new GroupCommitLog<number>(backend, {}, undefined, { syncsInFlight: 2 });
    const settled: string[] = [];
    const first = track(log.append([1], true), 'first', settled);
    await waitFor(() => backend.applied.length === 1, 'the first write');
    const second = track(log.append([2], true), 'second', settled);
    await waitFor(() => backend.applied.length === 2, 'the second write, while the first is syncing');
    // Two in flight: the next appends wait, and then share one write.
    const third = track(log.append([3], true), 'third', settled);
    const fourth = track(log.append([4], true), 'fourth', settled);
    for (let i = 0; i < 5; i++) await turn();
    assert.equal(backend.applied.length, 2, 'no third write while two are in flight');
    backend.syncs[0]!.ok();
    await waitFor(() => backend.applied.length === 3, 'the third write');
    assert.deepEqual(backend.applied[2], ['3', '4']);
    backend.syncs[1]!.ok();
    backend.syncs[2]!.ok();
    await Promise.all([first, second, third, fourth]);
    assert.deepEqual(settled, ['first ok', 'second ok', 'third ok', 'fourth ok']);
    assert.equal(backend.inFlightMax, 2);
    assert.deepEqual(log.stats, { flushes: 3, records: 4 });
    await log.close();
  });

  test('a batch whose sync finishes first still resolves after the batches before it', async () => {
    const { backend, log, settled, done } = await threeSyncing();
    backend.syncs[2]!.ok();
    backend.syncs[1]!.ok();
    for (let i = 0; i < 5; i++) await turn();
    assert.deepEqual(settled, [], 'nothing resolves before the first batch is durable');
    backend.syncs[0]!.ok();
    await Promise.all(done);
    assert.deepEqual(settled, ['first ok', 'second ok', 'third ok']);
    await log.close();
  });

  test('a failed sync fails the batches after it, even those whose own sync succeeded; the ones before it resolve', async () => {
    const { backend, log, settled, done } = await threeSyncing();
    backend.syncs[2]!.ok();
    backend.syncs[1]!.fail(new Error('EIO: the disk refused'));
    // The log is failed at once: a new append is refused, and nothing more is written.
    await rejectsWithReason(log.append([4], true), 'failed');
    backend.syncs[0]!.ok();
    await Promise.all(done);
    assert.deepEqual(settled, ['first ok', 'second rejected', 'third rejected']);
    assert.equal(backend.applied.length, 3);
    await log.close();
  });

  test('load and close wait for every write in flight', async () => {
    const backend = new OverlappingBackend();
    const log = new GroupCommitLog<number>(backend, {}, undefined, { syncsInFlight: 2 });
    const first = log.append([1], true);
    await waitFor(() => backend.applied.length === 1, 'the first write');
    const second = log.append([2], true);
    await waitFor(() => backend.applied.length === 2, 'the second write');
    let loaded: number[] | undefined;
    const load = log.load().then((records) => (loaded = records));
    let closed = false;
    const close = log.close().then(() => (closed = true));
    for (let i = 0; i < 5; i++) await turn();
    assert.equal(loaded, undefined, 'load waits for the syncs');
    backend.syncs[0]!.ok();
    for (let i = 0; i < 5; i++) await turn();
    assert.equal(loaded, undefined, 'load waits for the last sync too');
    backend.syncs[1]!.ok();
    await Promise.all([first, second, load]);
    assert.deepEqual(loaded, [1, 2]);
    await close;
    assert.equal(closed, true);
  });

  test('syncsInFlight is checked: 1 to 16, and more than 1 only where the backend can overlap syncs', () => {
    for (const bad of [0, 17, 1.5, Number.NaN]) {
      assert.throws(
        () => new GroupCommitLog(new OverlappingBackend(), {}, undefined, { syncsInFlight: bad }),
        /syncsInFlight must be an integer from 1 to 16/,
      );
    }
    assert.throws(
      () => new GroupCommitLog(new ScriptedBackend(), {}, undefined, { syncsInFlight: 2 }),
      /scripted log cannot have more than one sync in flight/,
    );
    new GroupCommitLog(new ScriptedBackend(), {}, undefined, { syncsInFlight: 1 });
  });
});

describe('SQLite log', () => {
  test('append/load round trip, across a reopen', async () => {
    const path = join(dir, 'nested', 'deeper', 'coord.sqlite'); // parent directories are created
    const log = await openSqliteLog<TwoPcRecord>(path, { decode: twoPcRecordCodec.check, create: true });
    const records: TwoPcRecord[] = [
      { type: 'commit', txn: 't1', participants: ['p1', 'p2'], client: 'c1' },
      { type: 'end', txn: 't1' },
      { type: 'prepared', txn: 't2', coordinator: 'c1' },
    ];
    await log.append(records.slice(0, 2), true);
    await log.append(records.slice(2), false);
    assert.deepEqual(await log.load(), records);
    await log.close();
    const reopened = await openSqliteLog<TwoPcRecord>(path, { decode: twoPcRecordCodec.check });
    assert.deepEqual(await reopened.load(), records);
    await reopened.close();
  });

  test('order is preserved across concurrent appends, forced and lazy', async () => {
    const log = await openSqliteLog<{ w: number; i: number }>(nextPath(), { create: true });
    const expected: { w: number; i: number }[] = [];
    const worker = async (w: number) => {
      for (let i = 0; i < 20; i++) {
        const batch = [{ w, i }];
        expected.push(...batch); // call order is append order
        await log.append(batch, (w + i) % 3 !== 0);
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    assert.deepEqual(await log.load(), expected);
    await log.close();
  });

  test('with syncsInFlight 2: order is kept across concurrent appends and a reopen, with fewer appends per sync', async () => {
    const path = nextPath();
    const log = await openSqliteLog<{ w: number; i: number }>(path, { create: true, syncsInFlight: 2 });
    const expected: { w: number; i: number }[] = [];
    const worker = async (w: number) => {
      for (let i = 0; i < 20; i++) {
        const batch = [{ w, i }];
        expected.push(...batch);
        await log.append(batch, (w + i) % 3 !== 0);
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, w) => worker(w)));
    await log.checkpoint(expected.slice(100));
    await log.append([{ w: -1, i: -1 }], true);
    const kept = [...expected.slice(100), { w: -1, i: -1 }];
    assert.deepEqual(await log.load(), kept);
    await log.close();
    const reopened = await openSqliteLog<{ w: number; i: number }>(path, { syncsInFlight: 2 });
    assert.deepEqual(await reopened.load(), kept);
    await reopened.close();
  });

  test('each sync that may be in flight has a -wal descriptor of its own (a failed writeback is told once per descriptor)', async (t) => {
    if (process.platform !== 'linux') return t.skip('reads /proc/self/fd');
    const walDescriptors = (path: string) =>
      readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === `${path}-wal`;
        } catch {
          return false;
        }
      }).length;
    for (const syncsInFlight of [1, 3]) {
      const path = nextPath();
      const log = await openSqliteLog<number>(path, { create: true, syncsInFlight });
      await log.append([1], true);
      assert.equal(walDescriptors(path), syncsInFlight + 1, "the log's, and SQLite's own");
      await log.close();
      assert.equal(walDescriptors(path), 0, 'close closes them all');
    }
  });

  for (const syncsInFlight of [1, 2])
    test(`a -wal removed under the open log fails the next write instead of syncing another file (syncsInFlight ${syncsInFlight})`, async () => {
      const path = nextPath();
      const log = await openSqliteLog<number>(path, { create: true, syncsInFlight });
      await log.append([1], true);
      unlinkSync(`${path}-wal`);
      const error = await rejectsWithReason(log.append([2], true), 'failed');
      assert.match(error.message, /removed or replaced while the log was open/);
      // A file opened now may get a number a careless close would close again.
      const other = openSync(join(dir, `other-${syncsInFlight}`), 'w');
      await log.close();
      assert.doesNotThrow(() => fstatSync(other), 'closing the log closed only its own descriptors');
      closeSync(other);
    });

  test('syncsInFlight above 1 needs a log file on the main thread', async () => {
    await assert.rejects(
      openSqliteLog(nextPath(), { create: true, syncsInFlight: 2, thread: 'worker' }),
      /needs a log file on the main thread/,
    );
    await assert.rejects(
      openSqliteLog(':memory:', { unsafeMemory: true, syncsInFlight: 2 }),
      /needs a log file on the main thread/,
    );
    const path = nextPath();
    await assert.rejects(openSqliteLog(path, { create: true, syncsInFlight: 0 }), RangeError);
    assert.equal(existsSync(path), false, 'a refused option creates nothing');
  });

  test("a forced append resolves only after the WAL's fdatasync, which runs off the event loop", async () => {
    // The main-thread log commits with synchronous = NORMAL and then syncs the
    // -wal file on libuv's thread pool. Occupying every pool thread delays
    // that sync, so the append must wait for the pool; the event loop meanwhile
    // keeps running timers (a synchronous fsync would have blocked it instead).
    const path = nextPath();
    const log = await openSqliteLog<{ i: number }>(path, { create: true });
    await log.append([{ i: 0 }], true);
    assert.ok(existsSync(`${path}-wal`), 'the log runs in WAL mode');
    const poolSize = Number(process.env.UV_THREADPOOL_SIZE ?? 4);
    // pbkdf2 runs on the pool: calibrate its rounds to hold a pool thread about blockMs.
    const blockMs = 400;
    const probeStart = performance.now();
    pbkdf2Sync('p', 's', 20_000, 32, 'sha256');
    const rounds = Math.ceil((20_000 * blockMs) / Math.max(1, performance.now() - probeStart));
    const blockers = Array.from(
      { length: poolSize },
      () => new Promise<void>((done) => pbkdf2('p', 's', rounds, 32, 'sha256', () => done())),
    );
    await sleep(20); // let the blockers take the pool
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 5);
    const started = Date.now();
    await log.append([{ i: 1 }], true);
    const waitedMs = Date.now() - started;
    clearInterval(ticker);
    await Promise.all(blockers);
    assert.ok(waitedMs >= blockMs / 4, `the append resolved after ${waitedMs} ms, before the pool was free`);
    assert.ok(ticks > 0, 'timers ran while the append waited for its sync');
    assert.deepEqual(await log.load(), [{ i: 0 }, { i: 1 }]);
    await log.close();
  });

  test('group commit: 200 concurrent forced appends share few fsyncs', async () => {
    const log = await openSqliteLog<{ i: number }>(nextPath(), { create: true });
    await Promise.all(Array.from({ length: 200 }, (_, i) => log.append([{ i }], true)));
    const oneTurn = { ...log.stats };
    // Closed loop: 32 callers, each appending again as soon as its append resolved.
    await Promise.all(
      Array.from({ length: 32 }, async (_, w) => {
        for (let i = 0; i < 10; i++) await log.append([{ i: 1000 * (w + 1) + i }], true);
      }),
    );
    const closedLoop = {
      flushes: log.stats.flushes - oneTurn.flushes,
      records: log.stats.records - oneTurn.records,
    };
    console.log(
      `sqlite group commit: 200 appends in one turn -> ${oneTurn.flushes} flushes; ` +
        `32 callers x 10 appends -> ${closedLoop.flushes} flushes for ${closedLoop.records} records`,
    );
    assert.equal(oneTurn.records, 200);
    assert.ok(oneTurn.flushes < 200 / 4, `${oneTurn.flushes} flushes for 200 appends`);
    assert.ok(closedLoop.flushes < closedLoop.records / 4, `${closedLoop.flushes} flushes for 320 appends`);
    assert.equal((await log.load()).length, 520);
    await log.close();
  });

  test('checkpoint keeps what compactTwoPcLog keeps, and later appends follow it', async () => {
    const path = nextPath();
    const log = await openSqliteLog<TwoPcRecord>(path, { decode: twoPcRecordCodec.check, create: true });
    const history: TwoPcRecord[] = [
      { type: 'commit', txn: 'a', participants: ['p1'], client: 'c' },
      { type: 'commit', txn: 'b', participants: ['p1'], client: 'c' },
      { type: 'end', txn: 'a' },
      { type: 'prepared', txn: 'x', coordinator: 'c' },
      { type: 'prepared', txn: 'y', coordinator: 'c' },
      { type: 'committed', txn: 'y' },
    ];
    await log.append(history, true);
    await log.checkpoint(compactTwoPcLog(history));
    await log.append([{ type: 'end', txn: 'b' }], true);
    const expected: TwoPcRecord[] = [
      { type: 'commit', txn: 'b', participants: ['p1'], client: 'c' },
      { type: 'prepared', txn: 'x', coordinator: 'c' },
      { type: 'end', txn: 'b' },
    ];
    assert.deepEqual(await log.load(), expected);
    await log.close();
    const reopened = await openSqliteLog<TwoPcRecord>(path, { decode: twoPcRecordCodec.check });
    assert.deepEqual(await reopened.load(), expected);
    await reopened.checkpoint([]);
    assert.deepEqual(await reopened.load(), []);
    await reopened.close();
  });

  test('corrupt rows: load rejects with reason corrupt and names the row', async () => {
    const path = nextPath();
    const log = await openSqliteLog<TwoPcRecord>(path, { decode: twoPcRecordCodec.check, create: true });
    await log.append([{ type: 'end', txn: 't1' }], true);
    await log.close();

    const raw = new Database(path);
    raw.prepare('INSERT INTO dtx_log (record) VALUES (?)').run('{"type":"end","txn":"t1","extra":1}');
    raw.close();
    let reopened = await openSqliteLog<TwoPcRecord>(path, { decode: twoPcRecordCodec.check });
    let error = await rejectsWithReason(reopened.load(), 'corrupt');
    assert.equal(error.seq, '2');
    assert.equal(error.code, 'DTX_LOG_CORRUPT');
    assert.equal(error.retryable, false);
    assert.match(error.message, /row 2 is not a valid record: .*no field "extra"/);
    await reopened.close();

    const raw2 = new Database(path);
    raw2.prepare('UPDATE dtx_log SET record = ? WHERE seq = 2').run('{"type":');
    raw2.close();
    reopened = await openSqliteLog<TwoPcRecord>(path, { decode: twoPcRecordCodec.check });
    error = await rejectsWithReason(reopened.load(), 'corrupt');
    assert.match(error.message, /row 2 is not JSON/);
    // Without a decoder the JSON is still checked.
    await reopened.close();
    const lenient = await openSqliteLog<unknown>(path);
    await rejectsWithReason(lenient.load(), 'corrupt');
    await lenient.close();
  });

  test(':memory: is refused unless unsafeMemory is set', async () => {
    const error = await rejectsWithReason(openSqliteLog(':memory:'), 'notDurable');
    assert.equal(error.code, 'DTX_INVALID_STATE');
    await rejectsWithReason(openSqliteLog(''), 'notDurable');
    const memory = await openSqliteLog<number>(':memory:', { unsafeMemory: true });
    await memory.append([1, 2], true);
    assert.deepEqual(await memory.load(), [1, 2]);
    await memory.close();
  });

  test('on a worker thread and on the main thread (the default): the same records, batched the same way', async () => {
    for (const thread of ['worker', 'main'] as const) {
      const path = nextPath();
      const log = await openSqliteLog<number>(path, { create: true, thread });
      // Appends made in one turn share one write transaction, wherever it runs.
      await Promise.all(Array.from({ length: 10 }, (_, i) => log.append([i], true)));
      assert.equal(log.stats.flushes, 1, thread);
      await log.checkpoint([7]);
      await log.append([8], false);
      // The lock is the connection's, on whichever thread it lives.
      await rejectsWithReason(openSqliteLog(path, { thread: 'main' }), 'locked');
      await log.close();
      const reopened = await openSqliteLog<number>(path, { thread: thread === 'main' ? 'worker' : 'main' });
      assert.deepEqual(await reopened.load(), [7, 8], thread);
      await reopened.close();
    }
  });

  test('an idle log on its worker thread does not keep the process alive', { timeout: 120_000 }, async () => {
    const path = nextPath();
    const code = `
      const { openSqliteLog } = await import(${JSON.stringify(sqliteModule)});
      const log = await openSqliteLog(${JSON.stringify(path)}, { create: true, thread: 'worker' });
      await log.append([1], true);
      process.stdout.write('appended\\n');`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
      cwd: repoRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (chunk) => (out += chunk));
    const exitCode = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    assert.equal(exitCode, 0);
    assert.equal(out, 'appended\n');
    const reopened = await openSqliteLog<number>(path);
    assert.deepEqual(await reopened.load(), [1]);
    await reopened.close();
  });

  test('a second opener of the same file gets reason locked until the first closes', async () => {
    const path = nextPath();
    const first = await openSqliteLog<number>(path, { create: true });
    await first.append([1], true);
    const error = await rejectsWithReason(openSqliteLog(path), 'locked');
    assert.equal(error.code, 'DTX_LOG_BUSY');
    assert.match(error.message, new RegExp(path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
    assert.equal(error.retryable, true);
    await first.close();
    const second = await openSqliteLog<number>(path);
    assert.deepEqual(await second.load(), [1]);
    await second.close();
  });

  for (const syncsInFlight of [1, 2])
    test(`a forced append survives SIGKILL right after it resolved (syncsInFlight ${syncsInFlight}); the lock dies with the process`, async () => {
      const path = nextPath();
      const code = `
      const { openSqliteLog } = await import(${JSON.stringify(sqliteModule)});
      const log = await openSqliteLog(${JSON.stringify(path)}, { create: true, syncsInFlight: ${syncsInFlight} });
      for (let n = 0; ; n++) {
        await log.append([{ lazy: n }], false);
        await log.append([{ n }], true);
        process.stdout.write(n + '\\n');
      }`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], {
        cwd: repoRoot,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stderr = '';
      child.stderr.on('data', (chunk) => (stderr += chunk));
      const exited = new Promise<NodeJS.Signals | null>((resolve) =>
        child.on('exit', (_code, signal) => resolve(signal)),
      );
      const acknowledged: number[] = [];
      let buffered = '';
      let lockCheck: Promise<LogError> | undefined;
      await new Promise<void>((resolve, reject) => {
        child.on('exit', () => reject(new Error(`the child exited early: ${stderr}`)));
        child.stdout.on('data', (chunk: Buffer) => {
          buffered += chunk.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          for (const line of lines) acknowledged.push(Number(line));
          // While the child lives, its lock keeps this process out.
          if (lockCheck === undefined && acknowledged.length > 0) {
            // The message names the holder, where the platform can tell (Linux: /proc/locks).
            lockCheck = rejectsWithReason(openSqliteLog(path), 'locked').then((e) => {
              if (process.platform === 'linux')
                assert.match(e.message, new RegExp(`owned by process ${child.pid}\\b`));
              return e;
            });
            lockCheck.catch(() => undefined); // awaited below; this only keeps it from counting as unhandled
          }
          if (acknowledged.length >= 20) {
            process.kill(child.pid!, 'SIGKILL');
            resolve();
          }
        });
      });
      assert.equal(await exited, 'SIGKILL');
      await lockCheck;
      // Lines still in the pipe were acknowledged before the kill too.
      for (const line of buffered.split('\n')) if (line !== '') acknowledged.push(Number(line));

      const log = await openSqliteLog<{ n?: number; lazy?: number }>(path);
      const forced = (await log.load()).filter((r) => r.n !== undefined).map((r) => r.n!);
      await log.close();
      const last = acknowledged.at(-1)!;
      console.log(
        `sqlite SIGKILL: child acknowledged ${acknowledged.length} forced appends, log holds ${forced.length}`,
      );
      assert.deepEqual(
        forced.slice(0, last + 1),
        Array.from({ length: last + 1 }, (_, i) => i),
        'every acknowledged forced append is in the log, in order',
      );
    });

  test('identity: a missing file is notFound and nothing is created; the identity survives reopens and checkpoints', async () => {
    const path = join(dir, 'absent', 'log.sqlite');
    const missing = await rejectsWithReason(openSqliteLog(path), 'notFound');
    assert.equal(missing.code, 'DTX_LOG_NOT_FOUND');
    assert.ok(missing.message.includes(path), missing.message);
    assert.equal(existsSync(join(dir, 'absent')), false, 'a directory was created');

    const created = await openSqliteLog<number>(path, { create: true, identity: { protocol: 'tcc' } });
    const identity = created.identity!;
    assert.equal(identity.protocol, 'tcc');
    assert.match(identity.coordinatorId, /^[a-z0-9]{10}$/);
    await created.append([1, 2], true);
    await created.checkpoint([2]);
    await created.close();
    const reopened = await openSqliteLog<number>(path);
    assert.deepEqual(reopened.identity, identity);
    assert.deepEqual(await reopened.load(), [2]);
    await reopened.close();
    const wrongProtocol = await rejectsWithReason(
      openSqliteLog(path, { expect: { protocol: '2pc' } }),
      'mismatch',
    );
    assert.equal(wrongProtocol.code, 'DTX_LOG_MISMATCH');
    assert.match(wrongProtocol.message, /is a tcc log, not 2pc/);
    const wrongId = await rejectsWithReason(
      openSqliteLog(path, { expect: { coordinatorId: 'someone' } }),
      'mismatch',
    );
    assert.match(
      wrongId.message,
      new RegExp(`belongs to coordinator id ${identity.coordinatorId}, not someone`),
    );
    // Two logs never share an id by default.
    const other = await openSqliteLog(nextPath(), { create: true });
    assert.notEqual(other.identity!.coordinatorId, identity.coordinatorId);
    await other.close();
  });

  test('a log written before identities is refused until it is adopted with create, keeping its records', async () => {
    const path = nextPath();
    const raw = new Database(path);
    raw.exec('CREATE TABLE dtx_log (seq INTEGER PRIMARY KEY, record TEXT NOT NULL) STRICT');
    raw.prepare('INSERT INTO dtx_log (record) VALUES (?)').run('7');
    raw.pragma('user_version = 1');
    raw.close();
    const refused = await rejectsWithReason(openSqliteLog(path), 'mismatch');
    assert.match(refused.message, /records no identity/);
    const adopted = await openSqliteLog<number>(path, {
      create: true,
      identity: { coordinatorId: 'old-one' },
    });
    assert.equal(adopted.identity?.coordinatorId, 'old-one');
    assert.deepEqual(await adopted.load(), [7]);
    const [entry] = await adopted.history!();
    assert.equal(entry?.at.getTime(), 0, 'a row from before times shows the epoch');
    await adopted.close();
  });

  test('history: every record with the time it was appended, in load order', async () => {
    const log = await openSqliteLog<string>(nextPath(), { create: true });
    const before = Date.now();
    await log.append(['a'], true);
    await log.append(['b', 'c'], false);
    const history = await log.history!();
    assert.deepEqual(
      history.map((h) => h.record),
      ['a', 'b', 'c'],
    );
    for (const h of history) assert.ok(h.at.getTime() >= before && h.at.getTime() <= Date.now());
    await log.close();
  });
});
