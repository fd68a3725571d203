import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { join } from 'node:path';
import { LeaseStore, type MicrovmError } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { connectVsock, GUEST_CID_POOL, VsockError, VsockRpc, vsockPrimitive } from '../../src/index.js';
import { caught, createSandbox, readLine, roundTrip, type Sandbox } from './helpers.js';

const ECHO_PORT = 5000;
const CONTROL_PORT = 5001;

let sandbox: Sandbox;

beforeEach(async () => {
  sandbox = await createSandbox();
});

afterEach(async () => {
  await sandbox.cleanup();
});

/** Makes the simulated guest dial the host on `port`; resolves with the guest's end of the new connection. */
async function guestDials(hostUdsPath: string, port: number, payload?: string): Promise<Socket> {
  const control = await connectVsock(hostUdsPath, CONTROL_PORT, { timeoutMs: 5_000 });
  control.write(`DIAL ${port}${payload === undefined ? '' : ` ${payload}`}\n`);
  return control;
}

describe('vsock against the simulator (no jailer)', () => {
  it('should connect before the guest listens: refused at first, then retried until it answers', async () => {
    const vsock = vsockPrimitive();
    // The guest listens 10 s after InstanceStart: the first connect ends well before, even on a slow host.
    const provider = sandbox.provider([vsock], { guestReadyMs: 10_000 });
    const vm = await provider.create('vm-early', sandbox.spec());
    expect(vm.facts.vsock).toEqual({
      guestCid: 3,
      hostUdsPath: join(sandbox.stateDir, 'vms', 'vm-early', 'vsock.sock'),
    });
    expect(vm.spec.vsock).toEqual({ guestCid: 3, udsPath: vm.facts.vsock?.hostUdsPath });
    const early = await caught(vsock.connect('vm-early', ECHO_PORT, { timeoutMs: 2_000 }));
    expect(VsockError.hasReason(early, 'refused')).toBe(true);
    const socket = await vsock.connect('vm-early', ECHO_PORT, { timeoutMs: 30_000 });
    expect(await roundTrip(socket, 'hello guest\n')).toBe('hello guest\n');
    socket.destroy();
  });

  it('should report a port nobody listens on as refused', async () => {
    const vsock = vsockPrimitive();
    const provider = sandbox.provider([vsock]);
    await provider.create('vm-refuse', sandbox.spec());
    const error = await caught(vsock.connect('vm-refuse', 4242, { timeoutMs: 3_000 }));
    expect(VsockError.hasReason(error, 'refused')).toBe(true);
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_SOCKET_UNAVAILABLE');
  });

  it('should time out and abort while the guest cannot answer (paused VM)', async () => {
    const vsock = vsockPrimitive();
    const provider = sandbox.provider([vsock]);
    await provider.create('vm-paused', sandbox.spec());
    await provider.pause('vm-paused');
    const timedOut = await caught(vsock.connect('vm-paused', ECHO_PORT, { timeoutMs: 300 }));
    expect((timedOut as MicrovmError).code).toBe('ERR_MICROVM_TIMEOUT');
    const controller = new AbortController();
    const connecting = caught(
      vsock.connect('vm-paused', ECHO_PORT, { timeoutMs: 10_000, signal: controller.signal }),
    );
    setTimeout(() => controller.abort(), 50);
    expect(((await connecting) as MicrovmError).code).toBe('ERR_MICROVM_ABORTED');
    // Once resumed, the guest answers again.
    await provider.resume('vm-paused');
    const socket = await vsock.connect('vm-paused', ECHO_PORT, { timeoutMs: 5_000 });
    expect(await roundTrip(socket, 'back\n')).toBe('back\n');
    socket.destroy();
  });

  it('should report a destroyed VM as a closed device and free its CID', async () => {
    const vsock = vsockPrimitive();
    const provider = sandbox.provider([vsock]);
    const vm = await provider.create('vm-gone', sandbox.spec());
    await provider.destroy('vm-gone');
    const error = await caught(vsock.connect(vm.facts.vsock!, ECHO_PORT, { timeoutMs: 2_000 }));
    expect(VsockError.hasReason(error, 'device-closed')).toBe(true);
    expect(((await caught(vsock.connect('vm-gone', ECHO_PORT))) as MicrovmError).code).toBe(
      'ERR_MICROVM_VM_NOT_FOUND',
    );
    expect(await new LeaseStore(sandbox.stateDir).list(GUEST_CID_POOL)).toEqual([]);
  });

  it('should serve guest-initiated connections on declared and added listeners, and remove them on destroy', async () => {
    const vsock = vsockPrimitive({
      listeners: {
        52: async (socket, info) => {
          const line = await readLine(socket);
          socket.end(`host got '${line}' from ${info.vmId}\n`);
        },
      },
    });
    const provider = sandbox.provider([vsock]);
    const vm = await provider.create('vm-dial', sandbox.spec());
    const hostUdsPath = vm.facts.vsock!.hostUdsPath;
    expect(existsSync(`${hostUdsPath}_52`)).toBe(true);
    const guest = await guestDials(hostUdsPath, 52, 'hello host');
    expect(await readLine(guest)).toBe("host got 'hello host' from vm-dial");
    guest.destroy();

    const added = await vsock.listen('vm-dial', 53, (socket) => socket.end('added\n'));
    const second = await guestDials(hostUdsPath, 53);
    expect(await readLine(second)).toBe('added');
    second.destroy();
    const refused = await guestDials(hostUdsPath, 54);
    expect(await readLine(refused)).toBe('ERR refused');
    refused.destroy();

    await provider.destroy('vm-dial');
    expect(existsSync(`${hostUdsPath}_52`)).toBe(false);
    expect(existsSync(added.path)).toBe(false);
  });

  it('should carry 100 parallel connections', async () => {
    const vsock = vsockPrimitive();
    const provider = sandbox.provider([vsock]);
    await provider.create('vm-many', sandbox.spec());
    const sockets = await Promise.all(
      Array.from({ length: 100 }, () => vsock.connect('vm-many', ECHO_PORT, { timeoutMs: 20_000 })),
    );
    const answers = await Promise.all(
      sockets.map((socket, index) => roundTrip(socket, `message ${index}\n`)),
    );
    expect(answers).toEqual(sockets.map((_, index) => `message ${index}\n`));
    for (const socket of sockets) socket.destroy();
  });

  it('should give a restored clone its own socket and the source CID, both VMs serving', async () => {
    const vsock = vsockPrimitive({ listeners: { 52: (socket) => socket.end('from the host\n') } });
    const provider = sandbox.provider([vsock]);
    const source = await provider.create('vm-source', sandbox.spec());
    const snapshot = await provider.snapshot('vm-source', { snapshotId: 'snap-1' });
    const clone = await provider.restore('vm-clone', snapshot.snapshotId);
    expect(clone.facts.vsock?.guestCid).toBe(source.facts.vsock?.guestCid);
    expect(clone.facts.vsock?.hostUdsPath).toBe(join(sandbox.stateDir, 'vms', 'vm-clone', 'vsock.sock'));
    expect(clone.spec.vsock?.udsPath).not.toBe(source.spec.vsock?.udsPath);

    // A restored guest handles the transport reset queued in the snapshot at its first vsock interrupt, and
    // the snapshot reset the source's connections: the first stream on each may end, a new one works.
    for (const vmId of ['vm-clone', 'vm-source']) {
      let answer: string | undefined;
      for (let attempt = 0; attempt < 3 && answer === undefined; attempt += 1) {
        const socket = await vsock.connect(vmId, ECHO_PORT, { timeoutMs: 5_000 });
        answer = await roundTrip(socket, `${vmId}\n`);
        socket.destroy();
      }
      expect(answer).toBe(`${vmId}\n`);
    }
    const guest = await guestDials(clone.facts.vsock!.hostUdsPath, 52);
    expect(await readLine(guest)).toBe('from the host');
    guest.destroy();
    await provider.destroy('vm-clone');
    // The source still serves after its clone is gone.
    const socket = await vsock.connect('vm-source', ECHO_PORT, { timeoutMs: 5_000 });
    expect(await roundTrip(socket, 'still here\n')).toBe('still here\n');
    socket.destroy();
  });

  it('should run request/response over a guest-initiated connection and fail pending calls on a broken peer', async () => {
    const vsock = vsockPrimitive();
    const provider = sandbox.provider([vsock]);
    const vm = await provider.create('vm-rpc', sandbox.spec());
    const hostChannel = new Promise<VsockRpc>((resolve) => {
      void vsock.listen('vm-rpc', 60, (socket) => {
        resolve(new VsockRpc(socket, { handlers: { 'host.time': () => 'noon' } }));
      });
    });
    const guestStream = await guestDials(vm.facts.vsock!.hostUdsPath, 60);
    const guest = new VsockRpc(guestStream, {
      handlers: { 'guest.exec': (params) => ({ ran: (params as { command: string }).command, exitCode: 0 }) },
    });
    const host = await hostChannel;
    expect(await host.call('guest.exec', { command: 'uname' })).toEqual({ ran: 'uname', exitCode: 0 });
    expect(await guest.call('host.time')).toBe('noon');
    expect(
      await Promise.all(
        Array.from({ length: 50 }, (_, index) => host.call('guest.exec', { command: `c${index}` })),
      ),
    ).toHaveLength(50);

    guest.handle('guest.hang', () => new Promise(() => {}));
    const pending = caught(host.call('guest.hang', undefined, { timeoutMs: 20_000 }));
    await provider.kill('vm-rpc');
    const error = await pending;
    expect(VsockError.hasReason(error, 'peer-closed')).toBe(true);
    expect(VsockError.hasReason(await host.closed, 'peer-closed')).toBe(true);
  });

  it('should round-trip messages through the echo service with VsockRpc.connect', async () => {
    const vsock = vsockPrimitive();
    const provider = sandbox.provider([vsock]);
    const vm = await provider.create('vm-echo-rpc', sandbox.spec());
    // The echo service sends our request back, so this side answers it, and the echoed answer settles the call.
    const rpc = await VsockRpc.connect(vm.facts.vsock!.hostUdsPath, ECHO_PORT, {
      timeoutMs: 5_000,
      handlers: { double: (params) => (params as number) * 2 },
    });
    expect(await rpc.call('double', 21)).toBe(42);
    await rpc.close();
    expect(await rpc.closed).toBeUndefined();
  });
});

