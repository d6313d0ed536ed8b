// Where the crash tests kill `dtx bench` (--crash-at): in its own module so
// the command's options name them without loading the database drivers.

/** Some branches prepared, all prepared, the decision logged, between two branch commits. */
export const crashPoints = ['prepared-some', 'prepared-all', 'decided', 'between-commits'] as const;
export type CrashPoint = (typeof crashPoints)[number];
