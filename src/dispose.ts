// `Symbol.asyncDispose`, for `await using` on dtx's handles (the coordinator,
// the saga and TCC orchestrators, logs, adapters). Node 20 gained it in a
// minor release (20.4); package.json allows any Node 20, and TypeScript's
// `await using` looks the symbol up at run time, so on an older 20.x it is
// defined here as Node itself defines it (`Symbol.for('nodejs.asyncDispose')`),
// and only when missing. Every module that defines a dispose method imports
// this first.

const symbols = Symbol as { asyncDispose?: symbol };
symbols.asyncDispose ??= Symbol.for('nodejs.asyncDispose');

export {};
