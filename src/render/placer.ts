// Label placement for the trace diagrams: texts are placed one by one, each
// at the candidate position that overlaps least with what is already drawn
// (other texts, glyphs, arrows). Greedy and deterministic: the same inputs in
// the same order give the same picture. Pure: no I/O.

import { textWidth } from './svg.ts';

export interface Box {
  x1: number;
  y1: number;
  x2: number;
  y2: number;
  /** The arrow a line box belongs to: that arrow's own label may sit on it. */
  owner?: number;
  /** How much overlapping this box costs per pixel (text 1, a line less). */
  weight?: number;
}

/**
 * Greedy label placement: each label takes the candidate position that
 * overlaps least with what is already placed (text, glyphs, other arrows),
 * earlier candidates winning ties.
 */
export class Placer {
  private readonly buckets = new Map<number, Box[]>();
  private static readonly cell = 40;

  add(b: Box): void {
    for (let k = Math.floor(b.y1 / Placer.cell); k <= Math.floor(b.y2 / Placer.cell); k++) {
      let list = this.buckets.get(k);
      if (list === undefined) this.buckets.set(k, (list = []));
      list.push(b);
    }
  }

  /** Thin boxes along a line, so that labels avoid sitting on other arrows. */
  addLine(x1: number, y1: number, x2: number, y2: number, owner: number): void {
    const steps = Math.max(1, Math.ceil(Math.hypot(x2 - x1, y2 - y1) / 8));
    for (let i = 0; i <= steps; i++) {
      const x = x1 + ((x2 - x1) * i) / steps;
      const y = y1 + ((y2 - y1) * i) / steps;
      this.add({ x1: x - 4, y1: y - 1.5, x2: x + 4, y2: y + 1.5, owner, weight: 0.3 });
    }
  }

  /** Weighted overlap of `b` with what is placed, and the part of it that is text or glyphs. */
  overlap(b: Box, owner: number): { score: number; solid: number } {
    let area = 0;
    let solid = 0;
    const seen = new Set<Box>();
    for (let k = Math.floor(b.y1 / Placer.cell); k <= Math.floor(b.y2 / Placer.cell); k++) {
      for (const o of this.buckets.get(k) ?? []) {
        if (seen.has(o) || (o.owner !== undefined && o.owner === owner)) continue;
        seen.add(o);
        const w = Math.min(b.x2, o.x2) - Math.max(b.x1, o.x1);
        const h = Math.min(b.y2, o.y2) - Math.max(b.y1, o.y1);
        if (w <= 0 || h <= 0) continue;
        area += w * h * (o.weight ?? 1);
        if (o.weight === undefined) solid += w * h;
      }
    }
    return { score: area, solid };
  }

  /**
   * Picks one of `candidates` and records its box. An `optional` label that
   * would cover too much other text anyway is given up: -1.
   */
  place(candidates: Box[], owner = -1, optional = false): number {
    let best = 0;
    let bestScore = Number.POSITIVE_INFINITY;
    let bestSolid = 0;
    for (let i = 0; i < candidates.length; i++) {
      const { score, solid } = this.overlap(candidates[i]!, owner);
      if (score + 3 * i < bestScore) {
        best = i;
        bestScore = score + 3 * i;
        bestSolid = solid;
      }
      if (score === 0) break;
    }
    const b = candidates[best]!;
    if (optional && bestSolid > 0.12 * (b.x2 - b.x1) * (b.y2 - b.y1)) return -1;
    this.add(b);
    return best;
  }
}

export type Anchor = 'start' | 'middle' | 'end';

export interface TextCandidate {
  x: number;
  y: number;
  anchor: Anchor;
}

/** The box a text takes when drawn at candidate position `c`, with 2 px to spare around it. */
export function textBox(c: TextCandidate, text: string, size: number): Box {
  const w = textWidth(text, size) + 4;
  const x1 = c.anchor === 'start' ? c.x - 2 : c.anchor === 'middle' ? c.x - w / 2 : c.x - w + 2;
  return { x1, y1: c.y - size * 0.82, x2: x1 + w, y2: c.y + size * 0.26 };
}
