import { describe, expect, it } from 'vitest';
import { namespacesIn } from './host-network.js';

describe('namespacesIn', () => {
  it('should read the names of `ip netns list`, with or without ids', () => {
    expect(namespacesIn('mvd1h (id: 3)\nmvd1i\n\n  other (id: 0)\n')).toEqual(['mvd1h', 'mvd1i', 'other']);
    expect(namespacesIn('')).toEqual([]);
  });
});
