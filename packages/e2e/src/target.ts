import { constants } from 'node:fs';
import { access, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { firecrackerSimulatorPath, jailerSimulatorPath } from '@microvm/simulator';

/** The variables that switch the suite from the simulator to a real Firecracker: any of them set means real. */
export const VMM_VARIABLES = [
  'MICROVM_FIRECRACKER_BIN',
  'MICROVM_JAILER_BIN',
  'MICROVM_KERNEL',
  'MICROVM_ROOTFS',
] as const;

/** The readiness marker both guests print: the simulator is told to print it, a real guest's init prints it. */
export const DEFAULT_READY_LINE = 'microvm-e2e: guest ready';
export const DEFAULT_VSOCK_ECHO_PORT = 5000;
export const DEFAULT_GUEST_TCP_PORT = 7000;
export const DEFAULT_SIMULATOR_BOOT_TIMEOUT_MS = 30_000;
/** Nested virtualization can take minutes to boot a kernel. */
export const DEFAULT_FIRECRACKER_BOOT_TIMEOUT_MS = 180_000;

export const GUIDE = 'docs/guides/real-firecracker.md';

/** What the e2e suite runs against, resolved once from the environment (see `resolveTarget`). */
export interface E2eTarget {
  vmm: 'simulator' | 'firecracker';
  firecrackerBinary: string;
  jailerBinary: string;
  /** Host path of the guest kernel; undefined for the simulator, which opens but never reads it. */
  kernel: string | undefined;
  /** Host path of the root filesystem image; undefined for the simulator. */
  rootfs: string | undefined;
  /** Appended to the composer's default boot arguments. */
  bootArgs: string | undefined;
  /** A console line containing this means the guest has booted and its services run. */
  readyLine: string;
  /** Guest vsock port that echoes every byte back. */
  vsockEchoPort: number;
  /** Guest TCP port that echoes every byte back. */
  guestTcpPort: number;
  /** How long a cold boot may take until the ready line (also the deadline of the guest's services). */
  bootTimeoutMs: number;
  /** Boot once, snapshot the ready guest, and run every other scenario on a clone restored from it. */
  restoreClones: boolean;
}

/** One thing wrong with the environment: what, and how to fix it. */
export interface TargetProblem {
  subject: string;
  problem: string;
  fix: string;
}

/** The environment asks for something the suite cannot use; `problems` lists each, `message` says it all. */
export class E2eTargetError extends Error {
  readonly problems: readonly TargetProblem[];

  constructor(problems: readonly TargetProblem[], real: boolean) {
    const lines = problems.flatMap((item) => [
      `  ✗ ${item.subject}: ${item.problem}`,
      `    fix: ${item.fix}`,
    ]);
    const header = real
      ? `The e2e suite cannot run against a real Firecracker as configured (${problems.length} problem(s)):`
      : `The e2e suite cannot run against @microvm/simulator (${problems.length} problem(s)):`;
    const footer = real
      ? [
          `To run against @microvm/simulator instead, unset ${VMM_VARIABLES.join(', ')}.`,
          `Setting up a real Firecracker: ${GUIDE}.`,
        ]
      : [];
    super([header, ...lines, ...footer].join('\n'));
    this.name = 'E2eTargetError';
    this.problems = problems;
  }
}

/** What `resolveTarget` reads from the host besides files; tests stand in for it. */
export interface TargetProbe {
  euid: number | undefined;
  /** Where KVM is looked for. Default `/dev/kvm`. */
  kvmPath: string;
}

const defaultProbe: TargetProbe = { euid: process.geteuid?.(), kvmPath: '/dev/kvm' };

function setValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

/**
 * Decides what the suite runs against. Without any of `VMM_VARIABLES` it is the simulator; with any of them
 * it is a real Firecracker, and every file, /dev/kvm and root are checked first. Anything unusable throws an
 * `E2eTargetError` listing every problem and its fix: a misconfigured run fails, it never skips.
 */
export async function resolveTarget(
  env: NodeJS.ProcessEnv,
  probe: Partial<TargetProbe> = {},
): Promise<E2eTarget> {
  const { euid, kvmPath } = { ...defaultProbe, ...probe };
  const problems: TargetProblem[] = [];
  const real = VMM_VARIABLES.some((name) => setValue(env, name) !== undefined);

  const readyLine = env.MICROVM_E2E_READY_LINE?.trim() || DEFAULT_READY_LINE;
  const vsockEchoPort = readInteger(env, 'MICROVM_E2E_VSOCK_ECHO_PORT', DEFAULT_VSOCK_ECHO_PORT, {
    min: 1,
    max: 2 ** 32 - 1,
    what: 'a vsock port',
    problems,
  });
  const guestTcpPort = readInteger(env, 'MICROVM_E2E_GUEST_TCP_PORT', DEFAULT_GUEST_TCP_PORT, {
    min: 1,
    max: 65_535,
    what: 'a TCP port',
    problems,
  });
  const bootTimeoutMs = readInteger(
    env,
    'MICROVM_E2E_BOOT_TIMEOUT_MS',
    real ? DEFAULT_FIRECRACKER_BOOT_TIMEOUT_MS : DEFAULT_SIMULATOR_BOOT_TIMEOUT_MS,
    { min: 1, max: 3_600_000, what: 'a duration in milliseconds', problems },
  );
  const restoreClones = readBoolean(env, 'MICROVM_E2E_RESTORE_CLONES', problems);
  const bootArgs = setValue(env, 'MICROVM_E2E_BOOT_ARGS');

  if (euid !== 0) {
    problems.push({
      subject: 'root',
      problem: `running as uid ${euid ?? 'unknown'}`,
      fix: 'run as root (sudo -E pnpm test:e2e): the suite creates network namespaces, nftables rules and jails',
    });
  }

  let firecrackerBinary = firecrackerSimulatorPath;
  let jailerBinary = jailerSimulatorPath;
  let kernel: string | undefined;
  let rootfs: string | undefined;
  if (real) {
    const firecracker = await checkFile(env, 'MICROVM_FIRECRACKER_BIN', {
      executable: true,
      missingFix:
        'set MICROVM_FIRECRACKER_BIN to the firecracker executable of an official release (v1.16 or newer)',
      problems,
    });
    if (firecracker !== undefined && !basename(firecracker).includes('firecracker')) {
      problems.push({
        subject: `MICROVM_FIRECRACKER_BIN=${firecracker}`,
        problem: "its file name does not contain 'firecracker', which the jailer requires",
        fix: 'point it at the file as released (firecracker-v1.16.1-x86_64) or a link named firecracker',
      });
    }
    const jailer =
      setValue(env, 'MICROVM_JAILER_BIN') === undefined && firecracker !== undefined
        ? await siblingJailer(firecracker, problems)
        : await checkFile(env, 'MICROVM_JAILER_BIN', {
            executable: true,
            missingFix:
              'set MICROVM_JAILER_BIN to the jailer of the same release as firecracker (by default the one beside MICROVM_FIRECRACKER_BIN is used)',
            problems,
          });
    kernel = await checkFile(env, 'MICROVM_KERNEL', {
      executable: false,
      missingFix: 'set MICROVM_KERNEL to an uncompressed guest kernel (vmlinux) built for Firecracker',
      problems,
    });
    rootfs = await checkFile(env, 'MICROVM_ROOTFS', {
      executable: false,
      missingFix: `set MICROVM_ROOTFS to an ext4 image whose init prints the ready line and runs the echo services (${GUIDE})`,
      problems,
    });
    if (!(await accessible(kvmPath, constants.R_OK | constants.W_OK))) {
      problems.push({
        subject: kvmPath,
        problem: (await exists(kvmPath)) ? 'not readable and writable by this user' : 'missing',
        fix: 'enable hardware virtualization (or nested virtualization on a cloud VM), load kvm_intel or kvm_amd, and run as root',
      });
    }
    if (firecracker !== undefined) firecrackerBinary = firecracker;
    if (jailer !== undefined) jailerBinary = jailer;
  }

  if (problems.length > 0) throw new E2eTargetError(problems, real);
  return {
    vmm: real ? 'firecracker' : 'simulator',
    firecrackerBinary,
    jailerBinary,
    kernel,
    rootfs,
    bootArgs,
    readyLine,
    vsockEchoPort,
    guestTcpPort,
    bootTimeoutMs,
    restoreClones,
  };
}

/** The suite's first line: what it runs against, and how to change that. */
export function describeTarget(target: E2eTarget): string {
  const mode = target.restoreClones ? 'one cold boot, other scenarios on restored clones' : 'cold boots';
  if (target.vmm === 'simulator') {
    return `e2e: running against @microvm/simulator (${mode}); set ${VMM_VARIABLES.join(', ')} to run against a real Firecracker (${GUIDE})`;
  }
  return `e2e: running against Firecracker ${target.firecrackerBinary} (jailer ${target.jailerBinary}), kernel ${target.kernel}, rootfs ${target.rootfs}, boot timeout ${target.bootTimeoutMs} ms (${mode})`;
}

function readInteger(
  env: NodeJS.ProcessEnv,
  name: string,
  fallback: number,
  options: { min: number; max: number; what: string; problems: TargetProblem[] },
): number {
  const raw = setValue(env, name);
  if (raw === undefined) return fallback;
  const value = /^\d+$/.test(raw) ? Number(raw) : Number.NaN;
  if (Number.isSafeInteger(value) && value >= options.min && value <= options.max) return value;
  options.problems.push({
    subject: `${name}=${raw}`,
    problem: `is not ${options.what}`,
    fix: `use an integer from ${options.min} to ${options.max}, or unset it for ${fallback}`,
  });
  return fallback;
}

const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on']);
const FALSE_WORDS = new Set(['0', 'false', 'no', 'off']);

function readBoolean(env: NodeJS.ProcessEnv, name: string, problems: TargetProblem[]): boolean {
  const raw = setValue(env, name);
  if (raw === undefined) return false;
  const value = raw.toLowerCase();
  if (TRUE_WORDS.has(value)) return true;
  if (FALSE_WORDS.has(value)) return false;
  problems.push({
    subject: `${name}=${raw}`,
    problem: 'is not a boolean',
    fix: 'use 1, true, yes, on, 0, false, no or off',
  });
  return false;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function accessible(path: string, mode: number): Promise<boolean> {
  return access(path, mode).then(
    () => true,
    () => false,
  );
}

/** Undefined (with a problem recorded) unless the variable names an existing regular file usable as asked. */
async function checkFile(
  env: NodeJS.ProcessEnv,
  name: string,
  options: { executable: boolean; missingFix: string; problems: TargetProblem[] },
): Promise<string | undefined> {
  const path = setValue(env, name);
  if (path === undefined) {
    options.problems.push({ subject: name, problem: 'is not set', fix: options.missingFix });
    return undefined;
  }
  const problem = await fileProblem(path, options.executable);
  if (problem === undefined) return path;
  options.problems.push({ subject: `${name}=${path}`, problem, fix: options.missingFix });
  return undefined;
}

async function fileProblem(path: string, executable: boolean): Promise<string | undefined> {
  const info = await stat(path).catch(() => undefined);
  if (!info) return 'no such file';
  if (!info.isFile()) return 'is not a regular file';
  if (!(await accessible(path, executable ? constants.X_OK : constants.R_OK))) {
    return executable ? 'is not executable' : 'is not readable';
  }
  return undefined;
}

/** Official releases ship `jailer` beside `firecracker`: use it when MICROVM_JAILER_BIN is not set. */
async function siblingJailer(firecracker: string, problems: TargetProblem[]): Promise<string | undefined> {
  // `firecracker-v1.16.1-x86_64` comes with `jailer-v1.16.1-x86_64`; a renamed binary with plain `jailer`.
  const released = basename(firecracker).replace('firecracker', 'jailer');
  const names = released === basename(firecracker) ? ['jailer'] : [released, 'jailer'];
  const candidates = [...new Set(names.map((name) => join(dirname(firecracker), name)))];
  for (const candidate of candidates) {
    if ((await fileProblem(candidate, true)) === undefined) return candidate;
  }
  problems.push({
    subject: 'MICROVM_JAILER_BIN',
    problem: `is not set, and there is no executable ${candidates.join(' or ')}`,
    fix: 'set MICROVM_JAILER_BIN to the jailer of the same release as firecracker',
  });
  return undefined;
}
