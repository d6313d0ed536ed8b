// The phase vocabulary of the dashboard: one place that turns a
// transaction's view into the words an operator reads, for every protocol
// the server runs. The point of having it in one module is the 2PC phases:
// "every participant voted yes" is not "committed" until the coordinator's
// decision is durable, and an operator who reads the first as the second may
// act on a transaction that can still abort. So the label of that phase says
// what it is and never says "commit"; `committed` is true only once a commit
// (or a saga's completion) is durable.
//
// Pure: no I/O, no clock (ages are computed by the caller).

/** Every phase the dashboard shows. */
export type PhaseKey =
  // Saga, TCC, message
  | 'prepared'
  | 'running'
  | 'compensating'
  | 'stuck'
  | 'completed'
  | 'compensated'
  | 'resolved'
  | 'abandoned'
  // Two-phase commit
  | 'open'
  | 'preparing'
  | 'all-voted-yes'
  | 'decided'
  | 'applying'
  | 'acknowledged'
  | 'aborted';

/** Why a transaction is listed under "needs attention". */
export type Attention = 'stuck' | 'in-doubt' | 'heuristic';

export interface Phase {
  key: PhaseKey;
  /** A few words, shown in lists. */
  label: string;
  /** One sentence: what it means and what happens next. */
  explain: string;
  /** True only once a successful outcome is durable (a commit decision, a saga's completion). */
  committed: boolean;
  /** Nothing more will happen to it. */
  ended: boolean;
  attention: Attention | null;
  /** How the dashboard colours it. */
  tone: 'active' | 'warn' | 'bad' | 'good' | 'neutral';
}

/**
 * What a 2PC coordinator knows of a transaction: the votes it has, its
 * decision and whether the decision's record is durable, and the
 * acknowledgements of the decision.
 */
export interface TwoPcProgress {
  participants: number;
  votedYes: number;
  votedNo: number;
  decision: 'commit' | 'abort' | null;
  /** The decision's log record is durable (forced): only then is it the outcome. */
  decisionDurable: boolean;
  /** Participants that acknowledged the durable decision. */
  acknowledged: number;
}

/** The part of a transaction's view a phase is read from. */
export interface PhaseInput {
  /** `saga`, `tcc`, `msg`, `2pc` (null: unknown, read as a saga). */
  type: string | null;
  /** The view's state (the server's states and the operator's TxnState). */
  state: string;
  /** For 2PC, when the view carries it: the coordinator's progress. */
  twoPc?: TwoPcProgress;
}

const phases: Record<PhaseKey, Omit<Phase, 'key'>> = {
  prepared: {
    label: 'prepared, waiting for submit',
    explain: 'Registered; nothing is decided until the caller submits or aborts (or its timeout aborts it).',
    committed: false,
    ended: false,
    attention: null,
    tone: 'active',
  },
  running: {
    label: 'running forward',
    explain: 'Branch actions are being called in order; a refusal or the timeout turns it back.',
    committed: false,
    ended: false,
    attention: null,
    tone: 'active',
  },
  compensating: {
    label: 'compensating',
    explain: 'It turned back: the steps already done are being undone, newest first, until each succeeds.',
    committed: false,
    ended: false,
    attention: null,
    tone: 'warn',
  },
  stuck: {
    label: 'stuck, still retrying',
    explain:
      'A call that must succeed keeps failing; it is retried with backoff. Fix the branch and retry, or end it by hand.',
    committed: false,
    ended: false,
    attention: 'stuck',
    tone: 'bad',
  },
  completed: {
    label: 'completed',
    explain: 'Every step succeeded.',
    committed: true,
    ended: true,
    attention: null,
    tone: 'good',
  },
  compensated: {
    label: 'compensated',
    explain: 'It turned back and every step done was undone.',
    committed: false,
    ended: true,
    attention: null,
    tone: 'neutral',
  },
  resolved: {
    label: 'resolved by an operator',
    explain: 'An operator ended it with an outcome established by hand (heuristic); the reason is recorded.',
    committed: false,
    ended: true,
    attention: 'heuristic',
    tone: 'warn',
  },
  abandoned: {
    label: 'abandoned by an operator',
    explain: 'An operator stopped it as it stood (heuristic): what is half done is theirs to settle.',
    committed: false,
    ended: true,
    attention: 'heuristic',
    tone: 'bad',
  },
  open: {
    label: 'open, branches joining',
    explain: 'Participants are registering and doing their work; nothing is prepared until commit is asked.',
    committed: false,
    ended: false,
    attention: null,
    tone: 'active',
  },
  preparing: {
    label: 'preparing',
    explain: 'Votes are being collected; any NO or a timeout aborts it.',
    committed: false,
    ended: false,
    attention: null,
    tone: 'active',
  },
  'all-voted-yes': {
    label: 'all voted yes, undecided',
    explain:
      'Every participant voted yes and holds its locks, but no decision is durable yet: it may still abort. It is NOT committed.',
    committed: false,
    ended: false,
    attention: 'in-doubt',
    tone: 'warn',
  },
  decided: {
    label: 'decided: commit (durable)',
    explain: 'The commit decision is durable: this is the outcome. No participant has acknowledged it yet.',
    committed: true,
    ended: false,
    attention: null,
    tone: 'good',
  },
  applying: {
    label: 'applying the decision',
    explain:
      'The decision is durable; some participants have not acknowledged it yet (in doubt until they do).',
    committed: true,
    ended: false,
    attention: 'in-doubt',
    tone: 'active',
  },
  acknowledged: {
    label: 'committed, all acknowledged',
    explain: 'The commit decision is durable and every participant acknowledged it.',
    committed: true,
    ended: true,
    attention: null,
    tone: 'good',
  },
  aborted: {
    label: 'aborted',
    explain: 'Decided abort; nothing was committed.',
    committed: false,
    ended: true,
    attention: null,
    tone: 'neutral',
  },
};

