// The network between Paxos Commit processes: HTTP/1.1 (node:http). Protocol
// messages go as batches on a stream per destination (./stream.ts: one
// upgraded connection, a line per batch, no reply per batch); a peer that
// does not take streams (an older dtx) gets one POST per batch, as before.
//
// Delivery is what the protocol expects of a network, and no more: a message
// may be lost (the peer is down, the request timed out, the queue is full) and
// is then simply dropped — the cores' timers resend what matters (an RM's
// vote, a leader's phase 1a or 2a, an inquiry), and every message is
// idempotent at its receiver (the acceptor answers a repeated phase 2a or 1a
// with the same phase 2b or 1b, a leader counts an acceptor once). Messages
// are queued per destination and sent together on the next turn of the event
// loop, so a busy process pays one write for many messages. A lost
// connection is not a state: the next batch opens a new one.
//
// Also owns the small request/response calls that are not protocol messages
// (an acceptor's /info, the candidates' round store), with the same timeout.

import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { DtxError } from '../../errors.ts';
import { warn } from '../observe.ts';
import { BatchStream, readBatchStream, type StreamEnd, streamPath, streamProtocol } from './stream.ts';
import { checkBatch, type WireBatch, type WireItem, wireVersion } from './wire.ts';

/** How long one request may take before it is given up (its messages are then lost, as on a network). */
export const requestTimeoutMsDefault = 2000;
/** Messages waiting for one destination; past it new ones are dropped (the protocol resends). */
const queuedPerPeerMax = 50_000;
/** Items in one request: a bound on a request's size (see bodyBytesMax). */
const itemsPerBatchMax = 4096;
/**
 * How long a notice (`send(..., 'notice')`: a FORGET) may wait for a request
 * to ride with. Notices matter only at the receiver's next checkpoint, so they
 * need no request of their own: they go with the next message to the same
 * process, or after this long (then many share one request).
 */
export const noticeDelayMs = 100;
/** How long `close()` waits for the requests carrying the last notices. */
const closeWaitMs = 500;
/** Largest request body accepted: a full batch of the largest messages, with room to spare. */
const bodyBytesMax = 8 * 1024 * 1024;

/** `host:port` (as given on the command line) as a base URL. */
export function baseUrl(address: string): string {
  const url = /^https?:\/\//.test(address) ? address : `http://${address}`;
  const parsed = new URL(url);
  if (parsed.protocol !== 'http:' || parsed.port === '')
    throw new DtxError(
      'DTX_INVALID_ARGUMENT',
      `${JSON.stringify(address)} is not host:port or http://host:port`,
    );
  return `http://${parsed.host}`;
}

