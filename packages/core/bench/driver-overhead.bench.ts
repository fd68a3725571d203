import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, it } from 'vitest';
import { measure, report, summarize } from '../../../bench/report.js';
import { FirecrackerVmProvider, type VmSpec } from '../src/index.js';

/**
 * Driver overhead: the provider's create → start → destroy against the simulator, beside a baseline that
 * spawns the same simulator and sends the same API calls with bare `node:http` and no driver at all.
 */
const simulator = fileURLToPath(new URL('../../simulator/dist/bin/firecracker.js', import.meta.url));
const iterations = 30;

let dir: string;
let kernel: string;
let rootfs: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mvm-bench-'));
  kernel = join(dir, 'vmlinux');
  rootfs = join(dir, 'rootfs.ext4');
  await writeFile(kernel, 'kernel');
  await writeFile(rootfs, Buffer.alloc(4096));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function put(socketPath: string, path: string, body: unknown): Promise<void> {
  const payload = JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const outgoing = request(
      {
        socketPath,
        path,
        method: 'PUT',
        headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(payload) },
      },
      (response) => {
        response.resume();
        response.once('end', () =>
          response.statusCode === 204 ? resolve() : reject(new Error(`${path}: ${response.statusCode}`)),
        );
      },
    );
    outgoing.once('error', reject);
    outgoing.end(payload);
  });
}

/** The least any driver must do: spawn, wait for the socket, configure, start, kill, reap. */
async function bareHttpLifecycle(iteration: number): Promise<void> {
  const socketPath = join(dir, `bare-${iteration}.sock`);
  const child: ChildProcess = spawn(process.execPath, [simulator, '--api-sock', socketPath], {
    stdio: ['ignore', 'ignore', 'ignore'],
  });
  try {
    // Poll for the socket, then retry the first call until the server listens: the crudest possible wait.
    for (;;) {
      if (existsSync(socketPath)) {
        try {
          await put(socketPath, '/boot-source', { kernel_image_path: kernel, boot_args: 'console=ttyS0' });
          break;
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ECONNREFUSED') throw error;
        }
      }
      await delay(1);
    }
    await put(socketPath, '/machine-config', { vcpu_count: 1, mem_size_mib: 128 });
    await put(socketPath, '/drives/rootfs', {
      drive_id: 'rootfs',
      path_on_host: rootfs,
      is_root_device: true,
      is_read_only: false,
    });
    await put(socketPath, '/actions', { action_type: 'InstanceStart' });
  } finally {
    child.kill('SIGKILL');
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
    await rm(socketPath, { force: true });
  }
}

it('measures the driver overhead against bare node:http', async () => {
  const spec: VmSpec = {
    bootSource: { kernelImagePath: kernel, bootArgs: 'console=ttyS0' },
    machine: { vcpuCount: 1, memSizeMib: 128 },
    drives: [{ driveId: 'rootfs', pathOnHost: rootfs, isRootDevice: true, isReadOnly: false }],
  };
  const provider = new FirecrackerVmProvider({ stateDir: join(dir, 'state'), firecrackerBinary: simulator });
  const driver = await measure(
    iterations,
    async (iteration) => {
      const vmId = `bench-${iteration < 0 ? `warm${-iteration}` : iteration}`;
      await provider.create(vmId, spec);
      await provider.destroy(vmId);
    },
    { warmup: 3 },
  );
  await provider.close();
  const baseline = await measure(iterations, bareHttpLifecycle, { warmup: 3 });
  const driverSummary = summarize(driver);
  const baselineSummary = summarize(baseline);
  report('core-driver-overhead', 'Driver overhead: create → start → destroy against the simulator', [
    { name: '@microvm/core provider', figures: driverSummary },
    { name: 'bare node:http baseline', figures: baselineSummary },
    {
      name: 'ratio (provider / baseline)',
      figures: {
        p50: Number((driverSummary.p50Ms / baselineSummary.p50Ms).toFixed(2)),
        p95: Number((driverSummary.p95Ms / baselineSummary.p95Ms).toFixed(2)),
      },
    },
  ]);
});
