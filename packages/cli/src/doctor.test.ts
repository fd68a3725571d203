import { describe, expect, it } from 'vitest';
import { type HostProbe, nextStep, runDoctor } from './doctor.js';

function fakeHost(
  overrides: Partial<HostProbe> & { files?: Record<string, string>; commands?: Record<string, string> } = {},
): HostProbe {
  const files = overrides.files ?? {
    '/proc/mounts': 'cgroup /sys/fs/cgroup/memory cgroup rw,memory 0 0\n',
    '/proc/sys/net/ipv4/ip_forward': '1\n',
  };
  const commands = overrides.commands ?? {
    '/usr/bin/firecracker': 'Firecracker v1.16.1\n',
    '/usr/bin/jailer': 'Jailer v1.16.1\n',
    ip: 'ip utility, iproute2-6.1.0',
    nft: 'nftables v1.0.6',
    nsenter: 'nsenter from util-linux 2.38.1',
  };
  const accessible = new Set(['/dev/kvm', '/dev/net/tun', '/usr/bin/firecracker', '/usr/bin/jailer']);
  return {
    platform: 'linux',
    arch: 'x64',
    nodeVersion: '20.20.2',
    euid: 0,
    env: { PATH: '/usr/bin' },
    canAccess: async (path) => accessible.has(path),
    readText: async (path) => files[path],
    run: async (executable) => commands[executable],
    ...overrides,
  };
}

const options = { stateDir: '/var/lib/microvm', chrootBaseDir: '/srv/jailer' };

describe('runDoctor', () => {
  it('should pass a host that has everything', async () => {
    const results = await runDoctor({ ...options, host: fakeHost() });
    // The default jail layout (`/srv/jailer/firecracker/<id>/root/api.sock`) fits the longest id, 64 characters.
    expect(results.filter((result) => result.status !== 'ok').map((result) => result.name)).toEqual([]);
    expect(results.find((result) => result.name === 'jailed socket path')?.detail).toContain('64 characters');
    expect(results.find((result) => result.name === 'firecracker binary')?.detail).toContain('v1.16.1');
    expect(nextStep(results)).toContain('pnpm test:e2e');
  });

  it('should suggest the e2e suite with the binaries it found when every check it needs passes', async () => {
    const results = await runDoctor({ ...options, host: fakeHost() });
    expect(results.find((result) => result.name === 'firecracker binary')?.path).toBe('/usr/bin/firecracker');
    expect(nextStep(results)).toBe(
      [
        'Every check the e2e suite needs passed. Run it against this Firecracker (kernel and rootfs: docs/guides/real-firecracker.md):',
        '  MICROVM_FIRECRACKER_BIN=/usr/bin/firecracker MICROVM_JAILER_BIN=/usr/bin/jailer MICROVM_KERNEL=/path/to/vmlinux MICROVM_ROOTFS=/path/to/rootfs.ext4 pnpm test:e2e',
      ].join('\n'),
    );
  });

  it.each([
    ['not root', fakeHost({ euid: 1000 })],
    [
      'no jailer',
      fakeHost({
        canAccess: async (path) => ['/dev/kvm', '/dev/net/tun', '/usr/bin/firecracker'].includes(path),
      }),
    ],
    [
      'a failure elsewhere',
      fakeHost({ commands: { '/usr/bin/firecracker': 'Firecracker v1.16.1', ip: 'ip' } }),
    ],
  ])('should not suggest the e2e suite with %s', async (_case, host) => {
    expect(nextStep(await runDoctor({ ...options, host }))).toBeUndefined();
  });

  it('should quote a binary path the shell would split', async () => {
    const host = fakeHost({
      env: { PATH: '/usr/bin', MICROVM_FIRECRACKER_BIN: "/opt/fire cracker's/firecracker" },
      canAccess: async (path) =>
        ['/dev/kvm', '/dev/net/tun', '/usr/bin/jailer', "/opt/fire cracker's/firecracker"].includes(path),
      commands: {
        "/opt/fire cracker's/firecracker": 'Firecracker v1.16.1',
        '/usr/bin/jailer': 'Jailer v1.16.1',
        ip: 'ip',
        nft: 'nft',
        nsenter: 'nsenter',
      },
    });
    expect(nextStep(await runDoctor({ ...options, host }))).toContain(
      "MICROVM_FIRECRACKER_BIN='/opt/fire cracker'\\''s/firecracker' MICROVM_JAILER_BIN=/usr/bin/jailer",
    );
  });

  it.each([
    ['/dev/kvm', fakeHost({ canAccess: async (path) => path !== '/dev/kvm' && path !== '/nothing' }), 'fail'],
    ['root', fakeHost({ euid: 1000 }), 'warn'],
    ['node', fakeHost({ nodeVersion: '20.11.0' }), 'fail'],
    ['platform', fakeHost({ platform: 'darwin' }), 'fail'],
    ['nft', fakeHost({ commands: { ip: 'ip', nsenter: 'nsenter' } }), 'fail'],
    [
      'ip forwarding',
      fakeHost({ files: { '/proc/mounts': 'cgroup2 /sys/fs/cgroup cgroup2 rw 0 0' } }),
      'warn',
    ],
    ['cgroups', fakeHost({ files: { '/proc/sys/net/ipv4/ip_forward': '1' } }), 'warn'],
  ])('should flag %s and say how to fix it', async (name, host, status) => {
    const result = (await runDoctor({ ...options, host })).find((item) => item.name === name);
    expect(result?.status).toBe(status);
    expect(result?.fix).toBeTruthy();
  });

  it('should fall back to the simulator when no firecracker is installed, and not suggest the e2e suite', async () => {
    const host = fakeHost({ env: { PATH: '/nowhere' } });
    const results = await runDoctor({ ...options, host });
    const firecracker = results.find((item) => item.name === 'firecracker binary');
    expect(firecracker).toMatchObject({ status: 'warn' });
    expect(firecracker?.detail).toContain('simulator');
    expect(nextStep(results)).toBeUndefined();
  });

  it('should name a binary given by MICROVM_FIRECRACKER_BIN that is not executable', async () => {
    const host = fakeHost({ env: { PATH: '/usr/bin', MICROVM_FIRECRACKER_BIN: '/opt/fc' } });
    const firecracker = (await runDoctor({ ...options, host })).find(
      (item) => item.name === 'firecracker binary',
    );
    expect(firecracker?.detail).toBe(
      '/opt/fc (from MICROVM_FIRECRACKER_BIN or --firecracker) is not an executable file',
    );
  });

  it('should fail socket paths over 107 bytes and suggest a shorter folder', async () => {
    const results = await runDoctor({
      stateDir: `/var/lib/${'long-'.repeat(20)}`,
      chrootBaseDir: '/srv/j',
      host: fakeHost(),
    });
    const socket = results.find((item) => item.name === 'API socket path');
    expect(socket?.status).toBe('fail');
    expect(socket?.fix).toContain('--state-dir');
    expect(results.find((item) => item.name === 'jailed socket path')?.status).not.toBe('fail');
    const tight = await runDoctor({
      stateDir: '/s',
      chrootBaseDir: `/srv/${'j'.repeat(70)}`,
      host: fakeHost(),
    });
    expect(tight.find((item) => item.name === 'jailed socket path')?.status).toBe('fail');
    const snug = await runDoctor({
      stateDir: '/s',
      chrootBaseDir: `/srv/${'j'.repeat(30)}`,
      host: fakeHost(),
    });
    const jailed = snug.find((item) => item.name === 'jailed socket path');
    expect(jailed?.status).toBe('warn');
    expect(jailed?.fix).toContain('45 characters');
  });
});
