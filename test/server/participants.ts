// A participant service for 2PC tests of `dtx serve`: a real node:http server
// built on `dtx/participant`, with a business endpoint (`/work`, which runs
// the test's statement in the branch's held-open transaction) and the
// participant endpoints under `/tpc`. A hook lets a test run a participant
// call or not, and answer it or never (a service that hangs).

import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Participant, ParticipantAnswer, ParticipantOp } from '../../src/participant/index.ts';
import type { Answer } from './helpers.ts';

/** What a test may do to one participant call: run it (or not) and answer (or never). */
export type Hook = (
  op: ParticipantOp,
  gid: string,
  runCall: () => Promise<ParticipantAnswer>,
) => Promise<ParticipantAnswer | 'hang'>;

export interface ParticipantService {
  url: string;
  participant: Participant;
  hook: Hook | undefined;
  close(): Promise<void>;
}

function readJson(req: IncomingMessage): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let text = '';
    req.on('data', (d) => (text += d));
    req.on('end', () => {
      try {
        resolve(JSON.parse(text));
      } catch (error) {
        reject(error);
      }
    });
  });
}

/** A service: POST /work {gid, id, amount} writes a row in branch `branch`; /tpc/* is the participant. */
export async function participantService(
  participant: Participant,
  branch: string,
  insert: (
    b: Parameters<Parameters<Participant['work']>[2]>[0],
    gid: string,
    id: string,
    amount: number,
  ) => Promise<unknown>,
): Promise<ParticipantService> {
  const svc: ParticipantService = { url: '', participant, hook: undefined, close: async () => undefined };
  const server: Server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    void (async () => {
      if (path === '/work') {
        const b = await readJson(req);
        try {
          await svc.participant.work(b.gid, branch, (tx) => insert(tx, b.gid, b.id, b.amount));
          res.writeHead(200).end('{}');
        } catch (error) {
          res.writeHead(409).end(JSON.stringify({ reason: String(error) }));
        }
        return;
      }
      // Without a hook the library's own node:http handler answers.
      if (svc.hook === undefined) return svc.participant.handler(req, res);
      const body = await readJson(req);
      const op = path.slice(path.lastIndexOf('/') + 1) as ParticipantOp;
      const a = await svc.hook(op, body.sagaId, () => svc.participant.answer(op, body));
      if (a === 'hang') return;
      res.writeHead(a.status, { 'content-type': a.contentType }).end(JSON.stringify(a.body));
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  svc.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/tpc`;
  svc.close = () =>
    new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  return svc;
}
