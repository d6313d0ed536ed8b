// The loop both swarms share (./swarm.ts for the commit world,
// ./branch/swarm.ts for sagas and TCC): run the seeds in order, let the swarm
// tally each report, and stop at the first seed whose run failed. What a seed
// stands for, what counts as failing and what is tallied stay with each swarm,
// in its `SwarmLoop`. The same loop runs on worker threads in ./swarm-pool.ts.

export interface SeedRun<Req, Report> {
  seed: number;
  request: Req;
  report: Report;
}

export interface SeedRange<Report> {
  seeds: number;
  from: number;
  /** Called after each seed, for progress bars. */
  onSeed?: (done: number, report: Report) => void;
}

/** One swarm run: what a seed stands for, how it runs, how its report is counted, and the summary. */
export interface SwarmLoop<Req, Report, Summary> {
  request(seed: number): Req;
  run(req: Req): Report;
  /** Counts `report` (of the next seed, in order) and says whether its run failed. */
  tally(report: Report): boolean;
  /** The summary, once the seeds ran out or `failed` stopped the loop. */
  finish(failed: SeedRun<Req, Report> | null): Summary;
}

/**
 * Runs seeds `from` .. `from + seeds - 1`; `tally` counts each report and says
 * whether its run failed. Returns the first failing seed's run, or null.
 */
export function firstFailingSeed<Req, Report>(
  range: SeedRange<Report>,
  request: (seed: number) => Req,
  run: (req: Req) => Report,
  tally: (report: Report) => boolean,
): SeedRun<Req, Report> | null {
  for (let i = 0; i < range.seeds; i++) {
    const seed = range.from + i;
    const req = request(seed);
    const report = run(req);
    const failed = tally(report);
    range.onSeed?.(i + 1, report);
    if (failed) return { seed, request: req, report };
  }
  return null;
}

/** `part / (part + rest)` to three decimals; 0 when both are 0. */
export function share(part: number, rest: number): number {
  return part + rest === 0 ? 0 : Math.round((part / (part + rest)) * 1000) / 1000;
}

/** Runs `loop` over `range` on this thread. */
export function runLoop<Req, Report, Summary>(
  loop: SwarmLoop<Req, Report, Summary>,
  range: SeedRange<Report>,
): Summary {
  return loop.finish(firstFailingSeed(range, loop.request, loop.run, loop.tally));
}
