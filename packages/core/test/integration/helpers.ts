import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { VmSpec } from '../../src/index.js';

/**
 * The simulator is built by turbo before these tests (see this package's turbo.json). It is found by path, not
 * as a dependency: the simulator itself depends on core's types, and a cycle would break the build graph.
 */
export const simulatorFirecracker = fileURLToPath(
  new URL('../../../simulator/dist/bin/firecracker.js', import.meta.url),
);

export interface Sandbox {
  dir: string;
  stateDir: string;
  kernel: string;
  rootfs: string;
  spec(overrides?: Partial<VmSpec>): VmSpec;
  cleanup(): Promise<void>;
}

/** A short temp dir (socket paths must stay under 107 bytes) with a fake kernel and rootfs. */
export async function createSandbox(): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'mvm-'));
  const kernel = join(dir, 'vmlinux');
  const rootfs = join(dir, 'rootfs.ext4');
  await writeFile(kernel, 'not a real kernel');
  await writeFile(rootfs, Buffer.alloc(4096));
  return {
    dir,
    stateDir: join(dir, 'state'),
    kernel,
    rootfs,
    spec: (overrides = {}) => ({
      bootSource: { kernelImagePath: kernel, bootArgs: 'console=ttyS0 reboot=k panic=1' },
      machine: { vcpuCount: 1, memSizeMib: 128 },
      drives: [{ driveId: 'rootfs', pathOnHost: rootfs, isRootDevice: true, isReadOnly: false }],
      ...overrides,
    }),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

export function isProcessAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return true;
}

/** Children of this test process that are still there (zombies included). */
export async function childProcesses(): Promise<{ pid: number; state: string }[]> {
  const children: { pid: number; state: string }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === process.pid) children.push({ pid: Number(entry), state: fields[0] ?? '?' });
    } catch {
      // Gone while we looked.
    }
  }
  return children;
}
