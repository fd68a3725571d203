import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { jailerSimulatorPath } from '@microvm/simulator';
import { describe, expect, it } from 'vitest';
import { buildJailerArguments, parseFirecrackerArguments } from './arguments.js';
import { resolveJailerOptions } from './options.js';

const execFileAsync = promisify(execFile);

/** The jailer v1.16.1 CLI (FACTS.md §7.1): flag → takes a value. */
const documentedJailerFlags = new Map([
  ['--id', true],
  ['--exec-file', true],
  ['--uid', true],
  ['--gid', true],
  ['--chroot-base-dir', true],
  ['--netns', true],
  ['--daemonize', false],
  ['--new-pid-ns', false],
  ['--cgroup', true],
  ['--cgroup-version', true],
  ['--parent-cgroup', true],
  ['--resource-limit', true],
]);

const everything = resolveJailerOptions({
  uid: 123,
  gid: 100,
  daemonize: true,
  newPidNamespace: true,
  cgroupVersion: 2,
  cgroups: { 'cpu.max': '50000 100000', 'memory.max': '512M' },
  parentCgroup: 'microvm.slice',
  resourceLimits: { maxFileSizeBytes: 2n ** 40n, maxOpenFiles: 4096 },
  extraFirecrackerArgs: ['--level', 'Debug'],
});

const invocation = {
  vmId: 'vm-1',
  execFile: '/usr/bin/firecracker',
  chrootBaseDir: '/srv/jailer',
  networkNamespacePath: '/run/netns/fc0',
  firecrackerArgs: ['--api-sock', '/api.sock'],
};

describe('buildJailerArguments', () => {
  it('should emit every option as a documented --flag value pair, then -- and the Firecracker args', () => {
    expect(buildJailerArguments(everything, invocation)).toEqual([
      '--id',
      'vm-1',
      '--exec-file',
      '/usr/bin/firecracker',
      '--uid',
      '123',
      '--gid',
      '100',
      '--chroot-base-dir',
      '/srv/jailer',
      '--netns',
      '/run/netns/fc0',
      '--daemonize',
      '--new-pid-ns',
      '--cgroup',
      'cpu.max=50000 100000',
      '--cgroup',
      'memory.max=512M',
      '--cgroup-version',
      '2',
      '--parent-cgroup',
      'microvm.slice',
      '--resource-limit',
      'fsize=1099511627776',
      '--resource-limit',
      'no-file=4096',
      '--',
      '--api-sock',
      '/api.sock',
      '--level',
      'Debug',
    ]);
  });

  it('should only use flags of the documented CLI, each followed by a value exactly when it takes one', () => {
    const args = buildJailerArguments(everything, invocation);
    const jailerPart = args.slice(0, args.indexOf('--'));
    for (let index = 0; index < jailerPart.length; index += 1) {
      const flag = jailerPart[index] ?? '';
      expect(documentedJailerFlags.has(flag), flag).toBe(true);
      expect(flag).not.toContain('=');
      if (documentedJailerFlags.get(flag)) index += 1;
    }
  });

  it('should pass the flags the simulated jailer lists in --help', async () => {
    const { stdout } = await execFileAsync(jailerSimulatorPath, ['--help']);
    for (const flag of documentedJailerFlags.keys()) expect(stdout).toContain(`${flag}`);
  });

  it('should leave out flags whose options are not set, so the jailer defaults apply', () => {
    const args = buildJailerArguments(resolveJailerOptions({ uid: 1, gid: 2 }), {
      vmId: 'a',
      execFile: '/fc/firecracker',
      chrootBaseDir: '/srv/jailer',
      firecrackerArgs: [],
    });
    expect(args).toEqual([
      '--id',
      'a',
      '--exec-file',
      '/fc/firecracker',
      '--uid',
      '1',
      '--gid',
      '2',
      '--chroot-base-dir',
      '/srv/jailer',
      '--',
    ]);
  });
});

describe('parseFirecrackerArguments', () => {
  it('should drop --id (the jailer passes it) and keep the rest with their values', () => {
    expect(
      parseFirecrackerArguments([
        '--api-sock',
        '/s/api.sock',
        '--id',
        'vm',
        '--log-path',
        '/l',
        '--boot-timer',
      ]),
    ).toEqual([
      { flag: '--api-sock', value: '/s/api.sock' },
      { flag: '--log-path', value: '/l' },
      { flag: '--boot-timer' },
    ]);
  });

  it.each([
    [['--start-time-us', '1'], /jailer passes it/],
    [['--parent-cpu-time-us', '1'], /jailer passes it/],
    [['--config-file', '/c.json'], /not supported under the jailer/],
    [['--api-sock=/x'], /not --flag=value/],
    [['positional'], /must be a --flag/],
    [['--api-sock'], /needs a value/],
  ])('should refuse %j', (args, rule) => {
    expect(() => parseFirecrackerArguments(args)).toThrow(rule);
  });
});
