// Helpers shared by every picture dtx draws (the trace diagrams and the
// compare chart): escaping text for SVG and HTML, rounding coordinates, and
// estimating how wide a text will be. Nothing here knows what is being drawn.
// Pure: no I/O.

/**
 * Escapes text for SVG and HTML content and attribute values. Quotes are
 * escaped too, so that the same helper serves text nodes and attributes: one
 * helper, so that no picture can forget a character another one escapes.
 */
export function esc(s: string): string {
  return s.replace(/[&<>"']/g, (c) =>
    c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;',
  );
}

/** A coordinate rounded to 0.1 px: finer than any screen, and it keeps the documents small and stable. */
export function n1(v: number): string {
  return String(Math.round(v * 10) / 10);
}

/**
 * The width in pixels a text takes at `size` px in DejaVu Sans (regular), the
 * first font the pictures ask for. A deterministic per-character estimate,
 * not a measurement: the pictures must come out byte for byte the same on
 * every machine, so no font file is read. It errs wide for punctuation and
 * symbols, so that layouts built on it leave room rather than overlap.
 */
export function textWidth(s: string, size: number): number {
  let w = 0;
  for (const ch of s) {
    if (ch === ' ') w += 0.32;
    else if (/[A-Z]/.test(ch)) w += 0.7;
    else if (/[a-z0-9]/.test(ch)) w += 0.6;
    else if (/[.,:;'|!il]/.test(ch)) w += 0.34;
    else w += 0.82;
  }
  return w * size;
}

/** `text` broken at spaces into lines no wider than `maxW` (by textWidth); a longer single word stays whole. */
export function wrap(text: string, maxW: number, size: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    const next = line === '' ? word : `${line} ${word}`;
    if (line !== '' && textWidth(next, size) > maxW) {
      out.push(line);
      line = word;
    } else line = next;
  }
  if (line !== '') out.push(line);
  return out;
}
