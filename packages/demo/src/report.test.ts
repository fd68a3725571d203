import { describe, expect, it } from 'vitest';
import { phaseLine, quotedLine, skippedLine, stepLine } from './report.js';

describe('report lines', () => {
  it('should align names and durations', () => {
    expect(phaseLine('create', 181.23, 'demo-vm running')).toBe(
      'create                181.2 ms  demo-vm running',
    );
    expect(phaseLine('denied flow', 1578.94, 'dropped')).toBe('denied flow          1578.9 ms  dropped');
    expect(stepLine('prepare:network', 50.46)).toBe('  prepare:network      50.5 ms');
    expect(skippedLine('vsock round trip', 'no guest service')).toBe(
      'vsock round trip       skipped  no guest service',
    );
    expect(quotedLine('guest ready')).toBe('    | guest ready');
  });
});
