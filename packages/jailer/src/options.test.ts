import { MicrovmError, ValidationError } from '@microvm/core';
import { describe, expect, it } from 'vitest';
import { type JailerOptions, resolveJailerOptions } from './options.js';

const valid: JailerOptions = { uid: 123, gid: 100 };

describe('resolveJailerOptions', () => {
  it('should fill in the jailer defaults', () => {
    expect(resolveJailerOptions(valid)).toMatchObject({
      jailerBinary: 'jailer',
      chrootBaseDir: '/srv/jailer',
      daemonize: false,
      newPidNamespace: false,
      cgroupVersion: undefined,
      cgroups: [],
      parentCgroup: undefined,
    });
  });

  it.each<[string, Partial<JailerOptions> & Record<string, unknown>, string]>([
    ['a negative uid', { uid: -1 }, 'uid'],
    ['a uid over u32', { uid: 2 ** 32 }, 'uid'],
    ['a uid as text', { uid: '1000' as unknown as number }, 'uid'],
    ['a fractional gid', { gid: 1.5 }, 'gid'],
    ['a relative chroot base', { chrootBaseDir: 'jails' }, 'chrootBaseDir'],
    ['an empty jailer binary', { jailerBinary: '' }, 'jailerBinary'],
    ['cgroup version 3', { cgroupVersion: 3 as 1 }, 'cgroupVersion'],
    ['a cgroup file without a controller', { cgroups: { max: '1' } }, "cgroups['max']"],
    ['a cgroup file with a path', { cgroups: { '../memory.max': '1' } }, "cgroups['../memory.max']"],
    ['a cgroup value with =', { cgroups: { 'memory.max': 'a=b' } }, "cgroups['memory.max']"],
    ['an empty cgroup value', { cgroups: { 'memory.max': '' } }, "cgroups['memory.max']"],
    ['an absolute parent cgroup', { parentCgroup: '/microvm' }, 'parentCgroup'],
    ['a parent cgroup with ..', { parentCgroup: 'a/../b' }, 'parentCgroup'],
    ['a negative open-file limit', { resourceLimits: { maxOpenFiles: -1 } }, 'resourceLimits.maxOpenFiles'],
    [
      'a file size over u64',
      { resourceLimits: { maxFileSizeBytes: 2n ** 64n } },
      'resourceLimits.maxFileSizeBytes',
    ],
    ['daemonize as text', { daemonize: 'yes' as unknown as boolean }, 'daemonize'],
    ['an extra flag the primitive sets', { extraJailerArgs: ['--uid'] }, 'extraJailerArgs[0]'],
    ['an extra separator', { extraJailerArgs: ['--'] }, 'extraJailerArgs[0]'],
    [
      'a Firecracker flag the jailer sets',
      { extraFirecrackerArgs: ['--api-sock', '/x.sock'] },
      'extraFirecrackerArgs[0]',
    ],
    [
      'a Firecracker config file',
      { extraFirecrackerArgs: ['--config-file=/etc/vm.json'] },
      'extraFirecrackerArgs[0]',
    ],
  ])('should reject %s with a ValidationError naming the field', (_, override, field) => {
    let error: unknown;
    try {
      resolveJailerOptions({ ...valid, ...override } as JailerOptions);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(ValidationError);
    expect(MicrovmError.isInstance(error) && error.code).toBe('ERR_MICROVM_INVALID_INPUT');
    expect((error as ValidationError).field).toBe(field);
  });
});
