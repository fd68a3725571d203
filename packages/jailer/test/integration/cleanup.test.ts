import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MicrovmError, type VmSpec } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { JailerOptions } from '../../src/index.js';
import { createJailSandbox, isAlive, type JailSandbox, listTree, processesOf } from './helpers.js';

let sandbox: JailSandbox;

beforeEach(async () => {
  sandbox = await createJailSandbox();
});

afterEach(async () => {
  await sandbox.cleanup();
});

async function errorOf(work: () => Promise<unknown>): Promise<MicrovmError<string>> {
  const error = await work().then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(MicrovmError.isInstance(error), `expected a MicrovmError, got ${String(error)}`).toBe(true);
  return error as MicrovmError<string>;
}

/** What a failed create may not leave behind. */
async function hostState(vmId: string) {
  return {
    jails: await listTree(sandbox.chrootBaseDir),
    vms: await listTree(join(sandbox.stateDir, 'vms')),
    memoryCgroup: existsSync(join('/sys/fs/cgroup/memory', sandbox.parentCgroup)),
    processes: await processesOf(vmId),
  };
}

interface BadInput {
  name: string;
  vmId?: string;
  jailer?: (sandbox: JailSandbox) => Partial<JailerOptions>;
  firecrackerBinary?: string;
  spec?: (sandbox: JailSandbox) => VmSpec;
  setUp?: (sandbox: JailSandbox) => Promise<void>;
  /** The code the user sees, and the field the ValidationError (maybe as the hook error's cause) names. */
  code: string;
  field?: string | RegExp;
}

const badInputs: BadInput[] = [
  { name: 'a negative uid', jailer: () => ({ uid: -1 }), code: 'ERR_MICROVM_INVALID_INPUT', field: 'uid' },
  { name: 'a fractional gid', jailer: () => ({ gid: 1.5 }), code: 'ERR_MICROVM_INVALID_INPUT', field: 'gid' },
  { name: 'an id with an underscore', vmId: 'bad_id', code: 'ERR_MICROVM_INVALID_INPUT', field: 'vmId' },
  { name: 'an id of 65 characters', vmId: 'a'.repeat(65), code: 'ERR_MICROVM_INVALID_INPUT', field: 'vmId' },
  {
    name: 'a missing jailer binary',
    jailer: (sandbox) => ({ jailerBinary: join(sandbox.dir, 'no-jailer') }),
    code: 'ERR_MICROVM_HOOK_FAILED',
    field: 'jailerBinary',
  },
  {
    name: 'a missing firecracker binary',
    firecrackerBinary: '/nonexistent/firecracker',
    code: 'ERR_MICROVM_HOOK_FAILED',
    field: 'firecrackerBinary',
  },
  {
    name: 'a missing chroot base',
    jailer: (sandbox) => ({ chrootBaseDir: join(sandbox.dir, 'no-such-dir') }),
    code: 'ERR_MICROVM_HOOK_FAILED',
    field: 'chrootBaseDir',
  },
  {
    name: 'a chroot base so long the API socket passes 107 bytes',
    setUp: async (sandbox) =>
      mkdir(join(sandbox.chrootBaseDir, 'x'.repeat(60)), { recursive: true }).then(() => {}),
    jailer: (sandbox) => ({ chrootBaseDir: join(sandbox.chrootBaseDir, 'x'.repeat(60)) }),
    code: 'ERR_MICROVM_HOOK_FAILED',
    field: 'API socket',
  },
  {
    name: 'a vsock socket name that passes 107 bytes in the jail',
    spec: (sandbox) => sandbox.spec({ vsock: { guestCid: 3, udsPath: `/tmp/${'v'.repeat(60)}.sock` } }),
    code: 'ERR_MICROVM_HOOK_FAILED',
    field: 'vsock.udsPath',
  },
  {
    name: 'cgroup v2 without the controller asked for',
    jailer: (sandbox) => ({
      cgroupVersion: 2,
      parentCgroup: sandbox.parentCgroup,
      cgroups: { 'memory.max': '512M' },
    }),
    code: 'ERR_MICROVM_HOOK_FAILED',
    field: "cgroups['memory.max']",
  },
  {
    name: 'a cgroup v2 file name on cgroup v1',
    jailer: (sandbox) => ({
      cgroupVersion: 1,
      parentCgroup: sandbox.parentCgroup,
      cgroups: { 'memory.max': '512M' },
    }),
    code: 'ERR_MICROVM_HOOK_FAILED',
    field: "cgroups['memory.max']",
  },
  {
    name: 'a parent cgroup that climbs out',
    jailer: () => ({ parentCgroup: '../escape' }),
    code: 'ERR_MICROVM_INVALID_INPUT',
    field: 'parentCgroup',
  },
  {
    name: 'a drive whose file name escapes the jail',
    spec: (sandbox) =>
      sandbox.spec({
        drives: [
          { driveId: 'rootfs', pathOnHost: `${sandbox.dir}/..`, isRootDevice: true, isReadOnly: true },
        ],
      }),
    code: 'ERR_MICROVM_HOOK_FAILED',
    field: 'drives[0].pathOnHost',
  },
  {
    name: 'a jail dir that already exists',
    setUp: async (sandbox) => {
      await mkdir(join(sandbox.chrootBaseDir, 'firecracker.js', 'bad-input', 'root'), { recursive: true });
      await writeFile(
        join(sandbox.chrootBaseDir, 'firecracker.js', 'bad-input', 'root', 'keep'),
        'someone else',
      );
    },
    code: 'ERR_MICROVM_HOOK_FAILED',
  },
];

