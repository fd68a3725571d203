import { readFileSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  FirecrackerVmProvider,
  type FirecrackerVmProviderOptions,
  type VmPrimitive,
  type VmSpec,
} from '@microvm/core';
import { firecrackerSimulatorPath, jailerSimulatorPath } from '@microvm/simulator';
import { type JailerOptions, jailerPrimitive } from '../../src/index.js';

export { firecrackerSimulatorPath, jailerSimulatorPath };

/** A jail user that owns nothing else on the host. */
export const jailUid = 65534;
export const jailGid = 65534;

export interface JailSandbox {
  /** Short temp dir: the jail's socket paths must stay within 107 bytes. */
  dir: string;
  stateDir: string;
  chrootBaseDir: string;
  kernel: string;
  rootfs: string;
  /** A unique parent cgroup, removed by cleanup. */
  parentCgroup: string;
  spec(overrides?: Partial<VmSpec>): VmSpec;
  primitive(options?: Partial<JailerOptions>): VmPrimitive;
  provider(
    options?: Partial<FirecrackerVmProviderOptions> & { jailer?: Partial<JailerOptions> },
  ): FirecrackerVmProvider;
  cleanup(): Promise<void>;
}

let counter = 0;

export async function createJailSandbox(): Promise<JailSandbox> {
  const dir = await mkdtemp('/tmp/jl-');
  // The simulated jailer has no real chroot: the jail user must be able to walk the host path to the jail.
  await chmod(dir, 0o755);
  const chrootBaseDir = join(dir, 'j');
  const stateDir = join(dir, 's');
  await mkdir(chrootBaseDir);
  const kernel = join(dir, 'vmlinux');
  const rootfs = join(dir, 'rootfs.ext4');
  await writeFile(kernel, 'not a real kernel', { mode: 0o644 });
  await writeFile(rootfs, Buffer.alloc(4096), { mode: 0o644 });
  counter += 1;
  const parentCgroup = `mvm-jl-${process.pid}-${counter}`;
  const providers: FirecrackerVmProvider[] = [];
  const sandbox: JailSandbox = {
    dir,
    stateDir,
    chrootBaseDir,
    kernel,
    rootfs,
    parentCgroup,
    spec: (overrides = {}) => ({
      bootSource: { kernelImagePath: kernel, bootArgs: 'console=ttyS0 reboot=k panic=1' },
      machine: { vcpuCount: 1, memSizeMib: 128 },
      drives: [{ driveId: 'rootfs', pathOnHost: rootfs, isRootDevice: true, isReadOnly: false }],
      ...overrides,
    }),
    primitive: (options = {}) =>
      jailerPrimitive({
        jailerBinary: jailerSimulatorPath,
        uid: jailUid,
        gid: jailGid,
        chrootBaseDir,
        ...options,
      }),
    provider: (options = {}) => {
      const { jailer, ...providerOptions } = options;
      const provider = new FirecrackerVmProvider({
        stateDir,
        firecrackerBinary: firecrackerSimulatorPath,
        socketReadyTimeoutMs: 10_000,
        primitives: [sandbox.primitive(jailer)],
        ...providerOptions,
      });
      providers.push(provider);
      return provider;
    },
    cleanup: async () => {
      for (const provider of providers.splice(0)) {
        for (const vm of await provider.list().catch(() => [])) {
          await provider.destroy(vm.vmId).catch(() => undefined);
        }
        await provider.close().catch(() => undefined);
      }
      await removeTestCgroups(parentCgroup);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return sandbox;
}

/** Removes `<hierarchy>/<parent>` (and any VM cgroup left under it) in every v1 hierarchy and v2. */
export async function removeTestCgroups(parentCgroup: string): Promise<void> {
  const mounts = (await readFile('/proc/mounts', 'utf8'))
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[2] === 'cgroup' || fields[2] === 'cgroup2')
    .map((fields) => fields[1] ?? '');
  for (const mount of mounts) {
    const parent = join(mount, parentCgroup);
    const children = await readdir(parent, { withFileTypes: true }).catch(() => []);
    for (const child of children) {
      if (child.isDirectory()) await rmdir(join(parent, child.name)).catch(() => undefined);
    }
    await rmdir(parent).catch(() => undefined);
  }
}

/** Live (non-zombie) processes whose command line has `--id <vmId>`. */
export async function processesOf(vmId: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (argv.some((arg, index) => arg === '--id' && argv[index + 1] === vmId)) pids.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return pids;
}

/**
 * Whether a process is alive: it exists and is not a zombie. A Firecracker the jailer forked is reparented to
 * the host's init, which reaps it when it gets to it; a zombie is already dead.
 */
export function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Sorted list of every path under `dir` (relative), to compare host state before and after. */
export async function listTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true }).catch(() => [] as string[]);
  return entries.map(String).sort();
}
