// A scripted cluster for unit tests of the saga and TCC cores: an
// orchestrator and services, writes durable at once, messages held in flight
// until the test delivers (or drops, or reorders) them, timers fired by the
// test, crashes and restarts on demand. Every step's effects are kept, so a
// test can check the ordering rule itself (a call leaves in the step that
// logged its start, and only after it).

import type { ReportSaga } from '../../protocol/branch/types.ts';
import type { Effect, Input, NodeId } from '../../protocol/common/types.ts';
import type { AnySagaRole, AnyServiceRole } from '../branch/protocols.ts';

type AnyEffect = Effect<unknown, unknown> | ReportSaga;

export interface Envelope<M = unknown> {
  from: NodeId;
  to: NodeId;
  msg: M;
}

export interface ScriptNode {
  role: AnySagaRole | AnyServiceRole;
  config: unknown;
  state: unknown;
  log: unknown[];
  up: boolean;
  /** Set timers and the delay they were last set with. */
  timers: Map<string, number>;
}

export interface ScriptStep {
  node: NodeId;
  effects: AnyEffect[];
}

export const scriptClient = 'client';

export class ScriptedCluster<M extends { type: string } = { type: string }> {
  readonly nodes = new Map<NodeId, ScriptNode>();
  inflight: Envelope<M>[] = [];
  readonly sent: Envelope<M>[] = [];
  readonly reports: ReportSaga[] = [];
  readonly steps: ScriptStep[] = [];

  constructor(
    orchestrator: { id: NodeId; role: AnySagaRole; config?: unknown },
    services: { id: NodeId; role: AnyServiceRole; config: unknown }[],
  ) {
    for (const n of [orchestrator, ...services]) {
      const config = n.config ?? {};
      this.nodes.set(n.id, {
        role: n.role,
        config,
        state: n.role.init(n.id, config),
        log: [],
        up: true,
        timers: new Map(),
      });
    }
  }

  node(id: NodeId): ScriptNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new RangeError(`no node ${id}`);
    return n;
  }

  state<S>(id: NodeId): S {
    return this.node(id).state as S;
  }

  private apply(id: NodeId, effects: AnyEffect[]): void {
    const n = this.node(id);
    this.steps.push({ node: id, effects });
    for (const e of effects) {
      switch (e.type) {
        case 'persist':
          n.log.push(e.record);
          break;
        case 'send':
        case 'sendAfterPersist': {
          const env = { from: id, to: e.to, msg: e.msg as M };
          this.inflight.push(env);
          this.sent.push(env);
          break;
        }
        case 'setTimer':
          n.timers.set(e.timer, e.delayMs);
          break;
        case 'cancelTimer':
          n.timers.delete(e.timer);
          break;
        case 'reportSaga':
          this.reports.push(e);
          break;
        default:
          throw new RangeError(`unexpected effect ${e.type}`);
      }
    }
  }

  input(id: NodeId, input: Input<M>): void {
    const n = this.node(id);
    if (!n.up) return;
    const r = n.role.step(n.state, input);
    n.state = r.state;
    this.apply(id, r.effects as AnyEffect[]);
  }

  /** A client request, delivered at once. */
  request(to: NodeId, msg: M): void {
    this.input(to, { type: 'receive', from: scriptClient, msg });
  }

  /** Deliver, in order, every in-flight message `pick` selects (all by default); returns how many. */
  deliver(pick: (e: Envelope<M>) => boolean = () => true): number {
    const now = this.inflight.filter(pick);
    this.inflight = this.inflight.filter((e) => !pick(e));
    for (const e of now) {
      if (e.to === scriptClient) continue;
      this.input(e.to, { type: 'receive', from: e.from, msg: e.msg });
    }
    return now.length;
  }

  /** Drop every in-flight message `pick` selects; returns them. */
  drop(pick: (e: Envelope<M>) => boolean): Envelope<M>[] {
    const gone = this.inflight.filter(pick);
    this.inflight = this.inflight.filter((e) => !pick(e));
    return gone;
  }

  /** Deliver until nothing is in flight, dropping what `drop` selects on the way. */
  run(drop: (e: Envelope<M>) => boolean = () => false, maxRounds = 1000): void {
    for (let i = 0; i < maxRounds && this.inflight.length > 0; i++) {
      this.drop(drop);
      this.deliver();
    }
  }

  /** Fire a timer that is set (returns false when it is not). */
  fire(id: NodeId, timer: string): boolean {
    const n = this.node(id);
    if (!n.timers.has(timer)) return false;
    n.timers.delete(timer);
    this.input(id, { type: 'timeout', timer });
    return true;
  }

  /** Fire every set timer of `id` whose name starts with `prefix`; returns how many fired. */
  fireAll(id: NodeId, prefix = ''): number {
    let fired = 0;
    for (const t of [...this.node(id).timers.keys()]) if (t.startsWith(prefix) && this.fire(id, t)) fired++;
    return fired;
  }

  /** Crash: volatile state and timers are lost, the log survives; messages to it are dropped. */
  crash(id: NodeId): void {
    const n = this.node(id);
    n.up = false;
    n.state = null;
    n.timers.clear();
    this.inflight = this.inflight.filter((e) => e.to !== id);
  }

  restart(id: NodeId): void {
    const n = this.node(id);
    n.up = true;
    const r = n.role.recover(id, n.config, n.log);
    n.state = r.state;
    this.apply(id, r.effects as AnyEffect[]);
  }

  /** Messages of type `type` sent so far (optionally only to `to`). */
  sentOf<T extends M['type']>(type: T, to?: NodeId): Extract<M, { type: T }>[] {
    return this.sent
      .filter((e) => e.msg.type === type && (to === undefined || e.to === to))
      .map((e) => e.msg as Extract<M, { type: T }>);
  }
}
