import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { MicrovmError } from '../errors/index.js';
import type { VmSpec } from '../model/index.js';
import type { VmFacts } from './facts.js';
import type { LaunchCommand, ProcessExitInfo } from './hooks.js';
import type { VmState } from './lifecycle.js';

/** What `vm.json` holds. Everything a VM owns on the host is recorded here before it exists. */
export interface VmRecord {
  schemaVersion: 1;
  vmId: string;
  state: VmState;
  /** The spec as the user gave it. */
  requestedSpec: VmSpec;
  /** The spec after the primitives' prepare hooks: what Firecracker was configured with. */
  spec: VmSpec;
  facts: VmFacts;
  /** Primitives whose prepare began, in order: teardown runs for each of them, in reverse. */
  preparedPrimitives: string[];
  launch?: LaunchCommand;
  apiSocketPath?: string;
  pid?: number;
  /** /proc start time of `pid`, so a reused pid is never mistaken for our VMM. */
  pidStartTime?: number;
  restoredFromSnapshotId?: string;
  exit?: ProcessExitInfo & { stderrTail: string; at: string };
  createdAt: string;
  updatedAt: string;
  startedAt?: string;
  /** Set by `stop` before it signals the VMM, so an exit seen by any process is known to be requested. */
  stopRequestedAt?: string;
}

/** What `snapshot.json` holds, beside the `vmstate` and `memory` files. */
export interface SnapshotRecord {
  schemaVersion: 1;
  snapshotId: string;
  sourceVmId: string;
  type: 'Full' | 'Diff';
  /** The source VM's spec as Firecracker saw it: a restore compares against it to derive overrides. */
  spec: VmSpec;
  /** The source VM's spec as the user gave it: a restore prepares its primitives from it. */
  requestedSpec: VmSpec;
  facts: VmFacts;
  firecrackerVersion?: string;
  createdAt: string;
  snapshotPath: string;
  memFilePath: string;
}

function storeError(message: string, cause: unknown): MicrovmError {
  return new MicrovmError({ code: 'ERR_MICROVM_STATE_STORE', message, cause });
}

/** Writes through a temp file and a rename, so a reader never sees half a file. */
export async function writeJsonAtomic(path: string, value: unknown): Promise<void> {
  const temporary = `${path}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(temporary, `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
    await rename(temporary, path);
  } catch (error) {
    await rm(temporary, { force: true });
    throw storeError(`Could not write ${path}`, error);
  }
}

async function readJson<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw storeError(`Could not read ${path}`, error);
  }
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw storeError(`${path} is not valid JSON`, error);
  }
}

async function listFolders(path: string): Promise<string[]> {
  try {
    const entries = await readdir(path, { withFileTypes: true });
    return entries.filter((entry) => entry.isDirectory()).map((entry) => entry.name);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw storeError(`Could not list ${path}`, error);
  }
}

/**
 * The state directory: `vms/<id>/vm.json` per VM and `snapshots/<id>/` per snapshot. Snapshots live outside
 * every VM's folder, so destroying a VM never deletes them.
 */
export class StateStore {
  readonly stateDir: string;
  readonly vmsDir: string;
  readonly snapshotsDir: string;

  constructor(stateDir: string) {
    this.stateDir = stateDir;
    this.vmsDir = join(stateDir, 'vms');
    this.snapshotsDir = join(stateDir, 'snapshots');
  }

  vmDir(vmId: string): string {
    return join(this.vmsDir, vmId);
  }

  snapshotDir(snapshotId: string): string {
    return join(this.snapshotsDir, snapshotId);
  }

  async init(): Promise<void> {
    try {
      await mkdir(this.vmsDir, { recursive: true, mode: 0o700 });
      await mkdir(this.snapshotsDir, { recursive: true, mode: 0o700 });
    } catch (error) {
      throw storeError(`Could not create the state directory ${this.stateDir}`, error);
    }
  }

  /**
   * Claims the VM's folder. `mkdir` is atomic, so of two creates with the same id (in this process or
   * another one sharing the directory) exactly one wins. Returns false when the id is taken.
   */
  async claimVm(vmId: string): Promise<boolean> {
    try {
      await mkdir(this.vmDir(vmId), { mode: 0o700 });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw storeError(`Could not create ${this.vmDir(vmId)}`, error);
    }
  }

  async writeVm(record: VmRecord): Promise<void> {
    await writeJsonAtomic(join(this.vmDir(record.vmId), 'vm.json'), record);
  }

  readVm(vmId: string): Promise<VmRecord | undefined> {
    return readJson<VmRecord>(join(this.vmDir(vmId), 'vm.json'));
  }

  async listVms(): Promise<VmRecord[]> {
    const records: VmRecord[] = [];
    for (const vmId of await listFolders(this.vmsDir)) {
      const record = await this.readVm(vmId);
      if (record) records.push(record);
    }
    return records.sort((left, right) => left.vmId.localeCompare(right.vmId));
  }

  /** Ids of VM folders, also those whose record was never written (a crash during create). */
  listVmFolders(): Promise<string[]> {
    return listFolders(this.vmsDir);
  }

  async removeVm(vmId: string): Promise<void> {
    try {
      await rm(this.vmDir(vmId), { recursive: true, force: true });
    } catch (error) {
      throw storeError(`Could not remove ${this.vmDir(vmId)}`, error);
    }
  }

  async claimSnapshot(snapshotId: string): Promise<boolean> {
    try {
      await mkdir(this.snapshotDir(snapshotId), { mode: 0o700 });
      return true;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw storeError(`Could not create ${this.snapshotDir(snapshotId)}`, error);
    }
  }

  async writeSnapshot(record: SnapshotRecord): Promise<void> {
    await writeJsonAtomic(join(this.snapshotDir(record.snapshotId), 'snapshot.json'), record);
  }

  readSnapshot(snapshotId: string): Promise<SnapshotRecord | undefined> {
    return readJson<SnapshotRecord>(join(this.snapshotDir(snapshotId), 'snapshot.json'));
  }

  async listSnapshots(): Promise<SnapshotRecord[]> {
    const records: SnapshotRecord[] = [];
    for (const snapshotId of await listFolders(this.snapshotsDir)) {
      const record = await this.readSnapshot(snapshotId);
      if (record) records.push(record);
    }
    return records.sort((left, right) => left.createdAt.localeCompare(right.createdAt));
  }

  async removeSnapshot(snapshotId: string): Promise<void> {
    try {
      await rm(this.snapshotDir(snapshotId), { recursive: true, force: true });
    } catch (error) {
      throw storeError(`Could not remove ${this.snapshotDir(snapshotId)}`, error);
    }
  }
}
