import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { FirecrackerVmProvider, type VmSpec } from '@microvm/core';
import { firecrackerSimulatorPath, simulatorEnvironment } from '@microvm/simulator';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { type BenchRow, measure, report, summarize } from '../../../bench/report.js';
import { ConsoleCapture, consolePrimitive } from '../src/index.js';

setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc') as () => void;
const mebibyte = 1024 * 1024;
const rows: BenchRow[] = [];
let dir: string;

function heapUsedAfterGc(): number {
  collectGarbage();
  return process.memoryUsage().heapUsed;
}

/** 1 MiB of console text in 80-byte lines (kernel-log like), optionally with CRLF and multi-byte characters. */
function consoleChunk(variant: 'ascii' | 'utf8-crlf'): Buffer {
  const lines: string[] = [];
  let bytes = 0;
  for (let index = 0; bytes < mebibyte; index += 1) {
    const line =
      variant === 'ascii'
        ? `[ ${String(index).padStart(10, '0')}] virtio_blk virtio0: [vda] 4096 512-byte logical blocks\n`
        : `[ ${String(index).padStart(10, '0')}] état du périphérique ✓ 🚀 日本語 テキスト\r\n`;
    lines.push(line);
    bytes += Buffer.byteLength(line);
  }
  return Buffer.from(lines.join('')).subarray(0, mebibyte);
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mvcb-'));
  await writeFile(join(dir, 'vmlinux'), 'not a kernel');
  await writeFile(join(dir, 'rootfs.ext4'), Buffer.alloc(4096));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  report('console', '@microvm/console: capture throughput and memory per VM', rows);
});

function spec(): VmSpec {
  return {
    bootSource: { kernelImagePath: join(dir, 'vmlinux'), bootArgs: 'console=ttyS0 reboot=k panic=1' },
    machine: { vcpuCount: 1, memSizeMib: 128 },
    drives: [
      { driveId: 'rootfs', pathOnHost: join(dir, 'rootfs.ext4'), isRootDevice: true, isReadOnly: false },
    ],
  };
}

describe('console capture', () => {
  for (const variant of ['ascii', 'utf8-crlf'] as const) {
    it(`line buffer throughput (${variant}, 64 MiB in 64 KiB chunks)`, async () => {
      const chunk = consoleChunk(variant);
      const pieces = Array.from({ length: 16 }, (_, index) =>
        chunk.subarray(index * 65536, (index + 1) * 65536),
      );
      const durations = await measure(
        5,
        async () => {
          const capture = new ConsoleCapture();
          for (let round = 0; round < 64; round += 1) for (const piece of pieces) capture.write(piece);
          capture.end();
        },
        { warmup: 1 },
      );
      const summary = summarize(durations);
      rows.push({
        name: `line buffer, ${variant}`,
        figures: { ...summary, megabytesPerSecond: Math.round(64 / (summary.p50Ms / 1000)) },
      });
    });
  }

  it('real simulator flood through the primitive (50 MB of console chatter)', async () => {
    const floodBytes = 50 * 1000 * 1000;
    const lastLine = `chatter ${String(floodBytes / 80 - 1).padStart(8, '0')}`;
    const durations: number[] = [];
    const primitive = consolePrimitive();
    const provider = new FirecrackerVmProvider({
      stateDir: join(dir, 'state'),
      firecrackerBinary: firecrackerSimulatorPath,
      env: simulatorEnvironment({ consoleFloodBytes: floodBytes }),
      primitives: [primitive],
    });
    try {
      for (let run = 0; run < 3; run += 1) {
        const vmId = `flood-${run}`;
        await provider.create(vmId, spec());
        const capture = primitive.get(vmId)!.console;
        await capture.waitForLine('microvm-simulator: guest ready', { timeoutMs: 10_000 });
        const started = performance.now();
        await capture.waitForLine((line) => line.includes(lastLine), { timeoutMs: 60_000, fromTail: 0 });
        durations.push(performance.now() - started);
        await provider.destroy(vmId);
      }
    } finally {
      await provider.close();
    }
    const summary = summarize(durations);
    rows.push({
      name: 'simulator flood, end to end',
      figures: { ...summary, megabytesPerSecond: Math.round(floodBytes / mebibyte / (summary.p50Ms / 1000)) },
    });
  });

  it('memory held per VM with full buffers (default bounds: 1000 lines, 1 MiB)', () => {
    const vmCount = 50;
    const line = `[ 12.345678] ${'x'.repeat(100)}\n`;
    const heapBefore = heapUsedAfterGc();
    const captures: ConsoleCapture[] = [];
    for (let index = 0; index < vmCount; index += 1) {
      const console = new ConsoleCapture();
      const vmmLog = new ConsoleCapture();
      // Far more than the bounds: each buffer ends full.
      for (let written = 0; written < 5000; written += 1) {
        console.write(line);
        vmmLog.write(line);
      }
      captures.push(console, vmmLog);
    }
    const heapPerVm = (heapUsedAfterGc() - heapBefore) / vmCount;
    const bufferBytesPerVm = captures.reduce((sum, capture) => sum + capture.stats().bytes, 0) / vmCount;
    rows.push({
      name: `memory per VM (${vmCount} VMs, 114-byte lines)`,
      figures: {
        bufferKibPerVm: Math.round(bufferBytesPerVm / 1024),
        heapKibPerVm: Math.round(heapPerVm / 1024),
      },
    });
    for (const capture of captures) capture.end();
  });

  // Heap after a full GC, not RSS: this process ran the floods before, and RSS shrinking as the allocator returns
  // their pages made an RSS delta meaningless (it came out negative).
  it('host heap per running VM after each printed 2 MB (simulator, 8 VMs)', async () => {
    const vmCount = 8;
    const primitive = consolePrimitive();
    const provider = new FirecrackerVmProvider({
      stateDir: join(dir, 'state-heap'),
      firecrackerBinary: firecrackerSimulatorPath,
      env: simulatorEnvironment({ consoleFloodBytes: 2 * 1000 * 1000 }),
      primitives: [primitive],
    });
    try {
      const heapBefore = heapUsedAfterGc();
      for (let index = 0; index < vmCount; index += 1) await provider.create(`heap-${index}`, spec());
      for (let index = 0; index < vmCount; index += 1) {
        await primitive.get(`heap-${index}`)!.console.waitForLine('chatter 00024999', { timeoutMs: 30_000 });
      }
      const heapPerVm = (heapUsedAfterGc() - heapBefore) / vmCount;
      const bufferBytes = primitive.get('heap-0')!.console.stats().bytes;
      rows.push({
        name: `host process per running VM (${vmCount} VMs)`,
        figures: {
          bufferKibPerVm: Math.round(bufferBytes / 1024),
          heapKibPerVm: Math.round(heapPerVm / 1024),
        },
      });
      for (let index = 0; index < vmCount; index += 1) await provider.destroy(`heap-${index}`);
    } finally {
      await provider.close();
    }
  });
});
