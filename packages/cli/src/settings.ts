import { constants } from 'node:fs';
import { access, readFile, realpath, stat } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import { ValidationError } from '@microvm/core';
import { type OptionValues, stringOption } from './args.js';

export const DEFAULT_STATE_DIR = '/var/lib/microvm';

export type FirecrackerSource = 'flag' | 'env' | 'path' | 'simulator';

export interface FirecrackerChoice {
  path: string;
  source: FirecrackerSource;
}

export interface SimulatorPaths {
  firecracker: string;
  jailer: string;
}

export function stateDirOf(values: OptionValues, env: NodeJS.ProcessEnv): string {
  return resolve(stringOption(values, 'state-dir') ?? (env.MICROVM_STATE_DIR || DEFAULT_STATE_DIR));
}

async function isExecutable(path: string): Promise<boolean> {
  try {
    await access(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** `name` on the PATH of `env`, as the shell would find it. */
export async function findOnPath(name: string, env: NodeJS.ProcessEnv): Promise<string | undefined> {
  for (const folder of (env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(folder, name);
    if (await isExecutable(candidate)) return candidate;
  }
  return undefined;
}

/**
 * `--firecracker`, else `MICROVM_FIRECRACKER_BIN`, else `firecracker` on PATH, else the simulator. A binary named
 * explicitly must exist: falling back silently to the simulator would hide a typo.
 */
export async function chooseFirecracker(
  values: OptionValues,
  env: NodeJS.ProcessEnv,
  simulator: SimulatorPaths,
): Promise<FirecrackerChoice> {
  const flag = stringOption(values, 'firecracker');
  const named = flag !== undefined ? resolve(flag) : env.MICROVM_FIRECRACKER_BIN || undefined;
  if (named !== undefined) {
    // Checked before any primitive touches the host: a typo must fail as usage, not after a rollback.
    if (!(await isExecutable(named)) || !(await stat(named).then((found) => found.isFile()))) {
      throw new ValidationError({
        field: flag !== undefined ? '--firecracker' : 'MICROVM_FIRECRACKER_BIN',
        rule: 'must name an executable file',
        value: named,
      });
    }
    return { path: named, source: flag !== undefined ? 'flag' : 'env' };
  }
  const onPath = await findOnPath('firecracker', env);
  // Under `pnpm exec`, node_modules/.bin puts the simulator's own `firecracker` on PATH: call it what it is.
  if (onPath && (await isSimulator(onPath, simulator.firecracker))) {
    return { path: simulator.firecracker, source: 'simulator' };
  }
  if (onPath) return { path: onPath, source: 'path' };
  return { path: simulator.firecracker, source: 'simulator' };
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

export function describeFirecracker(choice: FirecrackerChoice): string {
  switch (choice.source) {
    case 'flag':
      return `using firecracker ${choice.path} (--firecracker)`;
    case 'env':
      return `using firecracker ${choice.path} (MICROVM_FIRECRACKER_BIN)`;
    case 'path':
      return `using firecracker ${choice.path} (found on PATH)`;
    case 'simulator':
      return 'using the @microvm/simulator stand-in: no real firecracker on PATH and MICROVM_FIRECRACKER_BIN is not set';
  }
}

/**
 * The environment the composer configures its primitives from. With the simulator standing in for Firecracker,
 * the simulated jailer stands in for a missing `jailer` too, so every primitive works on a host without either.
 */
export async function composeEnvironment(
  env: NodeJS.ProcessEnv,
  choice: FirecrackerChoice,
  simulator: SimulatorPaths,
): Promise<NodeJS.ProcessEnv> {
  // `microvm logs` reads the file the console primitive keeps: on unless the user chose otherwise.
  const withLog =
    env.MICROVM_CONSOLE_LOG_FILES === undefined ? { ...env, MICROVM_CONSOLE_LOG_FILES: '1' } : env;
  if (choice.source !== 'simulator' || withLog.MICROVM_JAILER_BIN) return withLog;
  if (await findOnPath('jailer', withLog)) return withLog;
  return { ...withLog, MICROVM_JAILER_BIN: simulator.jailer };
}
