// A free TCP port on 127.0.0.1, for a server that must be given its port
// before it starts (its address is configured elsewhere first). Another
// process may take it meanwhile: callers retry or fail loudly.

import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
