import { lstat, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FirecrackerVmProvider, type VmSpec } from '@microvm/core';
import { firecrackerSimulatorPath, simulatorEnvironment } from '@microvm/simulator';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type ConsoleEvents,
  type ConsolePrimitiveOptions,
  consoleFifoName,
  consolePrimitive,
  firecrackerLogLinePattern,
  type VmConsole,
} from '../../src/index.js';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;

const readyLine = 'microvm-simulator: guest ready';
let dir: string;
let kernel: string;
let rootfs: string;
const providers: FirecrackerVmProvider[] = [];

beforeEach(async () => {
  // Short: the API socket path must stay within 107 bytes.
  dir = await mkdtemp(join(tmpdir(), 'mvc-'));
  kernel = join(dir, 'vmlinux');
  rootfs = join(dir, 'rootfs.ext4');
  await writeFile(kernel, 'not a kernel');
  await writeFile(rootfs, Buffer.alloc(4096));
});

afterEach(async () => {
  for (const provider of providers.splice(0)) {
    for (const vm of await provider.list().catch(() => []))
      await provider.destroy(vm.vmId).catch(() => undefined);
    await provider.close();
  }
  await rm(dir, { recursive: true, force: true });
});

function spec(overrides: Partial<VmSpec> = {}): VmSpec {
  return {
    bootSource: { kernelImagePath: kernel, bootArgs: 'console=ttyS0 reboot=k panic=1' },
    machine: { vcpuCount: 1, memSizeMib: 128 },
    drives: [{ driveId: 'rootfs', pathOnHost: rootfs, isRootDevice: true, isReadOnly: false }],
    ...overrides,
  };
}

function setup(
  options: ConsolePrimitiveOptions = {},
  simulator: Parameters<typeof simulatorEnvironment>[0] = {},
) {
  const spawnedConsoles = new Map<string, VmConsole>();
  const primitive = consolePrimitive({
    ...options,
    onSpawned: (vmId, vmConsole) => spawnedConsoles.set(vmId, vmConsole),
  });
  const provider = new FirecrackerVmProvider({
    stateDir: join(dir, 'state'),
    firecrackerBinary: firecrackerSimulatorPath,
    // Includes the simulator's start, which takes seconds on a loaded host.
    socketReadyTimeoutMs: 30_000,
    env: simulatorEnvironment(simulator),
    primitives: [primitive],
  });
  providers.push(provider);
  return { primitive, provider, spawnedConsoles };
}

