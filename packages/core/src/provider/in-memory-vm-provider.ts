import { MicrovmError } from '../errors/index.js';
import { type VmSpec, validateVmId, validateVmSpec } from '../model/index.js';
import { assertOperationAllowed, type VmOperation, type VmState } from './lifecycle.js';
import type {
  CreateVmOptions,
  OperationOptions,
  RestoreVmOptions,
  SnapshotInfo,
  SnapshotOptions,
  StopResult,
  VmEvent,
  VmEventListener,
  VmInfo,
  VmProvider,
} from './types.js';

function now(): string {
  return new Date().toISOString();
}

function throwIfAborted(options: OperationOptions | undefined): void {
  if (options?.signal?.aborted) {
    throw new MicrovmError({
      code: 'ERR_MICROVM_ABORTED',
      message: 'The operation was aborted',
      cause: options.signal.reason,
    });
  }
}

/**
 * The provider's interface and state machine with no host effects: for unit tests of code that drives VMs.
 * Validation, errors and events match `FirecrackerVmProvider`.
 */
export class InMemoryVmProvider implements VmProvider {
  readonly #vms = new Map<string, VmInfo>();
  readonly #snapshots = new Map<string, SnapshotInfo & { spec: VmSpec }>();
  readonly #listeners = new Set<VmEventListener>();

  onEvent(listener: VmEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  async create(vmId: string, spec: VmSpec, options: CreateVmOptions = {}): Promise<VmInfo> {
    validateVmId(vmId, 'vmId');
    const validSpec = validateVmSpec(spec);
    throwIfAborted(options);
    return this.#add(vmId, validSpec, options.start === false ? 'created' : 'running');
  }

  async restore(vmId: string, snapshotId: string, options: RestoreVmOptions = {}): Promise<VmInfo> {
    validateVmId(vmId, 'vmId');
    throwIfAborted(options);
    const snapshot = this.#snapshots.get(snapshotId);
    if (!snapshot) {
      throw new MicrovmError({
        code: 'ERR_MICROVM_SNAPSHOT_NOT_FOUND',
        message: `No snapshot with id '${snapshotId}' exists`,
      });
    }
    const info = this.#add(
      vmId,
      structuredClone(snapshot.spec),
      options.resume === false ? 'paused' : 'running',
    );
    info.restoredFromSnapshotId = snapshotId;
    return structuredClone(info);
  }

  async start(vmId: string, options?: OperationOptions): Promise<VmInfo> {
    return this.#transition(vmId, 'start', 'running', options);
  }

  async pause(vmId: string, options?: OperationOptions): Promise<VmInfo> {
    return this.#transition(vmId, 'pause', 'paused', options);
  }

  async resume(vmId: string, options?: OperationOptions): Promise<VmInfo> {
    return this.#transition(vmId, 'resume', 'running', options);
  }

  async snapshot(vmId: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    const vm = this.#require(vmId, 'snapshot');
    throwIfAborted(options);
    const snapshotId = options.snapshotId ?? `${vmId.slice(0, 40)}-${Date.now().toString(36)}`;
    validateVmId(snapshotId, 'snapshotId');
    if (this.#snapshots.has(snapshotId)) {
      throw new MicrovmError({
        code: 'ERR_MICROVM_SNAPSHOT_EXISTS',
        message: `A snapshot with id '${snapshotId}' already exists`,
      });
    }
    const snapshot = {
      snapshotId,
      sourceVmId: vmId,
      type: options.type ?? 'Full',
      createdAt: now(),
      snapshotPath: `memory://${snapshotId}/vmstate`,
      memFilePath: `memory://${snapshotId}/memory`,
      spec: structuredClone(vm.spec),
    } as const;
    this.#snapshots.set(snapshotId, snapshot);
    const { spec: _spec, ...info } = snapshot;
    return info;
  }

  async stop(vmId: string, options?: OperationOptions): Promise<StopResult> {
    const vm = this.#require(vmId, 'stop');
    const how = vm.state === 'stopped' || vm.state === 'failed' ? 'already-exited' : 'graceful';
    const info = await this.#transition(vmId, 'stop', vm.state === 'failed' ? 'failed' : 'stopped', options);
    return { how, durationMs: 0, vm: info };
  }

