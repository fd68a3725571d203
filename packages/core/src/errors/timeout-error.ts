import { MicrovmError } from './microvm-error.js';

/** An operation did not finish before its deadline. */
export class TimeoutError extends MicrovmError<'ERR_MICROVM_TIMEOUT'> {
  override readonly name = 'TimeoutError';
  /** What was being waited for, e.g. `PUT /snapshot/create` or `API socket`. */
  readonly operation: string;
  readonly timeoutMs: number;

  constructor(options: { operation: string; timeoutMs: number; cause?: unknown }) {
    super({
      code: 'ERR_MICROVM_TIMEOUT',
      message: `${options.operation} did not finish within ${options.timeoutMs} ms`,
      cause: options.cause,
    });
    this.operation = options.operation;
    this.timeoutMs = options.timeoutMs;
  }
}
