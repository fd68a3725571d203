import { MicrovmError } from './microvm-error.js';

/** Bad input, found before anything on the host changed. */
export class ValidationError extends MicrovmError<'ERR_MICROVM_INVALID_INPUT'> {
  override readonly name = 'ValidationError';
  /** Dotted path of the offending field, e.g. `drives[1].driveId`. */
  readonly field: string;
  /** The rule it broke, in words, e.g. `must match [A-Za-z0-9_]+`. */
  readonly rule: string;
  readonly value: unknown;

  constructor(options: { field: string; rule: string; value: unknown; cause?: unknown }) {
    super({
      code: 'ERR_MICROVM_INVALID_INPUT',
      message: `Invalid ${options.field}: ${options.rule} (got ${describeValue(options.value)})`,
      cause: options.cause,
    });
    this.field = options.field;
    this.rule = options.rule;
    this.value = options.value;
  }
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (value === undefined) return 'undefined';
  try {
    const text = JSON.stringify(value);
    return text === undefined ? String(value) : text.length > 80 ? `${text.slice(0, 80)}…` : text;
  } catch {
    return String(value);
  }
}
