import { chmod, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FirecrackerVmProvider, type VmSpec } from '@microvm/core';
import { firecrackerSimulatorPath, jailerSimulatorPath } from '@microvm/simulator';
import { afterAll, beforeAll, it } from 'vitest';
import { type BenchRow, measure, report, summarize } from '../../../bench/report.js';
import { jailerPrimitive, planStaging, stageFile } from '../src/index.js';

/**
 * What the jailer costs: create → destroy of a jailed VM against the simulator beside the same VM unjailed, and
 * staging a large file into a jail by hard link versus copy.
 */
const iterations = 15;
const largeFileMib = 256;

let dir: string;
let spec: VmSpec;

beforeAll(async () => {
  dir = await mkdtemp('/tmp/jlb-');
  // The simulated jailer has no chroot: the jail user must be able to walk to the jail.
  await chmod(dir, 0o755);
  await mkdir(join(dir, 'j'));
  await writeFile(join(dir, 'vmlinux'), 'kernel', { mode: 0o644 });
  await writeFile(join(dir, 'rootfs.ext4'), Buffer.alloc(4096));
  spec = {
    bootSource: { kernelImagePath: join(dir, 'vmlinux'), bootArgs: 'console=ttyS0 reboot=k panic=1' },
    machine: { vcpuCount: 1, memSizeMib: 128 },
    drives: [
      { driveId: 'rootfs', pathOnHost: join(dir, 'rootfs.ext4'), isRootDevice: true, isReadOnly: false },
    ],
  };
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function createDestroy(jailed: boolean): Promise<number[]> {
  const provider = new FirecrackerVmProvider({
    stateDir: join(dir, jailed ? 'sj' : 'su'),
    firecrackerBinary: firecrackerSimulatorPath,
    primitives: jailed
      ? [
          jailerPrimitive({
            jailerBinary: jailerSimulatorPath,
            uid: 65534,
            gid: 65534,
            chrootBaseDir: join(dir, 'j'),
          }),
        ]
      : [],
  });
  try {
    return await measure(
      iterations,
      async (iteration) => {
        const vmId = `b${iteration < 0 ? `w${-iteration}` : iteration}`;
        await provider.create(vmId, spec);
        await provider.destroy(vmId);
      },
      { warmup: 2 },
    );
  } finally {
    await provider.close();
  }
}

it('measures jailed versus unjailed create → destroy, and staging by link versus copy', async () => {
  const rows: BenchRow[] = [
    { name: 'create → destroy, unjailed', figures: summarize(await createDestroy(false)) },
    { name: 'create → destroy, jailed', figures: summarize(await createDestroy(true)) },
  ];

  const large = join(dir, 'large.img');
  await writeFile(large, Buffer.alloc(largeFileMib * 1024 * 1024, 1));
  const rootDir = join(dir, 'stage-root');
  const target = { rootDir, uid: 65534, gid: 65534, reservedNames: new Set<string>() };
  const jailDevice = (await stat(dir)).dev;
  for (const method of ['link', 'copy'] as const) {
    const durations = await measure(5, async () => {
      await rm(rootDir, { recursive: true, force: true });
      await mkdir(rootDir);
      const [entry] = await planStaging([{ field: 'drive', hostPath: large, kind: 'writable' }], {
        ...target,
        jailDevice,
      });
      if (!entry) throw new Error('nothing planned');
      // Force the method being measured: a copy on the same filesystem stands for one across filesystems.
      const used = await stageFile({ ...entry, method }, target);
      if (used !== method) throw new Error(`staged by ${used}, not ${method}`);
    });
    rows.push({ name: `stage a ${largeFileMib} MiB file by ${method}`, figures: summarize(durations) });
  }
  await rm(rootDir, { recursive: true, force: true });
  report('jailer', 'Jailer overhead (simulator) and staging', rows);
});