describe('consolePrimitive with the simulator', () => {
  it('should capture the boot log, tail and follow it, and report the first line', async () => {
    const { primitive, provider } = setup();
    await provider.create('vm-boot', spec());
    const vm = primitive.get('vm-boot')!;
    expect(vm).toBeDefined();

    expect(await vm.console.waitForLine(readyLine, { timeoutMs: 10_000 })).toBe(readyLine);
    const tail = vm.console.tail();
    expect(tail[0]).toMatch(/Linux version/);
    expect(tail).toContain(readyLine);
    expect(tail.some((line) => line.includes('Kernel command line: console=ttyS0'))).toBe(true);
    expect(vm.console.tail(1)).toEqual([readyLine]);
    // Firecracker's own log lines (on stdout without a log path) go to the VMM log, not the console.
    expect(tail.some((line) => firecrackerLogLinePattern.test(line))).toBe(false);
    expect(vm.vmmLog.tail().some((line) => firecrackerLogLinePattern.test(line))).toBe(true);
    expect(vm.console.firstLine?.line).toMatch(/Linux version/);
    expect(vm.console.firstLine?.elapsedMs).toBeGreaterThan(0);

    // Follow sees what the guest prints from now on: Ctrl-Alt-Del makes it print its reboot and exit.
    const reboots: ConsoleEvents['guest-reboot'][] = [];
    vm.console.on('guest-reboot', (event) => reboots.push(event));
    const followed = (async () => {
      const lines: string[] = [];
      for await (const line of vm.console.follow()) lines.push(line);
      return lines;
    })();
    await (await provider.client('vm-boot')).sendCtrlAltDel();
    const lines = await followed;
    expect(lines).toContain('The system is going down NOW!');
    expect(lines.some((line) => line.endsWith('reboot: Restarting system'))).toBe(true);
    expect(reboots.map((event) => event.kind)).toEqual(['restart']);
    expect(vm.console.ended).toBe(true);

    await provider.destroy('vm-boot');
    expect(primitive.get('vm-boot')).toBeUndefined();
  });

  it('should keep a kernel panic in the tail and end when the panicked guest reboots', async () => {
    const { primitive, provider } = setup({}, { kernelPanic: true });
    await provider.create('vm-panic', spec());
    const vm = primitive.get('vm-panic')!;
    await vm.console.waitForLine(/Rebooting in 1 seconds/, { timeoutMs: 10_000 });
    const panicLine = vm.console.tail().find((line) => line.includes('Kernel panic - not syncing'));
    expect(panicLine).toMatch(/VFS: Unable to mount root fs/);
    // panic=1: the guest reboots and the VMM exits, which ends the capture.
    await new Promise<void>((resolve) =>
      vm.console.ended ? resolve() : vm.console.once('end', () => resolve()),
    );
    expect(vm.console.tail().some((line) => line.includes(readyLine))).toBe(false);
  });

  it('should emit first-line, kernel-panic and guest-reboot to listeners added at spawn', async () => {
    const events: string[] = [];
    const primitive = consolePrimitive({
      onSpawned: (_vmId, { console }) => {
        for (const name of ['first-line', 'kernel-panic', 'guest-reboot'] as const) {
          console.on(name, () => events.push(name));
        }
      },
    });
    const provider = new FirecrackerVmProvider({
      stateDir: join(dir, 'state'),
      firecrackerBinary: firecrackerSimulatorPath,
      socketReadyTimeoutMs: 30_000,
      env: simulatorEnvironment({ kernelPanic: true }),
      primitives: [primitive],
    });
    providers.push(provider);
    await provider.create('vm-events', spec());
    const vm = primitive.get('vm-events')!;
    await new Promise<void>((resolve) =>
      vm.console.ended ? resolve() : vm.console.once('end', () => resolve()),
    );
    expect(events).toEqual(['first-line', 'kernel-panic', 'guest-reboot']);
  });

  it('should drain a 50 MB console flood without stalling the VMM and with bounded memory', async () => {
    const floodBytes = 50 * 1000 * 1000; // 625 000 lines of 80 bytes
    const lastLine = `chatter ${String(floodBytes / 80 - 1).padStart(8, '0')}`;
    const maxBytes = 256 * 1024;
    const { primitive, provider } = setup(
      { console: { maxLines: 2000, maxBytes } },
      { consoleFloodBytes: floodBytes },
    );
    collectGarbage();
    const heapBefore = process.memoryUsage().heapUsed;
    const rssBefore = process.memoryUsage().rss;

    await provider.create('vm-flood', spec());
    const vm = primitive.get('vm-flood')!;
    const client = await provider.client('vm-flood');
    // Draining 50 MB is CPU work for both processes: seconds when idle, several times that on a loaded host.
    const flooded = vm.console.waitForLine((line) => line.includes(lastLine), { timeoutMs: 150_000 });
    let answers = 0;
    let done = false;
    void flooded.finally(() => {
      done = true;
    });
    // The API answers while the guest floods: the VMM is never blocked on its stdout.
    while (!done) {
      expect((await client.describeInstance()).state).toBe('Running');
      answers += 1;
    }
    await flooded;
    expect(answers).toBeGreaterThan(0);

    const stats = vm.console.stats();
    expect(stats.bytesRead).toBeGreaterThanOrEqual(floodBytes);
    expect(stats.bytes).toBeLessThanOrEqual(maxBytes);
    expect(stats.lines).toBeLessThanOrEqual(2000);
    expect(vm.console.tail(1)[0]).toContain(lastLine);

    collectGarbage();
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    // Keeping the flood would hold > 50 MB of strings; the buffer holds 256 KiB.
    expect(heapGrowth).toBeLessThan(16 * 1024 * 1024);
    expect(rssGrowth).toBeLessThan(64 * 1024 * 1024);
  }, 180_000);

  it('should keep a slow follower bounded during a flood and tell it what it missed', async () => {
    const { primitive, provider } = setup({}, { consoleFloodBytes: 4 * 1000 * 1000 });
    await provider.create('vm-slow', spec());
    const vm = primitive.get('vm-slow')!;
    const iterator = vm.console.follow({ maxPendingLines: 100 });
    await vm.console.waitForLine('chatter 00049999', { timeoutMs: 30_000 });
    const first = await iterator.next();
    expect(first.value).toMatch(/^… \[dropped \d+ lines: the follower fell behind\]$/);
    await iterator.return?.();
    expect(vm.console.stats().droppedFollowerLines).toBeGreaterThan(0);
  });

  it('should read the console from a FIFO given as serial output, and the VMM log from stdout', async () => {
    const { primitive, provider } = setup({ source: 'serial-file' });
    await provider.create('vm-fifo', spec());
    const vmDir = join(dir, 'state', 'vms', 'vm-fifo');
    expect((await lstat(join(vmDir, consoleFifoName))).isFIFO()).toBe(true);
    const vm = primitive.get('vm-fifo')!;
    expect(await vm.console.waitForLine(readyLine, { timeoutMs: 10_000 })).toBe(readyLine);
    expect(vm.console.tail()[0]).toMatch(/Linux version/);
    // Nothing of the guest reached the VMM log.
    expect(vm.vmmLog.tail().some((line) => line.includes(readyLine))).toBe(false);

    await (await provider.client('vm-fifo')).sendCtrlAltDel();
    await vm.console.waitForLine('reboot: Restarting system', { timeoutMs: 10_000 });
    // The VMM exits after the reboot: the FIFO reader notices and ends the capture.
    await new Promise<void>((resolve) =>
      vm.console.ended ? resolve() : vm.console.once('end', () => resolve()),
    );
    await provider.destroy('vm-fifo');
  });

  it('should write capped, rotated log files and publish them as facts', async () => {
    const { primitive, provider } = setup(
      { logFiles: { maxBytes: 64 * 1024, maxFiles: 2 } },
      { consoleFloodBytes: 1000 * 1000 },
    );
    const info = await provider.create('vm-logs', spec());
    const vmDir = join(dir, 'state', 'vms', 'vm-logs');
    expect(info.facts.console).toEqual({
      consoleLogPath: join(vmDir, 'console.log'),
      vmmLogPath: join(vmDir, 'vmm.log'),
    });
    const vm = primitive.get('vm-logs')!;
    await vm.console.waitForLine('chatter 00012499', { timeoutMs: 20_000 });
    await vm.console.flushLogFile();
    const current = await readFile(join(vmDir, 'console.log'), 'utf8');
    const previous = await readFile(join(vmDir, 'console.log.1'), 'utf8');
    expect(Buffer.byteLength(current)).toBeLessThanOrEqual(64 * 1024);
    expect(Buffer.byteLength(previous)).toBeLessThanOrEqual(64 * 1024);
    expect(current.trimEnd().split('\n').at(-1)).toContain('chatter 00012499');
    await expect(lstat(join(vmDir, 'console.log.2'))).rejects.toThrow(/ENOENT/);
  });
});
