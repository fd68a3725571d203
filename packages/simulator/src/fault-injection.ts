/**
 * Behaviour knobs and injected faults of the simulated Firecracker, read from `MICROVM_SIMULATOR_*`
 * environment variables (the simulator runs as a child process, so the environment is its only input
 * besides argv).
 */
import { SIMULATED_FIRECRACKER_VERSION } from './constants.js';

/** One API endpoint, written `METHOD /path`; it matches that path and everything below it. */
export interface EndpointPattern {
  method: string;
  path: string;
}

export interface SimulatorBehaviour {
  /** Wait this long before binding the API socket. */
  socketDelayMs: number;
  /** Exit with code 1 when the Nth API request (1-based) arrives, before answering it. */
  crashAtRequest: number | undefined;
  /** Endpoints that answer 400 with an "injected" fault message. */
  reject: EndpointPattern[];
  /** The guest ignores Ctrl-Alt-Del (no i8042 driver), so Firecracker keeps running. */
  ignoreCtrlAltDel: boolean;
  /** Never bind the API socket. */
  hangAtStartup: boolean;
  /** Endpoints whose requests are never answered (which stalls the API, as a stuck VMM thread does). */
  hang: EndpointPattern[];
  /** Exit with code 1 this long after `InstanceStart`, like a vCPU failure. */
  exitAfterBootMs: number | undefined;
  /** Bytes of console chatter the guest prints after boot. */
  consoleFloodBytes: number;
  /** The guest kernel panics during boot. */
  kernelPanic: boolean;
  /** The line the guest prints on the console once booted. */
  readyLine: string;
  /** Port of the guest's vsock echo service. */
  vsockEchoPort: number;
  /** Time from boot (or resume) until the guest's services listen. */
  guestReadyMs: number;
  /** Time from the guest's reboot request until the VMM exits. */
  shutdownDelayMs: number;
  /** A TAP must exist in the current network namespace (else Firecracker-as-root would create one). */
  requireTap: boolean;
  /** Period of the metrics flush (Firecracker: 60 s). */
  metricsPeriodMs: number;
  /** The jail root, when the simulator was spawned (not imported) by the simulated jailer. */
  rootDir: string | undefined;
  /**
   * The Firecracker version the simulator states, `X.Y.Z`; undefined: {@link SIMULATED_FIRECRACKER_VERSION}.
   * Read it with {@link reportedVersionOf}.
   */
  reportedVersion: string | undefined;
}

/** The environment variables, for documentation and for {@link simulatorEnvironment}. */
export const SIMULATOR_ENVIRONMENT_VARIABLES = {
  socketDelayMs: 'MICROVM_SIMULATOR_SOCKET_DELAY_MS',
  crashAtRequest: 'MICROVM_SIMULATOR_CRASH_AT_REQUEST',
  reject: 'MICROVM_SIMULATOR_REJECT',
  ignoreCtrlAltDel: 'MICROVM_SIMULATOR_IGNORE_CTRL_ALT_DEL',
  hang: 'MICROVM_SIMULATOR_HANG',
  exitAfterBootMs: 'MICROVM_SIMULATOR_EXIT_AFTER_BOOT_MS',
  consoleFloodBytes: 'MICROVM_SIMULATOR_CONSOLE_FLOOD_BYTES',
  kernelPanic: 'MICROVM_SIMULATOR_KERNEL_PANIC',
  readyLine: 'MICROVM_SIMULATOR_READY_LINE',
  vsockEchoPort: 'MICROVM_SIMULATOR_VSOCK_ECHO_PORT',
  guestReadyMs: 'MICROVM_SIMULATOR_GUEST_READY_MS',
  shutdownDelayMs: 'MICROVM_SIMULATOR_SHUTDOWN_DELAY_MS',
  requireTap: 'MICROVM_SIMULATOR_REQUIRE_TAP',
  metricsPeriodMs: 'MICROVM_SIMULATOR_METRICS_PERIOD_MS',
  rootDir: 'MICROVM_SIMULATOR_ROOT_DIR',
  reportedVersion: 'MICROVM_SIMULATOR_VERSION',
} as const;

