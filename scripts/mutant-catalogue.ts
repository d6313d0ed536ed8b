// The mutant catalogue: deliberate one-rule bugs in the protocol cores and the
// branch barrier, each with the check that must catch it. `npm run mutants`
// (./mutants.ts) applies every edit to a copy of the repository and runs its
// detector there; the sources themselves are never touched.
//
// An edit is exact text: `search` must occur exactly once in `file`, or the
// run fails for that mutant, so a source that drifted away from the catalogue
// fails loudly instead of leaving a mutant silently unapplied. Keep each edit
// small and about one rule, and say in `rule` which rule it breaks.

export type Detector =
  /** `dtx swarm --protocol P --seeds N --from F [flags]`: caught when the swarm reports a failing seed. */
  | { kind: 'swarm'; protocol: string; seeds: number; from?: number; flags?: string[] }
  /** A test file (node:test through tsx), or only its tests whose names match `name`: caught when one fails. */
  | { kind: 'test'; file: string; name?: string };

export interface Mutant {
  id: string;
  /** Repository-relative path of the file edited. */
  file: string;
  /** Exact text, found exactly once in `file`... */
  search: string;
  /** ...and what replaces it. */
  replace: string;
  /** The protocol rule the edit breaks. */
  rule: string;
  detector: Detector;
  /** Run by the quick subset (`--quick`, and inside `npm test`): fast and caught early. */
  quick?: boolean;
  /** Why a miss is expected today, when it is; a miss still fails the run. */
  expectMissBecause?: string;
}

const twoPc = (seeds: number, flags: string[] = []): Detector => ({
  kind: 'swarm',
  protocol: '2pc',
  seeds,
  flags,
});
const paxos = (seeds: number, flags: string[] = []): Detector => ({
  kind: 'swarm',
  protocol: 'paxos-commit',
  seeds,
  flags,
});
const saga = (seeds: number): Detector => ({ kind: 'swarm', protocol: 'saga', seeds });
const tcc = (seeds: number): Detector => ({ kind: 'swarm', protocol: 'tcc', seeds });
/**
 * The data-driven scripts of every core (testdata/): exact traces. The
 * simulator's checkers do not judge naive commit (its partial outcomes are its
 * expected result), so naive commit's rules are held by its scripts, which
 * include a partial outcome.
 */
const protocolScripts: Detector = { kind: 'test', file: 'test/protocol/scripts.test.ts' };
/** 3PC is only safe under crashes alone (partitions break it by design), and this test runs exactly that. */
const threePcCrashes: Detector = { kind: 'test', file: 'test/sim/threepc.test.ts' };
/** The barrier's own test, against real PostgreSQL, MariaDB and SQLite. */
const barrierTest: Detector = { kind: 'test', file: 'test/adapters/barrier.test.ts' };

