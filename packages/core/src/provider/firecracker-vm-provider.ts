import { constants as fsConstants } from 'node:fs';
import { access, chown, copyFile, mkdir, rename, rm } from 'node:fs/promises';
import { join, relative, resolve as resolvePath } from 'node:path';
import { FirecrackerClient } from '../client/index.js';
import {
  FirecrackerApiError,
  HookError,
  MicrovmError,
  ProcessExitError,
  TeardownError,
  ValidationError,
} from '../errors/index.js';
import {
  snapshotLoadToWire,
  type VmSpec,
  validateUnixSocketPath,
  validateVmId,
  validateVmSpec,
  vmSpecToRequests,
} from '../model/index.js';
import type {
  LaunchCommand,
  PrepareContext,
  RestorePlan,
  StopOutcome,
  TeardownContext,
  VmContextBase,
  VmPrimitive,
} from './hooks.js';
import { KeyedLock } from './keyed-lock.js';
import { LeaseStore } from './lease-store.js';
import { assertOperationAllowed, isLiveState, type VmOperation, type VmState } from './lifecycle.js';
import { type SnapshotRecord, StateStore, type VmRecord } from './state-store.js';
import type {
  CreateVmOptions,
  DestroyOptions,
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
import { VmmProcess } from './vmm-process.js';
import { waitForSocket } from './wait-for-socket.js';

export interface FirecrackerVmProviderOptions {
  /** One folder per VM and one per snapshot. Default `/var/lib/microvm`. */
  stateDir?: string;
  /** The `firecracker` executable. Default: `firecracker` on PATH. */
  firecrackerBinary?: string;
  /** Primitives, in prepare order. Teardown runs in reverse. */
  primitives?: readonly VmPrimitive[];
  /** How long the API socket may take to accept a connection after spawn. Default 5000. */
  socketReadyTimeoutMs?: number;
  /** Default deadline of one Firecracker API call. Default 10000. */
  apiTimeoutMs?: number;
  /** Deadline of `PUT /snapshot/create` and `/snapshot/load`, which copy guest memory. Default 300000. */
  snapshotTimeoutMs?: number;
  /** Extra environment for the VMM process (e.g. the simulator's fault injection). */
  env?: Record<string, string>;
}

interface LiveVm {
  process: VmmProcess;
  client: FirecrackerClient;
  /** Set while the provider itself stops the VMM, so its exit is not reported as a failure. */
  expectingExit: boolean;
}

const apiSocketName = 'api.sock';
// How long a failed request waits for the VMM's exit, so a crash is reported as one.
const processExitGraceMs = 500;

function now(): string {
  return new Date().toISOString();
}

function toInfo(record: VmRecord): VmInfo {
  return {
    vmId: record.vmId,
    state: record.state,
    spec: record.spec,
    facts: record.facts,
    ...(record.pid !== undefined && { pid: record.pid }),
    ...(record.apiSocketPath !== undefined && { apiSocketPath: record.apiSocketPath }),
    ...(record.restoredFromSnapshotId !== undefined && {
      restoredFromSnapshotId: record.restoredFromSnapshotId,
    }),
    ...(record.exit !== undefined && { exit: record.exit }),
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    ...(record.startedAt !== undefined && { startedAt: record.startedAt }),
  };
}

function snapshotInfo(record: SnapshotRecord): SnapshotInfo {
  return {
    snapshotId: record.snapshotId,
    sourceVmId: record.sourceVmId,
    type: record.type,
    createdAt: record.createdAt,
    snapshotPath: record.snapshotPath,
    memFilePath: record.memFilePath,
  };
}

function notFound(vmId: string): MicrovmError {
  return new MicrovmError({ code: 'ERR_MICROVM_VM_NOT_FOUND', message: `No VM with id '${vmId}' exists` });
}

function abortSignalFor(options: OperationOptions | undefined): AbortSignal {
  return options?.signal ?? new AbortController().signal;
}

/** Host files the spec names must exist before anything on the host changes. */
async function assertSpecFilesExist(spec: VmSpec): Promise<void> {
  const files: [field: string, path: string | undefined][] = [
    ['bootSource.kernelImagePath', spec.bootSource.kernelImagePath],
    ['bootSource.initrdPath', spec.bootSource.initrdPath],
    ...(spec.drives ?? []).map((drive, index): [string, string | undefined] => [
      `drives[${index}].pathOnHost`,
      drive.pathOnHost,
    ]),
    ...(spec.pmem ?? []).map((device, index): [string, string | undefined] => [
      `pmem[${index}].pathOnHost`,
      device.pathOnHost,
    ]),
  ];
  for (const [field, path] of files) {
    if (path === undefined) continue;
    try {
      await access(path, fsConstants.R_OK);
    } catch {
      throw new ValidationError({ field, rule: 'must name an existing, readable file', value: path });
    }
  }
}

/**
 * Runs Firecracker VMs on this host: spawns and supervises the VMM, drives its API, runs the primitives' hooks
 * and keeps every VM's record in the state directory.
 */
export class FirecrackerVmProvider implements VmProvider, AsyncDisposable {
  readonly stateDir: string;
  readonly #store: StateStore;
  readonly #leases: LeaseStore;
  readonly #options: Required<Omit<FirecrackerVmProviderOptions, 'env' | 'primitives' | 'stateDir'>>;
  readonly #env: Record<string, string> | undefined;
  readonly #primitives: readonly VmPrimitive[];
  readonly #lock = new KeyedLock();
  readonly #live = new Map<string, LiveVm>();
  readonly #listeners = new Set<VmEventListener>();
  #ready: Promise<void> | undefined;
  #closed = false;

  constructor(options: FirecrackerVmProviderOptions = {}) {
    this.stateDir = resolvePath(options.stateDir ?? '/var/lib/microvm');
    this.#store = new StateStore(this.stateDir);
    this.#leases = new LeaseStore(this.stateDir);
    this.#primitives = options.primitives ?? [];
    const names = new Set<string>();
    for (const primitive of this.#primitives) {
      if (names.has(primitive.name)) {
        throw new ValidationError({
          field: 'primitives',
          rule: 'names must be unique',
          value: primitive.name,
        });
      }
      names.add(primitive.name);
    }
    this.#env = options.env;
    this.#options = {
      firecrackerBinary: options.firecrackerBinary ?? 'firecracker',
      socketReadyTimeoutMs: options.socketReadyTimeoutMs ?? 5_000,
      apiTimeoutMs: options.apiTimeoutMs ?? 10_000,
      snapshotTimeoutMs: options.snapshotTimeoutMs ?? 300_000,
    };
  }

  onEvent(listener: VmEventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The API client of a VM whose VMM is alive: for calls the provider does not wrap (MMDS, balloon, …). */
  async client(vmId: string): Promise<FirecrackerClient> {
    await this.#init();
    const live = this.#live.get(vmId);
    if (!live) throw notFound(vmId);
    return live.client;
  }

  async create(vmId: string, spec: VmSpec, options: CreateVmOptions = {}): Promise<VmInfo> {
    validateVmId(vmId, 'vmId');
    const validSpec = validateVmSpec(spec);
    await assertSpecFilesExist(validSpec);
    return this.#launch({ vmId, spec: validSpec, mode: 'boot', start: options.start ?? true, options });
  }

  async restore(vmId: string, snapshotId: string, options: RestoreVmOptions = {}): Promise<VmInfo> {
    validateVmId(vmId, 'vmId');
    validateVmId(snapshotId, 'snapshotId');
    await this.#init();
    const snapshot = await this.#store.readSnapshot(snapshotId);
    if (!snapshot) {
      throw new MicrovmError({
        code: 'ERR_MICROVM_SNAPSHOT_NOT_FOUND',
        message: `No snapshot with id '${snapshotId}' exists in ${this.#store.snapshotsDir}`,
      });
    }
    const restore: RestorePlan = {
      snapshotId,
      snapshotPath: snapshot.snapshotPath,
      memFilePath: snapshot.memFilePath,
      resumeVm: options.resume ?? true,
      sourceSpec: snapshot.spec,
    };
    return this.#launch({
      vmId,
      spec: snapshot.requestedSpec,
      mode: 'restore',
      restore,
      start: false,
      options,
    });
  }

  async start(vmId: string, options: OperationOptions = {}): Promise<VmInfo> {
    return this.#withLiveVm(vmId, 'start', async (record, live) => {
      await live.client.startInstance({ signal: abortSignalFor(options), ...this.#timeout(options) });
      record.startedAt = now();
      delete record.stopRequestedAt;
      await this.#setState(record, 'running');
      await this.#runStartedHooks(record, live);
      return toInfo(record);
    });
  }

  async pause(vmId: string, options: OperationOptions = {}): Promise<VmInfo> {
    return this.#withLiveVm(vmId, 'pause', async (record, live) => {
      if (record.state === 'paused') return toInfo(record);
      await live.client.pauseVm({ signal: abortSignalFor(options), ...this.#timeout(options) });
      await this.#setState(record, 'paused');
      return toInfo(record);
    });
  }

  async resume(vmId: string, options: OperationOptions = {}): Promise<VmInfo> {
    return this.#withLiveVm(vmId, 'resume', async (record, live) => {
      if (record.state === 'running') return toInfo(record);
      await live.client.resumeVm({ signal: abortSignalFor(options), ...this.#timeout(options) });
      await this.#setState(record, 'running');
      return toInfo(record);
    });
  }

  async snapshot(vmId: string, options: SnapshotOptions = {}): Promise<SnapshotInfo> {
    const snapshotId = options.snapshotId ?? `${vmId.slice(0, 40)}-${Date.now().toString(36)}`;
    validateVmId(snapshotId, 'snapshotId');
    return this.#withLiveVm(vmId, 'snapshot', async (record, live) => {
      const signal = abortSignalFor(options);
      const timeoutMs = options.timeoutMs ?? this.#options.snapshotTimeoutMs;
      if (!(await this.#store.claimSnapshot(snapshotId))) {
        throw new MicrovmError({
          code: 'ERR_MICROVM_SNAPSHOT_EXISTS',
          message: `A snapshot with id '${snapshotId}' already exists`,
        });
      }
      const snapshotDir = this.#store.snapshotDir(snapshotId);
      const wasRunning = record.state === 'running';
      const started = performance.now();
      try {
        if (wasRunning) {
          await live.client.pauseVm({ signal, ...this.#timeout(options) });
          await this.#setState(record, 'paused');
        }
        // Firecracker writes where it can see: inside the jail when there is one, then we move the files out.
        const jail = record.facts.jail;
        const writeDir = jail ? join(jail.rootDir, 'snapshots', snapshotId) : snapshotDir;
        if (jail) {
          await mkdir(writeDir, { recursive: true, mode: 0o700 });
          await chown(writeDir, jail.uid, jail.gid);
        }
        const vmView = (hostPath: string) => (jail ? `/${relative(jail.rootDir, hostPath)}` : hostPath);
        const snapshotPath = join(snapshotDir, 'vmstate');
        const memFilePath = join(snapshotDir, 'memory');
        await live.client.createSnapshot(
          {
            snapshot_path: vmView(join(writeDir, 'vmstate')),
            mem_file_path: vmView(join(writeDir, 'memory')),
            snapshot_type: options.type ?? 'Full',
          },
          { signal, timeoutMs },
        );
        if (jail) {
          await moveFile(join(writeDir, 'vmstate'), snapshotPath);
          await moveFile(join(writeDir, 'memory'), memFilePath);
          await rm(writeDir, { recursive: true, force: true });
        }
        const version = await live.client.getVersion({ signal }).catch(() => undefined);
        const snapshot: SnapshotRecord = {
          schemaVersion: 1,
          snapshotId,
          sourceVmId: vmId,
          type: options.type ?? 'Full',
          spec: record.spec,
          requestedSpec: record.requestedSpec,
          facts: record.facts,
          ...(version && { firecrackerVersion: version.firecracker_version }),
          createdAt: now(),
          snapshotPath,
          memFilePath,
        };
        await this.#store.writeSnapshot(snapshot);
        this.#emit({
          type: 'phase',
          vmId,
          operation: 'snapshot',
          phase: 'snapshot-create',
          durationMs: performance.now() - started,
        });
        return snapshotInfo(snapshot);
      } catch (error) {
        await this.#store.removeSnapshot(snapshotId).catch(() => undefined);
        if (record.facts.jail) {
          await rm(join(record.facts.jail.rootDir, 'snapshots', snapshotId), {
            recursive: true,
            force: true,
          });
        }
        throw error;
      } finally {
        if (wasRunning && !live.process.hasExited && record.state === 'paused') {
          await live.client.resumeVm({ signal }).then(
            () => this.#setState(record, 'running'),
            (error: unknown) =>
              this.#emit({ type: 'warning', vmId, message: 'Could not resume after the snapshot', error }),
          );
        }
      }
    });
  }

  async stop(vmId: string, options: OperationOptions = {}): Promise<StopResult> {
    return this.#withRecord(vmId, 'stop', async (record) => this.#stopLocked(record, false, options));
  }

  async kill(vmId: string, options: OperationOptions = {}): Promise<StopResult> {
    return this.#withRecord(vmId, 'kill', async (record) => this.#stopLocked(record, true, options));
  }

  async destroy(vmId: string, options: DestroyOptions = {}): Promise<void> {
    validateVmId(vmId, 'vmId');
    await this.#init();
    await this.#lock.run(vmId, async () => {
      const record = await this.#store.readVm(vmId);
      if (!record) {
        // A folder without a record is what a crash during create leaves: remove it too.
        if ((await this.#store.listVmFolders()).includes(vmId)) {
          await this.#store.removeVm(vmId);
          return;
        }
        throw notFound(vmId);
      }
      assertOperationAllowed(vmId, record.state, 'destroy');
      const errors: unknown[] = [];
      if (await this.#adopt(record)) {
        await this.#stopLocked(record, !options.graceful, options).catch(async (error: unknown) => {
          errors.push(error);
          // Never tear down the TAP, jail or cgroup under a VMM that is still running.
          const live = this.#live.get(vmId);
          if (live) {
            live.expectingExit = true;
            await live.process.killAndWait();
            this.#live.delete(vmId);
            await live.client.close().catch(() => undefined);
          }
        });
      }
      errors.push(...(await this.#teardown(record, abortSignalFor(options))));
      await this.#store.removeVm(vmId).catch((error: unknown) => errors.push(error));
      this.#emit({ type: 'state', vmId, from: record.state, to: 'destroyed', at: now() });
      if (errors.length > 0) throw new TeardownError({ vmId, errors });
    });
  }

  async get(vmId: string): Promise<VmInfo | undefined> {
    // The id becomes a path under the state directory: `../x` must never read outside it.
    validateVmId(vmId, 'vmId');
    await this.#init();
    const record = await this.#store.readVm(vmId);
    return record ? toInfo(record) : undefined;
  }

  async list(): Promise<VmInfo[]> {
    await this.#init();
    return (await this.#store.listVms()).map(toInfo);
  }

  async listSnapshots(): Promise<SnapshotInfo[]> {
    await this.#init();
    return (await this.#store.listSnapshots()).map(snapshotInfo);
  }

  async deleteSnapshot(snapshotId: string): Promise<void> {
    validateVmId(snapshotId, 'snapshotId');
    await this.#init();
    await this.#store.removeSnapshot(snapshotId);
  }

  /**
   * After a crash of the host program: destroys every VM whose VMM is gone (running their teardowns), then lets
   * each primitive remove host resources that no live VM owns. VMs whose VMM runs, also under another process,
   * are kept; a VM another process is still creating looks half-made and is removed, so run it when no other
   * process is creating VMs in this state directory.
   */
  async reconcile(options: OperationOptions = {}): Promise<{ destroyedVmIds: string[]; removed: string[] }> {
    await this.#init();
    const signal = abortSignalFor(options);
    const destroyedVmIds: string[] = [];
    const removed: string[] = [];
    const folders = await this.#store.listVmFolders();
    for (const vmId of folders) {
      if (this.#live.has(vmId)) continue;
      const record = await this.#store.readVm(vmId).catch(() => undefined);
      // A VMM another process started after our recovery is alive: not a crash's leftover.
      if (record && (await this.#lock.run(vmId, () => this.#adopt(record)))) continue;
      await this.destroy(vmId).catch((error: unknown) => {
        this.#emit({ type: 'warning', vmId, message: 'Reconcile could not fully destroy the VM', error });
      });
      destroyedVmIds.push(vmId);
    }
    const liveVmIds = new Set(this.#live.keys());
    // A folder that survived destroy (its removal failed) still names a VM whose resources must not be guessed away.
    // A destroy whose teardowns failed removes the record anyway: what they left, each primitive's reconcile frees.
    const knownVmIds = new Set([...liveVmIds, ...(await this.#store.listVmFolders())]);
    for (const primitive of this.#primitives) {
      if (!primitive.reconcile) continue;
      const result = await primitive.reconcile({
        stateDir: this.stateDir,
        leases: this.#leases,
        liveVmIds,
        knownVmIds,
        signal,
      });
      removed.push(...result.removed);
    }
    return { destroyedVmIds, removed };
  }

  /** Stops supervising (closes API connections and timers). VMs keep running; a new provider adopts them. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const live of this.#live.values()) {
      live.expectingExit = true;
      live.process.dispose();
      await live.client.close();
    }
    this.#live.clear();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---------------------------------------------------------------------------------------------------------

  #init(): Promise<void> {
    if (this.#closed) {
      return Promise.reject(
        new MicrovmError({ code: 'ERR_MICROVM_DISPOSED', message: 'This provider was closed' }),
      );
    }
    this.#ready ??= this.#recover();
    return this.#ready;
  }

  /** Adopts the VMMs of an earlier provider that are still alive; marks the dead ones failed. */
  async #recover(): Promise<void> {
    await this.#store.init();
    for (const record of await this.#store.listVms()) {
      // A VM still `creating` is half made: reconcile() removes it.
      if (!isLiveState(record.state)) continue;
      if (await this.#adopt(record)) continue;
      record.exit = { exitCode: null, signal: null, stderrTail: '', at: now() };
      await this.#setState(record, record.stopRequestedAt ? 'stopped' : 'failed');
    }
  }

  /**
   * Supervises the VMM of a record this provider did not spawn (an earlier provider's, or another process's on
   * the same state directory). False when there is none alive to adopt.
   */
  async #adopt(record: VmRecord): Promise<boolean> {
    if (this.#live.has(record.vmId)) return true;
    if (record.pid === undefined || !record.apiSocketPath || !isLiveState(record.state)) return false;
    const process = await VmmProcess.adopt(record.pid, record.pidStartTime);
    if (!process) return false;
    const client = new FirecrackerClient({
      socketPath: record.apiSocketPath,
      defaultTimeoutMs: this.#options.apiTimeoutMs,
    });
    const live: LiveVm = { process, client, expectingExit: false };
    this.#live.set(record.vmId, live);
    this.#watchExit(record.vmId, live);
    return true;
  }

  #emit(event: VmEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        // A listener's failure must not break the VM's lifecycle.
      }
    }
  }

  #timeout(options: OperationOptions): { timeoutMs?: number } {
    return options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs };
  }

  async #setState(record: VmRecord, state: VmState): Promise<void> {
    const from = record.state;
    record.state = state;
    record.updatedAt = now();
    await this.#store.writeVm(record);
    if (from !== state)
      this.#emit({ type: 'state', vmId: record.vmId, from, to: state, at: record.updatedAt });
  }

  async #timed<T>(vmId: string, operation: string, phase: string, work: () => Promise<T>): Promise<T> {
    const started = performance.now();
    const result = await work();
    this.#emit({ type: 'phase', vmId, operation, phase, durationMs: performance.now() - started });
    return result;
  }

  async #withRecord<T>(
    vmId: string,
    operation: VmOperation,
    work: (record: VmRecord) => Promise<T>,
  ): Promise<T> {
    validateVmId(vmId, 'vmId');
    await this.#init();
    return this.#lock.run(vmId, async () => {
      const record = await this.#store.readVm(vmId);
      if (!record) throw notFound(vmId);
      assertOperationAllowed(vmId, record.state, operation);
      // A VM another process started after this provider's recovery is driven here all the same.
      await this.#adopt(record);
      return work(record);
    });
  }

  async #withLiveVm<T>(
    vmId: string,
    operation: VmOperation,
    work: (record: VmRecord, live: LiveVm) => Promise<T>,
  ): Promise<T> {
    return this.#withRecord(vmId, operation, async (record) => {
      const live = this.#live.get(vmId);
      if (!live) throw notFound(vmId);
      return work(record, live);
    });
  }

  async #launch(request: {
    vmId: string;
    spec: VmSpec;
    mode: 'boot' | 'restore';
    restore?: RestorePlan;
    start: boolean;
    options: OperationOptions;
  }): Promise<VmInfo> {
    const { vmId, mode } = request;
    const signal = abortSignalFor(request.options);
    const operation = mode === 'boot' ? 'create' : 'restore';
    const vmDir = this.#store.vmDir(vmId);
    const apiSocketPath = join(vmDir, apiSocketName);
    try {
      validateUnixSocketPath(apiSocketPath, 'stateDir');
    } catch (error) {
      throw new ValidationError({
        field: 'stateDir',
        rule: `must be short enough that ${apiSocketName} in a VM's folder stays within 107 bytes; choose a shorter stateDir`,
        value: this.stateDir,
        cause: error,
      });
    }
    await this.#init();
    return this.#lock.run(vmId, async () => {
      if (!(await this.#store.claimVm(vmId))) {
        throw new MicrovmError({
          code: 'ERR_MICROVM_VM_EXISTS',
          message: `A VM with id '${vmId}' already exists`,
        });
      }
      const createdAt = now();
      const record: VmRecord = {
        schemaVersion: 1,
        vmId,
        state: 'creating',
        requestedSpec: request.spec,
        spec: structuredClone(request.spec),
        facts: {},
        preparedPrimitives: [],
        ...(request.restore && { restoredFromSnapshotId: request.restore.snapshotId }),
        createdAt,
        updatedAt: createdAt,
      };
      const launch: LaunchCommand = {
        executable: this.#options.firecrackerBinary,
        args: ['--api-sock', apiSocketPath, '--id', vmId],
        apiSocketPath,
        ...(this.#env && { env: { ...this.#env } }),
      };
      const context: PrepareContext = {
        vmId,
        vmDir,
        stateDir: this.stateDir,
        leases: this.#leases,
        mode,
        spec: record.spec,
        launch,
        ...(request.restore && { restore: { ...request.restore } }),
        facts: record.facts,
        signal,
        persist: async () => {
          record.spec = context.spec;
          record.facts = context.facts;
          record.updatedAt = now();
          await this.#store.writeVm(record);
        },
      };
      let live: LiveVm | undefined;
      try {
        await this.#store.writeVm(record);
        this.#emit({ type: 'state', vmId, from: undefined, to: 'creating', at: record.createdAt });
        for (const primitive of this.#primitives) {
          if (!primitive.prepare) continue;
          record.preparedPrimitives.push(primitive.name);
          await context.persist();
          await this.#timed(vmId, operation, `prepare:${primitive.name}`, () =>
            this.#runHook(primitive, 'prepare', vmId, () => primitive.prepare!(context)),
          );
        }
        // Primitives that did not prepare still tear down (they may hold state from `started`).
        for (const primitive of this.#primitives) {
          if (!record.preparedPrimitives.includes(primitive.name))
            record.preparedPrimitives.push(primitive.name);
        }
        record.spec = context.spec;
        record.facts = context.facts;
        record.launch = context.launch;
        record.apiSocketPath = context.launch.apiSocketPath;
        await this.#store.writeVm(record);
        // Firecracker refuses to bind an existing path; the folder is fresh, a jail may not be.
        await rm(context.launch.apiSocketPath, { force: true });

        const process = await this.#timed(vmId, operation, 'spawn', async () =>
          VmmProcess.spawn(context.launch),
        );
        const client = new FirecrackerClient({
          socketPath: context.launch.apiSocketPath,
          defaultTimeoutMs: this.#options.apiTimeoutMs,
        });
        live = { process, client, expectingExit: false };
        this.#live.set(vmId, live);
        record.pid = process.pid;
        await this.#store.writeVm(record);
        for (const primitive of this.#primitives) {
          if (!primitive.spawned) continue;
          await this.#runHook(primitive, 'spawned', vmId, async () =>
            primitive.spawned!({ ...this.#contextBase(record, signal), process }),
          );
        }
        await this.#timed(vmId, operation, 'api-socket', () =>
          waitForSocket({
            socketPath: context.launch.apiSocketPath,
            timeoutMs: this.#options.socketReadyTimeoutMs,
            process,
            signal,
          }),
        );
        if (context.launch.pidFilePath) await process.followPidFile(context.launch.pidFilePath);
        record.pid = process.pid;
        if (process.startTime !== undefined) record.pidStartTime = process.startTime;
        await this.#store.writeVm(record);
        this.#watchExit(vmId, live);

        const callOptions = { signal, ...this.#timeout(request.options) };
        if (mode === 'boot') {
          await this.#timed(vmId, operation, 'configure', async () => {
            for (const call of vmSpecToRequests(record.spec)) {
              await client.request(call.method, call.path, call.body, callOptions);
            }
          });
          if (request.start) {
            await this.#timed(vmId, operation, 'instance-start', () => client.startInstance(callOptions));
            record.startedAt = now();
            await this.#setState(record, 'running');
            await this.#runStartedHooks(record, live);
          } else {
            await this.#setState(record, 'created');
          }
        } else {
          const restore = context.restore!;
          await this.#timed(vmId, operation, 'configure', async () => {
            // Logger, metrics and serial are not in the snapshot and are the only calls allowed before a load.
            for (const call of vmSpecToRequests(record.spec)) {
              if (['/logger', '/metrics', '/serial'].includes(call.path)) {
                await client.request(call.method, call.path, call.body, callOptions);
              }
            }
          });
          const body = snapshotLoadToWire(restorePlanToLoadSpec(restore, record.spec));
          await this.#timed(vmId, operation, 'snapshot-load', () =>
            client.loadSnapshot(body, {
              signal,
              timeoutMs: request.options.timeoutMs ?? this.#options.snapshotTimeoutMs,
            }),
          );
          record.startedAt = now();
          await this.#setState(record, restore.resumeVm ? 'running' : 'paused');
          await this.#runStartedHooks(record, live);
        }
        return toInfo(record);
      } catch (error) {
        const explained = await this.#explainFailure(error, live);
        await this.#rollback(record, live, error);
        throw explained;
      }
    });
  }

  /**
   * A request that failed because the VMM died says so, with its exit code and stderr. The broken connection
   * can be seen before the exit, so a transport failure waits briefly for the process to be gone. An answer from
   * the API is the cause itself, even when Firecracker then exits (a failed snapshot load does): it is kept, so
   * the error does not depend on which was seen first.
   */
  async #explainFailure(error: unknown, live: LiveVm | undefined): Promise<unknown> {
    if (!live || error instanceof ProcessExitError || error instanceof FirecrackerApiError) return error;
    if (MicrovmError.isInstance(error) && error.isUserError) return error;
    const transportFailure =
      MicrovmError.isInstance(error) &&
      (error.code === 'ERR_MICROVM_SOCKET_UNAVAILABLE' || error.code === 'ERR_MICROVM_PROTOCOL');
    if (transportFailure) await live.process.waitForExit({ timeoutMs: processExitGraceMs });
    const exit = live.process.exit;
    if (!exit) return error;
    return new ProcessExitError({
      pid: live.process.pid,
      exitCode: exit.exitCode,
      signal: exit.signal,
      stderrTail: live.process.stderrTail(),
      context: `The VMM (${error instanceof Error ? error.message : String(error)})`,
      cause: error,
    });
  }

  async #rollback(record: VmRecord, live: LiveVm | undefined, cause: unknown): Promise<void> {
    const errors: unknown[] = [];
    if (live) {
      live.expectingExit = true;
      await live.process.killAndWait();
      await live.client.close().catch((error: unknown) => errors.push(error));
      this.#live.delete(record.vmId);
    }
    // Teardown must run even when the caller's signal aborted the create: it gets a signal of its own.
    errors.push(...(await this.#teardown(record, new AbortController().signal)));
    await this.#store.removeVm(record.vmId).catch((error: unknown) => errors.push(error));
    for (const error of errors) {
      this.#emit({
        type: 'warning',
        vmId: record.vmId,
        message: `Cleanup after a failed create: ${error instanceof Error ? error.message : String(error)}`,
        error: { error, cause },
      });
    }
  }

  async #teardown(record: VmRecord, signal: AbortSignal): Promise<unknown[]> {
    const errors: unknown[] = [];
    const context: TeardownContext = { ...this.#contextBase(record, signal), state: record.state };
    const prepared = new Set(record.preparedPrimitives);
    for (const primitive of [...this.#primitives].reverse()) {
      if (!primitive.teardown || !prepared.has(primitive.name)) continue;
      try {
        await this.#timed(record.vmId, 'teardown', `teardown:${primitive.name}`, () =>
          this.#runHook(primitive, 'teardown', record.vmId, () => primitive.teardown!(context)),
        );
      } catch (error) {
        errors.push(error);
      }
    }
    return errors;
  }

  #contextBase(record: VmRecord, signal: AbortSignal): VmContextBase {
    return {
      vmId: record.vmId,
      vmDir: this.#store.vmDir(record.vmId),
      stateDir: this.stateDir,
      leases: this.#leases,
      spec: record.spec,
      facts: record.facts,
      signal,
    };
  }

  async #runHook(
    primitive: VmPrimitive,
    phase: string,
    vmId: string,
    work: () => Promise<void>,
  ): Promise<void> {
    try {
      await work();
    } catch (error) {
      throw new HookError({ primitive: primitive.name, phase, vmId, cause: error });
    }
  }

  async #runStartedHooks(record: VmRecord, live: LiveVm): Promise<void> {
    for (const primitive of this.#primitives) {
      if (!primitive.started) continue;
      await this.#runHook(primitive, 'started', record.vmId, () =>
        primitive.started!({
          ...this.#contextBase(record, new AbortController().signal),
          process: live.process,
          client: live.client,
        }),
      );
    }
  }

  /** A VMM that exits while nobody asked it to moves its VM to `failed`. */
  #watchExit(vmId: string, live: LiveVm): void {
    void live.process.exited
      .then(async (exit) => {
        if (live.expectingExit) return;
        const stderrTail = live.process.stderrTail();
        this.#live.delete(vmId);
        await live.client.close().catch(() => undefined);
        let requested = false;
        await this.#lock.run(vmId, async () => {
          const record = await this.#store.readVm(vmId);
          if (!record || !isLiveState(record.state)) return;
          record.exit = { ...exit, stderrTail, at: now() };
          // Another process (a CLI `stop`) may have asked for this exit: that is a stop, not a failure.
          requested = record.stopRequestedAt !== undefined;
          await this.#setState(record, requested ? 'stopped' : 'failed');
        });
        this.#emit({ type: 'exit', vmId, ...exit, stderrTail, expected: requested });
      })
      // Another process may remove the VM's folder meanwhile: a warning, never an unhandled rejection.
      .catch((error: unknown) =>
        this.#emit({ type: 'warning', vmId, message: 'Could not record the exit of the VMM', error }),
      );
  }

  async #stopLocked(record: VmRecord, force: boolean, options: OperationOptions): Promise<StopResult> {
    const live = this.#live.get(record.vmId);
    const started = performance.now();
    if (!live) {
      // Already gone (stopped, failed): nothing to signal.
      if (isLiveState(record.state)) await this.#setState(record, 'stopped');
      return { how: 'already-exited', durationMs: 0, vm: toInfo(record) };
    }
    live.expectingExit = true;
    // Written before any signal, so a supervisor in another process sees the exit was asked for.
    record.stopRequestedAt = now();
    await this.#store.writeVm(record);
    let outcome: StopOutcome | undefined;
    const signal = abortSignalFor(options);
    if (!force) {
      try {
        for (const primitive of this.#primitives) {
          if (!primitive.stop) continue;
          let answer: StopOutcome | undefined;
          await this.#runHook(primitive, 'stop', record.vmId, async () => {
            answer = await primitive.stop!({
              ...this.#contextBase(record, signal),
              state: record.state,
              process: live.process,
              client: live.client,
            });
          });
          if (answer) {
            outcome = answer;
            break;
          }
        }
      } catch (error) {
        // The VMM outlived a failed stop: a later exit of its own is a failure again, not this stop.
        if (!live.process.hasExited) {
          live.expectingExit = false;
          delete record.stopRequestedAt;
          await this.#store.writeVm(record).catch(() => undefined);
        }
        throw error;
      }
    }
    if (!outcome || !live.process.hasExited) {
      const alreadyGone = live.process.hasExited;
      await live.process.killAndWait();
      outcome = {
        how: outcome?.how ?? (alreadyGone ? 'already-exited' : 'killed'),
        durationMs: performance.now() - started,
      };
    }
    const exit = live.process.exit!;
    this.#live.delete(record.vmId);
    await live.client.close();
    record.exit = { ...exit, stderrTail: live.process.stderrTail(), at: now() };
    await this.#setState(record, 'stopped');
    this.#emit({
      type: 'exit',
      vmId: record.vmId,
      ...exit,
      stderrTail: record.exit.stderrTail,
      expected: true,
    });
    return { ...outcome, vm: toInfo(record) };
  }
}

