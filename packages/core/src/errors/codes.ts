/**
 * Stable error codes of `@microvm/core`. Branch on these, never on messages.
 * User codes mean the caller asked for something wrong; system codes mean the host or the VMM failed.
 */
export const coreUserErrorCodes = [
  /** An input broke a rule; `ValidationError` names the field and the rule. */
  'ERR_MICROVM_INVALID_INPUT',
  /** A field or endpoint is newer than the Firecracker that is running. */
  'ERR_MICROVM_UNSUPPORTED_BY_VERSION',
  /** The operation is not allowed in the VM's current state. */
  'ERR_MICROVM_INVALID_STATE',
  /** A VM with this id already exists. */
  'ERR_MICROVM_VM_EXISTS',
  /** No VM with this id exists. */
  'ERR_MICROVM_VM_NOT_FOUND',
  /** No snapshot with this id exists in the state directory. */
  'ERR_MICROVM_SNAPSHOT_NOT_FOUND',
  /** A snapshot with this id already exists. */
  'ERR_MICROVM_SNAPSHOT_EXISTS',
  /** A handle was used after it was closed. */
  'ERR_MICROVM_DISPOSED',
] as const;

export const coreSystemErrorCodes = [
  /** Firecracker answered with a 4xx/5xx; `FirecrackerApiError` carries the fault message. */
  'ERR_MICROVM_API',
  /** An operation ran past its deadline. */
  'ERR_MICROVM_TIMEOUT',
  /** The caller's `AbortSignal` fired. */
  'ERR_MICROVM_ABORTED',
  /** The API socket is missing or refuses connections. */
  'ERR_MICROVM_SOCKET_UNAVAILABLE',
  /** The VMM process exited; `ProcessExitError` carries the exit code and the stderr tail. */
  'ERR_MICROVM_PROCESS_EXITED',
  /** A primitive's hook failed; `cause` holds its error. */
  'ERR_MICROVM_HOOK_FAILED',
  /** Several cleanup steps failed; `errors` holds each failure. */
  'ERR_MICROVM_TEARDOWN_FAILED',
  /** The state directory could not be read or written. */
  'ERR_MICROVM_STATE_STORE',
  /** The VMM answered in a way the driver could not understand. */
  'ERR_MICROVM_PROTOCOL',
] as const;

export type CoreUserErrorCode = (typeof coreUserErrorCodes)[number];
export type CoreSystemErrorCode = (typeof coreSystemErrorCodes)[number];
export type CoreErrorCode = CoreUserErrorCode | CoreSystemErrorCode;
