import { once } from 'node:events';
import type { Socket } from 'node:net';
import { firecrackerSimulatorPath, jailerSimulatorPath } from '@microvm/simulator';
import { connectVsock, VsockError } from '@microvm/vsock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type ComposedProvider, FirecrackerComposer } from '../../src/index.js';
import { createTestHost, leftoversOf, type TestHost } from './host.js';

/**
 * The vsock scenarios of @microvm/vsock's own suite, with the jailer on: the device socket and the guest-to-host
 * listener sockets then live inside the chroot, which is what broke the seed's default composition.
 */
const ECHO_PORT = 5000;
const CONTROL_PORT = 5001;

let host: TestHost;
const providers: ComposedProvider[] = [];

beforeAll(async () => {
  host = await createTestHost('v');
});

afterEach(async () => {
  for (const microvms of providers.splice(0)) {
    for (const vm of await microvms.provider.list())
      await microvms.provider.destroy(vm.vmId).catch(() => undefined);
    await microvms.close();
  }
});

afterAll(async () => {
  await host?.cleanup();
});

function jailedVsock(
  options: { guestReadyMs?: number; listeners?: Record<number, (socket: Socket) => void> } = {},
) {
  const microvms = FirecrackerComposer.bare()
    .with('vsock', { ...(options.listeners && { listeners: options.listeners }) })
    .with('jailer', {
      jailerBinary: jailerSimulatorPath,
      chrootBaseDir: host.chrootBaseDir,
      parentCgroup: host.parentCgroup,
    })
    .provider({
      stateDir: host.stateDir,
      firecrackerBinary: firecrackerSimulatorPath,
      socketReadyTimeoutMs: 15_000,
      ...(options.guestReadyMs !== undefined && {
        env: { MICROVM_SIMULATOR_GUEST_READY_MS: String(options.guestReadyMs) },
      }),
    });
  providers.push(microvms);
  return microvms;
}

async function roundTrip(socket: Socket, text: string): Promise<string> {
  socket.write(text);
  const [reply] = (await once(socket, 'data')) as [Buffer];
  return reply.toString('utf8');
}

async function caught(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => undefined,
    (error: unknown) => error,
  );
}

const image = () => ({ kernel: host.kernel, rootfs: host.rootfs });

describe('vsock with the jailer on (simulator)', () => {
  it('should put the device socket in the jail and connect once the guest listens', async () => {
    // The guest listens 10 s after InstanceStart: the first connect ends well before, even on a slow host.
    const microvms = jailedVsock({ guestReadyMs: 10_000 });
    const vm = await microvms.create('jv-early', image());
    expect(vm.vsock!.hostUdsPath.startsWith(vm.facts.jail!.rootDir)).toBe(true);
    const early = await caught(vm.vsock!.connect(ECHO_PORT, { timeoutMs: 2_000 }));
    expect(VsockError.hasReason(early, 'refused')).toBe(true);
    const socket = await vm.vsock!.connect(ECHO_PORT, { timeoutMs: 30_000 });
    expect(await roundTrip(socket, 'hello jail\n')).toBe('hello jail\n');
    socket.destroy();
  });

  it('should report a refused port, and time out or abort while the VM is paused', async () => {
    const microvms = jailedVsock();
    const vm = await microvms.create('jv-refuse', image());
    const refused = await caught(vm.vsock!.connect(4242, { timeoutMs: 3_000 }));
    expect(VsockError.hasReason(refused, 'refused')).toBe(true);
    await vm.pause();
    await expect(vm.vsock!.connect(ECHO_PORT, { timeoutMs: 300 })).rejects.toMatchObject({
      code: 'ERR_MICROVM_TIMEOUT',
    });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('gave up')), 100);
    await expect(
      vm.vsock!.connect(ECHO_PORT, { timeoutMs: 10_000, signal: controller.signal }),
    ).rejects.toMatchObject({ code: 'ERR_MICROVM_ABORTED' });
    await vm.resume();
  });

  it('should serve a guest-initiated connection on a listener inside the jail', async () => {
    const microvms = jailedVsock({ listeners: { 52: (socket) => socket.end('from the host\n') } });
    const vm = await microvms.create('jv-listen', image());
    const control = await connectVsock(vm.vsock!.hostUdsPath, CONTROL_PORT, { timeoutMs: 5_000 });
    control.write('DIAL 52\n');
    const [line] = (await once(control, 'data')) as [Buffer];
    expect(line.toString('utf8')).toContain('from the host');
    control.destroy();
  });

  it('should carry 100 parallel connections', async () => {
    const microvms = jailedVsock();
    const vm = await microvms.create('jv-many', image());
    const sockets = await Promise.all(
      Array.from({ length: 100 }, () => vm.vsock!.connect(ECHO_PORT, { timeoutMs: 20_000 })),
    );
    const answers = await Promise.all(
      sockets.map((socket, index) => roundTrip(socket, `message ${index}\n`)),
    );
    expect(answers).toEqual(sockets.map((_, index) => `message ${index}\n`));
    for (const socket of sockets) socket.destroy();
  });

  it('should restore a clone in its own jail with its own socket, both serving, and leave nothing', async () => {
    const microvms = jailedVsock();
    const source = await microvms.create('jv-source', image());
    const snapshot = await source.snapshot({ snapshotId: 'jv-snap' });
    const clone = await microvms.restore('jv-clone', snapshot.snapshotId, { resume: true });
    expect(clone.vsock!.guestCid).toBe(source.vsock!.guestCid);
    expect(clone.vsock!.hostUdsPath).not.toBe(source.vsock!.hostUdsPath);
    expect(clone.vsock!.hostUdsPath.startsWith(clone.facts.jail!.rootDir)).toBe(true);
    // The snapshot resets the transport: the first stream on each VM may end, a new one works.
    for (const vm of [clone, source]) {
      let answer: string | undefined;
      for (let attempt = 0; attempt < 3 && answer === undefined; attempt += 1) {
        const socket = await vm.vsock!.connect(ECHO_PORT, { timeoutMs: 5_000 });
        answer = await roundTrip(socket, `${vm.vmId}\n`).catch(() => undefined);
        socket.destroy();
      }
      expect(answer).toBe(`${vm.vmId}\n`);
    }
    await clone.destroy();
    await source.destroy();
    await microvms.provider.deleteSnapshot('jv-snap');
    expect(await leftoversOf(host, 'jv-clone')).toEqual([]);
    expect(await leftoversOf(host, 'jv-source')).toEqual([]);
  });
});
