export {
  defaultApiTimeoutMs,
  defaultCtrlAltDelGraceMs,
  defaultKillTimeoutMs,
  defaultTerminateGraceMs,
  hostSupportsCtrlAltDel,
  type ResolvedShutdownLadderOptions,
  resolveShutdownLadderOptions,
  type ShutdownLadderOptions,
} from './options.js';
export {
  type ProcessByPidOptions,
  processHandleForChild,
  processHandleForPid,
  readProcessStartTime,
} from './process-by-pid.js';
export { type ShutdownPrimitive, shutdownPrimitive } from './shutdown-primitive.js';
export {
  type ShutdownAction,
  type ShutdownClient,
  type ShutdownOutcome,
  type ShutdownProcess,
  type ShutdownStepReport,
  type ShutdownVmOptions,
  shutdownVm,
} from './shutdown-vm.js';
