import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FirecrackerVmProvider, type VmSpec } from '@microvm/core';
import {
  DEFAULT_SHUTDOWN_DELAY_MS,
  firecrackerSimulatorPath,
  type SimulatorEnvironmentOptions,
  simulatorEnvironment,
} from '@microvm/simulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BenchRow, report, summarize } from '../../../bench/report.js';
import { type ShutdownLadderOptions, type ShutdownOutcome, shutdownPrimitive } from '../src/index.js';

const iterations = 12;
const rows: BenchRow[] = [];
let dir: string;
let spec: VmSpec;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'sdb-'));
  await writeFile(join(dir, 'vmlinux'), 'not a real kernel');
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
  report('shutdown', 'Time from stop() to a reaped VMM, simulator (ms)', rows);
  await rm(dir, { recursive: true, force: true });
});

/** Boots a VM per sample and times only `provider.stop()`: the ladder plus the provider's bookkeeping. */
async function timeStops(
  name: string,
  shutdown: ShutdownLadderOptions,
  simulator: SimulatorEnvironmentOptions,
  expectedHow: ShutdownOutcome['how'],
): Promise<void> {
  const provider = new FirecrackerVmProvider({
    stateDir: join(dir, `state-${rows.length}`),
    firecrackerBinary: firecrackerSimulatorPath,
    env: simulatorEnvironment(simulator),
    primitives: [shutdownPrimitive(shutdown)],
  });
  const durations: number[] = [];
  try {
    for (let index = -1; index < iterations; index += 1) {
      const vmId = `bench-${index + 1}`;
      await provider.create(vmId, spec);
      const started = performance.now();
      const result = await provider.stop(vmId);
      const elapsed = performance.now() - started;
      // A sample of the wrong outcome would measure something else.
      expect(result.how).toBe(expectedHow);
      if (index >= 0) durations.push(elapsed);
      await provider.destroy(vmId);
    }
  } finally {
    await provider.close();
  }
  rows.push({ name, figures: summarize(durations) });
}

describe('shutdown ladder', () => {
  it(`graceful: Ctrl-Alt-Del, guest reboot, exit 0 (simulated shutdown delay ${DEFAULT_SHUTDOWN_DELAY_MS} ms)`, async () => {
    await timeStops(
      `graceful (guest shutdown ${DEFAULT_SHUTDOWN_DELAY_MS} ms)`,
      { ctrlAltDel: true },
      {},
      'graceful',
    );
  });

  it('terminated: SIGTERM straight away', async () => {
    await timeStops('terminated (SIGTERM)', { ctrlAltDel: false }, {}, 'terminated');
  });

  it('killed: SIGKILL straight away', async () => {
    await timeStops('killed (SIGKILL)', { ctrlAltDel: false, terminate: false }, {}, 'killed');
  });

  it('killed after an ignored Ctrl-Alt-Del (grace 250 ms) and SIGTERM off', async () => {
    await timeStops(
      'killed (Ctrl-Alt-Del ignored, grace 250 ms)',
      { ctrlAltDel: true, ctrlAltDelGraceMs: 250, terminate: false },
      { ignoreCtrlAltDel: true },
      'killed',
    );
  });
});
