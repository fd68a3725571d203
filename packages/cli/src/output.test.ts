import { MicrovmError, TeardownError } from '@microvm/core';
import { describe, expect, it } from 'vitest';
import { formatAge, formatDuration, formatError, formatTable } from './output.js';

describe('formatError', () => {
  const error = new MicrovmError({
    code: 'ERR_MICROVM_HOOK_FAILED',
    message: 'network.prepare failed for VM a: no TAP',
    cause: new Error('ioctl TUNSETIFF: Operation not permitted'),
  });

  it('should show the message and code, and point at --debug for the cause', () => {
    const text = formatError(error, false);
    expect(text).toBe(
      'microvm: network.prepare failed for VM a: no TAP [ERR_MICROVM_HOOK_FAILED]\n  (run with --debug to see the cause)\n',
    );
  });

  it('should show the stack, every cause and every collected failure with --debug', () => {
    expect(formatError(error, true)).toContain('caused by: Error: ioctl TUNSETIFF: Operation not permitted');
    const teardown = new TeardownError({
      vmId: 'a',
      errors: [new Error('tap busy'), new Error('chain busy')],
    });
    const text = formatError(teardown, true);
    expect(text).toContain('failure 1: Error: tap busy');
    expect(text).toContain('failure 2: Error: chain busy');
  });
});

describe('formatting', () => {
  it.each([
    [3.4, '3 ms'],
    [999, '999 ms'],
    [1_234, '1.23 s'],
    [65_000, '65.0 s'],
  ])('should print %d ms as %s', (durationMs, text) => {
    expect(formatDuration(durationMs)).toBe(text);
  });

  it.each([
    [0, 'just now'],
    [1_000, '1 second ago'],
    [125_000, '2 minutes ago'],
    [7_200_000, '2 hours ago'],
    [172_800_000, '2 days ago'],
  ])('should print an age of %d ms as %s', (ageMs, text) => {
    expect(formatAge(new Date(1_000_000_000_000 - ageMs).toISOString(), 1_000_000_000_000)).toBe(text);
  });

  it('should align columns without trailing spaces', () => {
    expect(
      formatTable(
        ['ID', 'STATE'],
        [
          ['a-long-id', 'running'],
          ['b', ''],
        ],
      ),
    ).toBe('ID          STATE\na-long-id   running\nb\n');
  });
});
