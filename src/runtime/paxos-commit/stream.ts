// A one-way stream of message batches from one Paxos Commit process to
// another: an HTTP/1.1 connection upgraded at `GET /stream` (`Upgrade:
// dtx-batches`), then one JSON batch per line (JSON text never holds a raw
// newline), with no reply per batch. A POST per batch costs a request and a
// response with their headers on both sides, several times what the batch
// itself costs to send and read (measured on loopback: about 250 us of CPU per
// batch against about 50 us), and wakes the sender once more per batch for
// the response; a Paxos Commit acceptor sends and receives a few per
// transaction.
//
// The network's contract is unchanged (./transport.ts): a message may be
// lost, never altered. A stream that breaks, is refused, or stays
// unacknowledged for the request timeout is closed, and whatever it still held
// is lost; the next batch opens a new one. The receiver acknowledges what it
// read with one newline at most every `streamAckMs`, so that a sender can tell
// a live peer from a stalled or cut-off one (a write to a dead link succeeds
// into the kernel's buffer) and reconnect as soon as the link heals, as a
// request that timed out used to.
//
// Owns: the sender's side of one connection (BatchStream) and the reader of
// the receiver's side (readBatchStream); PeerTransport owns which peers have
// one.

import http from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';

export const streamPath = '/stream';
export const streamProtocol = 'dtx-batches';
/** The longest a receiver waits before acknowledging what it read (one newline per interval, not per batch). */
export const streamAckMs = 20;
/**
 * A receiver closes a stream that carried nothing for this long: a sender cut
 * off by a partition never closes its end, and each such stream would
 * otherwise stay open for good. A sender whose stream was closed this way
 * opens a new one with its next batch.
 */
export const streamIdleMsDefault = 60_000;
/** Batches waiting for a stream to connect; past it new ones are lost (the connection is not keeping up). */
const pendingLinesMax = 10_000;

/** Why a stream ended: `refused` when the peer does not speak streams (an older dtx): send it POSTs instead. */
export type StreamEnd = 'closed' | 'failed' | 'refused';

/** The sending side of one stream, connecting on creation. */
export class BatchStream {
  private socket: Socket | null = null;
  private pending: { line: string; items: number }[] = [];
  /** When the oldest write not acknowledged yet was made, or null. */
  private unackedSinceMs: number | null = null;
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  private ended = false;
  /** Resolves when the stream opens or ends. */
  private readonly settled: Promise<void>;
  private resolveSettled!: () => void;

  constructor(
    url: string,
    private readonly timeoutMs: number,
    private readonly bytesMax: number,
    /**
     * Called once, when the stream ends, with the messages it lost (those
     * still waiting to connect) and whether the peer left something
     * unanswered: it never connected, or writes were not acknowledged (a
     * stream closed while idle, by either side, is not that).
     */
    private readonly onEnd: (why: StreamEnd, lostItems: number, unanswered: boolean) => void,
  ) {
    this.settled = new Promise((resolve) => {
      this.resolveSettled = resolve;
    });
    const req = http.request(`${url}${streamPath}`, {
      method: 'GET',
      timeout: timeoutMs,
      headers: { connection: 'Upgrade', upgrade: streamProtocol },
    });
    req.on('upgrade', (_res, socket: Socket) => this.onOpen(socket));
    req.on('response', (res) => {
      res.resume();
      this.end('refused');
    });
    req.on('timeout', () => req.destroy(new Error(`no stream within ${timeoutMs} ms`)));
    req.on('error', () => this.end('failed'));
    req.end();
  }

  private onOpen(socket: Socket): void {
    if (this.ended) {
      socket.destroy();
      return;
    }
    socket.setTimeout(0); // the request's timeout; from here on the watchdog watches the acknowledgements
    socket.setNoDelay(true);
    this.socket = socket;
    this.resolveSettled();
    socket.on('data', () => this.onAck());
    socket.on('error', () => this.end('failed'));
    socket.on('close', () => this.end('failed'));
    const pending = this.pending;
    this.pending = [];
    for (const { line } of pending) this.writeNow(line);
  }

  /** Sends one batch (`line` ends with a newline) carrying `items` messages. */
  write(line: string, items: number): void {
    if (this.ended) return;
    if (this.socket === null) {
      if (this.pending.length < pendingLinesMax) this.pending.push({ line, items });
      return;
    }
    this.writeNow(line);
  }

  private writeNow(line: string): void {
    const socket = this.socket!;
    socket.write(line);
    // A peer that stopped reading: what it has not read counts as lost.
    if (socket.writableLength > this.bytesMax) {
      this.end('failed');
      return;
    }
    if (this.unackedSinceMs === null) {
      this.unackedSinceMs = Date.now();
      this.watchdog = setTimeout(() => this.end('failed'), this.timeoutMs);
      this.watchdog.unref?.();
    }
  }

  private onAck(): void {
    this.unackedSinceMs = null;
    if (this.watchdog !== undefined) clearTimeout(this.watchdog);
    this.watchdog = undefined;
  }

  private end(why: StreamEnd): void {
    if (this.ended) return;
    this.ended = true;
    const unanswered = why === 'failed' && (this.socket === null || this.unackedSinceMs !== null);
    if (this.watchdog !== undefined) clearTimeout(this.watchdog);
    const lost = this.pending.reduce((n, p) => n + p.items, 0);
    this.pending = [];
    this.socket?.destroy();
    this.resolveSettled();
    this.onEnd(why, lost, unanswered);
  }

  /** Sends what was written (waiting at most `waitMs`, a connection still opening included), then closes. */
  async close(waitMs: number): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const deadline = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    });
    await Promise.race([this.settled, deadline]);
    const socket = this.socket;
    if (socket !== null && !this.ended) {
      await Promise.race([new Promise<void>((resolve) => socket.end(() => resolve())), deadline]);
    }
    clearTimeout(timer);
    this.end('closed');
  }
}

/**
 * The receiving side: answers the upgrade, then hands every line to
 * `onLine` and acknowledges. A line longer than `bytesMax`, or one `onLine`
 * refuses (returns false), closes the stream: a peer that sends garbage is cut
 * off, and what it sent after is lost. So does `idleMs` without data.
 */
export function readBatchStream(
  socket: Duplex,
  head: Buffer,
  bytesMax: number,
  onLine: (text: string) => boolean,
  idleMs = streamIdleMsDefault,
): void {
  socket.write(
    `HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${streamProtocol}\r\n\r\n`,
  );
  (socket as Socket).setNoDelay?.(true);
  (socket as Socket).setTimeout?.(idleMs, () => socket.destroy());
  let rest: Buffer[] = [];
  let restBytes = 0;
  let acking = false;
  const ack = () => {
    acking = false;
    if (!socket.destroyed) socket.write('\n');
  };
  const onData = (chunk: Buffer) => {
    let start = 0;
    for (let nl = chunk.indexOf(10); nl >= 0; nl = chunk.indexOf(10, start)) {
      const piece = chunk.subarray(start, nl);
      const line = rest.length === 0 ? piece : Buffer.concat([...rest, piece]);
      rest = [];
      restBytes = 0;
      start = nl + 1;
      if (!onLine(line.toString('utf8'))) {
        socket.destroy();
        return;
      }
    }
    if (start < chunk.length) {
      rest.push(chunk.subarray(start));
      restBytes += chunk.length - start;
      if (restBytes > bytesMax) {
        socket.destroy();
        return;
      }
    }
    if (!acking) {
      acking = true;
      setTimeout(ack, streamAckMs);
    }
  };
  socket.on('error', () => socket.destroy());
  socket.on('data', onData);
  if (head.length > 0) onData(head);
}
