import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import {
  LeaseStore,
  type MicrovmError,
  type PrepareContext,
  type StartedContext,
  type TeardownContext,
  type VmFacts,
  type VmSpec,
} from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { caught, temporaryDirectory } from './__fixtures__/fake-muxer.js';
import { VsockError } from './errors.js';
import {
  GUEST_CID_POOL,
  SHARED_GUEST_CID_POOL,
  type VsockPrimitiveOptions,
  vsockPrimitive,
} from './primitive.js';

let sandbox: { dir: string; cleanup(): Promise<void> };
let stateDir: string;
let leases: LeaseStore;
const persisted: { spec: VmSpec; facts: VmFacts }[] = [];

beforeEach(async () => {
  sandbox = await temporaryDirectory();
  stateDir = join(sandbox.dir, 'state');
  leases = new LeaseStore(stateDir);
  persisted.length = 0;
});

afterEach(async () => {
  await sandbox.cleanup();
});

function baseSpec(): VmSpec {
  return {
    bootSource: { kernelImagePath: '/k' },
    machine: { vcpuCount: 1, memSizeMib: 128 },
  };
}

async function prepareContext(
  vmId: string,
  overrides: Partial<Pick<PrepareContext, 'mode' | 'restore' | 'vmDir'>> & { spec?: VmSpec } = {},
): Promise<PrepareContext> {
  const vmDir = overrides.vmDir ?? join(stateDir, 'vms', vmId);
  if (overrides.vmDir === undefined) await mkdir(vmDir, { recursive: true });
  const context: PrepareContext = {
    vmId,
    vmDir,
    stateDir,
    leases,
    mode: overrides.mode ?? 'boot',
    spec: overrides.spec ?? baseSpec(),
    launch: { executable: 'firecracker', args: [], apiSocketPath: join(vmDir, 'api.sock') },
    ...(overrides.restore && { restore: overrides.restore }),
    facts: {},
    signal: new AbortController().signal,
    persist: async () => {
      persisted.push(structuredClone({ spec: context.spec, facts: context.facts }));
    },
  };
  return context;
}

function laterContext(context: PrepareContext): StartedContext & TeardownContext {
  return {
    vmId: context.vmId,
    vmDir: context.vmDir,
    stateDir,
    leases,
    spec: context.spec,
    facts: context.facts,
    signal: new AbortController().signal,
    state: 'running',
    process: undefined as never,
    client: undefined as never,
  };
}

async function leaseSnapshot() {
  return [...(await leases.list(GUEST_CID_POOL)), ...(await leases.list(SHARED_GUEST_CID_POOL))];
}

