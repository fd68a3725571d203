import { lstat, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { LaunchCommand, PrepareContext, TeardownContext, VmFacts, VmSpec } from '@microvm/core';
import { MicrovmError } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { consoleFifoName, consolePrimitive } from './console-primitive.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'console-primitive-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

function prepareContext(overrides: { spec?: Partial<VmSpec>; facts?: VmFacts; args?: string[] } = {}) {
  const vmDir = join(dir, 'vms', 'vm-1');
  const launch: LaunchCommand = {
    executable: 'firecracker',
    args: overrides.args ?? [],
    apiSocketPath: join(vmDir, 'api.sock'),
  };
  const spec = {
    bootSource: { kernelImagePath: '/k', bootArgs: 'console=ttyS0' },
    machine: { vcpuCount: 1, memSizeMib: 128 },
    ...overrides.spec,
  } as VmSpec;
  return {
    vmId: 'vm-1',
    vmDir,
    stateDir: dir,
    leases: {} as never,
    mode: 'boot',
    spec,
    launch,
    facts: overrides.facts ?? {},
    signal: new AbortController().signal,
    persist: async () => undefined,
  } satisfies PrepareContext as PrepareContext;
}

function teardownContext(context: PrepareContext): TeardownContext {
  return { ...context, state: 'stopped' };
}

describe('consolePrimitive', () => {
  it.each([
    [{ source: 'serial' }, 'source'],
    [{ console: { maxLines: -5 } }, 'console.maxLines'],
    [{ vmmLog: { maxBytes: 10 } }, 'vmmLog.maxBytes'],
    [{ console: 'big' }, 'console'],
    [{ logFiles: { dir: 'relative' } }, 'logFiles.dir'],
    [{ logFiles: { maxBytes: 1 } }, 'logFiles.maxBytes'],
    [{ logFiles: { maxFiles: 1000 } }, 'logFiles.maxFiles'],
  ])('should reject %j naming %s, before touching the host', async (options, field) => {
    const before = await readdir(dir);
    let error: unknown;
    try {
      consolePrimitive(options as never);
    } catch (caught) {
      error = caught;
    }
    expect(MicrovmError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: 'ERR_MICROVM_INVALID_INPUT', field });
    expect(await readdir(dir)).toEqual(before);
  });

  it('should leave the spec alone and read stdout by default', async () => {
    const primitive = consolePrimitive();
    const context = prepareContext();
    await primitive.prepare?.(context);
    expect(context.spec.serial).toBeUndefined();
    expect(context.facts.console).toBeUndefined();
  });

  it('should redirect the serial console to a FIFO in the VM folder and remove it on teardown', async () => {
    const primitive = consolePrimitive({ source: 'serial-file' });
    const context = prepareContext();
    await mkdir(context.vmDir, { recursive: true });
    await primitive.prepare?.(context);
    const fifo = join(context.vmDir, consoleFifoName);
    expect(context.spec.serial?.serialOutPath).toBe(fifo);
    expect((await lstat(fifo)).isFIFO()).toBe(true);
    await primitive.teardown?.(teardownContext(context));
    await expect(lstat(fifo)).rejects.toThrow(/ENOENT/);
  });

  it('should create the FIFO inside an existing jail, owned by the jail user', async () => {
    const rootDir = join(dir, 'jail', 'root');
    await mkdir(rootDir, { recursive: true });
    const facts: VmFacts = {
      jail: { rootDir, jailDir: join(dir, 'jail'), uid: 1234, gid: 2345, stagedFiles: {} },
    };
    const primitive = consolePrimitive();
    const context = prepareContext({ facts });
    await primitive.prepare?.(context);
    expect(context.spec.serial?.serialOutPath).toBe(`/${consoleFifoName}`);
    const stats = await lstat(join(rootDir, consoleFifoName));
    expect(stats.isFIFO()).toBe(true);
    expect([stats.uid, stats.gid]).toEqual([1234, 2345]);
  });

  it('should pick the FIFO automatically when the launch daemonizes', async () => {
    const primitive = consolePrimitive();
    const context = prepareContext({ args: ['--daemonize'] });
    await mkdir(context.vmDir, { recursive: true });
    await primitive.prepare?.(context);
    expect(context.spec.serial?.serialOutPath).toBe(join(context.vmDir, consoleFifoName));
  });

  it("should refuse a regular serial file for source 'serial-file' and leave it as it was", async () => {
    const file = join(dir, 'serial.log');
    await writeFile(file, 'theirs');
    const primitive = consolePrimitive({ source: 'serial-file' });
    const context = prepareContext({ spec: { serial: { serialOutPath: file } } });
    const error = await primitive.prepare?.(context).then(
      () => undefined,
      (reason: unknown) => reason,
    );
    expect(error).toMatchObject({ code: 'ERR_MICROVM_INVALID_INPUT', field: 'spec.serial.serialOutPath' });
    expect((await lstat(file)).isFile()).toBe(true);
    await primitive.teardown?.(teardownContext(context));
    expect((await lstat(file)).isFile()).toBe(true);
  });

  it('should publish the log file paths as facts', async () => {
    const primitive = consolePrimitive({ logFiles: { dir: join(dir, 'logs') } });
    const context = prepareContext();
    await primitive.prepare?.(context);
    expect(context.facts.console).toEqual({
      consoleLogPath: join(dir, 'logs', 'vm-1.console.log'),
      vmmLogPath: join(dir, 'logs', 'vm-1.vmm.log'),
    });
  });
});
