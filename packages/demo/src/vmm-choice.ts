import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile, realpath, stat } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** A problem the person running the demo can fix; printed without a stack trace. */
export class SetupError extends Error {
  override readonly name = 'SetupError';
}

export interface SimulatorBinaries {
  firecracker: string;
  jailer: string;
}

/** Which VMM the demo runs, and with what. */
export type VmmChoice =
  | {
      kind: 'simulator';
      firecrackerBinary: string;
      jailerBinary: string;
      /** The first line the demo prints. */
      description: string;
    }
  | {
      kind: 'firecracker';
      firecrackerBinary: string;
      jailerBinary: string;
      version: string;
      /** Host paths of the guest kernel and root filesystem (MICROVM_KERNEL, MICROVM_ROOTFS). */
      kernel: string;
      rootfs: string;
      description: string;
    };

/**
 * The real Firecracker when `MICROVM_FIRECRACKER_BIN` names one or `firecracker` is on PATH, else the simulator.
 * A real one needs a jailer, a kernel and a root filesystem: all that is missing is named in one error.
 */
export async function chooseVmm(env: NodeJS.ProcessEnv, simulator: SimulatorBinaries): Promise<VmmChoice> {
  const simulatorChoice = (why: string): VmmChoice => ({
    kind: 'simulator',
    firecrackerBinary: simulator.firecracker,
    jailerBinary: simulator.jailer,
    description: `using the simulator (${why})`,
  });

  let firecracker: string | undefined;
  if (env.MICROVM_FIRECRACKER_BIN) {
    firecracker = env.MICROVM_FIRECRACKER_BIN;
    // Named explicitly, so it must exist: falling back to the simulator would hide a typo.
    if (!(await isExecutableFile(firecracker))) {
      throw new SetupError(
        `MICROVM_FIRECRACKER_BIN=${firecracker} is not an executable file (unset it to use the simulator)`,
      );
    }
    if (await isSimulator(firecracker, simulator.firecracker)) {
      return simulatorChoice('MICROVM_FIRECRACKER_BIN names @microvm/simulator');
    }
  } else {
    firecracker = await findOnPath('firecracker', env, simulator.firecracker);
    if (firecracker === undefined) return simulatorChoice('no Firecracker found');
  }

  const version = await firecrackerVersion(firecracker);
  const missing: string[] = [];
  const jailer = await chooseJailer(env, simulator.jailer, missing);
  const kernel = await requiredFile(
    env,
    'MICROVM_KERNEL',
    'the guest kernel (an uncompressed vmlinux)',
    missing,
  );
  const rootfs = await requiredFile(env, 'MICROVM_ROOTFS', 'the guest root filesystem (ext4 image)', missing);
  if (jailer === undefined || kernel === undefined || rootfs === undefined) {
    throw new SetupError(
      [
        `Found Firecracker ${firecracker} (${version}); to boot it the demo also needs:`,
        ...missing.map((item) => `  - ${item}`),
        'Or unset MICROVM_FIRECRACKER_BIN and take firecracker off PATH to run against the simulator.',
      ].join('\n'),
    );
  }
  return {
    kind: 'firecracker',
    firecrackerBinary: firecracker,
    jailerBinary: jailer,
    version,
    kernel,
    rootfs,
    description: `using Firecracker ${firecracker} (${version})`,
  };
}

async function chooseJailer(
  env: NodeJS.ProcessEnv,
  simulatorJailer: string,
  missing: string[],
): Promise<string | undefined> {
  const explicit = env.MICROVM_JAILER_BIN;
  if (explicit) {
    if (await isExecutableFile(explicit)) return explicit;
    missing.push(`MICROVM_JAILER_BIN=${explicit} is not an executable file: set it to Firecracker's jailer`);
    return undefined;
  }
  // The simulated jailer cannot confine a real Firecracker (it has no chroot), so it does not count.
  const onPath = await findOnPath('jailer', env, simulatorJailer);
  if (onPath === undefined) {
    missing.push("a jailer: set MICROVM_JAILER_BIN to Firecracker's jailer, or put `jailer` on PATH");
  }
  return onPath;
}

async function requiredFile(
  env: NodeJS.ProcessEnv,
  variable: string,
  what: string,
  missing: string[],
): Promise<string | undefined> {
  const path = env[variable];
  if (!path) {
    missing.push(`${variable}: the host path of ${what}`);
    return undefined;
  }
  try {
    if ((await stat(path)).isFile()) {
      await access(path, constants.R_OK);
      return path;
    }
  } catch {
    // Reported below, like a path that is not a file.
  }
  missing.push(`${variable}=${path} is not a readable file: set it to the host path of ${what}`);
  return undefined;
}

/** `Firecracker v1.16.1` → `v1.16.1`; the first line as is when it does not look like that. */
export async function firecrackerVersion(binary: string): Promise<string> {
  let stdout: string;
  try {
    ({ stdout } = await execFileAsync(binary, ['--version'], { encoding: 'utf8', timeout: 10_000 }));
  } catch (error) {
    throw new SetupError(`${binary} --version failed: ${(error as Error).message}`);
  }
  const version = /v?(\d+\.\d+\.\d+)/.exec(stdout)?.[1];
  if (version !== undefined) return `v${version}`;
  const firstLine = stdout.split('\n')[0]?.trim() ?? '';
  if (firstLine === '') throw new SetupError(`${binary} --version printed nothing`);
  return firstLine;
}

/** `name` on PATH as the shell would find it, skipping the simulator (`pnpm exec` puts its shims on PATH). */
export async function findOnPath(
  name: string,
  env: NodeJS.ProcessEnv,
  simulatorPath: string,
): Promise<string | undefined> {
  for (const folder of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(folder, name);
    if (!(await isExecutableFile(candidate))) continue;
    if (await isSimulator(candidate, simulatorPath)) continue;
    return candidate;
  }
  return undefined;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    if (!(await stat(path)).isFile()) return false;
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The simulator itself, or the small shell shim a package manager links to it. */
async function isSimulator(path: string, simulatorPath: string): Promise<boolean> {
  try {
    if ((await realpath(path)) === (await realpath(simulatorPath))) return true;
    if ((await stat(path)).size > 4096) return false;
    return (await readFile(path, 'utf8')).includes('@microvm/simulator/');
  } catch {
    return false;
  }
}