describe('vsockPrimitive.prepare', () => {
  it('should lease the first free CID from 3, place the socket in the VM folder and persist the facts', async () => {
    const primitive = vsockPrimitive();
    const first = await prepareContext('vm-a');
    const second = await prepareContext('vm-b');
    await primitive.prepare!(first);
    await primitive.prepare!(second);
    expect(first.spec.vsock).toEqual({ guestCid: 3, udsPath: join(first.vmDir, 'vsock.sock') });
    expect(second.spec.vsock?.guestCid).toBe(4);
    expect(first.facts.vsock).toEqual({ guestCid: 3, hostUdsPath: join(first.vmDir, 'vsock.sock') });
    expect(persisted[0]?.facts.vsock?.guestCid).toBe(3);
    expect(await leases.ownerOf(GUEST_CID_POOL, '3')).toBe('vm-a');
    expect(primitive.vsockOf('vm-b')).toEqual(second.facts.vsock);
  });

  it('should give the same CID to a retried prepare of the same VM', async () => {
    const primitive = vsockPrimitive();
    await primitive.prepare!(await prepareContext('vm-a'));
    const again = await prepareContext('vm-a');
    await primitive.prepare!(again);
    expect(again.spec.vsock?.guestCid).toBe(3);
    expect(await leaseSnapshot()).toHaveLength(1);
  });

  it('should claim exactly the CID and path a spec asks for', async () => {
    const primitive = vsockPrimitive();
    const udsPath = join(sandbox.dir, 'mine.sock');
    const context = await prepareContext('vm-a', {
      spec: { ...baseSpec(), vsock: { guestCid: 42, udsPath } },
    });
    await primitive.prepare!(context);
    expect(context.facts.vsock).toEqual({ guestCid: 42, hostUdsPath: udsPath });
    expect(await leases.ownerOf(GUEST_CID_POOL, '42')).toBe('vm-a');
  });

  it('should fail with ERR_MICROVM_INVALID_INPUT when every CID is leased', async () => {
    const primitive = vsockPrimitive({ maxGuestCid: 4 });
    await primitive.prepare!(await prepareContext('vm-a'));
    await primitive.prepare!(await prepareContext('vm-b'));
    const error = await caught(primitive.prepare!(await prepareContext('vm-c')));
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_INVALID_INPUT');
    expect(await leaseSnapshot()).toHaveLength(2);
  });

  describe('bad input', () => {
    it.each<[string, (taken: string) => Promise<PrepareContext>, VsockPrimitiveOptions?]>([
      [
        'CID below 3',
        async () =>
          prepareContext('vm-x', { spec: { ...baseSpec(), vsock: { guestCid: 2, udsPath: '/tmp/v.sock' } } }),
      ],
      [
        'CID taken by another VM',
        async () =>
          prepareContext('vm-x', {
            spec: { ...baseSpec(), vsock: { guestCid: 3, udsPath: '/tmp/other.sock' } },
          }),
      ],
      [
        'relative socket path',
        async () =>
          prepareContext('vm-x', { spec: { ...baseSpec(), vsock: { guestCid: 9, udsPath: 'v.sock' } } }),
      ],
      [
        'socket path over 107 bytes',
        async () => prepareContext('vm-x', { vmDir: join(sandbox.dir, 'd'.repeat(100)) }),
      ],
      [
        'listener path over 107 bytes',
        async () => prepareContext('vm-x', { vmDir: join(sandbox.dir, 'd'.repeat(80)) }),
        { listeners: { 4000000000: () => {} } },
      ],
      [
        'socket path that exists',
        async (taken) =>
          prepareContext('vm-x', { spec: { ...baseSpec(), vsock: { guestCid: 9, udsPath: taken } } }),
      ],
    ])(
      'should reject %s with ERR_MICROVM_INVALID_INPUT and change nothing',
      async (_name, makeContext, options) => {
        const taken = join(sandbox.dir, 'taken.sock');
        await writeFile(taken, '');
        const holder = await prepareContext('vm-holder');
        await vsockPrimitive().prepare!(holder);
        const before = await leaseSnapshot();
        const filesBefore = await readdir(sandbox.dir, { recursive: true });
        const context = await makeContext(taken);
        persisted.length = 0;
        const error = await caught(vsockPrimitive(options).prepare!(context));
        expect((error as MicrovmError).code).toBe('ERR_MICROVM_INVALID_INPUT');
        expect(await leaseSnapshot()).toEqual(before);
        expect(context.facts.vsock).toBeUndefined();
        expect(persisted).toEqual([]);
        expect(
          (await readdir(sandbox.dir, { recursive: true })).filter((name) => !name.includes('vm-x')),
        ).toEqual(filesBefore);
      },
    );

    it.each<[string, VsockPrimitiveOptions]>([
      ['minGuestCid 2', { minGuestCid: 2 }],
      ['maxGuestCid below minGuestCid', { minGuestCid: 10, maxGuestCid: 9 }],
      ['maxGuestCid 2^32 − 1', { maxGuestCid: 0xffff_ffff }],
      ['socketName with a slash', { socketName: 'a/b.sock' }],
      ['listener port 0', { listeners: { 0: () => {} } }],
      ['listener port over 2^32 − 2', { listeners: { 4294967295: () => {} } }],
      ['connectTimeoutMs 0', { connectTimeoutMs: 0 }],
    ])('should reject the option %s with ERR_MICROVM_INVALID_INPUT', (_name, options) => {
      expect(() => vsockPrimitive(options)).toThrow(
        expect.objectContaining({ code: 'ERR_MICROVM_INVALID_INPUT' }),
      );
    });
  });

  it('should keep the source CID on restore, with an own socket and a shared lease', async () => {
    const primitive = vsockPrimitive({ minGuestCid: 7 });
    const source = await prepareContext('vm-source');
    await primitive.prepare!(source);
    expect(source.spec.vsock?.guestCid).toBe(7);
    const clone = await prepareContext('vm-clone', {
      mode: 'restore',
      spec: baseSpec(),
      restore: {
        snapshotId: 'snap',
        snapshotPath: '/s/vmstate',
        memFilePath: '/s/memory',
        resumeVm: true,
        sourceSpec: source.spec,
      },
    });
    await primitive.prepare!(clone);
    expect(clone.spec.vsock).toEqual({ guestCid: 7, udsPath: join(clone.vmDir, 'vsock.sock') });
    expect(clone.spec.vsock?.udsPath).not.toBe(source.spec.vsock?.udsPath);
    expect(await leases.ownerOf(SHARED_GUEST_CID_POOL, '7.vm-clone')).toBe('vm-clone');
    // The source goes away; the clone still uses 7, so a new VM must not get it.
    await primitive.teardown!(laterContext(source));
    const fresh = await prepareContext('vm-fresh');
    await primitive.prepare!(fresh);
    expect(fresh.spec.vsock?.guestCid).toBe(8);
    const explicit = await prepareContext('vm-explicit', {
      spec: { ...baseSpec(), vsock: { guestCid: 7, udsPath: join(sandbox.dir, 'e.sock') } },
    });
    expect(((await caught(primitive.prepare!(explicit))) as MicrovmError).code).toBe(
      'ERR_MICROVM_INVALID_INPUT',
    );
    await primitive.teardown!(laterContext(clone));
    expect(await leases.list(SHARED_GUEST_CID_POOL)).toEqual([]);
  });

  it('should add no device to a clone of a snapshot without vsock', async () => {
    const primitive = vsockPrimitive();
    const clone = await prepareContext('vm-clone', {
      mode: 'restore',
      restore: {
        snapshotId: 's',
        snapshotPath: '/s',
        memFilePath: '/m',
        resumeVm: true,
        sourceSpec: baseSpec(),
      },
    });
    await primitive.prepare!(clone);
    expect(clone.spec.vsock).toBeUndefined();
    expect(await leaseSnapshot()).toEqual([]);
  });
});

