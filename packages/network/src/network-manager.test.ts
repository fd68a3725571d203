import { describe, expect, it } from 'vitest';
import { kernelIpArgument, NetworkManager, sourceNetworkOf } from './network-manager.js';
import type { NetworkManagerOptions } from './options.js';

describe('kernelIpArgument', () => {
  const facts = {
    ifaceId: 'eth0',
    tapName: 'mvt0',
    guestIp: '172.16.0.2',
    gatewayIp: '172.16.0.1',
    prefixLength: 30,
    netmask: '255.255.255.252',
    guestMac: '06:00:ac:10:00:02',
  };

  it("should follow the kernel ip= syntax of Firecracker's network-setup docs", () => {
    expect(kernelIpArgument(facts)).toBe('ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off');
  });

  it('should append up to two DNS servers', () => {
    expect(kernelIpArgument({ ...facts, dnsServers: ['1.1.1.1', '8.8.8.8'] })).toBe(
      'ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off:1.1.1.1:8.8.8.8',
    );
  });
});

describe('sourceNetworkOf', () => {
  it("should read what a snapshot's guest was given", () => {
    const spec = {
      bootSource: {
        kernelImagePath: '/k',
        bootArgs: 'console=ttyS0 ip=10.0.0.6::10.0.0.5:255.255.255.252::eth0:off',
      },
      machine: { vcpuCount: 1, memSizeMib: 128 },
      networkInterfaces: [{ ifaceId: 'eth0', hostDevName: 'mvt0000001', guestMac: '06:00:0a:00:00:06' }],
    };
    expect(sourceNetworkOf(spec, 'eth0')).toEqual({
      guestIp: '10.0.0.6',
      gatewayIp: '10.0.0.5',
      prefixLength: 30,
      guestMac: '06:00:0a:00:00:06',
      tapName: 'mvt0000001',
    });
    expect(sourceNetworkOf({ ...spec, bootSource: { kernelImagePath: '/k' } }, 'eth0')).toBeUndefined();
  });
});

describe('NetworkManager options', () => {
  it.each<[string, NetworkManagerOptions, string]>([
    ['unknown mode', { mode: 'flat' as never }, 'mode'],
    ['malformed pool', { pool: '10.0.0.0/33' }, 'pool'],
    ['prefix with a capital', { namePrefix: 'Mv' }, 'namePrefix'],
    ['prefix too long', { namePrefix: 'abcdefg' }, 'namePrefix'],
    ['namespace with a slash', { namespace: '../etc' }, 'namespace'],
    ['uplink with a space', { uplink: 'eth 0' }, 'uplink'],
    ['bridge name too long', { bridgeName: '0123456789abcdef' }, 'bridgeName'],
    ['iface id with a dash', { ifaceId: 'eth-0' }, 'ifaceId'],
    ['three DNS servers', { dnsServers: ['1.1.1.1', '1.0.0.1', '8.8.8.8'] }, 'dnsServers'],
    ['negative tap owner', { tapOwner: { uid: -1, gid: 0 } }, 'tapOwner.uid'],
    ['MTU too small', { mtu: 67 }, 'mtu'],
    ['guest subnet inside the pool', { mode: 'namespaced', pool: '192.168.0.0/16' }, 'guestSubnet'],
    ['guest TAP named like the veth', { guestTapName: 'veth0' }, 'guestTapName'],
  ])('should refuse %s when constructed (before touching the host)', (_name, options, field) => {
    expect(() => new NetworkManager({ stateDir: '/nonexistent', ...options })).toThrow(
      expect.objectContaining({ code: 'ERR_MICROVM_INVALID_INPUT', field }),
    );
  });

  it('should refuse an invalid VM id before touching the host', async () => {
    await expect(new NetworkManager({ stateDir: '/nonexistent' }).attach('bad id')).rejects.toMatchObject({
      code: 'ERR_MICROVM_INVALID_INPUT',
      field: 'vmId',
    });
  });
});