// Plain 'data'/'end' listeners rather than `for await`: a body is read per
// batch, and the async iterator costs several times more per request.
function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      if (size > bodyBytesMax) return; // refused already; the rest is read and dropped
      size += chunk.length;
      if (size > bodyBytesMax) {
        chunks.length = 0;
        reject(new DtxError('DTX_BAD_MESSAGE', `request body over ${bodyBytesMax} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () =>
      resolve(chunks.length === 1 ? chunks[0]!.toString('utf8') : Buffer.concat(chunks).toString('utf8')),
    );
    req.on('error', reject);
  });
}

function reply(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** A JSON route: `handle` returns the reply body (or throws a DtxError, sent as a 400 with its code). */
export type Route = (body: unknown) => unknown | Promise<unknown>;

export interface PeerOptions {
  cluster: string;
  /** Where to listen: `host:port` (port 0 picks a free one). */
  listen: string;
  /** Leader candidates this process hosts (told to every peer with each batch). */
  hosts: string[];
  /** Every received, checked batch. */
  onBatch(batch: WireBatch): void;
  /** Extra routes: `GET /x` and `POST /x`, by path. */
  routes?: Record<string, Route>;
  requestTimeoutMs?: number;
  /** Where the transport's warnings go (a refused stream, a batch that failed after it was taken). Default: `warn` of ../observe.ts without a logger, i.e. `process.emitWarning`. */
  onWarning?: (message: string) => void;
}

/** What waits for one destination process. */
interface Peer {
  messages: WireItem[];
  notices: WireItem[];
  /** Set while notices wait without a message to ride with. */
  noticeTimer: ReturnType<typeof setTimeout> | undefined;
}

/** How long a peer that refused a stream gets POSTs before it is offered one again (it may have been upgraded). */
const postOnlyMs = 60_000;

/**
 * How long a peer that left messages unanswered (no connection, writes not
 * acknowledged within the request timeout, a failed POST) stays suspected
 * (`suspected`). A suspected peer still gets every message sent to it; the
 * suspicion only lets a leader prefer other acceptors for new votes.
 */
export const suspectMs = 10_000;

export class PeerTransport {
  private readonly server: http.Server;
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
  private readonly peers = new Map<string, Peer>();
  /** The open (or opening) stream to each destination. */
  private readonly streams = new Map<string, BatchStream>();
  /** Destinations that refused a stream: until when they get POSTs. */
  private readonly postOnlyUntil = new Map<string, number>();
  /** When each destination last left messages unanswered (see `suspectMs`). */
  private readonly unansweredAt = new Map<string, number>();
  /** Streams from other processes, closed with the server. */
  private readonly inbound = new Set<Duplex>();
  private flushScheduled = false;
  private closed = false;
  private closing: Promise<void> | undefined;
  /** Messages sent and dropped, for tests and benchmarks; `sentByType` splits `sent` by message type. */
  readonly stats = { sent: 0, batches: 0, dropped: 0, sentByType: {} as Record<string, number> };
  url = '';

  private constructor(private readonly options: PeerOptions) {
    this.server = http.createServer((req, res) => {
      void this.onRequest(req, res);
    });
    this.server.keepAliveTimeout = 30_000;
    this.server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) =>
      this.onStream(req, socket, head),
    );
  }

  static async listen(options: PeerOptions): Promise<PeerTransport> {
    const t = new PeerTransport(options);
    const { hostname, port } = new URL(baseUrl(options.listen));
    await new Promise<void>((resolve, reject) => {
      t.server.once('error', reject);
      t.server.listen(Number(port), hostname.replace(/^\[|\]$/g, ''), () => {
        t.server.off('error', reject);
        resolve();
      });
    });
    const address = t.server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    t.url = `http://${host}:${address.port}`;
    return t;
  }

  private get timeoutMs(): number {
    return this.options.requestTimeoutMs ?? requestTimeoutMsDefault;
  }

  private async onRequest(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? '/').split('?')[0]!;
      const text = await readBody(req);
      const body: unknown = text === '' ? null : JSON.parse(text);
      if (req.method === 'POST' && path === '/batch') {
        const batch = checkBatch(body, this.options.cluster);
        // Answer first: the sender must not wait for our disk; replies are batches of their own.
        res.writeHead(204).end();
        this.options.onBatch(batch);
        return;
      }
      const route = this.options.routes?.[path];
      if (route === undefined) return reply(res, 404, { code: 'DTX_NOT_FOUND', message: `no route ${path}` });
      reply(res, 200, await route(body));
    } catch (error) {
      const code =
        error instanceof DtxError
          ? error.code
          : error instanceof SyntaxError
            ? 'DTX_BAD_MESSAGE'
            : 'DTX_INVALID_STATE';
      if (!res.headersSent) reply(res, 400, { code, message: (error as Error).message });
      // After the answer, only a core's assertion can throw: a programmer's error, never silent.
      else
        this.warn(`dtx: a batch failed after it was accepted: ${(error as Error)?.stack ?? String(error)}`);
    }
  }

  private warn(message: string): void {
    try {
      (this.options.onWarning ?? ((m: string) => warn(undefined, {}, m)))(message);
    } catch {
      // A failing hook must not stop the transport.
    }
  }

  /** Another process's stream of batches: each line is checked as a POSTed batch would be. */
  private onStream(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const path = (req.url ?? '/').split('?')[0];
    if (this.closed || path !== streamPath || req.headers.upgrade?.toLowerCase() !== streamProtocol) {
      socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    this.inbound.add(socket);
    socket.on('close', () => this.inbound.delete(socket));
    readBatchStream(socket, head, bodyBytesMax, (text) => {
      let batch: WireBatch;
      try {
        batch = checkBatch(JSON.parse(text), this.options.cluster);
      } catch (error) {
        // No reply to carry the refusal: the sender's stream is closed, and said here.
        this.warn(
          `dtx: closing a stream from ${(socket as Socket).remoteAddress ?? 'a peer'}: ${(error as Error)?.message ?? String(error)}`,
        );
        return false;
      }
      try {
        this.options.onBatch(batch);
      } catch (error) {
        // Only a core's assertion can throw here: a programmer's error, never silent.
        this.warn(`dtx: a batch failed after it was accepted: ${(error as Error)?.stack ?? String(error)}`);
      }
      return true;
    });
  }

  /**
   * Queue `item` for the process at `url`. A `message` leaves with the others
   * on the next turn; a `notice` waits up to noticeDelayMs for a
   * message to ride with.
   */
  send(url: string, item: WireItem, kind: 'message' | 'notice' = 'message'): void {
    if (this.closed) return;
    let peer = this.peers.get(url);
    if (peer === undefined) {
      peer = { messages: [], notices: [], noticeTimer: undefined };
      this.peers.set(url, peer);
    }
    if (peer.messages.length + peer.notices.length >= queuedPerPeerMax) {
      this.stats.dropped++;
      return;
    }
    // Counted when handed to the network (a request that fails counts them in `dropped` too).
    this.stats.sent++;
    this.stats.sentByType[item.msg.type] = (this.stats.sentByType[item.msg.type] ?? 0) + 1;
    if (kind === 'notice') {
      peer.notices.push(item);
      if (peer.noticeTimer === undefined) {
        peer.noticeTimer = setTimeout(() => {
          peer.noticeTimer = undefined;
          this.scheduleFlush();
        }, noticeDelayMs);
        peer.noticeTimer.unref?.();
      }
      return;
    }
    peer.messages.push(item);
    this.scheduleFlush();
  }

  /** True while `url` is suspected of being down or cut off: it left messages unanswered in the last `suspectMs`. */
  suspected(url: string): boolean {
    const at = this.unansweredAt.get(url);
    if (at === undefined) return false;
    if (Date.now() - at < suspectMs) return true;
    this.unansweredAt.delete(url);
    return false;
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  /** Sends what is due (every notice too with `allNotices`); returns the requests, which never reject. */
  private flush(allNotices = false): Promise<void>[] {
    this.flushScheduled = false;
    const requests: Promise<void>[] = [];
    for (const [url, peer] of this.peers) {
      const noticesDue =
        peer.notices.length > 0 && (allNotices || peer.messages.length > 0 || peer.noticeTimer === undefined);
      const items = noticesDue ? [...peer.messages, ...peer.notices] : peer.messages;
      peer.messages = [];
      if (noticesDue) {
        peer.notices = [];
        if (peer.noticeTimer !== undefined) clearTimeout(peer.noticeTimer);
        peer.noticeTimer = undefined;
      }
      // Nothing left for it: forget the destination (a restarted peer comes back under a new URL).
      if (peer.notices.length === 0) this.peers.delete(url);
      for (let i = 0; i < items.length; i += itemsPerBatchMax) {
        const batch: WireBatch = {
          v: wireVersion,
          cluster: this.options.cluster,
          origin: this.url,
          hosts: this.options.hosts,
          items: items.slice(i, i + itemsPerBatchMax),
        };
        this.stats.batches++;
        if ((this.postOnlyUntil.get(url) ?? 0) > Date.now()) {
          requests.push(
            this.call(url, '/batch', batch).then(
              () => {},
              () => {
                this.stats.dropped += batch.items.length;
                this.unansweredAt.set(url, Date.now());
              },
            ),
          );
        } else this.streamTo(url).write(`${JSON.stringify(batch)}\n`, batch.items.length);
      }
    }
    return requests;
  }

  private streamTo(url: string): BatchStream {
    let stream = this.streams.get(url);
    if (stream === undefined) {
      const opened: BatchStream = new BatchStream(
        url,
        this.timeoutMs,
        bodyBytesMax,
        (why: StreamEnd, lost, unanswered) => {
          this.stats.dropped += lost;
          if (unanswered && !this.closed) this.unansweredAt.set(url, Date.now());
          if (this.streams.get(url) === opened) this.streams.delete(url);
          if (why === 'refused') this.postOnlyUntil.set(url, Date.now() + postOnlyMs);
        },
      );
      stream = opened;
      this.streams.set(url, stream);
    }
    return stream;
  }

  /** One request; resolves with the parsed reply, rejects on a non-2xx, a timeout or a network error. */
  call(url: string, path: string, body: unknown, method: 'GET' | 'POST' = 'POST'): Promise<unknown> {
    const text = body === undefined ? '' : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = http.request(
        `${url}${path}`,
        {
          method,
          agent: this.agent,
          timeout: this.timeoutMs,
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            const out = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            let parsed: unknown = null;
            try {
              parsed = out === '' ? null : JSON.parse(out);
            } catch {
              parsed = out;
            }
            if (status >= 200 && status < 300) resolve(parsed);
            else {
              const p = parsed as { code?: string; message?: string } | null;
              reject(
                new DtxError(
                  p?.code === 'DTX_INVALID_ARGUMENT' || p?.code === 'DTX_BAD_MESSAGE'
                    ? p.code
                    : 'DTX_RESOURCE_UNAVAILABLE',
                  `${url}${path}: ${status} ${p?.message ?? out}`.slice(0, 500),
                ),
              );
            }
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`timed out after ${this.timeoutMs} ms`)));
      req.on('error', (err) =>
        reject(new DtxError('DTX_RESOURCE_UNAVAILABLE', `${url}${path}: ${err.message}`, { cause: err })),
      );
      req.end(text);
    });
  }

  close(): Promise<void> {
    this.closing ??= this.shutDown();
    return this.closing;
  }

  private async shutDown(): Promise<void> {
    // Notices still waiting leave now (a FORGET lost here would keep its
    // transaction on the acceptors for good); a peer that does not answer
    // soon is not waited for.
    const last = this.flush(true);
    this.closed = true;
    last.push(...[...this.streams.values()].map((s) => s.close(closeWaitMs)));
    if (last.length > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        Promise.all(last),
        new Promise((resolve) => {
          timer = setTimeout(resolve, closeWaitMs);
        }),
      ]);
      clearTimeout(timer);
    }
    this.agent.destroy();
    for (const s of this.inbound) s.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
