// Assertions for programmer errors. They stay on in production: a protocol core
// that reaches an impossible state must stop rather than decide wrongly.
// Expected failures (a NO vote, a timeout, a lock conflict) are ordinary inputs
// and results, never exceptions.

export class AssertionError extends Error {
  override name = 'AssertionError';
}

export function assert(condition: unknown, why: string): asserts condition {
  if (!condition) throw new AssertionError(why);
}

/** For exhausted unions: the compiler proves this is never called. */
export function unreachable(value: never, what = 'value'): never {
  throw new AssertionError(`unreachable ${what}: ${JSON.stringify(value)}`);
}
