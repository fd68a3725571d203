import { describe, expect, it } from 'vitest';
import {
  addressCode,
  formatIpv4,
  macForGuestIp,
  netmaskOf,
  parseAddressCode,
  parseIpv4,
  parseSubnet,
  subnetsOverlap,
} from './ipv4.js';

const range = { minPrefixLength: 8, maxPrefixLength: 30 };

describe('parseIpv4', () => {
  it.each([
    ['0.0.0.0', 0],
    ['10.200.0.1', 0x0ac80001],
    ['255.255.255.255', 0xffffffff],
  ])('should parse %s', (text, value) => {
    expect(parseIpv4(text)).toBe(value);
    expect(formatIpv4(value)).toBe(text);
  });

  it.each(['10.0.0', '10.0.0.256', '010.0.0.1', '10.0.0.1.2', '', 'a.b.c.d', '10.0.0.-1'])(
    'should refuse %j',
    (text) => {
      expect(parseIpv4(text)).toBeUndefined();
    },
  );
});

describe('parseSubnet', () => {
  it('should parse a CIDR', () => {
    expect(parseSubnet('10.200.0.0/16', 'pool', range)).toEqual({ network: 0x0ac80000, prefixLength: 16 });
  });

  it.each([
    ['10.200.0.1/16', /host bits.*10\.200\.0\.0\/16/],
    ['10.200.0.0/31', /p from 8 to 30/],
    ['10.200.0.0', /CIDR/],
    ['10.200.0.0/', /CIDR/],
    [42, /CIDR/],
  ])('should refuse %j with a ValidationError', (text, rule) => {
    expect(() => parseSubnet(text, 'pool', range)).toThrow(
      expect.objectContaining({
        code: 'ERR_MICROVM_INVALID_INPUT',
        field: 'pool',
        rule: expect.stringMatching(rule),
      }),
    );
  });
});

describe('helpers', () => {
  it('should compute netmasks', () => {
    expect(netmaskOf(30)).toBe('255.255.255.252');
    expect(netmaskOf(16)).toBe('255.255.0.0');
    expect(netmaskOf(0)).toBe('0.0.0.0');
  });

  it('should detect overlaps', () => {
    const pool = parseSubnet('10.0.0.0/16', 'a', range);
    expect(subnetsOverlap(pool, parseSubnet('10.0.4.0/30', 'b', range))).toBe(true);
    expect(subnetsOverlap(parseSubnet('10.0.0.0/8', 'b', range), pool)).toBe(true);
    expect(subnetsOverlap(pool, parseSubnet('10.1.0.0/16', 'b', range))).toBe(false);
  });

  it('should derive a locally administered unicast MAC from the guest IP (Firecracker CI convention)', () => {
    expect(macForGuestIp(parseIpv4('172.16.0.2')!)).toBe('06:00:ac:10:00:02');
  });

  it('should encode addresses in 7 reversible characters', () => {
    for (const address of [0, 1, 0x0ac80004, 0xffffffff]) {
      const code = addressCode(address);
      expect(code).toHaveLength(7);
      expect(parseAddressCode(code)).toBe(address);
    }
    expect(parseAddressCode('zzzzzzz')).toBeUndefined();
    expect(parseAddressCode('ABC')).toBeUndefined();
  });
});
