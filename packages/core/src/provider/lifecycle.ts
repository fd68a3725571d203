import { InvalidStateError } from '../errors/index.js';

/** Where a VM is in its life. `docs/architecture/lifecycle.md` draws the table below. */
export type VmState = 'creating' | 'created' | 'running' | 'paused' | 'stopped' | 'failed' | 'destroyed';

export type VmOperation = 'start' | 'pause' | 'resume' | 'snapshot' | 'stop' | 'kill' | 'destroy';

/** The states each operation may start from. Everything else is an `InvalidStateError`. */
export const allowedStatesByOperation: Readonly<Record<VmOperation, readonly VmState[]>> = {
  start: ['created'],
  pause: ['running', 'paused'],
  resume: ['paused', 'running'],
  snapshot: ['running', 'paused'],
  stop: ['created', 'running', 'paused', 'stopped', 'failed'],
  kill: ['created', 'running', 'paused', 'stopped', 'failed'],
  destroy: ['creating', 'created', 'running', 'paused', 'stopped', 'failed'],
};

/** The states with a live VMM process behind them. */
export const liveStates: readonly VmState[] = ['created', 'running', 'paused'];

export function isLiveState(state: VmState): boolean {
  return liveStates.includes(state);
}

export function assertOperationAllowed(vmId: string, state: VmState, operation: VmOperation): void {
  const allowed = allowedStatesByOperation[operation];
  if (!allowed.includes(state)) {
    throw new InvalidStateError({ vmId, state, operation, allowedStates: allowed });
  }
}
