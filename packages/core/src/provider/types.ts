import type { VmSpec } from '../model/index.js';
import type { VmFacts } from './facts.js';
import type { StopOutcome } from './hooks.js';
import type { VmState } from './lifecycle.js';

/** A VM as the provider reports it: plain data, safe to serialise. */
export interface VmInfo {
  vmId: string;
  state: VmState;
  /** The spec Firecracker was configured with (after the primitives' changes). */
  spec: VmSpec;
  facts: VmFacts;
  pid?: number;
  apiSocketPath?: string;
  restoredFromSnapshotId?: string;
  /** How the VMM ended, once it has. */
  exit?: { exitCode: number | null; signal: NodeJS.Signals | null; stderrTail: string; at: string };
  createdAt: string;
  updatedAt: string;
  startedAt?: string;
}

export interface SnapshotInfo {
  snapshotId: string;
  sourceVmId: string;
  type: 'Full' | 'Diff';
  createdAt: string;
  /** Host paths of the two files. */
  snapshotPath: string;
  memFilePath: string;
}

export interface OperationOptions {
  signal?: AbortSignal;
  /** Deadline of the Firecracker call(s) this operation makes. */
  timeoutMs?: number;
}

export interface CreateVmOptions extends OperationOptions {
  /** Send `InstanceStart` right away (default). With false the VM waits in `created` for `start()`. */
  start?: boolean;
}

export interface RestoreVmOptions extends OperationOptions {
  /** Resume the guest right after the load (default). With false it waits in `paused`. */
  resume?: boolean;
}

export interface SnapshotOptions extends OperationOptions {
  /** Default: `<vmId>-<timestamp>`. Must match `[A-Za-z0-9-]{1,64}`. */
  snapshotId?: string;
  /** Default 'Full'. 'Diff' needs `trackDirtyPages` in the VM's machine config. */
  type?: 'Full' | 'Diff';
}

export interface DestroyOptions extends OperationOptions {
  /** Stop through the primitives' `stop` hooks (graceful) before tearing down. Default false: SIGKILL. */
  graceful?: boolean;
}

export type StopResult = StopOutcome & { vm: VmInfo };

/** Events the provider emits, with the time each phase took. */
export type VmEvent =
  | { type: 'state'; vmId: string; from: VmState | undefined; to: VmState; at: string }
  | { type: 'phase'; vmId: string; operation: string; phase: string; durationMs: number }
  | {
      type: 'exit';
      vmId: string;
      exitCode: number | null;
      signal: NodeJS.Signals | null;
      stderrTail: string;
      /** False when the VMM ended on its own (the VM moved to `failed`). */
      expected: boolean;
    }
  | { type: 'warning'; vmId: string; message: string; error?: unknown };

export type VmEventListener = (event: VmEvent) => void;

/** The operations every provider offers: the Firecracker one and the in-memory one for users' unit tests. */
export interface VmProvider {
  create(vmId: string, spec: VmSpec, options?: CreateVmOptions): Promise<VmInfo>;
  restore(vmId: string, snapshotId: string, options?: RestoreVmOptions): Promise<VmInfo>;
  start(vmId: string, options?: OperationOptions): Promise<VmInfo>;
  pause(vmId: string, options?: OperationOptions): Promise<VmInfo>;
  resume(vmId: string, options?: OperationOptions): Promise<VmInfo>;
  snapshot(vmId: string, options?: SnapshotOptions): Promise<SnapshotInfo>;
  stop(vmId: string, options?: OperationOptions): Promise<StopResult>;
  kill(vmId: string, options?: OperationOptions): Promise<StopResult>;
  destroy(vmId: string, options?: DestroyOptions): Promise<void>;
  get(vmId: string): Promise<VmInfo | undefined>;
  list(): Promise<VmInfo[]>;
  listSnapshots(): Promise<SnapshotInfo[]>;
  deleteSnapshot(snapshotId: string): Promise<void>;
  /** Subscribes to events; returns the function that unsubscribes. */
  onEvent(listener: VmEventListener): () => void;
}
