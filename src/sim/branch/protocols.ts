// How the saga world meets a protocol core: the orchestrator role (saga or
// TCC), the service role (shared: the barrier-guarded service of
// ../../protocol/branch/service.ts), and what the world may read off them (which
// step is the decision to compensate, which sagas a log shows stuck). A
// deliberately broken variant (./broken.ts) is a copy of one of these with a
// part swapped.

import { type ServiceConfig, sagaService } from '../../protocol/branch/service.ts';
import type { ReportSaga, SagaRole } from '../../protocol/branch/types.ts';
import type { Effect, Role } from '../../protocol/common/types.ts';
import { type SagaOrchestratorState, sagaOrchestrator } from '../../protocol/saga/orchestrator.ts';
import type { SagaRecord } from '../../protocol/saga/types.ts';
import { type TccCoordinatorState, tccCoordinator } from '../../protocol/tcc/coordinator.ts';
import type { TccRecord } from '../../protocol/tcc/types.ts';
import type { SagaProtocolName } from '../protocols.ts';

// biome-ignore lint/suspicious/noExplicitAny: the world drives both orchestrators through one port
export type AnySagaRole = SagaRole<any, any, any, any>;
// biome-ignore lint/suspicious/noExplicitAny: as above
export type AnyServiceRole = Role<any, any, any, any>;

export interface SagaProtocol {
  /** Tells a saga-world protocol from a commit-world one (../protocols.ts). */
  world: 'saga';
  name: string;
  kind: SagaProtocolName;
  orchestrator: AnySagaRole;
  orchestratorConfig: unknown;
  serviceRole: AnyServiceRole;
  /** The config a service node runs with, from the one the workload asks for. */
  serviceConfig(base: ServiceConfig): unknown;
  /** The orchestrator step that decides to compensate (the coordinator-crash scenario crashes before it). */
  isDecisionStep(effects: readonly (Effect<unknown, unknown> | ReportSaga)[]): boolean;
  /** Transactions a recovered orchestrator state holds as stuck. */
  stuckIn(state: unknown): Set<string>;
}

export function isSagaProtocol(p: unknown): p is SagaProtocol {
  return typeof p === 'object' && p !== null && (p as { world?: unknown }).world === 'saga';
}

function saga(): SagaProtocol {
  return {
    world: 'saga',
    name: 'saga',
    kind: 'saga',
    orchestrator: sagaOrchestrator,
    orchestratorConfig: {},
    serviceRole: sagaService,
    serviceConfig: (base) => base,
    isDecisionStep: (effects) =>
      effects.some((e) => e.type === 'persist' && (e.record as SagaRecord).type === 'rollback'),
    stuckIn: (state) =>
      new Set(
        [...(state as SagaOrchestratorState).sagas]
          .filter(([, r]) => r.status === 'stuck')
          .map(([txn]) => txn),
      ),
  };
}

function tcc(): SagaProtocol {
  return {
    world: 'saga',
    name: 'tcc',
    kind: 'tcc',
    orchestrator: tccCoordinator,
    orchestratorConfig: {},
    serviceRole: sagaService,
    serviceConfig: (base) => base,
    isDecisionStep: (effects) =>
      effects.some((e) => {
        if (e.type !== 'persist') return false;
        const r = e.record as TccRecord;
        return r.type === 'decision' && r.decision === 'cancel';
      }),
    stuckIn: (state) =>
      new Set(
        [...(state as TccCoordinatorState).txns].filter(([, r]) => r.status === 'stuck').map(([txn]) => txn),
      ),
  };
}

export function makeSagaProtocol(name: SagaProtocolName): SagaProtocol {
  return name === 'saga' ? saga() : tcc();
}
