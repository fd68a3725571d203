import type { Readable } from 'node:stream';
import type { FirecrackerClient } from '../client/index.js';
import type { VmSpec } from '../model/index.js';
import type { VmFacts } from './facts.js';
import type { LeaseStore } from './lease-store.js';
import type { VmState } from './lifecycle.js';

/**
 * How the VMM is started. `prepare` hooks may rewrite it (the jailer wraps it in a jailer invocation).
 * Every command is an argv array: `executable` is never passed through a shell.
 */
export interface LaunchCommand {
  executable: string;
  args: string[];
  /** Extra environment for the VMM. The provider's own environment is inherited otherwise. */
  env?: Record<string, string>;
  cwd?: string;
  /** Host path of the API socket the provider connects to. */
  apiSocketPath: string;
  /**
   * When set, the VMM's pid is read from this file once the API answers: the jailer writes it, and under
   * `--daemonize` or `--new-pid-ns` the spawned process is not Firecracker.
   */
  pidFilePath?: string;
  /**
   * A network namespace (e.g. `/run/netns/<name>`) the VMM must run in. The provider enters it with
   * `nsenter --net=<path>` (same pid); the jailer primitive turns it into `--netns` and clears it.
   */
  networkNamespacePath?: string;
}

/** What a VM restored from a snapshot loads. Paths are as Firecracker must see them; prepare hooks may rewrite them. */
export interface RestorePlan {
  snapshotId: string;
  snapshotPath: string;
  memFilePath: string;
  resumeVm: boolean;
  /** The spec of the VM the snapshot was taken from, as Firecracker saw it. */
  sourceSpec: VmSpec;
}

/** Shared by every phase: who the VM is and what the primitives know about it. */
export interface VmContextBase {
  readonly vmId: string;
  /** The VM's folder in the state directory. */
  readonly vmDir: string;
  readonly stateDir: string;
  /** Host-wide allocations (subnets, CIDs, ports) persisted in the state directory; owner is the VM id. */
  readonly leases: LeaseStore;
  readonly spec: VmSpec;
  /** Facts primitives published. Persisted in `vm.json`. */
  readonly facts: VmFacts;
  readonly signal: AbortSignal;
}

/** The `prepare` phase: everything may still change, nothing has been spawned. */
export interface PrepareContext extends VmContextBase {
  readonly mode: 'boot' | 'restore';
  spec: VmSpec;
  launch: LaunchCommand;
  restore?: RestorePlan;
  facts: VmFacts;
  /**
   * Writes the record (spec and facts) to `vm.json` now. Call it after allocating something and before
   * creating it on the host, so that `reconcile()` finds it after a crash.
   */
  persist(): Promise<void>;
}

/** The VMM process as primitives see it. After a provider restart its output streams are gone. */
export interface VmProcessHandle {
  readonly pid: number;
  /** The guest serial console (Firecracker's stdout); undefined for a process adopted after a restart. */
  readonly stdout: Readable | undefined;
  /** Firecracker's own log (its stderr). */
  readonly stderr: Readable | undefined;
  readonly hasExited: boolean;
  readonly exit: ProcessExitInfo | undefined;
  /** Sends a signal; false when the process is already gone. */
  kill(signal: NodeJS.Signals): boolean;
  /** Resolves with how it ended once the process is gone (and reaped), or undefined on timeout. */
  waitForExit(options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<ProcessExitInfo | undefined>;
  /** The last lines of stderr. */
  stderrTail(): string;
}

export interface ProcessExitInfo {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnedContext extends VmContextBase {
  readonly process: VmProcessHandle;
}

export interface StartedContext extends VmContextBase {
  readonly process: VmProcessHandle;
  readonly client: FirecrackerClient;
}

export type StopHow = 'graceful' | 'terminated' | 'killed' | 'already-exited';

export interface StopOutcome {
  how: StopHow;
  durationMs: number;
}

export interface StopContext extends VmContextBase {
  readonly state: VmState;
  readonly process: VmProcessHandle;
  readonly client: FirecrackerClient;
}

export interface TeardownContext extends VmContextBase {
  readonly state: VmState;
}

export interface ReconcileContext {
  readonly stateDir: string;
  readonly leases: LeaseStore;
  /** VMs whose VMM is alive: everything they own must be kept. */
  readonly liveVmIds: ReadonlySet<string>;
  /** Every VM the state directory knows, alive or not. */
  readonly knownVmIds: ReadonlySet<string>;
  readonly signal: AbortSignal;
}

export interface ReconcileResult {
  /** Human-readable names of what was removed, e.g. `tap mv-ab12cd34`. */
  removed: string[];
}

/**
 * The contract every primitive implements. Phases, in order: `prepare` (before the VMM exists),
 * `spawned` (right after spawn: attach to the output streams synchronously), `started` (after InstanceStart or
 * snapshot load), `stop` (the first primitive that answers decides how the VM stops), `teardown` (always, in
 * reverse order, for every primitive whose prepare began), `reconcile` (after a crash of the host program).
 */
export interface VmPrimitive {
  readonly name: string;
  prepare?(context: PrepareContext): Promise<void>;
  spawned?(context: SpawnedContext): void | Promise<void>;
  started?(context: StartedContext): Promise<void>;
  /** Return undefined to let the next primitive (or the provider's SIGKILL) decide. */
  stop?(context: StopContext): Promise<StopOutcome | undefined>;
  teardown?(context: TeardownContext): Promise<void>;
  reconcile?(context: ReconcileContext): Promise<ReconcileResult>;
}
