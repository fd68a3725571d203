import { execFile } from 'node:child_process';

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs `file args…` (never through a shell) and resolves with its result, whatever the exit code. */
export function runCommand(
  file: string,
  args: readonly string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      [...args],
      { encoding: 'utf8', timeout: options.timeoutMs ?? 60_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') {
          reject(new Error(`${file} ${args.join(' ')} could not run: ${error.message}`, { cause: error }));
          return;
        }
        resolve({ exitCode: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
    // A command that exits without reading its input must not fail the caller with EPIPE.
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(options.input ?? '');
  });
}

/** Like `runCommand`, but a non-zero exit is an error naming the command and its stderr. */
export async function mustRun(
  file: string,
  args: readonly string[],
  options: { input?: string; timeoutMs?: number } = {},
): Promise<string> {
  const result = await runCommand(file, args, options);
  if (result.exitCode !== 0) {
    throw new Error(`${file} ${args.join(' ')} exited ${result.exitCode}: ${result.stderr.trim()}`);
  }
  return result.stdout;
}

/** `ip …` inside `namespace` (or the current one). */
export function ipIn(namespace: string | undefined, args: readonly string[]): Promise<string> {
  return mustRun('ip', namespace === undefined ? args : ['-n', namespace, ...args]);
}

/** argv prefix that runs a program inside a named network namespace (or as is, for the current one). */
export function inNamespace(namespace: string | undefined, argv: readonly string[]): string[] {
  return namespace === undefined ? [...argv] : ['ip', 'netns', 'exec', namespace, ...argv];
}
