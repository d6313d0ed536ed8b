// The network between Paxos Commit processes (src/runtime/paxos-commit/transport.ts,
// stream.ts), on real sockets: batches go on one stream per destination,
// notices wait for a message to ride with, and every way a stream can fail
// loses messages (as a network may) without stopping the next ones.

import assert from 'node:assert/strict';
import http from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { after, test } from 'node:test';
import { readBatchStream } from '../../../src/runtime/paxos-commit/stream.ts';
import { noticeDelayMs, PeerTransport } from '../../../src/runtime/paxos-commit/transport.ts';
import type { WireBatch, WireItem } from '../../../src/runtime/paxos-commit/wire.ts';
import { waitUntil } from './support.ts';

const open: { close(): Promise<void> | void }[] = [];
after(async () => {
  for (const o of open) await o.close();
});

async function peer(onBatch: (b: WireBatch) => void = () => {}): Promise<PeerTransport> {
  const t = await PeerTransport.listen({ cluster: 'dtx', listen: '127.0.0.1:0', hosts: ['l1'], onBatch });
  open.push(t);
  return t;
}

const vote = (txn: string): WireItem => ({
  from: 'a',
  to: 'acc0',
  msg: {
    type: 'PHASE2A',
    txn,
    bal: 0,
    entries: [{ ins: 'a', val: 'prepared' }],
    leader: 'l1',
    participants: ['a'],
    client: 'app',
  },
});
const forget = (txn: string): WireItem => ({ from: 'l1', to: 'acc0', msg: { type: 'FORGET', txn } });

/** An HTTP server on a free port; `upgrade` handles `GET /stream` when given (else Node refuses it). */
async function rawServer(
  onPost: (body: unknown) => void,
  upgrade?: (socket: Socket) => void,
): Promise<{ url: string; close(): void }> {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      // Without an 'upgrade' listener Node hands a stream request here, as an older dtx would get it.
      if (req.method === 'POST') onPost(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(req.method === 'POST' ? 204 : 404).end();
    });
  });
  const sockets = new Set<Socket>();
  if (upgrade !== undefined)
    server.on('upgrade', (_req, socket: Socket) => {
      sockets.add(socket);
      socket.write('HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: dtx-batches\r\n\r\n');
      upgrade(socket);
    });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const s = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => {
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      server.close();
    },
  };
  open.push(s);
  return s;
}

test('messages of one turn share one stream write; the receiver gets them in order', async () => {
  const got: string[] = [];
  const b = await peer((batch) => {
    for (const it of batch.items) got.push(it.msg.txn);
  });
  const a = await peer();
  for (let i = 0; i < 5; i++) a.send(b.url, vote(`t${i}`));
  await waitUntil('the first batch', () => got.length === 5);
  assert.equal(a.stats.batches, 1);
  for (let i = 5; i < 8; i++) a.send(b.url, vote(`t${i}`));
  await waitUntil('the second batch', () => got.length === 8);
  assert.deepEqual(got, ['t0', 't1', 't2', 't3', 't4', 't5', 't6', 't7']);
  assert.equal(a.stats.batches, 2);
  assert.equal(a.stats.dropped, 0);
});

test('a notice waits for the next message to the same process, or noticeDelayMs', async () => {
  const got: WireBatch[] = [];
  const b = await peer((batch) => got.push(batch));
  const a = await peer();
  a.send(b.url, forget('t1'), 'notice');
  a.send(b.url, vote('t2'));
  await waitUntil('the vote', () => got.length === 1);
  assert.deepEqual(
    got[0]!.items.map((it) => it.msg.type),
    ['PHASE2A', 'FORGET'],
  );
  const sentAt = Date.now();
  a.send(b.url, forget('t3'), 'notice');
  await waitUntil('the lone notice', () => got.length === 2);
  assert.ok(Date.now() - sentAt >= noticeDelayMs - 5, `left after ${Date.now() - sentAt} ms`);
  // Counted as sent when queued; two requests carried three messages.
  assert.equal(a.stats.sent, 3);
  assert.equal(a.stats.batches, 2);
});

test('close() sends the notices still waiting', async () => {
  const got: string[] = [];
  const b = await peer((batch) => {
    for (const it of batch.items) got.push(it.msg.txn);
  });
  const a = await PeerTransport.listen({
    cluster: 'dtx',
    listen: '127.0.0.1:0',
    hosts: [],
    onBatch: () => {},
  });
  a.send(b.url, forget('t1'), 'notice');
  await a.close();
  await waitUntil('the notice', () => got.length === 1);
});

