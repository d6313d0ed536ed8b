// The simulator's event queue: a binary min-heap ordered by virtual time, ties
// broken by insertion order so that equal-time events run in a fixed order.

export interface SimEvent {
  at: number;
  seq: number;
  run: () => void;
}

export class EventQueue {
  private heap: SimEvent[] = [];
  private seq = 0;

  get size(): number {
    return this.heap.length;
  }

  push(at: number, run: () => void): void {
    const ev: SimEvent = { at, seq: this.seq++, run };
    const h = this.heap;
    let i = h.length;
    h.push(ev);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent]!;
      if (p.at < at || (p.at === at && p.seq < ev.seq)) break;
      h[i] = p;
      i = parent;
    }
    h[i] = ev;
  }

  peekTime(): number {
    return this.heap.length === 0 ? Number.POSITIVE_INFINITY : this.heap[0]!.at;
  }

  pop(): SimEvent | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      let i = 0;
      const n = h.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let c = l;
        const lc = h[l]!;
        if (r < n) {
          const rc = h[r]!;
          if (rc.at < lc.at || (rc.at === lc.at && rc.seq < lc.seq)) c = r;
        }
        const ch = h[c]!;
        if (last.at < ch.at || (last.at === ch.at && last.seq < ch.seq)) break;
        h[i] = ch;
        i = c;
      }
      h[i] = last;
    }
    return top;
  }
}
