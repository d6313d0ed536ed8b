// The simulator's only source of randomness: a seeded PRNG (sfc32, Chris
// Doty-Humphrey's Small Fast Counter), so that one seed reproduces a run byte
// for byte. Nothing in src/sim may call Math.random.

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    // Spread the 53-bit seed over the 128-bit state, then discard the first
    // outputs, which still correlate with the seed.
    this.a = 0x9e3779b9;
    this.b = 0x243f6a88;
    this.c = 0xb7e15162;
    this.d = (seed >>> 0) ^ 0x5bd1e995;
    this.a ^= Math.floor(seed / 0x100000000) >>> 0;
    for (let i = 0; i < 15; i++) this.nextU32();
  }

  nextU32(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0;
    this.d = (this.d + 1) | 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) | 0;
    this.c = (this.c << 21) | (this.c >>> 11);
    this.c = (this.c + t) | 0;
    return t >>> 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    return this.nextU32() / 4294967296;
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  /** Uniform in [lo, hi). */
  between(lo: number, hi: number): number {
    return lo + this.next() * (hi - lo);
  }

  /** Exponentially distributed with the given mean. */
  exp(mean: number): number {
    return mean <= 0 ? 0 : -mean * Math.log(1 - this.next());
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.int(items.length)];
    if (item === undefined) throw new RangeError('pick from an empty list');
    return item;
  }

  /** A new generator whose stream is independent of this one's future draws. */
  fork(): Prng {
    return new Prng(this.nextU32() * 0x200000 + (this.nextU32() >>> 11));
  }
}
