import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FirecrackerVmProvider, type VmSpec } from '@microvm/core';
import { afterEach, describe, expect, it } from 'vitest';
import { networkPrimitive } from '../../src/index.js';
import { Sandbox, sh } from './helpers.js';

// Found by path like core's tests do; this package's turbo.json builds the simulator first.
const simulatorFirecracker = fileURLToPath(
  new URL('../../../simulator/dist/bin/firecracker.js', import.meta.url),
);

const sandbox = new Sandbox();
afterEach(() => sandbox.cleanup());

async function specIn(dir: string): Promise<VmSpec> {
  await writeFile(join(dir, 'vmlinux'), 'not a real kernel');
  await writeFile(join(dir, 'rootfs.ext4'), Buffer.alloc(4096));
  return {
    bootSource: { kernelImagePath: join(dir, 'vmlinux'), bootArgs: 'console=ttyS0 reboot=k panic=1' },
    machine: { vcpuCount: 1, memSizeMib: 128 },
    drives: [
      { driveId: 'rootfs', pathOnHost: join(dir, 'rootfs.ext4'), isRootDevice: true, isReadOnly: false },
    ],
  };
}

describe('networkPrimitive with the provider and the simulated VMM', () => {
  it.each(['routed', 'bridge', 'namespaced'] as const)(
    'should hand the VMM a TAP in its namespace, and remove everything on destroy (%s)',
    async (mode) => {
      const { host } = await sandbox.hostWithInternet();
      const dir = await sandbox.stateDir();
      const provider = new FirecrackerVmProvider({
        stateDir: join(dir, 'state'),
        firecrackerBinary: simulatorFirecracker,
        // Includes the simulator's start, which takes seconds on a loaded host.
        socketReadyTimeoutMs: 30_000,
        // The simulator then fails PUT /network-interfaces unless the TAP exists in the namespace it runs in.
        env: { MICROVM_SIMULATOR_REQUIRE_TAP: '1' },
        primitives: [
          networkPrimitive({
            mode,
            namespace: host,
            pool: '10.206.0.0/24',
            namePrefix: 'pv',
            dnsServers: ['10.0.0.53'],
          }),
        ],
      });
      sandbox.onCleanup(async () => {
        await provider.destroy('vm-net').catch(() => undefined);
        await provider.destroy('vm-clone').catch(() => undefined);
        await provider.close();
      });

      const vm = await provider.create('vm-net', await specIn(dir));
      const network = vm.facts.network!;
      expect(vm.state).toBe('running');
      expect(vm.spec.networkInterfaces).toEqual([
        { ifaceId: 'eth0', hostDevName: network.tapName, guestMac: network.guestMac },
      ]);
      expect(vm.spec.bootSource.bootArgs).toBe(
        `console=ttyS0 reboot=k panic=1 ip=${network.guestIp}::${network.gatewayIp}:${network.netmask}::eth0:off:10.0.0.53`,
      );
      expect(network.namespace).toEqual(mode === 'namespaced' ? expect.stringMatching(/^pvn/) : host);

      if (mode === 'routed' || mode === 'bridge') {
        // While the source runs, a routed or bridged clone (same guest IP baked in memory) cannot get its address.
        await provider.snapshot('vm-net', { snapshotId: 'snap-net' });
        const failure = await provider.restore('vm-clone', 'snap-net').catch((error: unknown) => error);
        expect((failure as { cause?: unknown }).cause).toMatchObject({ reason: 'address-in-use' });
      }
      if (mode === 'namespaced') {
        // A clone of a running VM keeps its guest IP and TAP name, in a namespace of its own.
        const snapshot = await provider.snapshot('vm-net', { snapshotId: 'snap-net' });
        const clone = await provider.restore('vm-clone', snapshot.snapshotId);
        expect(clone.facts.network).toMatchObject({ tapName: network.tapName, guestIp: network.guestIp });
        expect(clone.facts.network!.namespace).not.toBe(network.namespace);
        await provider.destroy('vm-clone');
        await provider.deleteSnapshot('snap-net');
      }

      await provider.destroy('vm-net');
      if (mode === 'routed' || mode === 'bridge') {
        // The clone's guest keeps the source's IP: it gets the source's subnet once the source is gone.
        const clone = await provider.restore('vm-clone', 'snap-net');
        expect(clone.facts.network).toMatchObject({ guestIp: network.guestIp, gatewayIp: network.gatewayIp });
        await provider.destroy('vm-clone');
        await provider.deleteSnapshot('snap-net');
      }
      // lo and the uplink remain; in bridge mode the shared bridge too (host setup, removed by removeHostSetup()).
      expect((await sh('ip', ['-n', host, '-br', 'link'])).split('\n').filter(Boolean)).toHaveLength(
        mode === 'bridge' ? 3 : 2,
      );
      if (network.namespace !== host)
        expect(await sh('ip', ['netns', 'list'])).not.toContain(network.namespace);
    },
  );
});
