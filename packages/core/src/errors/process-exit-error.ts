import { MicrovmError } from './microvm-error.js';

/** The VMM (or jailer) process ended when it should not have. */
export class ProcessExitError extends MicrovmError<'ERR_MICROVM_PROCESS_EXITED'> {
  override readonly name = 'ProcessExitError';
  readonly pid: number | undefined;
  readonly exitCode: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The last lines the process wrote to stderr: usually the reason. */
  readonly stderrTail: string;

  constructor(options: {
    pid?: number;
    exitCode: number | null;
    signal: NodeJS.Signals | null;
    stderrTail: string;
    context?: string;
    cause?: unknown;
  }) {
    const how = options.signal ? `signal ${options.signal}` : `exit code ${options.exitCode}`;
    const tail = options.stderrTail.trim();
    super({
      code: 'ERR_MICROVM_PROCESS_EXITED',
      message: `${options.context ?? 'The VMM process'} ended with ${how}${tail ? `: ${tail}` : ''}`,
      cause: options.cause,
    });
    this.pid = options.pid;
    this.exitCode = options.exitCode;
    this.signal = options.signal;
    this.stderrTail = options.stderrTail;
  }
}