describe('vsockPrimitive under the jailer (hand-made jail facts)', () => {
  async function jailed(vmId: string, stagedFiles: Record<string, string> = {}) {
    const seen: string[] = [];
    const primitive = vsockPrimitive({
      listeners: {
        52: (socket) => {
          seen.push('connected');
          socket.end('hi\n');
        },
      },
    });
    const context = await prepareContext(vmId);
    await primitive.prepare!(context);
    // What the jailer primitive does later in prepare: the spec names the path inside the jail.
    const rootDir = join(sandbox.dir, 'jail', vmId, 'root');
    await mkdir(rootDir, { recursive: true });
    context.spec.vsock = { guestCid: context.spec.vsock!.guestCid, udsPath: '/vsock.sock' };
    context.facts.jail = {
      rootDir,
      jailDir: join(sandbox.dir, 'jail', vmId),
      uid: process.getuid?.() ?? 0,
      gid: process.getgid?.() ?? 0,
      stagedFiles,
    };
    await primitive.spawned!({ ...laterContext(context), process: undefined as never });
    return { primitive, context, rootDir, seen };
  }

  it('should publish the host path inside the jail and bind listeners there', async () => {
    const { primitive, context, rootDir, seen } = await jailed('vm-jailed');
    expect(context.facts.vsock?.hostUdsPath).toBe(join(rootDir, 'vsock.sock'));
    expect(primitive.vsockOf('vm-jailed')?.hostUdsPath).toBe(join(rootDir, 'vsock.sock'));
    expect(existsSync(join(rootDir, 'vsock.sock_52'))).toBe(true);
    const client = createConnection(join(rootDir, 'vsock.sock_52'));
    await new Promise((resolve) => client.once('close', resolve).resume());
    expect(seen).toEqual(['connected']);
    await primitive.teardown!(laterContext(context));
    expect(existsSync(join(rootDir, 'vsock.sock_52'))).toBe(false);
    expect(await leaseSnapshot()).toEqual([]);
  });

  it('should follow the staging map when the jailer records one', async () => {
    const elsewhere = join(sandbox.dir, 'staged');
    await mkdir(elsewhere);
    const { primitive, context } = await jailed('vm-staged', { '/vsock.sock': join(elsewhere, 'v.sock') });
    expect(context.facts.vsock?.hostUdsPath).toBe(join(elsewhere, 'v.sock'));
    expect(existsSync(join(elsewhere, 'v.sock_52'))).toBe(true);
    await primitive.teardown!(laterContext(context));
  });

  it('should reject a jail path over 107 bytes before binding anything', async () => {
    const primitive = vsockPrimitive({ listeners: { 52: () => {} } });
    const context = await prepareContext('vm-long');
    await primitive.prepare!(context);
    context.spec.vsock = { guestCid: 3, udsPath: `/${'r'.repeat(100)}.sock` };
    context.facts.jail = {
      rootDir: join(sandbox.dir, 'root'),
      jailDir: sandbox.dir,
      uid: 0,
      gid: 0,
      stagedFiles: {},
    };
    const error = await caught(
      Promise.resolve(primitive.spawned!({ ...laterContext(context), process: undefined as never })),
    );
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_INVALID_INPUT');
    await primitive.teardown!(laterContext(context));
  });
});

