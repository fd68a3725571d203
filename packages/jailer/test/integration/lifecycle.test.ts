import { existsSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { hostPathOf, type VmEvent } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { createJailSandbox, isAlive, type JailSandbox, jailUid, listTree, processesOf } from './helpers.js';

let sandbox: JailSandbox;

beforeEach(async () => {
  sandbox = await createJailSandbox();
});

afterEach(async () => {
  await sandbox.cleanup();
});

/** Connects to a vsock host socket, asks for the guest's echo port and returns the echoed line. */
async function vsockEcho(udsPath: string, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(udsPath);
    let buffer = '';
    let connected = false;
    socket.setEncoding('utf8');
    socket.on('error', reject);
    socket.on('close', () => reject(new Error(`closed before the echo; got ${JSON.stringify(buffer)}`)));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (!connected && buffer.includes('\n')) {
        const line = buffer.slice(0, buffer.indexOf('\n'));
        if (!line.startsWith('OK ')) reject(new Error(`unexpected answer ${line}`));
        connected = true;
        buffer = buffer.slice(line.length + 1);
        socket.write(`${payload}\n`);
      }
      if (connected && buffer.includes('\n')) {
        socket.removeAllListeners('close');
        socket.destroy();
        resolve(buffer.slice(0, buffer.indexOf('\n')));
      }
    });
    socket.write('CONNECT 5000\n');
  });
}

