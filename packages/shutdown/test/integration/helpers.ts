import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  type FirecrackerClient,
  FirecrackerVmProvider,
  type FirecrackerVmProviderOptions,
  type VmSpec,
} from '@microvm/core';
import {
  firecrackerSimulatorPath,
  jailerSimulatorPath,
  type SimulatorEnvironmentOptions,
  simulatorEnvironment,
} from '@microvm/simulator';
import { type ShutdownLadderOptions, shutdownPrimitive } from '../../src/index.js';

export { firecrackerSimulatorPath, jailerSimulatorPath, simulatorEnvironment };

export interface Sandbox {
  /** Short temp dir: socket paths must stay within 107 bytes. */
  dir: string;
  stateDir: string;
  kernel: string;
  rootfs: string;
  spec(overrides?: Partial<VmSpec>): VmSpec;
  /** A provider whose only primitive is the shutdown primitive; closed by cleanup. */
  provider(options: {
    shutdown?: ShutdownLadderOptions;
    simulator?: SimulatorEnvironmentOptions;
    provider?: Partial<FirecrackerVmProviderOptions>;
  }): FirecrackerVmProvider;
  cleanup(): Promise<void>;
}

export async function createSandbox(): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'sd-'));
  const kernel = join(dir, 'vmlinux');
  const rootfs = join(dir, 'rootfs.ext4');
  await writeFile(kernel, 'not a real kernel');
  await writeFile(rootfs, Buffer.alloc(4096));
  const providers: FirecrackerVmProvider[] = [];
  const stateDir = join(dir, 'state');
  return {
    dir,
    stateDir,
    kernel,
    rootfs,
    spec: (overrides = {}) => ({
      bootSource: { kernelImagePath: kernel, bootArgs: 'console=ttyS0 reboot=k panic=1' },
      machine: { vcpuCount: 1, memSizeMib: 128 },
      drives: [{ driveId: 'rootfs', pathOnHost: rootfs, isRootDevice: true, isReadOnly: false }],
      ...overrides,
    }),
    provider: (options) => {
      const provider = new FirecrackerVmProvider({
        stateDir,
        firecrackerBinary: firecrackerSimulatorPath,
        socketReadyTimeoutMs: 10_000,
        env: simulatorEnvironment(options.simulator ?? {}),
        primitives: [shutdownPrimitive(options.shutdown)],
        ...options.provider,
      });
      providers.push(provider);
      return provider;
    },
    cleanup: async () => {
      for (const provider of providers) {
        for (const vm of await provider.list().catch(() => [])) {
          await provider.destroy(vm.vmId).catch(() => undefined);
        }
        await provider.close();
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Children of this test process that are still there, zombies included. */
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

export function isProcessAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  return true;
}

/** Retries `GET /` until the API answers: the socket file appears before the VMM listens. */
export async function waitForApi(client: FirecrackerClient, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    try {
      await client.describeInstance({ timeoutMs: 1000 });
      return;
    } catch (error) {
      if (performance.now() > deadline) throw error;
      await sleep(10);
    }
  }
}

/** Boots a VM the way Firecracker's docs do, through a client of our own. */
export async function bootByHand(client: FirecrackerClient, sandbox: Sandbox): Promise<void> {
  await client.putBootSource({
    kernel_image_path: sandbox.kernel,
    boot_args: 'console=ttyS0 reboot=k panic=1',
  });
  await client.putMachineConfig({ vcpu_count: 1, mem_size_mib: 128 });
  await client.putDrive({
    drive_id: 'rootfs',
    path_on_host: sandbox.rootfs,
    is_root_device: true,
    is_read_only: false,
  });
  await client.startInstance();
}