/** The phase named `key`. */
export function phase(key: PhaseKey): Phase {
  return { key, ...phases[key] };
}

/** Every phase, in the order the dashboard lists them. */
export const phaseKeys = Object.keys(phases) as PhaseKey[];

/**
 * What `dtx serve`'s 2PC view (./twopc.ts) says of a transaction, read as
 * progress: its state `committing` is set only once the `tpc-commit` record
 * is durable (forced), so a commit decision is durable exactly from there;
 * an abort needs no record (presumed abort). A read-only voter has nothing
 * to finish: it counts as acknowledged.
 */
export function twoPcProgressOf(v: {
  state: string;
  branches: readonly { vote: string | null; status: string }[];
}): TwoPcProgress {
  const commit = v.state === 'committing' || v.state === 'committed';
  const abort = v.state === 'aborting' || v.state === 'aborted';
  const ended = v.state === 'committed' || v.state === 'aborted';
  return {
    participants: v.branches.length,
    votedYes: v.branches.filter((b) => b.vote === 'yes' || b.vote === 'readOnly').length,
    votedNo: v.branches.filter((b) => b.vote === 'no').length,
    decision: commit ? 'commit' : abort ? 'abort' : null,
    decisionDurable: commit || abort,
    acknowledged: ended
      ? v.branches.length
      : v.branches.filter((b) => ['committed', 'rolledBack', 'readOnly', 'refused'].includes(b.status))
          .length,
  };
}

/** The phase of a 2PC transaction from its coordinator's progress. */
export function twoPcPhase(p: TwoPcProgress): Phase {
  if (p.decision === null || !p.decisionDurable) {
    // A decision that is not durable yet is no decision: a crash now forgets it.
    if (p.votedNo > 0) return phase('preparing');
    return phase(p.participants > 0 && p.votedYes >= p.participants ? 'all-voted-yes' : 'preparing');
  }
  if (p.decision === 'abort') {
    const a = phase('aborted');
    return p.acknowledged >= p.participants
      ? a
      : { ...a, label: 'decided: abort (durable)', ended: false, tone: 'warn' };
  }
  if (p.acknowledged >= p.participants) return phase('acknowledged');
  return phase(p.acknowledged === 0 ? 'decided' : 'applying');
}

/** The phase a transaction's view shows. */
export function phaseOf(view: PhaseInput): Phase {
  if (view.type === '2pc') {
    if (view.state === 'open') return phase('open');
    if (view.twoPc !== undefined && view.state !== 'resolved' && view.state !== 'abandoned')
      return twoPcPhase(view.twoPc);
    switch (view.state) {
      case 'in-doubt':
        return phase('applying');
      case 'committed':
        return phase('acknowledged');
      case 'aborted':
        return phase('aborted');
      case 'running':
      case 'prepared':
        return phase('preparing');
      default:
        break;
    }
  }
  switch (view.state) {
    case 'prepared':
    case 'running':
    case 'compensating':
    case 'stuck':
    case 'completed':
    case 'compensated':
    case 'resolved':
    case 'abandoned':
    case 'aborted':
      return phase(view.state);
    case 'committed':
      return phase('acknowledged');
    case 'in-doubt':
      return phase('applying');
    default:
      return { ...phase('running'), label: view.state, explain: `state ${view.state}` };
  }
}