describe('bad input through the provider', () => {
  it.each([
    ['CID below 3', { guestCid: 2 }, 'ERR_MICROVM_INVALID_INPUT'],
    ['CID taken by another VM', { guestCid: 42 }, 'ERR_MICROVM_HOOK_FAILED'],
    ['socket path over 107 bytes', { long: true }, 'ERR_MICROVM_HOOK_FAILED'],
  ])('should reject %s with a typed error and leave the host as it was', async (_name, input, code) => {
    const vsock = vsockPrimitive({ listeners: { 52: () => {} } });
    const provider = sandbox.provider([vsock]);
    await provider.create(
      'vm-holder',
      sandbox.spec({ vsock: { guestCid: 42, udsPath: join(sandbox.dir, 'h.sock') } }),
    );
    const leases = new LeaseStore(sandbox.stateDir);
    const leasesBefore = await leases.list(GUEST_CID_POOL);
    const vmsBefore = await readdir(join(sandbox.stateDir, 'vms'));
    const filesBefore = await readdir(sandbox.dir);
    const spec =
      'long' in input
        ? sandbox.spec({
            vsock: {
              guestCid: 7,
              udsPath: join(sandbox.dir, `${'s'.repeat(100 - sandbox.dir.length)}.sock`),
            },
          })
        : sandbox.spec({ vsock: { guestCid: input.guestCid, udsPath: join(sandbox.dir, 'x.sock') } });
    const error = await caught(provider.create('vm-bad', spec));
    expect((error as MicrovmError).code).toBe(code);
    expect((error as MicrovmError).isUserError).toBe(true);
    if (code === 'ERR_MICROVM_HOOK_FAILED') {
      expect(((error as MicrovmError).cause as MicrovmError).code).toBe('ERR_MICROVM_INVALID_INPUT');
    }
    expect(await leases.list(GUEST_CID_POOL)).toEqual(leasesBefore);
    expect(await readdir(join(sandbox.stateDir, 'vms'))).toEqual(vmsBefore);
    expect(await readdir(sandbox.dir)).toEqual(filesBefore);
    expect((await provider.list()).map((vm) => vm.vmId)).toEqual(['vm-holder']);
  });

  it.each([0, -1, 0xffff_ffff, 1.5])('should reject port %s with ERR_MICROVM_INVALID_INPUT', async (port) => {
    const vsock = vsockPrimitive();
    const provider = sandbox.provider([vsock]);
    await provider.create('vm-ports', sandbox.spec());
    expect(((await caught(vsock.connect('vm-ports', port))) as MicrovmError).code).toBe(
      'ERR_MICROVM_INVALID_INPUT',
    );
    expect(((await caught(vsock.listen('vm-ports', port, () => {}))) as MicrovmError).code).toBe(
      'ERR_MICROVM_INVALID_INPUT',
    );
  });
});
