// One HTTP request to a branch, as the orchestrators need it and no more:
// node:http / node:https over shared keep-alive agents, the whole exchange
// bounded by one timeout, the answer's body read up to a limit, redirects
// never followed (node:http does not follow them; the caller sees the 3xx).
//
// Why not the global `fetch`: a CPU profile of `dtx serve` running two-step
// sagas (`npm run bench:serve`) had a third of the server's busy time in
// fetch's machinery — a Request and a Response object, web streams for both
// bodies, an AbortSignal and its listeners for every call — for a request
// whose body is one short JSON string and whose answer is read whole. A call
// here is one `http.request` with the body written at once.
//
// Owns: the agents (one per scheme, shared by every call of the process) and
// one exchange; it never logs a header's value.

import http from 'node:http';
import https from 'node:https';

/**
 * Connections kept open per branch host, per scheme. Calls beyond it wait
 * for a free connection (the agent's queue), which bounds the sockets one
 * busy process opens to one service.
 */
const socketsPerHostMax = 256;
/** Idle connections kept per host for the next calls. */
const freeSocketsPerHostMax = 64;

const agents = {
  'http:': new http.Agent({
    keepAlive: true,
    maxSockets: socketsPerHostMax,
    maxFreeSockets: freeSocketsPerHostMax,
    scheduling: 'lifo',
  }),
  'https:': new https.Agent({
    keepAlive: true,
    maxSockets: socketsPerHostMax,
    maxFreeSockets: freeSocketsPerHostMax,
    scheduling: 'lifo',
  }),
};

export interface HttpExchange {
  method: 'POST' | 'GET';
  /** Sent as given; the caller has checked names and values. */
  headers: Readonly<Record<string, string>>;
  /** The request body (POST), sent whole with its content-length. */
  body?: string;
  /** Longest the whole exchange may take, connection and body included. */
  timeoutMs: number;
  /** Longest answer body read; reading stops there. */
  maxBodyBytes: number;
}

export interface HttpReply {
  status: number;
  /** The `Location` header of a redirect (not followed). */
  location: string | undefined;
  /** The body as UTF-8 text, or null when it was longer than `maxBodyBytes`. */
  text: string | null;
}

/** No answer within the exchange's timeout. */
export class HttpTimeout extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no answer within ${timeoutMs} ms`);
  }
}

/**
 * One exchange. Resolves with the answer (any status); rejects with an
 * HttpTimeout, or the network's error (refused, reset, a bad header value).
 *
 * A kept-alive connection the service closed while idle fails the request
 * written on it before any answer (ECONNRESET on a reused socket). That
 * request almost surely never reached the service, and a branch call may be
 * repeated anyway (it carries its Idempotency-Key; DTM's branches are called
 * at least once), so it is sent once more, within the same timeout, rather
 * than counted as a failed attempt that waits out the caller's backoff.
 */
export async function httpExchange(url: URL, exchange: HttpExchange): Promise<HttpReply> {
  const deadlineMs = Date.now() + exchange.timeoutMs;
  try {
    return await exchangeOnce(url, exchange, exchange.timeoutMs);
  } catch (error) {
    if (!(error instanceof StaleConnection)) throw error;
    return await exchangeOnce(url, exchange, Math.max(1, deadlineMs - Date.now()), false);
  }
}

/** A reused keep-alive connection was found closed before the request got an answer. */
class StaleConnection extends Error {}

function exchangeOnce(
  url: URL,
  exchange: HttpExchange,
  timeoutMs: number,
  mayReuse = true,
): Promise<HttpReply> {
  return new Promise<HttpReply>((resolve, reject) => {
    const client = url.protocol === 'https:' ? https : http;
    const agent = url.protocol === 'https:' ? agents['https:'] : agents['http:'];
    const headers: Record<string, string | number> = { ...exchange.headers };
    if (exchange.body !== undefined) headers['content-length'] = Buffer.byteLength(exchange.body);
    let settled = false;
    const settle = (error: Error | null, reply?: HttpReply): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (error !== null) reject(error);
      else resolve(reply!);
    };
    let answered = false;
    const req = client.request(url, { method: exchange.method, agent, headers }, (res) => {
      answered = true;
      const status = res.statusCode ?? 0;
      const location = res.headers.location;
      if (status >= 300 && status <= 399) {
        // The body of a redirect is not read: drop it, keeping the connection when it is short.
        res.resume();
        settle(null, { status, location, text: '' });
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > exchange.maxBodyBytes) {
          // The rest is not read; the connection goes with it.
          res.destroy();
          settle(null, { status, location, text: null });
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () =>
        settle(null, { status, location, text: Buffer.concat(chunks, size).toString('utf8') }),
      );
      res.on('error', (error) => settle(error));
      res.on('close', () => {
        if (!res.complete) settle(new Error('the connection closed before the answer ended'));
      });
    });
    const timer = setTimeout(() => {
      const error = new HttpTimeout(exchange.timeoutMs);
      settle(error);
      req.destroy(error);
    }, timeoutMs);
    req.on('error', (error) => {
      const reset = (error as NodeJS.ErrnoException).code === 'ECONNRESET';
      settle(mayReuse && reset && !answered && req.reusedSocket ? new StaleConnection(error.message) : error);
    });
    req.end(exchange.body);
  });
}
