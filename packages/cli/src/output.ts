import { MicrovmError } from '@microvm/core';

/** Exit codes scripts can rely on. Documented in the README; never renumber. */
export const EXIT_CODES = {
  ok: 0,
  /** The operation failed (the VMM, the host, a primitive). */
  failed: 1,
  /** Bad flags, bad arguments or invalid input (`ERR_MICROVM_INVALID_INPUT`). */
  usage: 2,
  /** No VM or snapshot with that id. */
  notFound: 3,
  /** The id is taken, or the VM is in a state that does not allow the operation. */
  conflict: 4,
  /** Ctrl-C (SIGINT) or SIGTERM ended the command. */
  interrupted: 130,
} as const;

export type ExitCode = (typeof EXIT_CODES)[keyof typeof EXIT_CODES];

const exitCodeByErrorCode: Record<string, ExitCode> = {
  ERR_MICROVM_INVALID_INPUT: EXIT_CODES.usage,
  ERR_MICROVM_UNSUPPORTED_BY_VERSION: EXIT_CODES.usage,
  ERR_MICROVM_VM_NOT_FOUND: EXIT_CODES.notFound,
  ERR_MICROVM_SNAPSHOT_NOT_FOUND: EXIT_CODES.notFound,
  ERR_MICROVM_VM_EXISTS: EXIT_CODES.conflict,
  ERR_MICROVM_SNAPSHOT_EXISTS: EXIT_CODES.conflict,
  ERR_MICROVM_INVALID_STATE: EXIT_CODES.conflict,
  ERR_MICROVM_ABORTED: EXIT_CODES.interrupted,
};

/** Raised by the CLI itself for bad flags and arguments: always exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  /** The command whose usage to point at. */
  readonly command: string | undefined;

  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

/** A `parseArgs` failure (unknown option, missing value…): these carry `ERR_PARSE_ARGS_*` codes. */
function isParseArgsError(error: unknown): error is Error & { code: string } {
  const code = (error as { code?: unknown } | undefined)?.code;
  return error instanceof Error && typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS_');
}

/**
 * The error that decides the exit code: a hook's failure is judged by what went wrong inside it (a bad egress
 * policy is still bad input).
 */
function decisiveCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && MicrovmError.isInstance(current); depth += 1) {
    if (current.code !== 'ERR_MICROVM_HOOK_FAILED') return current.code;
    current = current.cause;
  }
  return MicrovmError.isInstance(error) ? error.code : undefined;
}

export function exitCodeOf(error: unknown, interrupted = false): ExitCode {
  if (error instanceof UsageError || isParseArgsError(error)) return EXIT_CODES.usage;
  const code = decisiveCode(error);
  if (interrupted && (code === undefined || code === 'ERR_MICROVM_ABORTED' || isAbortError(error))) {
    return EXIT_CODES.interrupted;
  }
  if (code !== undefined) return exitCodeByErrorCode[code] ?? EXIT_CODES.failed;
  if (isAbortError(error)) return EXIT_CODES.interrupted;
  return EXIT_CODES.failed;
}

function isAbortError(error: unknown): boolean {
  return error instanceof Error && error.name === 'AbortError';
}

const hints: Record<string, string> = {
  ERR_MICROVM_VM_NOT_FOUND: 'list VMs with `microvm ps -a`',
  ERR_MICROVM_SNAPSHOT_NOT_FOUND: 'list snapshots with `microvm snapshots`',
  ERR_MICROVM_VM_EXISTS: 'choose another --name, or remove the old VM with `microvm rm -f <id>`',
  ERR_MICROVM_STATE_STORE: 'check that --state-dir exists and is writable (usually: run as root)',
};

/** `microvm: <message> [<code>]`, a hint when there is one, and with `debug` the stack and every cause. */
export function formatError(error: unknown, debug: boolean): string {
  const lines: string[] = [];
  if (error instanceof UsageError) {
    lines.push(`microvm: ${error.message}`);
    lines.push(`Run 'microvm ${error.command ? `${error.command} ` : ''}--help' for usage.`);
    return `${lines.join('\n')}\n`;
  }
  if (isParseArgsError(error)) {
    lines.push(`microvm: ${error.message}`);
    lines.push(`Run 'microvm <command> --help' for usage.`);
    return `${lines.join('\n')}\n`;
  }
  const message = error instanceof Error ? error.message : String(error);
  const code = MicrovmError.isInstance(error) ? error.code : (error as { code?: unknown })?.code;
  lines.push(`microvm: ${message}${typeof code === 'string' ? ` [${code}]` : ''}`);
  const hint = typeof code === 'string' ? hints[decisiveCode(error) ?? code] : undefined;
  if (hint) lines.push(`  hint: ${hint}`);
  if (debug) {
    if (error instanceof Error && error.stack) lines.push(indent(error.stack));
    const nested = (error as { errors?: unknown }).errors;
    if (Array.isArray(nested)) {
      for (const [index, item] of nested.entries())
        lines.push(indent(`failure ${index + 1}: ${describe(item)}`));
    }
    let cause = error instanceof Error ? error.cause : undefined;
    for (let depth = 0; cause !== undefined && depth < 8; depth += 1) {
      lines.push(indent(`caused by: ${describe(cause)}`));
      cause = cause instanceof Error ? cause.cause : undefined;
    }
  } else if (error instanceof Error && error.cause !== undefined) {
    lines.push('  (run with --debug to see the cause)');
  }
  return `${lines.join('\n')}\n`;
}

function describe(value: unknown): string {
  if (value instanceof Error) return value.stack ?? `${value.name}: ${value.message}`;
  if (typeof value === 'string') return value;
  try {
    return JSON.stringify(value);
  } catch {
    return String(value);
  }
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n');
}

/** `12 ms`, `1.4 s`. */
export function formatDuration(durationMs: number): string {
  if (durationMs < 1_000) return `${Math.round(durationMs)} ms`;
  return `${(durationMs / 1_000).toFixed(durationMs < 10_000 ? 2 : 1)} s`;
}

/** How long ago an ISO timestamp was: `5 seconds ago`, `3 minutes ago`. */
export function formatAge(isoTimestamp: string, nowMs: number): string {
  const seconds = Math.max(0, Math.round((nowMs - Date.parse(isoTimestamp)) / 1_000));
  if (seconds === 0) return 'just now';
  const units: [number, string][] = [
    [86_400, 'day'],
    [3_600, 'hour'],
    [60, 'minute'],
    [1, 'second'],
  ];
  for (const [size, unit] of units) {
    if (seconds >= size) {
      const count = Math.floor(seconds / size);
      return `${count} ${unit}${count === 1 ? '' : 's'} ago`;
    }
  }
  return 'just now';
}

/** Left-aligned columns separated by three spaces, as `docker ps` prints them. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('   ')
      .trimEnd();
  return `${[line(header), ...rows.map(line)].join('\n')}\n`;
}

export function toJson(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