export const DEFAULT_READY_LINE = 'microvm-simulator: guest ready';
export const DEFAULT_VSOCK_ECHO_PORT = 5000;
export const DEFAULT_GUEST_READY_MS = 50;
export const DEFAULT_SHUTDOWN_DELAY_MS = 100;

export class SimulatorEnvironmentError extends Error {
  constructor(variable: string, value: string, expectation: string) {
    super(`microvm-simulator: invalid ${variable}=${JSON.stringify(value)}: ${expectation}`);
    this.name = 'SimulatorEnvironmentError';
  }
}

function readInteger(environment: NodeJS.ProcessEnv, variable: string, minimum: number): number | undefined {
  const value = environment[variable];
  if (value === undefined || value === '') return undefined;
  if (!/^\d+$/.test(value.trim()) || Number(value) < minimum) {
    throw new SimulatorEnvironmentError(variable, value, `expected an integer >= ${minimum}`);
  }
  return Number(value);
}

function readFlag(environment: NodeJS.ProcessEnv, variable: string): boolean {
  const value = environment[variable];
  if (value === undefined || value === '' || value === '0' || value.toLowerCase() === 'false') return false;
  if (value === '1' || value.toLowerCase() === 'true') return true;
  throw new SimulatorEnvironmentError(variable, value, 'expected 1/true or 0/false');
}

function readEndpoints(
  environment: NodeJS.ProcessEnv,
  variable: string,
  extraWords: string[] = [],
): EndpointPattern[] {
  const value = environment[variable];
  if (value === undefined || value.trim() === '') return [];
  const patterns: EndpointPattern[] = [];
  for (const item of value.split(',')) {
    const text = item.trim();
    if (extraWords.includes(text)) continue;
    const match = /^(GET|PUT|PATCH|DELETE)\s+(\/\S*)$/i.exec(text);
    if (match === null) {
      throw new SimulatorEnvironmentError(
        variable,
        value,
        `expected "METHOD /path[,METHOD /path…]", got "${text}"`,
      );
    }
    patterns.push({
      method: (match[1] as string).toUpperCase(),
      path: (match[2] as string).replace(/\/+$/, '') || '/',
    });
  }
  return patterns;
}

/** A plain release number: three dot-separated decimals without leading zeros (no `v`, no pre-release). */
const PLAIN_VERSION = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$/;

function readVersion(environment: NodeJS.ProcessEnv, variable: string): string | undefined {
  const value = environment[variable];
  if (value === undefined || value === '') return undefined;
  const match = PLAIN_VERSION.exec(value);
  if (match === null || match.slice(1).some((part) => !Number.isSafeInteger(Number(part)))) {
    throw new SimulatorEnvironmentError(variable, value, 'expected a version X.Y.Z, e.g. 1.15.0');
  }
  return value;
}

/** Reads the behaviour from the environment; throws {@link SimulatorEnvironmentError} on a malformed value. */
export function readSimulatorBehaviour(environment: NodeJS.ProcessEnv): SimulatorBehaviour {
  const names = SIMULATOR_ENVIRONMENT_VARIABLES;
  const hangWords = (environment[names.hang] ?? '').split(',').map((word) => word.trim());
  const readyLine = environment[names.readyLine];
  const rootDir = environment[names.rootDir];
  return {
    socketDelayMs: readInteger(environment, names.socketDelayMs, 0) ?? 0,
    crashAtRequest: readInteger(environment, names.crashAtRequest, 1),
    reject: readEndpoints(environment, names.reject),
    ignoreCtrlAltDel: readFlag(environment, names.ignoreCtrlAltDel),
    hangAtStartup: hangWords.includes('startup'),
    hang: readEndpoints(environment, names.hang, ['startup']),
    exitAfterBootMs: readInteger(environment, names.exitAfterBootMs, 0),
    consoleFloodBytes: readInteger(environment, names.consoleFloodBytes, 0) ?? 0,
    kernelPanic: readFlag(environment, names.kernelPanic),
    readyLine: readyLine === undefined || readyLine === '' ? DEFAULT_READY_LINE : readyLine,
    vsockEchoPort: readInteger(environment, names.vsockEchoPort, 1) ?? DEFAULT_VSOCK_ECHO_PORT,
    guestReadyMs: readInteger(environment, names.guestReadyMs, 0) ?? DEFAULT_GUEST_READY_MS,
    shutdownDelayMs: readInteger(environment, names.shutdownDelayMs, 0) ?? DEFAULT_SHUTDOWN_DELAY_MS,
    requireTap: readFlag(environment, names.requireTap),
    metricsPeriodMs: readInteger(environment, names.metricsPeriodMs, 1) ?? 60_000,
    rootDir: rootDir === undefined || rootDir === '' ? undefined : rootDir,
    reportedVersion: readVersion(environment, names.reportedVersion),
  };
}

