import { describe, expect, it } from 'vitest';
import { describeArgumentError, firecrackerHelpText, parseFirecrackerArguments } from './cli.js';

describe('parseFirecrackerArguments', () => {
  it('should read values and flags given as separate argv entries', () => {
    const result = parseFirecrackerArguments([
      '--api-sock',
      '/run/fc.sock',
      '--id',
      'vm-1',
      '--enable-pci',
      '--boot-timer',
      '--start-time-us',
      '123',
      '--http-api-max-payload-size',
      '1000',
      '--',
      '--anything',
    ]);
    expect(result.ok).toBe(true);
    if (!result.ok) return;
    expect(result.arguments).toMatchObject({
      apiSock: '/run/fc.sock',
      id: 'vm-1',
      enablePci: true,
      bootTimer: true,
      startTimeUs: 123,
      httpApiMaxPayloadSize: 1000,
      noApi: false,
      extraArgs: ['--anything'],
    });
  });

  it.each([
    [['--api-sock=/x'], { kind: 'UnexpectedArgument', name: 'api-sock=/x' }],
    [['--id', 'a', '--id', 'b'], { kind: 'DuplicateArgument', name: 'id' }],
    [['--log-path'], { kind: 'MissingValue', name: 'log-path' }],
    [['--log-path', '--level'], { kind: 'MissingValue', name: 'log-path' }],
    [['--no-api'], { kind: 'MissingArgument', name: 'config-file' }],
    [
      ['--seccomp-filter', 'f', '--no-seccomp'],
      { kind: 'ForbiddenArgument', name: 'seccomp-filter', forbidden: 'no-seccomp' },
    ],
    [['--start-time-us', '-5'], { kind: 'InvalidValue', name: 'start-time-us', value: '-5' }],
    [['-v'], { kind: 'UnexpectedArgument', name: '-v' }],
  ])('should refuse %j', (argv, error) => {
    expect(parseFirecrackerArguments(argv)).toEqual({ ok: false, error });
  });

  it('should let --version and --help win over requirement checks', () => {
    expect(parseFirecrackerArguments(['--no-api', '--version']).ok).toBe(true);
    expect(parseFirecrackerArguments(['--no-api', '--help']).ok).toBe(true);
  });

  it('should describe errors as Firecracker does', () => {
    expect(describeArgumentError({ kind: 'DuplicateArgument', name: 'id' })).toBe(
      "The argument 'id' was provided more than once.",
    );
    expect(firecrackerHelpText()).toContain('--config-file <config-file>');
  });
});
