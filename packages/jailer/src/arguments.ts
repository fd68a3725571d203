import { ValidationError } from '@microvm/core';
import type { ResolvedJailerOptions } from './options.js';

/** Firecracker flags that take a value (v1.16.1 `main.rs`); every other flag is a switch. */
const FIRECRACKER_VALUE_FLAGS = new Set([
  '--api-sock',
  '--id',
  '--config-file',
  '--log-path',
  '--level',
  '--module',
  '--metrics-path',
  '--seccomp-filter',
  '--start-time-us',
  '--start-time-cpu-us',
  '--parent-cpu-time-us',
  '--http-api-max-payload-size',
  '--mmds-size-limit',
  '--metadata',
  '--describe-snapshot',
]);
/** The jailer passes these itself: Firecracker fails with a duplicate argument if they come again. */
const JAILER_OWNED_FIRECRACKER_FLAGS = new Set([
  '--start-time-us',
  '--start-time-cpu-us',
  '--parent-cpu-time-us',
]);
/** Firecracker flags naming a file it reads; the file is staged into the jail. */
export const FIRECRACKER_INPUT_FLAGS = new Set(['--seccomp-filter', '--metadata']);
/** Firecracker flags naming a file it writes; the file is staged (or created) in the jail. */
export const FIRECRACKER_OUTPUT_FLAGS = new Set(['--log-path', '--metrics-path']);

/** One Firecracker flag with its value, as parsed from the launch command. */
export interface FirecrackerArgument {
  flag: string;
  value?: string;
}

/**
 * Splits the VMM's argv into flags. `--id` is dropped (the jailer passes the VM id itself), `--api-sock` is
 * kept for the caller to rewrite, and flags only the jailer may pass are refused.
 */
export function parseFirecrackerArguments(args: readonly string[]): FirecrackerArgument[] {
  const parsed: FirecrackerArgument[] = [];
  for (let index = 0; index < args.length; index += 1) {
    const flag = args[index] ?? '';
    const field = `launch.args[${index}]`;
    if (!flag.startsWith('--')) {
      throw new ValidationError({
        field,
        rule: 'must be a --flag (Firecracker takes no positional arguments)',
        value: flag,
      });
    }
    if (flag.includes('=')) {
      throw new ValidationError({ field, rule: 'must be --flag value, not --flag=value', value: flag });
    }
    if (JAILER_OWNED_FIRECRACKER_FLAGS.has(flag)) {
      throw new ValidationError({
        field,
        rule: 'must not be passed: the jailer passes it to Firecracker',
        value: flag,
      });
    }
    if (flag === '--config-file') {
      throw new ValidationError({
        field,
        rule: 'is not supported under the jailer: the paths inside the file would need rewriting; configure through the API',
        value: flag,
      });
    }
    if (!FIRECRACKER_VALUE_FLAGS.has(flag)) {
      parsed.push({ flag });
      continue;
    }
    const value = args[index + 1];
    if (value === undefined) {
      throw new ValidationError({ field, rule: 'needs a value', value: flag });
    }
    index += 1;
    if (flag === '--id') continue;
    parsed.push({ flag, value });
  }
  return parsed;
}

/** What `buildJailerArguments` needs besides the options. */
export interface JailerInvocation {
  vmId: string;
  /** Canonical path of the Firecracker executable. */
  execFile: string;
  /** Canonical chroot base. */
  chrootBaseDir: string;
  networkNamespacePath?: string;
  /** Everything after `--`. */
  firecrackerArgs: readonly string[];
}

/**
 * The jailer's argv in `--flag value` form (the jailer's parser refuses `--flag=value`), in the order of
 * `jailer --help`, then `--` and Firecracker's own arguments.
 */
export function buildJailerArguments(options: ResolvedJailerOptions, invocation: JailerInvocation): string[] {
  const args = [
    '--id',
    invocation.vmId,
    '--exec-file',
    invocation.execFile,
    '--uid',
    String(options.uid),
    '--gid',
    String(options.gid),
    '--chroot-base-dir',
    invocation.chrootBaseDir,
  ];
  if (invocation.networkNamespacePath !== undefined) args.push('--netns', invocation.networkNamespacePath);
  if (options.daemonize) args.push('--daemonize');
  if (options.newPidNamespace) args.push('--new-pid-ns');
  for (const [file, value] of options.cgroups) args.push('--cgroup', `${file}=${value}`);
  if (options.cgroupVersion !== undefined) args.push('--cgroup-version', String(options.cgroupVersion));
  if (options.parentCgroup !== undefined) args.push('--parent-cgroup', options.parentCgroup);
  if (options.maxFileSizeBytes !== undefined) {
    args.push('--resource-limit', `fsize=${options.maxFileSizeBytes}`);
  }
  if (options.maxOpenFiles !== undefined) args.push('--resource-limit', `no-file=${options.maxOpenFiles}`);
  args.push(...options.extraJailerArgs, '--', ...invocation.firecrackerArgs, ...options.extraFirecrackerArgs);
  return args;
}
