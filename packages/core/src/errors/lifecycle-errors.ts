import { MicrovmError } from './microvm-error.js';

/** The operation is not allowed in the VM's current state. */
export class InvalidStateError extends MicrovmError<'ERR_MICROVM_INVALID_STATE'> {
  override readonly name = 'InvalidStateError';
  readonly vmId: string;
  readonly state: string;
  readonly operation: string;

  constructor(options: {
    vmId: string;
    state: string;
    operation: string;
    allowedStates?: readonly string[];
  }) {
    const allowed = options.allowedStates?.length
      ? ` (allowed from: ${options.allowedStates.join(', ')})`
      : '';
    super({
      code: 'ERR_MICROVM_INVALID_STATE',
      message: `Cannot ${options.operation} VM '${options.vmId}' while it is ${options.state}${allowed}`,
    });
    this.vmId = options.vmId;
    this.state = options.state;
    this.operation = options.operation;
  }
}

/** A primitive's hook failed. */
export class HookError extends MicrovmError<'ERR_MICROVM_HOOK_FAILED'> {
  override readonly name = 'HookError';
  readonly primitive: string;
  readonly phase: string;
  readonly vmId: string;

  constructor(options: { primitive: string; phase: string; vmId: string; cause: unknown }) {
    const reason = options.cause instanceof Error ? options.cause.message : String(options.cause);
    super({
      code: 'ERR_MICROVM_HOOK_FAILED',
      message: `${options.primitive}.${options.phase} failed for VM '${options.vmId}': ${reason}`,
      cause: options.cause,
      // A user error inside a hook (bad option) stays a user error.
      isUserError: MicrovmError.isInstance(options.cause) && options.cause.isUserError,
    });
    this.primitive = options.primitive;
    this.phase = options.phase;
    this.vmId = options.vmId;
  }
}

/** Cleanup went on after failures; every failure is in `errors`. */
export class TeardownError extends MicrovmError<'ERR_MICROVM_TEARDOWN_FAILED'> {
  override readonly name = 'TeardownError';
  readonly vmId: string;
  readonly errors: readonly unknown[];

  constructor(options: { vmId: string; errors: readonly unknown[] }) {
    const reasons = options.errors.map((error) => (error instanceof Error ? error.message : String(error)));
    super({
      code: 'ERR_MICROVM_TEARDOWN_FAILED',
      message: `Cleanup of VM '${options.vmId}' finished with ${options.errors.length} failure(s): ${reasons.join('; ')}`,
      cause: options.errors[0],
    });
    this.vmId = options.vmId;
    this.errors = options.errors;
  }
}
