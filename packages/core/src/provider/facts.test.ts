import { describe, expect, it } from 'vitest';
import { hostPathOf, type VmFacts } from './facts.js';

const jailed: VmFacts = {
  jail: {
    rootDir: '/srv/jailer/firecracker/vm-a/root',
    jailDir: '/srv/jailer/firecracker/vm-a',
    uid: 1000,
    gid: 1000,
    stagedFiles: { '/vmlinux': '/srv/jailer/firecracker/vm-a/root/vmlinux' },
  },
};

describe('hostPathOf', () => {
  it.each([
    ['an unjailed VM', {}, '/var/lib/microvm/vms/a/v.sock', '/var/lib/microvm/vms/a/v.sock'],
    ['a staged file', jailed, '/vmlinux', '/srv/jailer/firecracker/vm-a/root/vmlinux'],
    ['an absolute jail path', jailed, '/v.sock', '/srv/jailer/firecracker/vm-a/root/v.sock'],
    ['a path relative to the jail root', jailed, 'v.sock', '/srv/jailer/firecracker/vm-a/root/v.sock'],
  ])('should map %s', (_, facts, path, expected) => {
    expect(hostPathOf(facts as VmFacts, path)).toBe(expected);
  });
});