test('a bad line closes the stream with a warning; the next batch opens a new one', async () => {
  const got: string[] = [];
  const b = await peer((batch) => {
    for (const it of batch.items) got.push(it.msg.txn);
  });
  const warnings: string[] = [];
  const onWarning = (w: Error) => warnings.push(w.message);
  process.on('warning', onWarning);
  try {
    // A hand-made stream sending one malformed batch.
    const socket = await new Promise<Socket>((resolve, reject) => {
      const req = http.request(`${b.url}/stream`, {
        method: 'GET',
        headers: { connection: 'Upgrade', upgrade: 'dtx-batches' },
      });
      req.on('upgrade', (_res, s: Socket) => resolve(s));
      req.on('error', reject);
      req.end();
    });
    const closed = new Promise((resolve) => socket.on('close', resolve));
    socket.write('{"v":1,"cluster":"dtx","items":"not a list"}\n');
    await closed;
    await waitUntil('the warning', () => warnings.some((w) => w.includes('closing a stream')));
  } finally {
    process.off('warning', onWarning);
  }
  const a = await peer();
  a.send(b.url, vote('ok'));
  await waitUntil('a good batch after it', () => got.includes('ok'));
});

test('a peer that does not take streams gets POSTs', async () => {
  const got: unknown[] = [];
  const old = await rawServer((body) => got.push(body));
  const a = await peer();
  a.send(old.url, vote('t1'));
  // The first batch is lost with the refused stream (the protocol resends); later ones are POSTed.
  await waitUntil('the refusal', () => a.stats.dropped === 1);
  a.send(old.url, vote('t2'));
  await waitUntil('the POST', () => got.length === 1);
  assert.equal(((got[0] as WireBatch).items[0]!.msg as { txn: string }).txn, 't2');
});

test('a stream the peer never acknowledges is closed after the timeout and reopened', async () => {
  let upgrades = 0;
  // Takes streams, reads nothing, acknowledges nothing: a stalled process or a cut link.
  const stalled = await rawServer(
    () => {},
    () => {
      upgrades++;
    },
  );
  const a = await PeerTransport.listen({
    cluster: 'dtx',
    listen: '127.0.0.1:0',
    hosts: [],
    onBatch: () => {},
    requestTimeoutMs: 200,
  });
  open.push(a);
  a.send(stalled.url, vote('t1'));
  await waitUntil('the first stream', () => upgrades === 1);
  const t0 = Date.now();
  // Still open well before the timeout: the same stream carries the next batch.
  await new Promise((r) => setTimeout(r, 50));
  a.send(stalled.url, vote('t2'));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(upgrades, 1);
  // After the timeout the stream is given up; the next batch opens another.
  await new Promise((r) => setTimeout(r, Math.max(0, 260 - (Date.now() - t0))));
  a.send(stalled.url, vote('t3'));
  await waitUntil('a second stream', () => upgrades === 2);
});

test('a receiver closes a stream idle for idleMs, not one that carries batches', async () => {
  const lines: string[] = [];
  const server = net.createServer((socket) =>
    readBatchStream(socket, Buffer.alloc(0), 1024, (text) => lines.push(text) > 0, 150),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  open.push({ close: () => void server.close() });
  const port = (server.address() as AddressInfo).port;
  const connect = async () => {
    const s = net.connect(port, '127.0.0.1');
    await new Promise((resolve) => s.once('connect', resolve));
    let closedAt = 0;
    s.on('close', () => {
      closedAt = Date.now();
    });
    s.resume(); // the 101 line and the acknowledgements
    return { s, closedAt: () => closedAt };
  };
  const busy = await connect();
  const idle = await connect();
  const t0 = Date.now();
  // The busy one writes a line every 50 ms for 400 ms; the idle one nothing.
  for (let i = 0; i < 8; i++) {
    busy.s.write(`line ${i}\n`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(idle.closedAt() > 0 && idle.closedAt() - t0 < 400, 'the idle stream was closed');
  assert.equal(busy.closedAt(), 0, 'the busy stream is still open');
  assert.equal(lines.length, 8);
  busy.s.destroy();
});