export const mutants: readonly Mutant[] = [
  // ---- two-phase commit (src/protocol/twopc) ----
  {
    id: '2pc-reports-aborted-while-committing',
    file: 'src/protocol/twopc/coordinator.ts',
    search: "outcome: 'committed', afterPersist: true",
    replace: "outcome: 'aborted', afterPersist: true",
    rule: 'the client is told the decision that was made (here: "aborted" while the transaction commits)',
    detector: twoPc(50),
    quick: true,
  },
  {
    id: '2pc-commit-before-force',
    file: 'src/protocol/twopc/coordinator.ts',
    search:
      "for (const p of committers) fx.push({ type: 'sendAfterPersist', to: p, msg: commitMsg(txn, t.ts) });",
    replace: "for (const p of committers) fx.push({ type: 'send', to: p, msg: commitMsg(txn, t.ts) });",
    rule: 'the coordinator forces its commit record before any COMMIT leaves',
    detector: twoPc(2000),
  },
  {
    id: '2pc-yes-before-force',
    file: 'src/protocol/twopc/participant.ts',
    search: `        fx.push({
          type: 'sendAfterPersist',
          to: from,
          msg: { type: 'VOTE', txn, attempt: msg.attempt, vote: 'yes' },
        });
        fx.push({ type: 'setTimer'`,
    replace: `        fx.push({
          type: 'send',
          to: from,
          msg: { type: 'VOTE', txn, attempt: msg.attempt, vote: 'yes' },
        });
        fx.push({ type: 'setTimer'`,
    rule: 'a participant forces its prepared record before its YES vote leaves',
    detector: twoPc(2000),
  },
  {
    id: '2pc-recovery-forgets-committed',
    file: 'src/protocol/twopc/participant.ts',
    search: `const effects: Fx[] = committed.map(
      (txn): Fx => ({ type: 'resource', txn, action: 'commit', afterPersist: false }),
    );`,
    replace: 'const effects: Fx[] = [];',
    rule: 'participant recovery re-applies every durable `committed` record (the crash may fall between the record and its work)',
    detector: twoPc(5000),
    expectMissBecause:
      'the simulator never crashes a node between a durable record and its after-persist effects, the only window where this matters',
  },
  {
    id: '2pc-coordinator-recovery-forgets-commits',
    file: 'src/protocol/twopc/coordinator.ts',
    search: "if (r.type === 'commit') open.set(r.txn, r);",
    replace: "if (r.type === 'commit' && r.txn === '') open.set(r.txn, r);",
    rule: 'a restarted coordinator re-drives every commit record without an end (else it presumes abort for a committed transaction)',
    detector: twoPc(2000),
  },
  {
    id: '2pc-no-vote-ignored',
    file: 'src/protocol/twopc/coordinator.ts',
    search: "if (msg.vote === 'no') return abort(state, msg.txn, t, fx);",
    replace: '',
    rule: 'one NO vote aborts the transaction',
    detector: twoPc(2000),
  },
  {
    id: '2pc-decides-before-all-votes',
    file: 'src/protocol/twopc/coordinator.ts',
    search: 'if (t.votes.size === t.participants.length) decide(state, msg.txn, t, fx);',
    replace: 'if (t.votes.size >= 1) decide(state, msg.txn, t, fx);',
    rule: 'commit is decided only once every participant voted YES',
    detector: twoPc(2000),
  },
  {
    id: '2pc-prepared-participant-wounded',
    file: 'src/protocol/twopc/participant.ts',
    search: "if (t?.phase === 'working') {",
    replace: 'if (t !== undefined) {',
    rule: 'a prepared participant may not abort on its own (a wound from an older transaction included)',
    detector: twoPc(2000),
  },
  {
    id: '2pc-in-doubt-participant-gives-up',
    file: 'src/protocol/twopc/participant.ts',
    search: `    fx.push({ type: 'send', to: t.coordinator, msg: { type: 'INQUIRY', txn } });
    fx.push({ type: 'setTimer', timer, delayMs: state.config.inquiryMs });`,
    replace: `    fx.push({ type: 'resource', txn, action: 'abort', afterPersist: false });
    state.txns.delete(txn);`,
    rule: 'an in-doubt participant only asks; it never decides on a timeout',
    detector: twoPc(2000),
  },

  // ---- naive commit (src/protocol/naive): partial outcomes are expected; misreporting them is not ----
  {
    id: 'naive-partial-reported-committed',
    file: 'src/protocol/naive/naive.ts',
    search: "const outcome = ok === t.participants.length ? 'committed'",
    replace: "const outcome = ok > 0 ? 'committed'",
    rule: 'naive commit reports "committed" only when every participant acknowledged',
    detector: protocolScripts,
  },
  {
    id: 'naive-partial-reported-aborted',
    file: 'src/protocol/naive/naive.ts',
    search: ": ok === 0 ? 'aborted'",
    replace: ": ok < t.participants.length ? 'aborted'",
    rule: 'naive commit reports "aborted" only when no participant committed',
    detector: protocolScripts,
  },
  {
    id: 'naive-ack-before-durable',
    file: 'src/protocol/naive/naive.ts',
    search: "fx.push({ type: 'sendAfterPersist', to: from, msg: { type: 'ACK', txn: msg.txn } });",
    replace: "fx.push({ type: 'send', to: from, msg: { type: 'ACK', txn: msg.txn } });",
    rule: 'a naive participant acknowledges only once its commit is durable',
    detector: protocolScripts,
  },

  // ---- Paxos Commit (src/protocol/paxos-commit) ----
  {
    id: 'paxos-candidate-forgets-round',
    file: 'src/protocol/paxos-commit/leader.ts',
    search: "for (const r of log) if (r.type === 'round') state.round = Math.max(state.round, r.round);",
    replace: '',
    rule: 'a leader candidate never uses a ballot twice: its round survives a restart (Gray & Lamport 2006)',
    // The swarm does not reach this (seeds 1 to 22,000 passed with the
    // mutant): a reused ballot only matters when a candidate
    // crashes in the first round after a restart, recovers the same
    // transaction again and gets a different quorum of promises. The script
    // testdata/paxos-commit/candidate-restart-new-ballot.txt makes exactly
    // that restart and shows the ballot the candidate uses next.
    detector: protocolScripts,
  },
  {
    id: 'paxos-amnesiac-acceptors',
    file: 'src/protocol/paxos-commit/acceptor.ts',
    search: "if (r.type !== 'acc') continue;",
    replace: 'continue;',
    rule: 'an acceptor remembers what it promised and accepted across a restart',
    detector: paxos(300),
  },
  {
    id: 'paxos-amnesiac-acceptors-colocated',
    file: 'src/protocol/paxos-commit/acceptor.ts',
    search: "if (r.type !== 'acc') continue;",
    replace: 'continue;',
    rule: 'as paxos-amnesiac-acceptors, with the acceptors on the RMs (--colocated)',
    detector: paxos(300, ['--colocated']),
  },
  {
    id: 'paxos-phase2a-ignores-promises',
    file: 'src/protocol/paxos-commit/leader.ts',
    search: "const val: PcValue = best === null || best.val === 'none' ? 'aborted' : best.val;",
    replace: "const val: PcValue = 'aborted';",
    rule: 'phase 2a proposes the value of the highest-ballot promise (Paxos phase 2)',
    detector: paxos(2000),
  },
  {
    id: 'paxos-acceptor-accepts-below-promise',
    file: 'src/protocol/paxos-commit/acceptor.ts',
    search: `    if (a.mbal > bal) {
      rejectedAt = Math.max(rejectedAt, a.mbal);
      continue;
    }`,
    replace: '',
    rule: 'an acceptor never accepts in a ballot below the one it promised',
    detector: paxos(2000),
  },
  {
    id: 'paxos-rm-votes-before-prepared-durable',
    file: 'src/protocol/paxos-commit/rm.ts',
    search: `  vote(state, txn, t, 'prepared', true, fx, msg.voteTo);
  fx.push({ type: 'setTimer', timer: inquiryTimer(txn)`,
    replace: `  vote(state, txn, t, 'prepared', false, fx, msg.voteTo);
  fx.push({ type: 'setTimer', timer: inquiryTimer(txn)`,
    rule: 'an RM forces its prepared record before its ballot-0 vote leaves',
    detector: paxos(2000),
  },
  {
    id: 'paxos-faster-rm-learns-from-one-acceptor',
    file: 'src/protocol/paxos-commit/rm.ts',
    search: 'learn(t.learner, msg.txn, state.config.acceptors, quorum(state.config), msg.acc, msg.entries);',
    replace: 'learn(t.learner, msg.txn, state.config.acceptors, 1, msg.acc, msg.entries);',
    rule: 'Faster Paxos Commit: an RM counts a value chosen only once F+1 acceptors accepted it',
    detector: paxos(2000, ['--faster']),
  },
  {
    id: 'paxos-leader-learns-from-one-acceptor',
    file: 'src/protocol/paxos-commit/leader.ts',
    search: 'learn(t.learner, msg.txn, state.config.acceptors, quorum(state.config), msg.acc, msg.entries);',
    replace: 'learn(t.learner, msg.txn, state.config.acceptors, 1, msg.acc, msg.entries);',
    rule: 'the leader counts a value chosen only once F+1 acceptors accepted it',
    detector: paxos(2000),
  },

  // ---- three-phase commit, crashes only (src/protocol/threepc) ----
  {
    id: '3pc-commits-without-precommit',
    file: 'src/protocol/threepc/coordinator.ts',
    search:
      "for (const p of t.participants) fx.push({ type: 'send', to: p, msg: { type: 'PRE_COMMIT', txn } });",
    replace:
      "for (const p of t.participants) fx.push({ type: 'send', to: p, msg: { type: 'COMMIT', txn } });",
    rule: 'no participant commits before every participant is pre-committed (the phase that makes 3PC non-blocking)',
    detector: threePcCrashes,
  },
  {
    id: '3pc-commits-with-no-precommit-ack',
    file: 'src/protocol/threepc/coordinator.ts',
    search: 'if (t.acked.size > 0) commit(state, txn, t, fx);',
    replace: 'if (t.acked.size >= 0) commit(state, txn, t, fx);',
    rule: 'the coordinator commits only once some participant is known pre-committed (else recovery aborts)',
    detector: threePcCrashes,
  },
  {
    id: '3pc-pre-ack-before-durable',
    file: 'src/protocol/threepc/participant.ts',
    search: "fx.push({ type: 'sendAfterPersist', to: from, msg: { type: 'PRE_ACK', txn } });",
    replace: "fx.push({ type: 'send', to: from, msg: { type: 'PRE_ACK', txn } });",
    rule: 'a participant forces its precommitted record before it acknowledges PRE_COMMIT',
    detector: threePcCrashes,
  },
  {
    id: '3pc-termination-ignores-precommitted',
    file: 'src/protocol/threepc/participant.ts',
    search: "if (t.phase === 'precommitted' || states.includes('precommitted')) {",
    replace: "if (t.phase === 'precommitted') {",
    rule: 'termination commits when any operational participant is pre-committed (Skeen 1981)',
    detector: threePcCrashes,
  },

  // ---- sagas (src/protocol/saga) ----
  {
    id: 'saga-compensates-all-at-once',
    file: 'src/protocol/saga/orchestrator.ts',
    search:
      "if (later.every((s) => settled(run.branches.get(s)!))) start(state, txn, run, b, 'compensate', fx);",
    replace: "start(state, txn, run, b, 'compensate', fx);",
    rule: "a step's compensation starts only once every step after it is compensated (reverse order)",
    detector: saga(200),
    quick: true,
  },
  {
    id: 'saga-done-step-counts-as-settled',
    file: 'src/protocol/saga/orchestrator.ts',
    search: "return b.phase === 'idle' || b.phase === 'refused' || b.phase === 'compensated';",
    replace:
      "return b.phase === 'idle' || b.phase === 'refused' || b.phase === 'compensated' || b.phase === 'done';",
    rule: 'a saga turned back compensates every step whose action ran before it ends compensated',
    detector: saga(500),
  },
  {
    id: 'saga-reports-compensated-as-completed',
    file: 'src/protocol/saga/orchestrator.ts',
    search: "if (all) finish(state, txn, run, 'compensated', fx);",
    replace: "if (all) finish(state, txn, run, 'completed', fx);",
    rule: 'the client is told the outcome the saga reached (here: "completed" for a compensated saga)',
    detector: saga(500),
  },
  {
    id: 'saga-rollback-not-logged',
    file: 'src/protocol/saga/orchestrator.ts',
    search: "fx.push({ type: 'persist', force: true, record: { type: 'rollback', txn, reason } });",
    replace: '',
    rule: 'the decision to turn back is durable before any compensation is called',
    detector: saga(2000),
  },
  {
    id: 'saga-service-without-barrier',
    file: 'src/protocol/branch/service.ts',
    search: 'if (state.config.barrier) {',
    replace: 'if (!state.config.barrier) {',
    rule: 'a service runs each call once (idempotency, null compensation, hanging prevention)',
    detector: saga(500),
  },

  // ---- TCC (src/protocol/tcc) and what it shares with sagas (src/protocol/branch) ----
  {
    id: 'tcc-calls-before-logging',
    file: 'src/protocol/branch/run.ts',
    search: "fx.push({ type: 'sendAfterPersist', to: to.service, msg });",
    replace: "fx.push({ type: 'send', to: to.service, msg });",
    rule: 'a try, confirm or cancel leaves only once the record it depends on (begin, decision) is durable',
    detector: tcc(50),
    quick: true,
  },
  {
    id: 'tcc-confirms-despite-refusal',
    file: 'src/protocol/tcc/coordinator.ts',
    search: "return decide(state, txn, run, 'cancel', `",
    replace: "return decide(state, txn, run, 'confirm', `",
    rule: 'one refused try cancels the transaction',
    detector: tcc(300),
  },
  {
    id: 'tcc-confirms-before-every-try',
    file: 'src/protocol/tcc/coordinator.ts',
    search: "for (const other of run.branches.values()) if (other.tried !== 'success') return;",
    replace: '',
    rule: 'confirm is decided only once every try succeeded',
    detector: tcc(300),
  },
  {
    id: 'tcc-decision-not-logged',
    file: 'src/protocol/tcc/coordinator.ts',
    search: "fx.push({ type: 'persist', force: true, record: { type: 'decision', txn, decision, reason } });",
    replace: '',
    rule: 'the confirm/cancel decision is durable before phase two starts',
    detector: tcc(2000),
  },

  // ---- the branch barrier on real databases (src/adapters/barrier.ts) ----
  {
    id: 'barrier-no-hanging-prevention',
    file: 'src/adapters/barrier.ts',
    search: "if (row?.state === 'blocked') {",
    replace: "if (row?.state === 'never') {",
    rule: 'an action (try) that arrives after its compensation (cancel) is refused',
    detector: barrierTest,
  },
  {
    id: 'barrier-no-null-compensation',
    file: 'src/adapters/barrier.ts',
    search: 'const origin = originOf(key.op);',
    replace: 'const origin: BarrierOp | null = null;',
    rule: 'a compensation of an action that never ran succeeds without running (null compensation)',
    detector: barrierTest,
  },
  {
    id: 'barrier-reruns-duplicates',
    file: 'src/adapters/barrier.ts',
    search: "if (!(await sql.insertIgnore(key, 'done'))) {",
    replace: "if (!(await sql.insertIgnore(key, 'done')) && key.op === 'try') {",
    rule: 'a repeated call runs once and returns the first result (idempotency)',
    detector: barrierTest,
  },
  {
    id: 'barrier-postgres-insert-always-new',
    file: 'src/adapters/barrier.ts',
    search: 'return r.rowCount === 1;',
    replace: 'return r.rowCount !== null;',
    rule: 'on PostgreSQL, a barrier row that already exists is seen as such (ON CONFLICT DO NOTHING inserted nothing)',
    detector: barrierTest,
  },
  {
    id: 'barrier-sqlite-commits-failed-handler',
    file: 'src/adapters/local-txn.ts',
    search: "if (db.inTransaction) db.exec('ROLLBACK');",
    replace: "if (db.inTransaction) db.exec('COMMIT');",
    rule: 'on SQLite, a handler that throws leaves neither its writes nor the barrier row',
    detector: barrierTest,
  },

  // ---- reads in the commit world (src/sim: the resource model and the commit fence) ----
  {
    id: 'sim-snapshot-without-fence',
    file: 'src/sim/commit-world.ts',
    search: '    if (starts === undefined) return true;',
    replace: '    return true;',
    rule: 'a snapshot opens only while no commit phase runs (the commit fence holds back the ones that would start)',
    detector: twoPc(200, ['--workload', 'bank-audit', '--reads', 'snapshot']),
  },
  {
    id: 'sim-locking-read-takes-no-lock',
    file: 'src/sim/resource.ts',
    search: "if (this.readMode === 'locking' && row.holder !== txn",
    replace: "if (this.readMode === 'plain' && row.holder !== txn",
    rule: 'a locking read holds a shared lock until the outcome (strict two-phase locking)',
    detector: twoPc(200, ['--workload', 'bank-audit', '--reads', 'locking']),
  },

  // ---- the runtime's commit fence (src/runtime/coordinator.ts, real PostgreSQL) ----
  {
    id: 'runtime-fence-from-decision',
    file: 'src/runtime/coordinator.ts',
    search: '    await this.enterFence(id, txn, deadline);\n',
    replace: '',
    rule: 'a transaction holds the commit fence from its first PREPARE, where a read-only branch releases its share locks',
    detector: {
      kind: 'test',
      file: 'test/runtime/read-only-vote-snapshot.test.ts',
      name: 'through the coordinator',
    },
  },
];