  async kill(vmId: string, options?: OperationOptions): Promise<StopResult> {
    const vm = this.#require(vmId, 'kill');
    const how = vm.state === 'stopped' || vm.state === 'failed' ? 'already-exited' : 'killed';
    const info = await this.#transition(vmId, 'kill', vm.state === 'failed' ? 'failed' : 'stopped', options);
    return { how, durationMs: 0, vm: info };
  }

  async destroy(vmId: string, options?: OperationOptions): Promise<void> {
    const vm = this.#require(vmId, 'destroy');
    throwIfAborted(options);
    this.#vms.delete(vmId);
    this.#emit({ type: 'state', vmId, from: vm.state, to: 'destroyed', at: now() });
  }

  async get(vmId: string): Promise<VmInfo | undefined> {
    const vm = this.#vms.get(vmId);
    return vm && structuredClone(vm);
  }

  async list(): Promise<VmInfo[]> {
    return [...this.#vms.values()]
      .sort((left, right) => left.vmId.localeCompare(right.vmId))
      .map((vm) => structuredClone(vm));
  }

  async listSnapshots(): Promise<SnapshotInfo[]> {
    return [...this.#snapshots.values()].map(({ spec: _spec, ...info }) => info);
  }

  async deleteSnapshot(snapshotId: string): Promise<void> {
    this.#snapshots.delete(snapshotId);
  }

  /** Test helper: the VMM "crashes", as a real one exiting on its own would. */
  simulateExit(
    vmId: string,
    exit: { exitCode: number | null; signal?: NodeJS.Signals | null; stderrTail?: string },
  ): void {
    const vm = this.#vms.get(vmId);
    if (!vm || !['created', 'running', 'paused'].includes(vm.state)) return;
    const signal = exit.signal ?? null;
    const stderrTail = exit.stderrTail ?? '';
    vm.exit = { exitCode: exit.exitCode, signal, stderrTail, at: now() };
    this.#setState(vm, 'failed');
    this.#emit({ type: 'exit', vmId, exitCode: exit.exitCode, signal, stderrTail, expected: false });
  }

  #add(vmId: string, spec: VmSpec, state: VmState): VmInfo {
    if (this.#vms.has(vmId)) {
      throw new MicrovmError({
        code: 'ERR_MICROVM_VM_EXISTS',
        message: `A VM with id '${vmId}' already exists`,
      });
    }
    const createdAt = now();
    const info: VmInfo = { vmId, state: 'creating', spec, facts: {}, createdAt, updatedAt: createdAt };
    this.#vms.set(vmId, info);
    this.#emit({ type: 'state', vmId, from: undefined, to: 'creating', at: createdAt });
    if (state === 'running' || state === 'paused') info.startedAt = createdAt;
    this.#setState(info, state);
    return structuredClone(info);
  }

  #require(vmId: string, operation: VmOperation): VmInfo {
    validateVmId(vmId, 'vmId');
    const vm = this.#vms.get(vmId);
    if (!vm)
      throw new MicrovmError({ code: 'ERR_MICROVM_VM_NOT_FOUND', message: `No VM with id '${vmId}' exists` });
    assertOperationAllowed(vmId, vm.state, operation);
    return vm;
  }

  async #transition(
    vmId: string,
    operation: VmOperation,
    to: VmState,
    options?: OperationOptions,
  ): Promise<VmInfo> {
    const vm = this.#require(vmId, operation);
    throwIfAborted(options);
    if (operation === 'start') vm.startedAt = now();
    this.#setState(vm, to);
    return structuredClone(vm);
  }

  #setState(vm: VmInfo, to: VmState): void {
    const from = vm.state;
    vm.state = to;
    vm.updatedAt = now();
    if (from !== to) this.#emit({ type: 'state', vmId: vm.vmId, from, to, at: vm.updatedAt });
  }

  #emit(event: VmEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure must not break the state machine.
      }
    }
  }
}
