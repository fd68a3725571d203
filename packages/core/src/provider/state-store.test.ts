import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StateStore, type VmRecord } from './state-store.js';

let dir: string;
let store: StateStore;

function record(vmId: string): VmRecord {
  const at = new Date(0).toISOString();
  const spec = { bootSource: { kernelImagePath: '/k' }, machine: { vcpuCount: 1, memSizeMib: 128 } };
  return {
    schemaVersion: 1,
    vmId,
    state: 'running',
    requestedSpec: spec,
    spec,
    facts: {},
    preparedPrimitives: [],
    createdAt: at,
    updatedAt: at,
  } as VmRecord;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mvm-store-'));
  store = new StateStore(join(dir, 'state'));
  await store.init();
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('StateStore', () => {
  it('should let exactly one claim of an id win', async () => {
    const claims = await Promise.all([store.claimVm('vm'), store.claimVm('vm'), store.claimVm('vm')]);
    expect(claims.filter(Boolean)).toHaveLength(1);
  });

  it('should write records atomically and list them sorted', async () => {
    for (const id of ['vm-b', 'vm-a']) {
      await store.claimVm(id);
      await store.writeVm(record(id));
    }
    await store.claimVm('vm-without-record');
    expect((await store.listVms()).map((item) => item.vmId)).toEqual(['vm-a', 'vm-b']);
    expect((await store.listVmFolders()).sort()).toEqual(['vm-a', 'vm-b', 'vm-without-record']);
    expect(await readdir(store.vmDir('vm-a'))).toEqual(['vm.json']);
    expect(JSON.parse(await readFile(join(store.vmDir('vm-a'), 'vm.json'), 'utf8')).vmId).toBe('vm-a');
  });

  it('should keep snapshots when a VM folder is removed', async () => {
    await store.claimVm('vm');
    await store.writeVm(record('vm'));
    await store.claimSnapshot('snap');
    await store.removeVm('vm');
    expect(await store.readVm('vm')).toBeUndefined();
    expect(await readdir(store.snapshotsDir)).toEqual(['snap']);
  });

  it('should report a corrupt record as a state store error', async () => {
    await store.claimVm('vm');
    const { writeFile } = await import('node:fs/promises');
    await writeFile(join(store.vmDir('vm'), 'vm.json'), '{ half');
    await expect(store.readVm('vm')).rejects.toMatchObject({ code: 'ERR_MICROVM_STATE_STORE' });
  });
});