/** The load request: overrides are derived from what prepare changed against the snapshot's source. */
function restorePlanToLoadSpec(restore: RestorePlan, spec: VmSpec) {
  const sourceInterfaces = new Map(
    (restore.sourceSpec.networkInterfaces ?? []).map((networkInterface) => [
      networkInterface.ifaceId,
      networkInterface.hostDevName,
    ]),
  );
  const networkOverrides = (spec.networkInterfaces ?? [])
    .filter(
      (networkInterface) => sourceInterfaces.get(networkInterface.ifaceId) !== networkInterface.hostDevName,
    )
    .map((networkInterface) => ({
      ifaceId: networkInterface.ifaceId,
      hostDevName: networkInterface.hostDevName,
    }));
  const vsockOverride =
    spec.vsock && restore.sourceSpec.vsock && spec.vsock.udsPath !== restore.sourceSpec.vsock.udsPath
      ? { udsPath: spec.vsock.udsPath }
      : undefined;
  return {
    snapshotPath: restore.snapshotPath,
    memFilePath: restore.memFilePath,
    resumeVm: restore.resumeVm,
    ...(spec.machine.trackDirtyPages !== undefined && { trackDirtyPages: spec.machine.trackDirtyPages }),
    ...(networkOverrides.length > 0 && { networkOverrides }),
    ...(vsockOverride && { vsockOverride }),
  };
}

async function moveFile(from: string, to: string): Promise<void> {
  try {
    await rename(from, to);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EXDEV') throw error;
    await copyFile(from, to);
    await rm(from, { force: true });
  }
}