/** The version the simulator states in `--version`, `GET /version`, `GET /` and its startup log line. */
export function reportedVersionOf(behaviour: Pick<SimulatorBehaviour, 'reportedVersion'>): string {
  return behaviour.reportedVersion ?? SIMULATED_FIRECRACKER_VERSION;
}

/** Whether a request matches one of the patterns (`PUT /drives` matches `PUT /drives/rootfs`). */
export function matchesEndpoint(patterns: readonly EndpointPattern[], method: string, path: string): boolean {
  const normalized = path.split('?')[0]?.replace(/\/+$/, '') || '/';
  return patterns.some(
    (pattern) =>
      pattern.method === method &&
      (normalized === pattern.path || (pattern.path !== '/' && normalized.startsWith(`${pattern.path}/`))),
  );
}

/** Typed options for {@link simulatorEnvironment}. */
export interface SimulatorEnvironmentOptions {
  socketDelayMs?: number;
  crashAtRequest?: number;
  /** e.g. `['PUT /drives', 'PATCH /vm']`. */
  reject?: string[];
  ignoreCtrlAltDel?: boolean;
  /** Endpoints to hang (e.g. `'PUT /snapshot/create'`), or `'startup'` to never bind the socket. */
  hang?: string[];
  exitAfterBootMs?: number;
  consoleFloodBytes?: number;
  kernelPanic?: boolean;
  readyLine?: string;
  vsockEchoPort?: number;
  guestReadyMs?: number;
  shutdownDelayMs?: number;
  requireTap?: boolean;
  metricsPeriodMs?: number;
  rootDir?: string;
  /**
   * The Firecracker version to report, `X.Y.Z` (e.g. `'1.15.0'`). Below 1.16.0 `PUT /snapshot/load` also refuses
   * `vsock_override`; the rest of the API stays v1.16.1's.
   */
  reportedVersion?: string;
}

/**
 * Builds the environment variables for a simulator child process:
 * `spawn(firecrackerSimulatorPath, args, { env: { ...process.env, ...simulatorEnvironment({ crashAtRequest: 3 }) } })`.
 */
export function simulatorEnvironment(options: SimulatorEnvironmentOptions): Record<string, string> {
  const names = SIMULATOR_ENVIRONMENT_VARIABLES;
  const environment: Record<string, string> = {};
  const set = (name: string, value: string | number | boolean | undefined) => {
    if (value === undefined) return;
    environment[name] = typeof value === 'boolean' ? (value ? '1' : '0') : String(value);
  };
  set(names.socketDelayMs, options.socketDelayMs);
  set(names.crashAtRequest, options.crashAtRequest);
  set(names.reject, options.reject?.join(','));
  set(names.ignoreCtrlAltDel, options.ignoreCtrlAltDel);
  set(names.hang, options.hang?.join(','));
  set(names.exitAfterBootMs, options.exitAfterBootMs);
  set(names.consoleFloodBytes, options.consoleFloodBytes);
  set(names.kernelPanic, options.kernelPanic);
  set(names.readyLine, options.readyLine);
  set(names.vsockEchoPort, options.vsockEchoPort);
  set(names.guestReadyMs, options.guestReadyMs);
  set(names.shutdownDelayMs, options.shutdownDelayMs);
  set(names.requireTap, options.requireTap);
  set(names.metricsPeriodMs, options.metricsPeriodMs);
  set(names.rootDir, options.rootDir);
  set(names.reportedVersion, options.reportedVersion);
  // Validate what we produce with the reader the simulator uses.
  readSimulatorBehaviour(environment);
  return environment;
}
