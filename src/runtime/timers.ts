// A node's named wall-clock timers, as the runtime carries out a core's
// `setTimer` and `cancelTimer` effects: the Driver (./driver.ts) and the
// Paxos Commit RM of one branch (./paxos-commit/rm-branch.ts) both keep
// them here, so that the rules below hold in one place.
//
// - Setting a timer that is armed replaces it: the old one never fires.
// - A timer fires at most once, and only if it is still the one armed under
//   its name (a callback already queued by Node when it was replaced or
//   cancelled does nothing).
// - Its name is free again before its callback runs, so the callback may arm
//   it anew.
// - `clear()` (a crash, a close) disarms every timer.

export class NamedTimers {
  private readonly handles = new Map<string, ReturnType<typeof setTimeout>>();

  /** Arms `name` to call `fire` after `delayMs`, replacing a timer armed under that name. */
  set(name: string, delayMs: number, fire: () => void): void {
    this.cancel(name);
    const handle = setTimeout(() => {
      if (this.handles.get(name) !== handle) return;
      this.handles.delete(name);
      fire();
    }, delayMs);
    this.handles.set(name, handle);
  }

  /** Disarms `name`; nothing happens when it is not armed. */
  cancel(name: string): void {
    const handle = this.handles.get(name);
    if (handle !== undefined) clearTimeout(handle);
    this.handles.delete(name);
  }

  /** Disarms every timer. */
  clear(): void {
    for (const handle of this.handles.values()) clearTimeout(handle);
    this.handles.clear();
  }
}
