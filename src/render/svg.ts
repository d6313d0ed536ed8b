// Helpers shared by every picture dtx draws (the trace diagrams and the
// compare chart): escaping text for SVG and HTML, and nothing that knows what
// is being drawn. Pure: no I/O.

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