async function vsockEchoWithRetry(udsPath: string, payload: string): Promise<string> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 50; attempt += 1) {
    try {
      return await vsockEcho(udsPath, payload);
    } catch (error) {
      lastError = error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw lastError;
}

describe('a jailed VM through FirecrackerVmProvider', () => {
  it('should boot with jail paths, the real pid and every file staged and owned', async () => {
    const provider = sandbox.provider();
    const vsockPath = join(sandbox.stateDir, 'vms', 'jailed-1', 'v.sock');
    const vm = await provider.create(
      'jailed-1',
      sandbox.spec({ vsock: { guestCid: 3, udsPath: vsockPath } }),
    );
    expect(vm.state).toBe('running');
    const jail = vm.facts.jail;
    expect(jail).toBeDefined();
    if (!jail) return;
    expect(jail.rootDir).toBe(join(sandbox.chrootBaseDir, 'firecracker.js', 'jailed-1', 'root'));
    expect(jail.jailDir).toBe(join(sandbox.chrootBaseDir, 'firecracker.js', 'jailed-1'));
    // The spec Firecracker got names jail paths.
    expect(vm.spec.bootSource.kernelImagePath).toBe('/vmlinux');
    expect(vm.spec.drives?.[0]?.pathOnHost).toBe('/rootfs.ext4');
    expect(vm.spec.vsock?.udsPath).toBe('/v.sock');
    expect(vm.apiSocketPath).toBe(join(jail.rootDir, 'api.sock'));
    // The supervised pid is the one in the jailer's pid file, and it is alive.
    const pidFromFile = Number(await readFile(join(jail.rootDir, 'firecracker.js.pid'), 'utf8'));
    expect(vm.pid).toBe(pidFromFile);
    expect(isAlive(vm.pid)).toBe(true);
    // The writable drive is linked into the jail (same filesystem) and owned by the jail user.
    const rootfsInJail = hostPathOf(vm.facts, '/rootfs.ext4');
    expect(rootfsInJail).toBe(join(jail.rootDir, 'rootfs.ext4'));
    expect((await stat(rootfsInJail)).ino).toBe((await stat(sandbox.rootfs)).ino);
    expect((await stat(rootfsInJail)).uid).toBe(jailUid);
    // The readable kernel is shared by a link, never handed over to the jail user.
    const kernelInJail = await stat(hostPathOf(vm.facts, '/vmlinux'));
    expect(kernelInJail.ino).toBe((await stat(sandbox.kernel)).ino);
    expect(kernelInJail.uid).toBe(0);
    // The vsock socket was bound in the jail by Firecracker running as the jail user.
    const vsockHostPath = hostPathOf(vm.facts, '/v.sock');
    expect(vsockHostPath).toBe(join(jail.rootDir, 'v.sock'));
    expect(await vsockEchoWithRetry(vsockHostPath, 'hello from the host')).toBe('hello from the host');
    expect((await stat(vsockHostPath)).uid).toBe(jailUid);

    await provider.destroy('jailed-1');
    expect(isAlive(vm.pid)).toBe(false);
    expect(await processesOf('jailed-1')).toEqual([]);
    expect(existsSync(jail.jailDir)).toBe(false);
    // The user's files survive the jail.
    expect(existsSync(sandbox.rootfs)).toBe(true);
    expect(existsSync(sandbox.kernel)).toBe(true);
  });

  it('should stage the initrd, logger, metrics and serial output, and let the jailed VMM write them', async () => {
    const initrd = join(sandbox.dir, 'initrd.img');
    await writeFile(initrd, 'not a real initrd', { mode: 0o644 });
    const provider = sandbox.provider();
    const vm = await provider.create(
      'jailed-files',
      sandbox.spec({
        bootSource: {
          kernelImagePath: sandbox.kernel,
          initrdPath: initrd,
          bootArgs: 'console=ttyS0 reboot=k panic=1',
        },
        logger: { logPath: join(sandbox.dir, 'firecracker.log'), level: 'Debug' },
        metrics: { metricsPath: join(sandbox.dir, 'metrics.json') },
        serial: { serialOutPath: join(sandbox.dir, 'serial.log') },
      }),
    );
    // Firecracker got jail paths; the host paths are found through the published mapping.
    expect(vm.spec.bootSource.initrdPath).toBe('/initrd.img');
    expect(vm.spec.logger?.logPath).toBe('/firecracker.log');
    expect(vm.spec.metrics?.metricsPath).toBe('/metrics.json');
    expect(vm.spec.serial?.serialOutPath).toBe('/serial.log');
    const initrdInJail = await stat(hostPathOf(vm.facts, '/initrd.img'));
    expect(initrdInJail.ino).toBe((await stat(initrd)).ino);
    expect(initrdInJail.uid).toBe(0);
    const logInJail = hostPathOf(vm.facts, '/firecracker.log');
    const metricsInJail = hostPathOf(vm.facts, '/metrics.json');
    const serialInJail = hostPathOf(vm.facts, '/serial.log');
    for (const written of [logInJail, metricsInJail, serialInJail]) {
      expect(written.startsWith(vm.facts.jail!.rootDir)).toBe(true);
      expect((await stat(written)).uid).toBe(jailUid);
    }

    // The VMM, running as the jail user, writes its log, flushes metrics on request and prints the console.
    await (await provider.client('jailed-files')).flushMetrics();
    await vi.waitFor(
      async () => {
        expect(await readFile(logInJail, 'utf8')).toMatch(/\S/);
        const metricLines = (await readFile(metricsInJail, 'utf8')).split('\n').filter(Boolean);
        expect(metricLines.length).toBeGreaterThan(0);
        expect(() => JSON.parse(metricLines.at(-1)!)).not.toThrow();
        expect(await readFile(serialInJail, 'utf8')).toMatch(/\S/);
      },
      { timeout: 20_000, interval: 100 },
    );

    await provider.destroy('jailed-files');
    expect(existsSync(vm.facts.jail!.jailDir)).toBe(false);
    expect(existsSync(initrd)).toBe(true);
    // The outputs were linked into the jail, so what the VMM wrote is in the user's files after the jail is gone.
    for (const name of ['firecracker.log', 'metrics.json', 'serial.log']) {
      expect(await readFile(join(sandbox.dir, name), 'utf8')).toMatch(/\S/);
    }
  });

  it('should snapshot a jailed VM and restore it into a new jail, drive and vsock included', async () => {
    const provider = sandbox.provider();
    const events: VmEvent[] = [];
    provider.onEvent((event) => events.push(event));
    const vsockPath = join(sandbox.dir, 'v.sock');
    await provider.create('source-vm', sandbox.spec({ vsock: { guestCid: 3, udsPath: vsockPath } }));
    const snapshot = await provider.snapshot('source-vm', { snapshotId: 'snap-1' });
    // Written inside the jail by Firecracker, then moved to the state directory: not inside any jail.
    expect(snapshot.snapshotPath.startsWith(sandbox.stateDir)).toBe(true);
    expect((await stat(snapshot.memFilePath)).size).toBe(128 * 1024 * 1024);
    const source = await provider.get('source-vm');
    expect(existsSync(join(source?.facts.jail?.rootDir ?? '', 'snapshots', 'snap-1'))).toBe(false);
    await provider.destroy('source-vm');

    const restored = await provider.restore('clone-vm', 'snap-1');
    expect(restored.state).toBe('running');
    const jail = restored.facts.jail;
    expect(jail?.rootDir).toBe(join(sandbox.chrootBaseDir, 'firecracker.js', 'clone-vm', 'root'));
    // The drive is where the snapshot recorded it, inside the new jail.
    expect(restored.spec.drives?.[0]?.pathOnHost).toBe('/rootfs.ext4');
    expect(existsSync(hostPathOf(restored.facts, '/rootfs.ext4'))).toBe(true);
    expect(hostPathOf(restored.facts, '/memory')).toBe(join(jail?.rootDir ?? '', 'memory'));
    expect(await vsockEchoWithRetry(hostPathOf(restored.facts, '/v.sock'), 'after restore')).toBe(
      'after restore',
    );
    const pid = restored.pid;
    await provider.destroy('clone-vm');
    expect(isAlive(pid)).toBe(false);
    expect(existsSync(jail?.jailDir ?? '')).toBe(false);
    // The snapshot outlives both VMs and their jails.
    expect(existsSync(snapshot.memFilePath)).toBe(true);
    expect(await listTree(sandbox.chrootBaseDir)).toEqual(['firecracker.js']);
    expect(events.filter((event) => event.type === 'exit' && !event.expected)).toEqual([]);
  });
});
