import { describe, expect, it } from 'vitest';
import { isVmCgroupDir, parseCgroupMounts, planCgroupDirs } from './cgroups.js';

const v1Only = parseCgroupMounts(
  [
    'tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0',
    'cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,relatime,cpu,cpuacct 0 0',
    'cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0',
  ].join('\n'),
);

describe('parseCgroupMounts', () => {
  it('should find v1 controllers from mount options and the first cgroup2 mount', () => {
    const mounts = parseCgroupMounts(
      'cgroup /sys/fs/cgroup/pids cgroup rw,pids 0 0\ncgroup2 /sys/fs/cgroup/with\\040space cgroup2 rw 0 0\n',
    );
    expect(mounts).toEqual({
      v1: [{ directory: '/sys/fs/cgroup/pids', controllers: ['rw', 'pids'] }],
      v2: '/sys/fs/cgroup/with space',
    });
  });
});

describe('planCgroupDirs', () => {
  it('should refuse cgroup v2 when it is not mounted, naming cgroupVersion', async () => {
    await expect(
      planCgroupDirs({
        mounts: v1Only,
        version: 2,
        cgroups: [['memory.max', '1G']],
        parentCgroup: 'fc',
        vmId: 'a',
      }),
    ).rejects.toMatchObject({ field: 'cgroupVersion', code: 'ERR_MICROVM_INVALID_INPUT' });
  });

  it('should refuse v1 when no hierarchy has the controller', async () => {
    await expect(
      planCgroupDirs({
        mounts: v1Only,
        version: 1,
        cgroups: [['cpuset.cpus', '0']],
        parentCgroup: 'fc',
        vmId: 'a',
      }),
    ).rejects.toMatchObject({ field: "cgroups['cpuset.cpus']" });
  });

  it('should refuse v1 when nothing is mounted at all', async () => {
    await expect(
      planCgroupDirs({
        mounts: { v1: [], v2: '/sys/fs/cgroup' },
        version: undefined,
        cgroups: [['memory.limit_in_bytes', '1']],
        parentCgroup: 'fc',
        vmId: 'a',
      }),
    ).rejects.toMatchObject({ field: 'cgroupVersion' });
  });
});

describe('isVmCgroupDir', () => {
  it.each([
    ['/sys/fs/cgroup/memory/fc/vm-1', true],
    ['/sys/fs/cgroup/cpu,cpuacct/a/b/vm-1', true],
    ['/sys/fs/cgroup/memory/vm-1', false],
    ['/sys/fs/cgroup/memory/fc/other', false],
    ['/sys/fs/cgroup/memory/../../../etc/vm-1', false],
    ['/etc/fc/vm-1', false],
  ])('%s → %s', (dir, expected) => {
    expect(isVmCgroupDir(v1Only, dir, 'vm-1')).toBe(expected);
  });
});
