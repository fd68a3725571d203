import type { CoreErrorCode } from './codes.js';
import { coreUserErrorCodes } from './codes.js';

const brand = Symbol.for('microvm.error');
const userCodes = new Set<string>(coreUserErrorCodes);

export interface MicrovmErrorOptions<Code extends string = CoreErrorCode> {
  code: Code;
  message: string;
  cause?: unknown;
  /** Marks the error as the caller's fault. Codes of core decide this themselves. */
  isUserError?: boolean;
}

/**
 * The base of every error thrown by a `@microvm/*` package.
 * Primitives subclass it with their own code union; users branch on `error.code`.
 */
export class MicrovmError<Code extends string = CoreErrorCode> extends Error {
  readonly [brand] = true;
  override readonly name: string = 'MicrovmError';
  readonly code: Code;
  /** True when the caller can fix it by changing the input; false when the host or VMM failed. */
  readonly isUserError: boolean;

  constructor(options: MicrovmErrorOptions<Code>) {
    super(options.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code;
    this.isUserError = options.isUserError ?? userCodes.has(options.code);
  }

  /** True for any `MicrovmError`, also one created by another copy of this package. */
  static isInstance(value: unknown): value is MicrovmError<string> {
    return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[brand] === true;
  }
}

export function isUserError(value: unknown): value is MicrovmError<string> {
  return MicrovmError.isInstance(value) && value.isUserError;
}

export function isSystemError(value: unknown): value is MicrovmError<string> {
  return MicrovmError.isInstance(value) && !value.isUserError;
}
