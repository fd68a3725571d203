import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chooseVmm, SetupError } from './vmm-choice.js';

let dir: string;
let simulator: { firecracker: string; jailer: string };

async function executable(path: string, text: string): Promise<string> {
  await writeFile(path, text);
  await chmod(path, 0o755);
  return path;
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'demo-vmm-choice-'));
  await mkdir(join(dir, 'bin'));
  await mkdir(join(dir, 'simulator'));
  simulator = {
    firecracker: await executable(join(dir, 'simulator', 'firecracker.js'), '#!/usr/bin/env node\n'),
    jailer: await executable(join(dir, 'simulator', 'jailer.js'), '#!/usr/bin/env node\n'),
  };
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const fakeFirecracker =
  '#!/bin/sh\necho "Firecracker v1.16.1"\necho\necho "Supported snapshot data format versions: v10.0.0"\n';

describe('chooseVmm', () => {
  it('should take the simulator when no Firecracker is found', async () => {
    const choice = await chooseVmm({ PATH: join(dir, 'bin') }, simulator);
    expect(choice).toEqual({
      kind: 'simulator',
      firecrackerBinary: simulator.firecracker,
      jailerBinary: simulator.jailer,
      description: 'using the simulator (no Firecracker found)',
    });
  });

  it("should not mistake the package manager's shim of the simulator for a real Firecracker", async () => {
    await executable(
      join(dir, 'bin', 'firecracker'),
      '#!/bin/sh\nexec node "$basedir/../@microvm/simulator/dist/bin/firecracker.js" "$@"\n',
    );
    const choice = await chooseVmm({ PATH: join(dir, 'bin') }, simulator);
    expect(choice.kind).toBe('simulator');
  });

  it('should refuse a MICROVM_FIRECRACKER_BIN that is not an executable', async () => {
    const failure = chooseVmm({ MICROVM_FIRECRACKER_BIN: join(dir, 'missing'), PATH: '' }, simulator);
    await expect(failure).rejects.toBeInstanceOf(SetupError);
    await expect(failure).rejects.toThrow(/MICROVM_FIRECRACKER_BIN=.*missing is not an executable file/);
  });

  it('should name everything a real Firecracker still needs, in one error', async () => {
    await executable(join(dir, 'bin', 'firecracker'), fakeFirecracker);
    const failure = chooseVmm({ PATH: join(dir, 'bin') }, simulator);
    await expect(failure).rejects.toBeInstanceOf(SetupError);
    const message = ((await failure.catch((error: unknown) => error)) as Error).message;
    expect(message).toContain(`Found Firecracker ${join(dir, 'bin', 'firecracker')} (v1.16.1)`);
    expect(message).toContain('MICROVM_JAILER_BIN');
    expect(message).toContain('MICROVM_KERNEL: the host path of the guest kernel');
    expect(message).toContain('MICROVM_ROOTFS: the host path of the guest root filesystem');
  });

  it('should take a real Firecracker with its jailer, kernel and rootfs', async () => {
    const firecracker = await executable(join(dir, 'bin', 'firecracker'), fakeFirecracker);
    const jailer = await executable(join(dir, 'bin', 'jailer'), '#!/bin/sh\n');
    await writeFile(join(dir, 'vmlinux'), 'kernel');
    await writeFile(join(dir, 'rootfs.ext4'), 'rootfs');
    const choice = await chooseVmm(
      {
        MICROVM_FIRECRACKER_BIN: firecracker,
        MICROVM_KERNEL: join(dir, 'vmlinux'),
        MICROVM_ROOTFS: join(dir, 'rootfs.ext4'),
        PATH: join(dir, 'bin'),
      },
      simulator,
    );
    expect(choice).toEqual({
      kind: 'firecracker',
      firecrackerBinary: firecracker,
      jailerBinary: jailer,
      version: 'v1.16.1',
      kernel: join(dir, 'vmlinux'),
      rootfs: join(dir, 'rootfs.ext4'),
      description: `using Firecracker ${firecracker} (v1.16.1)`,
    });
  });

  it('should say so when MICROVM_FIRECRACKER_BIN names the simulator', async () => {
    const choice = await chooseVmm({ MICROVM_FIRECRACKER_BIN: simulator.firecracker, PATH: '' }, simulator);
    expect(choice.description).toBe('using the simulator (MICROVM_FIRECRACKER_BIN names @microvm/simulator)');
  });
});
