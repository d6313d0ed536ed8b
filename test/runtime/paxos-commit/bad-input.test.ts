// Bad input to Paxos Commit, each refused with a typed error that names what
// is wrong (the acceptance list): an acceptor list of the wrong size for F,
// the same acceptor twice (by URL, and under two addresses), an acceptor of
// another cluster, an acceptor data directory of another format version or
// cluster, and unreachable acceptors at start (every one of them named).

import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createCoordinator } from '../../../src/runtime/coordinator.ts';
import { AcceptorServer } from '../../../src/runtime/paxos-commit/acceptor-server.ts';
import { wireVersion } from '../../../src/runtime/paxos-commit/wire.ts';
import { rejectsWithCode } from '../../adapters/helpers.ts';
import { accountDbs, tempDir } from './support.ts';

describe('Paxos Commit bad input', () => {
  const acceptors: AcceptorServer[] = [];
  const urls = () => acceptors.map((a) => a.url);
  let base: Parameters<typeof createCoordinator>[0] & { protocol: 'paxos-commit' };
  before(async () => {
    for (let i = 0; i < 3; i++)
      acceptors.push(await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: tempDir(`bad${i}`) }));
    const { adapters } = await accountDbs();
    base = { protocol: 'paxos-commit', id: 'b1', resources: adapters, acceptors: [] };
  });
  after(async () => {
    for (const a of acceptors) await a.close();
  });

  test('an acceptor list of the wrong size for F, or a bad F', async () => {
    const two = await rejectsWithCode(
      createCoordinator({ ...base, acceptors: urls().slice(0, 2) }),
      'DTX_INVALID_ARGUMENT',
    );
    assert.match(two.message, /faults = 1 needs 2F\+1 = 3 acceptors, got 2/);
    const five = await rejectsWithCode(
      createCoordinator({ ...base, acceptors: urls(), faults: 2 }),
      'DTX_INVALID_ARGUMENT',
    );
    assert.match(five.message, /faults = 2 needs 2F\+1 = 5 acceptors, got 3/);
    for (const faults of [-1, 1.5, Number.NaN]) {
      const bad = await rejectsWithCode(
        createCoordinator({ ...base, acceptors: urls(), faults }),
        'DTX_INVALID_ARGUMENT',
      );
      assert.match(bad.message, /faults must be an integer/);
    }
    const notUrl = await rejectsWithCode(
      createCoordinator({ ...base, acceptors: [urls()[0]!, urls()[1]!, 'no-port-here'] }),
      'DTX_INVALID_ARGUMENT',
    );
    assert.match(notUrl.message, /"no-port-here" is not host:port/);
  });

  test('the same acceptor twice: by URL, written two ways, and under two addresses', async () => {
    const [u0, u1] = urls() as [string, string];
    const sameUrl = await rejectsWithCode(
      createCoordinator({ ...base, acceptors: [u0, u1, u0.replace('http://', '')] }),
      'DTX_INVALID_ARGUMENT',
    );
    assert.match(sameUrl.message, new RegExp(`acceptor ${u0} is listed twice`));
    // localhost and 127.0.0.1 are two URLs of one process: told by the id it reports.
    const alias = u0.replace('127.0.0.1', 'localhost');
    const sameId = await rejectsWithCode(
      createCoordinator({ ...base, acceptors: [u0, u1, alias] }),
      'DTX_INVALID_ARGUMENT',
    );
    assert.match(sameId.message, /are the same acceptor/);
    assert.ok(sameId.message.includes(alias), sameId.message);
  });

  test('an acceptor of another cluster is refused, naming it and both clusters', async () => {
    const other = await AcceptorServer.start({
      listen: '127.0.0.1:0',
      dataDir: tempDir('east'),
      cluster: 'east',
    });
    try {
      const err = await rejectsWithCode(
        createCoordinator({ ...base, acceptors: [urls()[0]!, urls()[1]!, other.url] }),
        'DTX_INVALID_ARGUMENT',
      );
      assert.match(err.message, new RegExp(`acceptor ${other.url} belongs to cluster "east", not "dtx"`));
    } finally {
      await other.close();
    }
  });

  test('an acceptor data directory of another format version is refused, and left as it was', async () => {
    const dir = tempDir('ver');
    const a = await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: dir });
    await a.close();
    const path = join(dir, 'acceptor.json');
    const meta = JSON.parse(readFileSync(path, 'utf8')) as { v: number };
    const newer = `${JSON.stringify({ ...meta, v: wireVersion + 1 })}\n`;
    writeFileSync(path, newer);
    const err = await rejectsWithCode(
      AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: dir }),
      'DTX_LOG_MISMATCH',
    );
    assert.match(
      err.message,
      new RegExp(`of format ${wireVersion + 1}; this dtx reads format ${wireVersion} only`),
    );
    assert.equal(readFileSync(path, 'utf8'), newer, 'the directory was rewritten');
  });

  test('unreachable acceptors at start: DTX_RESOURCE_UNAVAILABLE naming every one down', async () => {
    // Nothing listens on the discard port, nor on a port just closed.
    const gone = await AcceptorServer.start({ listen: '127.0.0.1:0', dataDir: tempDir('gone') });
    const goneUrl = gone.url;
    await gone.close();
    const err = await rejectsWithCode(
      createCoordinator({ ...base, acceptors: [urls()[0]!, goneUrl, 'http://127.0.0.1:9'] }),
      'DTX_RESOURCE_UNAVAILABLE',
    );
    assert.match(err.message, /unreachable at start/);
    assert.ok(err.message.includes(goneUrl), err.message);
    assert.ok(err.message.includes('http://127.0.0.1:9'), err.message);
    assert.ok(!err.message.includes(urls()[0]!), `a live acceptor was named: ${err.message}`);
  });
});
