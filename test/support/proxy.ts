// A TCP proxy for tests that need a reply lost on the wire: it forwards both
// ways until armed, then cuts the connection instead of forwarding one reply —
// after the server did the work, so the client is left not knowing. Which
// reply: the first server chunk containing `inReply` (PostgreSQL: the
// `COMMIT PREPARED` command tag), or the first server chunk after a client
// chunk containing `inRequest` (MariaDB: `XA COMMIT`, whose OK packet carries
// no text to match).

import net from 'node:net';

export interface ReplyCuttingProxy {
  port: number;
  /** Cut the next matching reply (once). */
  arm(): void;
  /** How many replies were cut. */
  cuts(): number;
  close(): Promise<void>;
}

export async function replyCuttingProxy(
  target: { host: string; port: number },
  cut: { inReply: string } | { inRequest: string },
): Promise<ReplyCuttingProxy> {
  let armed = false;
  let cuts = 0;
  const server = net.createServer((client) => {
    const upstream = net.connect(target.port, target.host);
    let replyIsTheOne = false;
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('data', (chunk: Buffer) => {
      if (armed && 'inRequest' in cut && chunk.includes(cut.inRequest)) replyIsTheOne = true;
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (armed && (replyIsTheOne || ('inReply' in cut && chunk.includes(cut.inReply)))) {
        // The server has done the work and answered; the answer never arrives.
        armed = false;
        replyIsTheOne = false;
        cuts++;
        client.destroy();
        upstream.destroy();
        return;
      }
      client.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    arm: () => {
      armed = true;
    },
    cuts: () => cuts,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
