import { ProcessExitError } from '@microvm/core';
import { execa } from 'execa';

export interface NftResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs `nft` (inside `namespace` when given) with `args`, feeding `input` on stdin. Never throws for a non-zero exit. */
export type NftRunner = (
  args: readonly string[],
  options: { namespace?: string; input?: string },
) => Promise<NftResult>;

/** The argv that runs `nft <args>`, entering the named network namespace first when one is given. */
export function nftArgv(nftPath: string, args: readonly string[], namespace: string | undefined): string[] {
  return namespace === undefined ? [nftPath, ...args] : ['ip', 'netns', 'exec', namespace, nftPath, ...args];
}

export function createNftRunner(nftPath = 'nft'): NftRunner {
  return async (args, options) => {
    const [file, ...rest] = nftArgv(nftPath, args, options.namespace);
    const result = await execa(file!, rest, {
      input: options.input ?? '',
      reject: false,
      stripFinalNewline: false,
      env: { LC_ALL: 'C' },
    });
    if (result.failed && typeof result.exitCode !== 'number') {
      throw new ProcessExitError({
        exitCode: null,
        signal: (result.signal as NodeJS.Signals | undefined) ?? null,
        stderrTail: `${result.stderr}${result.shortMessage ? `\n${result.shortMessage}` : ''}`,
        context: `${file} ${rest.join(' ')}`,
        cause: result,
      });
    }
    return { exitCode: result.exitCode ?? 0, stdout: String(result.stdout), stderr: String(result.stderr) };
  };
}
