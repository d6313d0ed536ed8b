// Summaries of measured distributions, as every dtx report prints them.

export interface Summary {
  p50: number;
  p99: number;
  max: number;
}

/** Nearest-rank percentiles, rounded to microseconds so that reports stay stable and readable. */
export function summarize(values: number[]): Summary {
  if (values.length === 0) return { p50: 0, p99: 0, max: 0 };
  const sorted = Float64Array.from(values).sort();
  const rank = (q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;
  const round = (x: number) => Math.round(x * 1000) / 1000;
  return { p50: round(rank(0.5)), p99: round(rank(0.99)), max: round(sorted[sorted.length - 1]!) };
}

export function round3(x: number): number {
  return Math.round(x * 1000) / 1000;
}
