import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FirecrackerVmProvider, type VmPrimitive, type VmSpec } from '@microvm/core';
import { firecrackerSimulatorPath, simulatorEnvironment } from '@microvm/simulator';

export interface Sandbox {
  dir: string;
  stateDir: string;
  spec(overrides?: Partial<VmSpec>): VmSpec;
  provider(
    primitives: VmPrimitive[],
    env?: Parameters<typeof simulatorEnvironment>[0],
  ): FirecrackerVmProvider;
  cleanup(): Promise<void>;
}

/** A short temp dir (socket paths must stay under 107 bytes) with a fake kernel and rootfs. */
export async function createSandbox(): Promise<Sandbox> {
  const dir = await mkdtemp(join(tmpdir(), 'vsk-'));
  const kernel = join(dir, 'vmlinux');
  const rootfs = join(dir, 'rootfs.ext4');
  await writeFile(kernel, 'not a real kernel');
  await writeFile(rootfs, Buffer.alloc(4096));
  const providers: FirecrackerVmProvider[] = [];
  const stateDir = join(dir, 'state');
  return {
    dir,
    stateDir,
    spec: (overrides = {}) => ({
      bootSource: { kernelImagePath: kernel, bootArgs: 'console=ttyS0 reboot=k panic=1' },
      machine: { vcpuCount: 1, memSizeMib: 128 },
      drives: [{ driveId: 'rootfs', pathOnHost: rootfs, isRootDevice: true, isReadOnly: false }],
      ...overrides,
    }),
    provider(primitives, env = {}) {
      const provider = new FirecrackerVmProvider({
        stateDir,
        firecrackerBinary: firecrackerSimulatorPath,
        primitives,
        socketReadyTimeoutMs: 30_000,
        env: simulatorEnvironment({ guestReadyMs: 0, ...env }),
      });
      providers.push(provider);
      return provider;
    },
    async cleanup() {
      // Whatever a test left running is destroyed here, so a failing test leaks nothing.
      for (const provider of providers.splice(0)) {
        for (const vm of await provider.list().catch(() => [])) {
          await provider.destroy(vm.vmId).catch(() => undefined);
        }
        await provider.close();
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Writes `text` and reads until as many bytes came back; undefined when the stream ended first. */
export function roundTrip(socket: Socket, text: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    let received = '';
    const onData = (chunk: Buffer) => {
      received += String(chunk);
      if (received.length >= text.length) finish(received);
    };
    const onClose = () => finish(undefined);
    const finish = (result: string | undefined) => {
      socket.off('data', onData);
      socket.off('close', onClose);
      socket.off('end', onClose);
      resolve(result);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
    socket.once('end', onClose);
    socket.on('error', () => {});
    socket.write(text);
  });
}

export async function caught(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}

/** Reads one line from a stream that is not flowing yet. */
export function readLine(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += String(chunk);
      const end = buffered.indexOf('\n');
      if (end < 0) return;
      socket.off('data', onData);
      socket.pause();
      const rest = buffered.slice(end + 1);
      if (rest) socket.unshift(Buffer.from(rest));
      resolve(buffered.slice(0, end));
    };
    socket.on('data', onData);
    socket.once('error', reject);
  });
}
