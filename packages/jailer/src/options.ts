import { ValidationError } from '@microvm/core';

/** Where the real jailer puts jails when `--chroot-base-dir` is not given. */
export const DEFAULT_CHROOT_BASE_DIR = '/srv/jailer';
/** The largest uid/gid the jailer parses (u32). */
const MAX_ID = 2 ** 32 - 1;
// `<controller>.<file>`: the jailer takes the controller from the text before the first dot.
const CGROUP_FILE_PATTERN = /^[a-z_]+\.[A-Za-z0-9_.]+$/;
const PARENT_CGROUP_PATTERN = /^[A-Za-z0-9_.:@-]+(?:\/[A-Za-z0-9_.:@-]+)*$/;
/** Flags the primitive sets itself: passing them again makes the jailer fail with a duplicate argument. */
/** Firecracker flags the jailer or this primitive sets, or that name files the jail would not contain. */
const MANAGED_FIRECRACKER_FLAGS = new Set([
  '--id',
  '--api-sock',
  '--config-file',
  '--start-time-us',
  '--start-time-cpu-us',
  '--parent-cpu-time-us',
  '--log-path',
  '--metrics-path',
  '--seccomp-filter',
]);

const MANAGED_JAILER_FLAGS = new Set([
  '--id',
  '--exec-file',
  '--uid',
  '--gid',
  '--chroot-base-dir',
  '--netns',
  '--daemonize',
  '--new-pid-ns',
  '--cgroup',
  '--cgroup-version',
  '--parent-cgroup',
  '--resource-limit',
]);

/** `--resource-limit` values the jailer applies with setrlimit before exec. */
export interface JailerResourceLimits {
  /** `fsize`: the largest file the VMM may create, in bytes. */
  maxFileSizeBytes?: number | bigint;
  /** `no-file`: one more than the highest file descriptor the VMM may open. The jailer's default is 2048. */
  maxOpenFiles?: number | bigint;
}

export interface JailerOptions {
  /** The `jailer` executable: a path, or a name looked up on PATH. Default `jailer`. */
  jailerBinary?: string;
  /** The uid Firecracker runs as (`--uid`). */
  uid: number;
  /** The gid Firecracker runs as (`--gid`). */
  gid: number;
  /** Must exist. Jails are `<chrootBaseDir>/<exec file name>/<vm id>/root`. Default `/srv/jailer`. */
  chrootBaseDir?: string;
  /** `--daemonize`: Firecracker's stdio go to /dev/null (no serial console on stdout). */
  daemonize?: boolean;
  /** `--new-pid-ns`: Firecracker is PID 1 of its own pid namespace. */
  newPidNamespace?: boolean;
  /** `--cgroup-version`; the jailer's default is 1. */
  cgroupVersion?: 1 | 2;
  /** `--cgroup <file>=<value>` each, e.g. `{ 'memory.max': '512M', 'cpu.max': '50000 100000' }` (v2). */
  cgroups?: Readonly<Record<string, string>>;
  /** `--parent-cgroup`, relative. The jailer's default is the exec file's name. */
  parentCgroup?: string;
  resourceLimits?: JailerResourceLimits;
  /** More jailer flags, placed before `--` (e.g. for a newer jailer). Flags this primitive sets are refused. */
  extraJailerArgs?: readonly string[];
  /** More Firecracker flags, placed after `--`. */
  extraFirecrackerArgs?: readonly string[];
}

export interface ResolvedJailerOptions {
  jailerBinary: string;
  uid: number;
  gid: number;
  chrootBaseDir: string;
  daemonize: boolean;
  newPidNamespace: boolean;
  cgroupVersion: 1 | 2 | undefined;
  cgroups: ReadonlyArray<readonly [file: string, value: string]>;
  parentCgroup: string | undefined;
  maxFileSizeBytes: bigint | undefined;
  maxOpenFiles: bigint | undefined;
  extraJailerArgs: readonly string[];
  extraFirecrackerArgs: readonly string[];
}

function fail(field: string, rule: string, value: unknown): never {
  throw new ValidationError({ field, rule, value });
}

function checkId(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_ID) {
    fail(field, `must be an integer from 0 to ${MAX_ID}`, value);
  }
  return value;
}

function checkLimit(value: unknown, field: string): bigint | undefined {
  if (value === undefined) return undefined;
  const valid =
    (typeof value === 'bigint' && value >= 0n && value < 2n ** 64n) ||
    (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0);
  if (!valid) fail(field, 'must be a non-negative integer below 2^64', value);
  return BigInt(value as number | bigint);
}

