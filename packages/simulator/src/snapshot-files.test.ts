import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  crc64,
  decodeVmState,
  encodeVmState,
  type SimulatedVmState,
  SnapshotFileError,
  X86_64_SNAPSHOT_MAGIC,
} from './snapshot-files.js';
import {
  builtFirecrackerPath,
  cleanupSimulators,
  configureColdBoot,
  exitWithin,
  type SimulatorHandle,
  startSimulator,
} from './test-helpers.js';

afterEach(cleanupSimulators);

const state: SimulatedVmState = {
  instanceId: 'vm',
  snapshotType: 'Full',
  createdAtUnixMs: 1,
  machineConfig: {
    vcpu_count: 2,
    mem_size_mib: 256,
    smt: false,
    track_dirty_pages: false,
    huge_pages: 'None',
  },
  kernelCommandLine: 'console=ttyS0',
  drives: [],
  networkInterfaces: [],
  pmem: [],
  vsock: undefined,
  balloon: undefined,
  entropy: undefined,
  mmdsConfig: undefined,
  memoryHotplug: undefined,
  memorySizeBytes: 256 * 1024 * 1024,
  guestUptimeMs: 1000,
};

describe('the vmstate format', () => {
  it('should start with the x86_64 magic and version 10.0.0, and round-trip', () => {
    const data = encodeVmState(state);
    expect(data.readBigUInt64LE(0)).toBe(X86_64_SNAPSHOT_MAGIC);
    expect([data.readUInt16LE(8), data.readUInt16LE(10), data.readUInt16LE(12)]).toEqual([10, 0, 0]);
    expect(JSON.parse(JSON.stringify(decodeVmState(data)))).toEqual(JSON.parse(JSON.stringify(state)));
  });

  it('should compute CRC-64/XZ', () => {
    expect(crc64(Buffer.from('123456789')).toString(16)).toBe('995dc9bbdf1939fa');
  });

  it.each([
    [
      'a flipped payload byte',
      (data: Buffer) => data.writeUInt8(data.readUInt8(30) ^ 0xff, 30),
      'CRC64 validation failed',
    ],
    [
      'a wrong magic',
      (data: Buffer) => data.writeBigUInt64LE(0x0710_1984_aaaa_0000n, 0),
      'Magic value does not match arch',
    ],
    [
      'a newer major version',
      (data: Buffer) => data.writeUInt16LE(11, 8),
      'Snapshot data version 11.0.0 is not supported',
    ],
    ['a truncated file', (data: Buffer) => data.fill(0, 0, 0), 'failed to fill whole buffer'],
  ])('should reject %s', (_name, corrupt, message) => {
    let data = encodeVmState(state);
    corrupt(data);
    if (message === 'failed to fill whole buffer') data = data.subarray(0, data.length - 3);
    expect(() => decodeVmState(data)).toThrow(SnapshotFileError);
    expect(() => decodeVmState(data)).toThrow(message);
  });
});

/** Boots a VM with a NIC and a vsock, pauses it and snapshots it. */
async function bootAndSnapshot(simulator: SimulatorHandle, options: { vsock?: boolean } = {}) {
  await configureColdBoot(simulator);
  const request = async (method: string, path: string, body?: unknown) => {
    const reply = await simulator.request(method, path, body);
    expect(reply.status, `${method} ${path}: ${reply.text}`).toBeLessThan(300);
    return reply;
  };
  await request('PUT', '/machine-config', { vcpu_count: 2, mem_size_mib: 64 });
  await request('PUT', '/network-interfaces/eth0', {
    iface_id: 'eth0',
    host_dev_name: 'tap0',
    guest_mac: '06:00:ac:10:00:02',
  });
  if (options.vsock !== false)
    await request('PUT', '/vsock', { guest_cid: 3, uds_path: join(simulator.dir, 'v.sock') });
  await request('PUT', '/actions', { action_type: 'InstanceStart' });
  await simulator.waitForStdout('guest ready');
  await request('PATCH', '/vm', { state: 'Paused' });
  const snapshotPath = join(simulator.dir, 'vm.snap');
  const memoryPath = join(simulator.dir, 'vm.mem');
  await request('PUT', '/snapshot/create', {
    snapshot_type: 'Full',
    snapshot_path: snapshotPath,
    mem_file_path: memoryPath,
  });
  return { snapshotPath, memoryPath };
}

/** Connects to the vsock UDS, sends `CONNECT port`, then `payload`; resolves with what comes back. */
function vsockRoundTrip(udsPath: string, port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(udsPath);
    let received = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`vsock: got only ${JSON.stringify(received)}`));
    }, 5000);
    socket.on('connect', () => socket.write(`CONNECT ${port}\n`));
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString();
      if (/^OK \d+\n$/.test(received)) socket.write(payload);
      if (received.endsWith(payload)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(received);
      }
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(received);
    });
  });
}

