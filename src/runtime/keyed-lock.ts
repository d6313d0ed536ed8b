// Ordering per key: async work on one key (a transaction's gid, a branch's
// database gid) runs one at a time, in call order, while work on other keys
// runs concurrently. Used where requests arrive concurrently but must see each
// other's effects on one transaction (`dtx serve`'s engine and 2PC
// coordinator, the 2PC participant).

/** Runs work one at a time per key; a key is forgotten once its queue is empty, so memory follows the keys in use. */
export class KeyedLocks {
  readonly #tails = new Map<string, Promise<unknown>>();

  /** Keys with work queued or running. */
  get size(): number {
    return this.#tails.size;
  }

  /** Runs `work` after every earlier `run` on `key` has settled; a rejection does not stop the queue. */
  run<T>(key: string, work: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(key) ?? Promise.resolve();
    const result = before.then(work, work);
    const tail = result.catch(() => undefined);
    this.#tails.set(key, tail);
    void tail.then(() => {
      if (this.#tails.get(key) === tail) this.#tails.delete(key);
    });
    return result;
  }
}
