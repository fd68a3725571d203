import { MicrovmError } from './microvm-error.js';

/** Firecracker (or its HTTP layer) refused a request. */
export class FirecrackerApiError extends MicrovmError<'ERR_MICROVM_API'> {
  override readonly name = 'FirecrackerApiError';
  readonly method: string;
  readonly path: string;
  readonly statusCode: number;
  /** Firecracker's `fault_message`, or micro_http's `error`, or the raw body when neither parsed. */
  readonly faultMessage: string;
  /** 503 "Too many open connections" goes away by itself; a 400 does not. */
  readonly isRetryable: boolean;

  constructor(options: { method: string; path: string; statusCode: number; faultMessage: string }) {
    super({
      code: 'ERR_MICROVM_API',
      message: `Firecracker refused ${options.method} ${options.path} (${options.statusCode}): ${options.faultMessage}`,
    });
    this.method = options.method;
    this.path = options.path;
    this.statusCode = options.statusCode;
    this.faultMessage = options.faultMessage;
    this.isRetryable = options.statusCode === 503;
  }
}