async function vsockEchoWithRetry(udsPath: string, payload: string): Promise<string> {
  let last = '';
  // Bounded by time, not attempts: how long the restored guest takes to listen depends on the host's load.
  const deadline = Date.now() + 20_000;
  while (Date.now() < deadline) {
    last = await vsockRoundTrip(udsPath, 5000, payload).catch(() => '');
    if (last.endsWith(payload)) return last;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return last;
}

describe('snapshots', () => {
  it('should write a vmstate and a sparse memory file of the guest size, overwriting old files', async () => {
    const simulator = await startSimulator();
    writeFileSync(join(simulator.dir, 'vm.snap'), 'x'.repeat(100_000));
    const { snapshotPath, memoryPath } = await bootAndSnapshot(simulator);
    const snapshot = readFileSync(snapshotPath);
    expect(snapshot.readBigUInt64LE(0)).toBe(X86_64_SNAPSHOT_MAGIC);
    expect(snapshot.length).toBeLessThan(100_000);
    const memory = statSync(memoryPath);
    expect(memory.size).toBe(64 * 1024 * 1024);
    expect(memory.blocks * 512).toBeLessThan(memory.size);
    const described = spawnSync(
      process.execPath,
      [builtFirecrackerPath, '--describe-snapshot', snapshotPath],
      { encoding: 'utf8' },
    );
    expect(described.stdout).toBe('v10.0.0\n');
    // The source VM keeps running after a resume.
    expect((await simulator.request('PATCH', '/vm', { state: 'Resumed' })).status).toBe(204);
    expect((await simulator.request('GET', '/')).json().state).toBe('Running');
  });

  it('should drop open vsock connections when a snapshot is created', async () => {
    const simulator = await startSimulator();
    await configureColdBoot(simulator);
    const udsPath = join(simulator.dir, 'v.sock');
    await simulator.request('PUT', '/vsock', { guest_cid: 3, uds_path: udsPath });
    await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
    await simulator.waitForStdout('guest ready');
    const connection = createConnection(udsPath);
    const closed = new Promise<void>((resolve) => connection.once('close', () => resolve()));
    connection.on('error', () => {});
    const established = new Promise<string>((resolve) =>
      connection.once('data', (chunk: Buffer) => resolve(chunk.toString())),
    );
    connection.write('CONNECT 5000\n');
    expect(await established).toMatch(/^OK \d+\n$/);
    await simulator.request('PATCH', '/vm', { state: 'Paused' });
    const create = await simulator.request('PUT', '/snapshot/create', {
      snapshot_path: join(simulator.dir, 's'),
      mem_file_path: join(simulator.dir, 'm'),
    });
    expect(create.status, create.text).toBe(204);
    await closed;
  });

  it('should load into a fresh process with network and vsock overrides, and resume', async () => {
    const source = await startSimulator();
    const { snapshotPath, memoryPath } = await bootAndSnapshot(source);
    await source.kill();
    const restored = await startSimulator();
    const newVsockPath = join(restored.dir, 'restored.sock');
    const load = await restored.request('PUT', '/snapshot/load', {
      snapshot_path: snapshotPath,
      mem_backend: { backend_type: 'File', backend_path: memoryPath },
      resume_vm: true,
      network_overrides: [{ iface_id: 'eth0', host_dev_name: 'tap9', ignored: true }],
      vsock_override: { uds_path: newVsockPath },
    });
    expect(load.status, load.text).toBe(204);
    expect((await restored.request('GET', '/')).json().state).toBe('Running');
    const config = (await restored.request('GET', '/vm/config')).json();
    expect(config['boot-source']).toEqual({ kernel_image_path: '', initrd_path: null, boot_args: null });
    expect(config['machine-config']).toMatchObject({ vcpu_count: 2, mem_size_mib: 64, smt: false });
    expect((config['network-interfaces'] as { host_dev_name: string }[])[0]?.host_dev_name).toBe('tap9');
    expect(config.vsock).toEqual({ guest_cid: 3, uds_path: newVsockPath });
    await restored.waitForStdout('microvm-simulator: restored');
    expect(await vsockEchoWithRetry(newVsockPath, 'ping\n')).toMatch(/^OK \d+\nping\n$/);
    // After the load the process is in runtime mode.
    expect((await restored.request('PUT', '/actions', { action_type: 'InstanceStart' })).status).toBe(400);
  });

  it('should stay Paused after a load without resume_vm until PATCH /vm Resumed', async () => {
    const source = await startSimulator();
    const { snapshotPath, memoryPath } = await bootAndSnapshot(source, { vsock: false });
    await source.kill();
    const restored = await startSimulator();
    const load = await restored.request('PUT', '/snapshot/load', {
      snapshot_path: snapshotPath,
      mem_file_path: memoryPath,
    });
    expect(load.status, load.text).toBe(204);
    expect(load.headers.deprecation).toBe('true');
    expect((await restored.request('GET', '/')).json().state).toBe('Paused');
    expect(restored.stdout()).not.toContain('microvm-simulator: restored');
    expect((await restored.request('PATCH', '/vm', { state: 'Resumed' })).status).toBe(204);
    await restored.waitForStdout('microvm-simulator: restored');
  });

  it.each([
    [
      'an unknown network override',
      { network_overrides: [{ iface_id: 'eth7', host_dev_name: 'tap7' }] },
      'Unknown Network Device',
    ],
  ])('should fail the load and exit 1 for %s', async (_name, extra, message) => {
    const source = await startSimulator();
    const { snapshotPath, memoryPath } = await bootAndSnapshot(source);
    await source.kill();
    const restored = await startSimulator();
    const reply = await restored.request('PUT', '/snapshot/load', {
      snapshot_path: snapshotPath,
      mem_backend: { backend_type: 'File', backend_path: memoryPath },
      ...extra,
    });
    expect(reply.status).toBe(400);
    expect(reply.json().fault_message).toContain(message);
    expect((await exitWithin(restored)).code).toBe(1);
  });

  it('should fail the load and exit 1 when the snapshot has no vsock but an override is given', async () => {
    const source = await startSimulator();
    const { snapshotPath, memoryPath } = await bootAndSnapshot(source, { vsock: false });
    await source.kill();
    const restored = await startSimulator();
    const reply = await restored.request('PUT', '/snapshot/load', {
      snapshot_path: snapshotPath,
      mem_backend: { backend_type: 'File', backend_path: memoryPath },
      vsock_override: { uds_path: join(restored.dir, 'v.sock') },
    });
    expect(reply.json().fault_message).toContain('Unknown Vsock Device');
    expect((await exitWithin(restored)).code).toBe(1);
  });

  it('should fail the load and exit 1 when the vsock socket path still exists', async () => {
    const source = await startSimulator();
    const { snapshotPath, memoryPath } = await bootAndSnapshot(source);
    await source.kill();
    // The source's socket file is left behind, like a real Firecracker leaves it.
    expect(existsSync(join(source.dir, 'v.sock'))).toBe(true);
    const restored = await startSimulator();
    const reply = await restored.request('PUT', '/snapshot/load', {
      snapshot_path: snapshotPath,
      mem_backend: { backend_type: 'File', backend_path: memoryPath },
    });
    expect(reply.status).toBe(400);
    expect(reply.json().fault_message).toContain('Address in use');
    expect((await exitWithin(restored)).code).toBe(1);
  });

  it.each([
    ['a corrupted vmstate', 'snapshot', 'CRC64 validation failed'],
    ['a truncated memory file', 'memory', 'Failed to load guest memory'],
    [
      'a missing memory file',
      'missing-memory',
      'Failed to load guest memory: No such file or directory (os error 2)',
    ],
  ])('should fail the load and exit 1 for %s', async (_name, damage, message) => {
    const source = await startSimulator();
    const { snapshotPath, memoryPath } = await bootAndSnapshot(source, { vsock: false });
    await source.kill();
    if (damage === 'snapshot') {
      const data = readFileSync(snapshotPath);
      data.writeUInt8(data.readUInt8(40) ^ 0x01, 40);
      writeFileSync(snapshotPath, data);
    } else if (damage === 'memory') {
      writeFileSync(memoryPath, 'short');
    }
    const restored = await startSimulator();
    const reply = await restored.request('PUT', '/snapshot/load', {
      snapshot_path: snapshotPath,
      mem_backend: {
        backend_type: 'File',
        backend_path: damage === 'missing-memory' ? `${memoryPath}.gone` : memoryPath,
      },
    });
    expect(reply.status).toBe(400);
    expect(reply.json().fault_message).toContain(message);
    expect((await exitWithin(restored)).code).toBe(1);
  });

  it('should fail the load and exit 1 when no UFFD handler listens', async () => {
    const source = await startSimulator();
    const { snapshotPath } = await bootAndSnapshot(source, { vsock: false });
    await source.kill();
    const restored = await startSimulator();
    const reply = await restored.request('PUT', '/snapshot/load', {
      snapshot_path: snapshotPath,
      mem_backend: { backend_type: 'Uffd', backend_path: join(restored.dir, 'uffd.sock') },
    });
    expect(reply.json().fault_message).toContain('Error creating guest memory from uffd');
    expect((await exitWithin(restored)).code).toBe(1);
  });

  it('should send the guest memory regions to a listening UFFD handler', async () => {
    const source = await startSimulator();
    const { snapshotPath } = await bootAndSnapshot(source, { vsock: false });
    await source.kill();
    const restored = await startSimulator();
    const handlerPath = join(restored.dir, 'uffd.sock');
    let resolveReceived: (text: string) => void = () => {};
    const received = new Promise<string>((resolve) => {
      resolveReceived = resolve;
    });
    const handler = createServer((socket) => {
      socket.once('data', (chunk: Buffer) => {
        resolveReceived(chunk.toString());
        socket.destroy();
        handler.close();
      });
    });
    await new Promise<void>((resolve) => handler.listen(handlerPath, resolve));
    const reply = await restored.request('PUT', '/snapshot/load', {
      snapshot_path: snapshotPath,
      mem_backend: { backend_type: 'Uffd', backend_path: handlerPath },
      resume_vm: true,
    });
    expect(reply.status, reply.text).toBe(204);
    const regions = JSON.parse(await received) as { size: number; offset: number; page_size: number }[];
    expect(regions).toEqual([
      expect.objectContaining({ size: 64 * 1024 * 1024, offset: 0, page_size: 4096 }),
    ]);
  });
});
