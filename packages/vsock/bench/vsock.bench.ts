import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FirecrackerVmProvider } from '@microvm/core';
import { firecrackerSimulatorPath, simulatorEnvironment } from '@microvm/simulator';
import { afterAll, beforeAll, it } from 'vitest';
import { measure, report, summarize } from '../../../bench/report.js';
import { connectVsock, VsockRpc, vsockPrimitive } from '../src/index.js';

/**
 * Host-side vsock costs against the simulated device: connect + `CONNECT`/`OK` handshake, a small echo round
 * trip, a request/response call of the message layer, and bulk throughput through the echo service. The
 * simulator's muxer is a Node.js process, so these figures bound the driver's overhead, not Firecracker's.
 */
const ECHO_PORT = 5000;
let dir: string;
let provider: FirecrackerVmProvider;
let hostUdsPath: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vsk-bench-'));
  await writeFile(join(dir, 'vmlinux'), 'kernel');
  await writeFile(join(dir, 'rootfs.ext4'), Buffer.alloc(4096));
  provider = new FirecrackerVmProvider({
    stateDir: join(dir, 'state'),
    firecrackerBinary: firecrackerSimulatorPath,
    primitives: [vsockPrimitive()],
    env: simulatorEnvironment({ guestReadyMs: 0 }),
  });
  const vm = await provider.create('bench', {
    bootSource: { kernelImagePath: join(dir, 'vmlinux'), bootArgs: 'console=ttyS0 reboot=k panic=1' },
    machine: { vcpuCount: 1, memSizeMib: 128 },
    drives: [
      { driveId: 'rootfs', pathOnHost: join(dir, 'rootfs.ext4'), isRootDevice: true, isReadOnly: false },
    ],
  });
  hostUdsPath = vm.facts.vsock!.hostUdsPath;
});

afterAll(async () => {
  await provider?.destroy('bench').catch(() => undefined);
  await provider?.close();
  await rm(dir, { recursive: true, force: true });
});

function echo(socket: Socket, payload: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let received = 0;
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received < payload.length) return;
      socket.off('data', onData);
      socket.off('error', reject);
      resolve();
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(payload);
  });
}

it('measures vsock connect latency, round trips and throughput', async () => {
  const connects = await measure(
    200,
    async () => {
      const socket = await connectVsock(hostUdsPath, ECHO_PORT, { timeoutMs: 5_000 });
      socket.destroy();
    },
    { warmup: 20 },
  );

  const socket = await connectVsock(hostUdsPath, ECHO_PORT, { timeoutMs: 5_000 });
  const small = Buffer.from('ping\n');
  const roundTrips = await measure(1_000, () => echo(socket, small), { warmup: 50 });

  const rpc = new VsockRpc(await connectVsock(hostUdsPath, ECHO_PORT, { timeoutMs: 5_000 }), {
    handlers: { ping: () => 'pong' },
  });
  // Through the echo service a call is two trips: the request comes back and is answered, then the answer.
  const calls = await measure(
    1_000,
    async () => {
      await rpc.call('ping');
    },
    { warmup: 50 },
  );
  await rpc.close();

  const totalBytes = 64 * 1024 * 1024;
  const chunk = Buffer.alloc(256 * 1024, 0x61);
  const started = performance.now();
  for (let sent = 0; sent < totalBytes; sent += chunk.length) await echo(socket, chunk);
  const seconds = (performance.now() - started) / 1000;
  socket.destroy();

  report('vsock', 'vsock against the simulator (host side)', [
    { name: 'connect + CONNECT/OK handshake', figures: summarize(connects) },
    { name: 'echo round trip, 5 bytes', figures: summarize(roundTrips) },
    { name: 'VsockRpc call via echo (2 trips)', figures: summarize(calls) },
    {
      name: 'echo throughput, 256 KiB chunks',
      figures: {
        megabytes: totalBytes / 1024 / 1024,
        seconds: Math.round(seconds * 1000) / 1000,
        'MB/s (each way)': Math.round((totalBytes / 1024 / 1024 / seconds) * 10) / 10,
      },
    },
  ]);
});
