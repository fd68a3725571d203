import { describe, expect, it } from 'vitest';
import { assignJailPaths, checkJailPath } from './staging.js';

const reserved = new Set(['firecracker', 'firecracker.pid', 'dev', 'run', 'api.sock']);

describe('assignJailPaths', () => {
  it('should put each file at /<basename> and rename collisions deterministically', () => {
    const paths = assignJailPaths(
      [
        { field: 'kernel', hostPath: '/images/vmlinux', kind: 'input' },
        { field: 'drives[0]', hostPath: '/a/rootfs.ext4', kind: 'writable' },
        { field: 'drives[1]', hostPath: '/b/rootfs.ext4', kind: 'writable' },
        { field: 'drives[2]', hostPath: '/c/rootfs.ext4', kind: 'writable' },
        { field: 'drives[3]', hostPath: '/a/rootfs.ext4', kind: 'writable' },
        { field: 'drives[4]', hostPath: '/x/firecracker', kind: 'input' },
        { field: 'vsock', hostPath: '/x/api.sock', kind: 'socket' },
      ],
      reserved,
    ).map((entry) => entry.jailPath);
    expect(paths).toEqual([
      '/vmlinux',
      '/rootfs.ext4',
      '/rootfs-2.ext4',
      '/rootfs-3.ext4',
      '/rootfs.ext4',
      '/firecracker-2',
      '/api-2.sock',
    ]);
  });

  it('should honour requested jail paths first, so a restored VM finds files where the snapshot has them', () => {
    const paths = assignJailPaths(
      [
        { field: 'drives[0]', hostPath: '/new/rootfs.ext4', kind: 'writable' },
        { field: 'drives[1]', hostPath: '/data.img', kind: 'writable', jailPath: '/rootfs.ext4' },
      ],
      reserved,
    ).map((entry) => entry.jailPath);
    expect(paths).toEqual(['/rootfs-2.ext4', '/rootfs.ext4']);
  });

  it.each([
    ['/images/..', undefined],
    ['/images/.', undefined],
    ['/images/', undefined],
    ['/images/kernel', '/../etc/passwd'],
    ['/images/kernel', '/a/../../etc/passwd'],
    ['/images/kernel', '/a//b'],
    ['/images/kernel', 'relative/path'],
    ['/images/kernel', '/dev/kvm'],
    ['/images/kernel', '/run/firecracker.socket'],
    ['/images/kernel', '/with\0nul'],
  ])('should refuse host path %j with jail path %j as escaping the jail', (hostPath, jailPath) => {
    expect(() =>
      assignJailPaths(
        [
          {
            field: 'drives[0].pathOnHost',
            hostPath,
            kind: 'input',
            ...(jailPath !== undefined && { jailPath }),
          },
        ],
        reserved,
      ),
    ).toThrow(/must stay inside the jail/);
  });

  it('should refuse two files asking for the same jail path', () => {
    expect(() =>
      assignJailPaths(
        [
          { field: 'a', hostPath: '/a', kind: 'input', jailPath: '/x' },
          { field: 'b', hostPath: '/b', kind: 'input', jailPath: '/x' },
        ],
        reserved,
      ),
    ).toThrow(/another file already has this jail path/);
  });
});

describe('checkJailPath', () => {
  it('should accept nested normalised absolute paths', () => {
    expect(checkJailPath('/tmp/vm/rootfs.ext4', 'field')).toBe('/tmp/vm/rootfs.ext4');
  });
});
