// A leader candidate's durable log, kept on the acceptors instead of a local
// disk. The candidate core writes one kind of record, its ballot `round`,
// forced before it uses any ballot of that round (src/protocol/paxos-commit/
// leader.ts): forgetting it in a crash could reuse a ballot with a different
// value. Here a round is durable once F+1 acceptors stored it (each fsyncs
// it, see ./acceptor-server.ts); `load()` asks until F+1 answered and takes
// the highest. Any two sets of F+1 among 2F+1 acceptors meet, so a restarted
// candidate never reads a round below one it used. That is what lets a
// leader process restart anywhere with nothing but its configuration.
//
// Appends never fail: with fewer than F+1 acceptors reachable a candidate
// cannot run a ballot anyway, so the write waits (retrying) until enough are
// back, and the recovery it guards waits with it — commits block, as they
// must with more than F acceptors down.

import type { NodeId } from '../../protocol/common/types.ts';
import type { PaxosCommitRecord } from '../../protocol/paxos-commit/types.ts';
import type { DurableLog, LogStats } from '../log/types.ts';
import type { PeerTransport } from './transport.ts';

/** Pause between two attempts to reach F+1 acceptors. */
const retryMs = 200;

export class AcceptorRoundLog implements DurableLog<PaxosCommitRecord> {
  readonly stats: LogStats = { flushes: 0, records: 0 };
  private closed = false;

  constructor(
    private readonly transport: PeerTransport,
    private readonly acceptorUrls: readonly string[],
    private readonly candidate: NodeId,
    private readonly quorum: number,
  ) {}

  /** Stores `round` on F+1 acceptors (retrying until it has); resolves with the highest they hold. */
  private async store(round: number): Promise<number> {
    for (;;) {
      if (this.closed) throw new Error('round log closed');
      const answers = await new Promise<number[]>((resolve) => {
        const got: number[] = [];
        let settled = 0;
        for (const url of this.acceptorUrls) {
          this.transport.call(url, '/round', { candidate: this.candidate, round }).then(
            (r) => {
              got.push((r as { round: number }).round);
              if (got.length === this.quorum) resolve([...got]);
              if (++settled === this.acceptorUrls.length) resolve(got);
            },
            () => {
              if (++settled === this.acceptorUrls.length) resolve(got);
            },
          );
        }
      });
      if (answers.length >= this.quorum) return Math.max(...answers);
      await new Promise((r) => setTimeout(r, retryMs));
    }
  }

  async append(records: readonly PaxosCommitRecord[], _force: boolean): Promise<void> {
    for (const r of records) {
      if (r.type !== 'round') throw new Error(`a candidate writes only rounds, not ${r.type}`);
      await this.store(r.round);
      this.stats.flushes++;
      this.stats.records++;
    }
  }

  async load(): Promise<PaxosCommitRecord[]> {
    return [{ type: 'round', round: await this.store(0) }];
  }

  async checkpoint(): Promise<void> {}

  async close(): Promise<void> {
    this.closed = true;
  }
}