describe('bad input', () => {
  it.each(badInputs)('should reject $name with a typed error and change nothing on the host', async (row) => {
    await row.setUp?.(sandbox);
    const vmId = row.vmId ?? 'bad-input';
    const before = await hostState(vmId);
    const error = await errorOf(async () => {
      const provider = sandbox.provider({
        jailer: row.jailer?.(sandbox) ?? {},
        ...(row.firecrackerBinary !== undefined && { firecrackerBinary: row.firecrackerBinary }),
      });
      await provider.create(vmId, row.spec?.(sandbox) ?? sandbox.spec());
    });
    expect(error.code).toBe(row.code);
    expect(error.isUserError).toBe(true);
    const validation =
      error.code === 'ERR_MICROVM_HOOK_FAILED' ? (error.cause as MicrovmError<string>) : error;
    if (row.field !== undefined) {
      expect(validation.code).toBe('ERR_MICROVM_INVALID_INPUT');
      expect((validation as unknown as { field: string }).field).toMatch(row.field);
    } else {
      expect(validation.code).toBe('ERR_MICROVM_VM_EXISTS');
    }
    expect(await hostState(vmId)).toEqual(before);
  });
});

describe('cleanup of jails', () => {
  const cgroups = { 'memory.limit_in_bytes': String(256 * 1024 * 1024) };

  it('should remove the jail, the cgroups and the VMM of a VM whose provider was killed, on reconcile', async () => {
    const first = sandbox.provider({
      jailer: { parentCgroup: sandbox.parentCgroup, cgroups, daemonize: true },
    });
    const vm = await first.create('orphaned', sandbox.spec());
    // The host program dies: supervision stops, and so does the VMM (a host crash).
    await first.close();
    process.kill(vm.pid ?? 0, 'SIGKILL');
    while (isAlive(vm.pid)) await sleep(10);

    const second = sandbox.provider({ jailer: { parentCgroup: sandbox.parentCgroup, cgroups } });
    const result = await second.reconcile();
    expect(result.destroyedVmIds).toEqual(['orphaned']);
    expect(existsSync(vm.facts.jail?.jailDir ?? '')).toBe(false);
    for (const dir of vm.facts.jail?.cgroupDirs ?? []) expect(existsSync(dir)).toBe(false);
    expect(await processesOf('orphaned')).toEqual([]);
  });

  it('should remove only our jails of VMs the state directory no longer knows', async () => {
    const first = sandbox.provider({ jailer: { parentCgroup: sandbox.parentCgroup, cgroups } });
    const kept = await first.create('kept', sandbox.spec());
    const lost = await first.create('lost', sandbox.spec());
    await first.close();
    process.kill(lost.pid ?? 0, 'SIGKILL');
    while (isAlive(lost.pid)) await sleep(10);
    // Its record is gone (deleted by hand, or a different store): only the jail's marker is left.
    await rm(join(sandbox.stateDir, 'vms', 'lost'), { recursive: true });
    // Jails that are not provably ours: no marker, or another state directory's marker.
    const foreign = join(sandbox.chrootBaseDir, 'firecracker.js', 'foreign', 'root');
    await mkdir(foreign, { recursive: true });
    const otherState = join(sandbox.chrootBaseDir, 'firecracker.js', 'other-state');
    await mkdir(otherState, { recursive: true });
    await writeFile(
      join(otherState, 'microvm-jail.json'),
      JSON.stringify({ schemaVersion: 1, stateDir: '/var/lib/other', vmId: 'other-state', cgroupDirs: [] }),
    );

    const second = sandbox.provider({ jailer: { parentCgroup: sandbox.parentCgroup, cgroups } });
    const result = await second.reconcile();
    expect(result.removed).toContain(`jail ${lost.facts.jail?.jailDir}`);
    expect(existsSync(lost.facts.jail?.jailDir ?? '')).toBe(false);
    for (const dir of lost.facts.jail?.cgroupDirs ?? []) expect(existsSync(dir)).toBe(false);
    // The live VM, the foreign folder and the other store's jail are untouched.
    expect(isAlive(kept.pid)).toBe(true);
    expect(existsSync(kept.facts.jail?.jailDir ?? '')).toBe(true);
    expect(existsSync(foreign)).toBe(true);
    expect(existsSync(otherState)).toBe(true);
    await second.destroy('kept');
    expect(existsSync(kept.facts.jail?.jailDir ?? '')).toBe(false);
  });

  it('should leave nothing after a failed start', async () => {
    const provider = sandbox.provider({
      jailer: { parentCgroup: sandbox.parentCgroup, cgroups },
      env: { MICROVM_SIMULATOR_REJECT: 'PUT /machine-config' },
    });
    const error = await errorOf(() => provider.create('fails-late', sandbox.spec()));
    expect(error.code).toBe('ERR_MICROVM_API');
    expect(await listTree(sandbox.chrootBaseDir)).toEqual(['firecracker.js']);
    expect(existsSync(join('/sys/fs/cgroup/memory', sandbox.parentCgroup, 'fails-late'))).toBe(false);
    expect(await processesOf('fails-late')).toEqual([]);
  });

  it('should make teardown idempotent', async () => {
    const primitive = sandbox.primitive({ parentCgroup: sandbox.parentCgroup, cgroups });
    const provider = sandbox.provider({ primitives: [primitive] });
    const vm = await provider.create('twice', sandbox.spec());
    await provider.destroy('twice');
    const context = {
      vmId: 'twice',
      vmDir: join(sandbox.stateDir, 'vms', 'twice'),
      stateDir: sandbox.stateDir,
      leases: undefined as never,
      spec: vm.spec,
      facts: vm.facts,
      signal: new AbortController().signal,
      state: 'stopped' as const,
    };
    await expect(primitive.teardown?.(context)).resolves.toBeUndefined();
    expect(existsSync(vm.facts.jail?.jailDir ?? '')).toBe(false);
  });
});
