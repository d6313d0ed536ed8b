// The branch calls' HTTP exchange (src/adapters/http-call.ts) against real
// sockets: a kept-alive connection reset before the answer is tried once more,
// a reset of a fresh connection is not, and the whole exchange has one timeout.

import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { HttpTimeout, httpExchange } from '../../src/adapters/http-call.ts';

/**
 * A raw HTTP/1.1 server: `plan(n)` says what to do with the n-th request
 * (counted over all connections): answer 200 keeping the connection, reset
 * the connection (RST), or never answer.
 */
async function rawServer(plan: (n: number) => 'answer' | 'reset' | 'silent') {
  let requests = 0;
  const connections: net.Socket[] = [];
  let opened = 0;
  const server = net.createServer((socket) => {
    opened++;
    connections.push(socket);
    let buffered = '';
    socket.on('data', (chunk) => {
      buffered += chunk.toString('latin1');
      for (;;) {
        const end = buffered.indexOf('\r\n\r\n');
        if (end < 0) return;
        const length = Number(/content-length: *(\d+)/i.exec(buffered.slice(0, end))?.[1] ?? 0);
        if (buffered.length < end + 4 + length) return;
        buffered = buffered.slice(end + 4 + length);
        requests++;
        const what = plan(requests);
        if (what === 'reset') return void socket.resetAndDestroy();
        if (what === 'silent') continue;
        const body = JSON.stringify({ n: requests });
        socket.write(
          `HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: keep-alive\r\n\r\n${body}`,
        );
      }
    });
    socket.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: new URL(`http://127.0.0.1:${port}/branch`),
    stats: () => ({ requests, opened }),
    close: async () => {
      for (const s of connections) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const post = {
  method: 'POST' as const,
  headers: { 'content-type': 'application/json' },
  body: '{}',
  maxBodyBytes: 1024,
};

test('a reused keep-alive connection reset before the answer: the request is sent once more and answered', async () => {
  const s = await rawServer((n) => (n === 2 ? 'reset' : 'answer'));
  try {
    const first = await httpExchange(s.url, { ...post, timeoutMs: 2000 });
    assert.equal(first.status, 200);
    assert.deepEqual(JSON.parse(first.text!), { n: 1 });
    // The second goes out on the kept-alive connection, which the server resets.
    const second = await httpExchange(s.url, { ...post, timeoutMs: 2000 });
    assert.equal(second.status, 200);
    assert.deepEqual(JSON.parse(second.text!), { n: 3 });
    assert.deepEqual(s.stats(), { requests: 3, opened: 2 });
  } finally {
    await s.close();
  }
});

test('a reset of a fresh connection is not repeated: the caller gets the error', async () => {
  const s = await rawServer(() => 'reset');
  try {
    await assert.rejects(httpExchange(s.url, { ...post, timeoutMs: 2000 }), /ECONNRESET|socket hang up/);
    assert.equal(s.stats().requests, 1);
  } finally {
    await s.close();
  }
});

test('no answer within the timeout rejects with HttpTimeout, resent or not', async () => {
  const s = await rawServer((n) => (n === 1 ? 'answer' : n === 2 ? 'reset' : 'silent'));
  try {
    await httpExchange(s.url, { ...post, timeoutMs: 2000 });
    const started = Date.now();
    await assert.rejects(httpExchange(s.url, { ...post, timeoutMs: 300 }), (e) => e instanceof HttpTimeout);
    const tookMs = Date.now() - started;
    assert.ok(tookMs >= 290 && tookMs < 1500, `one timeout for the whole exchange, took ${tookMs} ms`);
    assert.equal(s.stats().requests, 3);
  } finally {
    await s.close();
  }
});

test('a body over the limit is not read: text is null', async () => {
  const big = 'x'.repeat(5000);
  const server = net.createServer((socket) => {
    socket.once('data', () => socket.end(`HTTP/1.1 200 OK\r\ncontent-length: ${big.length}\r\n\r\n${big}`));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as net.AddressInfo;
    const reply = await httpExchange(new URL(`http://127.0.0.1:${port}/`), { ...post, timeoutMs: 2000 });
    assert.equal(reply.status, 200);
    assert.equal(reply.text, null);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
