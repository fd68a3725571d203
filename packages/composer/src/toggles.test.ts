import { describe, expect, it } from 'vitest';
import { enabledFromEnv } from './toggles.js';
import { PRIMITIVE_NAMES } from './types.js';

describe('enabledFromEnv', () => {
  it('should switch every primitive on when no toggle is set, as the seed did', () => {
    expect(enabledFromEnv({})).toEqual([...PRIMITIVE_NAMES]);
  });

  it.each(['0', 'false', 'FALSE', 'No', 'off', ' no '])('should switch a primitive off with %j', (value) => {
    expect(enabledFromEnv({ MICROVM_COMPOSE_JAILER: value })).not.toContain('jailer');
  });

  it.each(['1', 'true', 'YES', 'on', ''])('should keep a primitive on with %j', (value) => {
    expect(enabledFromEnv({ MICROVM_COMPOSE_VSOCK: value })).toContain('vsock');
  });

  it('should reject a typo instead of guessing whether the firewall is wanted', () => {
    expect(() => enabledFromEnv({ MICROVM_COMPOSE_FIREWALL: 'of' })).toThrow(
      expect.objectContaining({ code: 'ERR_MICROVM_INVALID_INPUT', field: 'MICROVM_COMPOSE_FIREWALL' }),
    );
  });
});