function checkPlainString(value: unknown, field: string): string {
  if (typeof value !== 'string' || value.length === 0 || value.includes('\0')) {
    fail(field, 'must be a non-empty string without NUL', value);
  }
  return value;
}

function checkBoolean(value: unknown, field: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') fail(field, 'must be a boolean', value);
  return value;
}

/** Checks the options' shape (nothing on the host is looked at) and fills in the defaults. */
export function resolveJailerOptions(options: JailerOptions): ResolvedJailerOptions {
  if (typeof options !== 'object' || options === null) fail('options', 'must be an object', options);
  const uid = checkId(options.uid, 'uid');
  const gid = checkId(options.gid, 'gid');
  const jailerBinary = checkPlainString(options.jailerBinary ?? 'jailer', 'jailerBinary');
  const chrootBaseDir = checkPlainString(options.chrootBaseDir ?? DEFAULT_CHROOT_BASE_DIR, 'chrootBaseDir');
  if (!chrootBaseDir.startsWith('/')) fail('chrootBaseDir', 'must be an absolute path', chrootBaseDir);

  const cgroupVersion = options.cgroupVersion;
  if (cgroupVersion !== undefined && cgroupVersion !== 1 && cgroupVersion !== 2) {
    fail('cgroupVersion', 'must be 1 or 2', cgroupVersion);
  }
  if (options.cgroups !== undefined && (typeof options.cgroups !== 'object' || options.cgroups === null)) {
    fail('cgroups', 'must be an object of cgroup file → value', options.cgroups);
  }
  const cgroups = Object.entries(options.cgroups ?? {}).map(([file, value]): [string, string] => {
    if (!CGROUP_FILE_PATTERN.test(file)) {
      fail(`cgroups['${file}']`, 'must name a cgroup file as <controller>.<name>, e.g. memory.max', file);
    }
    if (typeof value !== 'string' || value.length === 0 || /[=\n\0]/.test(value)) {
      fail(`cgroups['${file}']`, "must be a non-empty string without '=', newline or NUL", value);
    }
    return [file, value];
  });

  let parentCgroup: string | undefined;
  if (options.parentCgroup !== undefined) {
    parentCgroup = checkPlainString(options.parentCgroup, 'parentCgroup');
    const parts = parentCgroup.split('/');
    if (!PARENT_CGROUP_PATTERN.test(parentCgroup) || parts.includes('.') || parts.includes('..')) {
      fail(
        'parentCgroup',
        "must be a relative cgroup path of [A-Za-z0-9_.:@-] segments, without '.' or '..'",
        parentCgroup,
      );
    }
  }

  const limits = options.resourceLimits ?? {};
  const maxFileSizeBytes = checkLimit(limits.maxFileSizeBytes, 'resourceLimits.maxFileSizeBytes');
  const maxOpenFiles = checkLimit(limits.maxOpenFiles, 'resourceLimits.maxOpenFiles');

  const extraJailerArgs = [...(options.extraJailerArgs ?? [])].map((arg, index) =>
    checkPlainString(arg, `extraJailerArgs[${index}]`),
  );
  extraJailerArgs.forEach((arg, index) => {
    if (MANAGED_JAILER_FLAGS.has(arg) || arg === '--') {
      fail(`extraJailerArgs[${index}]`, 'must not repeat a flag the primitive sets; use its option', arg);
    }
  });
  const extraFirecrackerArgs = [...(options.extraFirecrackerArgs ?? [])].map((arg, index) =>
    checkPlainString(arg, `extraFirecrackerArgs[${index}]`),
  );
  extraFirecrackerArgs.forEach((arg, index) => {
    if (MANAGED_FIRECRACKER_FLAGS.has(arg.split('=')[0] ?? arg)) {
      fail(
        `extraFirecrackerArgs[${index}]`,
        'must not be a flag the primitive or the jailer sets, or one naming a host file (it would not be staged)',
        arg,
      );
    }
  });

  return {
    jailerBinary,
    uid,
    gid,
    chrootBaseDir,
    daemonize: checkBoolean(options.daemonize, 'daemonize'),
    newPidNamespace: checkBoolean(options.newPidNamespace, 'newPidNamespace'),
    cgroupVersion,
    cgroups,
    parentCgroup,
    maxFileSizeBytes,
    maxOpenFiles,
    extraJailerArgs,
    extraFirecrackerArgs,
  };
}
