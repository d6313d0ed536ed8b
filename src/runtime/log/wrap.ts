// One way to wrap a DurableLog: the wrapper replaces some of the calls
// (counting appends, mirroring records for checkpoints, watching what
// recovery loads) and forwards everything else — the calls, the counters,
// and what the log says of itself (identity, loss of ownership, history) —
// so that no wrapper forgets to pass one of them on.

import type { DurableLog } from './types.ts';

export type LogCalls<R> = Partial<Pick<DurableLog<R>, 'append' | 'load' | 'checkpoint'>>;

/** `log` with `calls` replacing its own; everything else is `log`'s. */
export function wrapLog<R>(log: DurableLog<R>, calls: LogCalls<R>): DurableLog<R> {
  return {
    ...(log.identity === undefined ? {} : { identity: log.identity }),
    ...(log.lost === undefined ? {} : { lost: log.lost }),
    ...(log.history === undefined ? {} : { history: () => log.history!() }),
    append: calls.append ?? ((records, force) => log.append(records, force)),
    load: calls.load ?? (() => log.load()),
    checkpoint: calls.checkpoint ?? ((keep) => log.checkpoint(keep)),
    close: () => log.close(),
    get stats() {
      return log.stats;
    },
  };
}
