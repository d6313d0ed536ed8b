// The checker's one piece of I/O: the text of a history file, or of stdin
// for `-`. Everything after it is pure (./check.ts).

import { readFileSync } from 'node:fs';
import { basename } from 'node:path';

/** The history text and the name its error messages use (the file's name, or `stdin`). */
export function readHistory(path: string): { text: string; source: string } {
  if (path === '-') return { text: readFileSync(0, 'utf8'), source: 'stdin' };
  return { text: readFileSync(path, 'utf8'), source: basename(path) };
}
