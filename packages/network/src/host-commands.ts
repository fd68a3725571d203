import { writeFile } from 'node:fs/promises';
import { execa } from 'execa';
import { NetworkError } from './errors.js';

/** The result of one host command that was allowed to fail. */
export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs host commands (`ip`, `nft`, `sysctl`), each as an argv array, inside one network namespace or the current
 * one. Batches go through stdin, so one process does a whole step.
 */
export class HostCommands {
  readonly namespace: string | undefined;

  constructor(namespace: string | undefined) {
    this.namespace = namespace;
  }

  /** `ip` argv for this namespace (`ip -n <ns> …`). */
  ipArgs(args: readonly string[]): string[] {
    return this.namespace === undefined ? [...args] : ['-n', this.namespace, ...args];
  }

  /** Runs `ip -batch -` with one command per line; every line must succeed. */
  async ipBatch(lines: readonly string[], signal?: AbortSignal): Promise<void> {
    if (lines.length === 0) return;
    await run('ip', this.ipArgs(['-batch', '-']), { input: `${lines.join('\n')}\n`, signal });
  }

  /** Like `ipBatch`, but keeps going past failing lines (`-force`) and reports instead of throwing. */
  async ipBatchForce(lines: readonly string[], signal?: AbortSignal): Promise<CommandResult> {
    return tryRun('ip', this.ipArgs(['-force', '-batch', '-']), { input: `${lines.join('\n')}\n`, signal });
  }

  /** `ip -j …` parsed. */
  async ipJson<T>(args: readonly string[], signal?: AbortSignal): Promise<T[]> {
    const stdout = await run('ip', this.ipArgs(['-j', ...args]), { signal });
    return stdout.trim() === '' ? [] : (JSON.parse(stdout) as T[]);
  }

  /** Applies an nft script (`nft -f -`) in this namespace. */
  async nft(script: string, signal?: AbortSignal): Promise<void> {
    await run(...this.#inNamespace(['nft', '-f', '-']), { input: script, signal });
  }

  async tryNft(script: string, signal?: AbortSignal): Promise<CommandResult> {
    return tryRun(...this.#inNamespace(['nft', '-f', '-']), { input: script, signal });
  }

  /** Turns IPv4 forwarding on in this namespace only (it is a per-namespace setting). */
  async enableForwarding(signal?: AbortSignal): Promise<void> {
    if (this.namespace === undefined) {
      await writeFile('/proc/sys/net/ipv4/ip_forward', '1\n');
      return;
    }
    await run(...this.#inNamespace(['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']), { signal });
  }

  #inNamespace(argv: [string, ...string[]]): [string, string[]] {
    if (this.namespace === undefined) return [argv[0], argv.slice(1)];
    return ['ip', ['netns', 'exec', this.namespace, ...argv]];
  }
}

interface RunOptions {
  input?: string;
  signal?: AbortSignal | undefined;
}

export async function tryRun(
  file: string,
  args: readonly string[],
  options: RunOptions = {},
): Promise<CommandResult> {
  const result = await execa(file, args, {
    reject: false,
    stripFinalNewline: false,
    ...(options.input !== undefined ? { input: options.input } : { stdin: 'ignore' }),
    ...(options.signal && { cancelSignal: options.signal }),
  });
  if (result.failed && result.exitCode === undefined) {
    throw new NetworkError({
      reason: 'host-command-failed',
      message: `Could not run ${[file, ...args].join(' ')}: ${result.shortMessage}`,
      command: [file, ...args],
      stderr: String(result.stderr),
      cause: result.cause,
    });
  }
  return { exitCode: result.exitCode ?? 1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

export async function run(file: string, args: readonly string[], options: RunOptions = {}): Promise<string> {
  const result = await tryRun(file, args, options);
  if (result.exitCode !== 0) {
    const detail = result.stderr.trim() || result.stdout.trim();
    throw new NetworkError({
      reason: 'host-command-failed',
      message: `${[file, ...args].join(' ')} exited with ${result.exitCode}: ${detail}${
        options.input ? `\n(input was:\n${options.input.trimEnd()})` : ''
      }`,
      command: [file, ...args],
      stderr: result.stderr,
    });
  }
  return result.stdout;
}