describe('vsockPrimitive lifecycle', () => {
  it('should end a connect in flight with device-closed on teardown', async () => {
    const primitive = vsockPrimitive();
    const context = await prepareContext('vm-a');
    await primitive.prepare!(context);
    const connecting = caught(primitive.connect('vm-a', 5000, { timeoutMs: 10_000 }));
    await new Promise((resolve) => setTimeout(resolve, 30));
    await primitive.teardown!(laterContext(context));
    expect(VsockError.hasReason(await connecting, 'device-closed')).toBe(true);
    const unknown = await caught(primitive.connect('vm-a', 5000));
    expect((unknown as MicrovmError).code).toBe('ERR_MICROVM_VM_NOT_FOUND');
  });

  it('should close dynamic listeners on teardown', async () => {
    const primitive = vsockPrimitive();
    const context = await prepareContext('vm-a');
    await primitive.prepare!(context);
    const listener = await primitive.listen('vm-a', 9000, (socket) => socket.end());
    expect(existsSync(listener.path)).toBe(true);
    const duplicate = await caught(primitive.listen('vm-a', 9000, () => {}));
    expect((duplicate as MicrovmError).code).toBe('ERR_MICROVM_INVALID_INPUT');
    await primitive.teardown!(laterContext(context));
    expect(existsSync(listener.path)).toBe(false);
  });

  it('should free the CIDs of VMs that are not alive on reconcile', async () => {
    const primitive = vsockPrimitive();
    await primitive.prepare!(await prepareContext('vm-live'));
    await primitive.prepare!(await prepareContext('vm-dead'));
    await leases.claim(SHARED_GUEST_CID_POOL, '3.vm-dead-clone', 'vm-dead-clone');
    const result = await primitive.reconcile!({
      stateDir,
      leases,
      liveVmIds: new Set(['vm-live']),
      knownVmIds: new Set(['vm-live']),
      signal: new AbortController().signal,
    });
    expect(result.removed).toHaveLength(2);
    expect((await leaseSnapshot()).map((lease) => lease.owner)).toEqual(['vm-live']);
  });
});
