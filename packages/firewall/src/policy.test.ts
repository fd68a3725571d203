import { describe, expect, it } from 'vitest';
import { validateCidr, validatePolicy, validateTarget } from './policy.js';

describe('validateCidr', () => {
  it.each([
    ['203.0.113.7', '203.0.113.7/32'],
    ['198.51.100.0/24', '198.51.100.0/24'],
    ['0.0.0.0/0', '0.0.0.0/0'],
  ])('should accept %s as %s', (input, expected) => {
    expect(validateCidr(input, 'cidr')).toBe(expected);
  });

  it.each([
    '10.0.0/8',
    '10.0.0.0/33',
    '10.0.0.1/8',
    '010.0.0.0/8',
    '::1/128',
    '1.2.3.4/8/1',
    'a.b.c.d',
    '',
    '1.2.3.4 accept',
  ])('should reject %j', (input) => {
    expect(() => validateCidr(input, 'cidr')).toThrow(
      expect.objectContaining({ code: 'ERR_MICROVM_INVALID_INPUT', field: 'cidr' }),
    );
  });
});

describe('validatePolicy', () => {
  it('should default to deny-all with DNS to the given resolvers', () => {
    expect(validatePolicy(undefined, ['10.0.0.1'])).toEqual({
      preset: 'deny-all',
      allow: [],
      dnsServers: ['10.0.0.1'],
      hostPorts: [],
      portForwards: [],
    });
  });

  it('should normalise rules, ports and forwards', () => {
    const policy = validatePolicy({
      preset: 'internet-only',
      dns: false,
      allow: [
        { cidr: '1.2.3.4', protocol: 'tcp', port: 443 },
        { cidr: '10.0.0.0/8', protocol: 'udp', port: { from: 5000, to: 5010 } },
      ],
      portForwards: [{ hostPort: 8080 }],
    });
    expect(policy.allow).toEqual([
      { cidr: '1.2.3.4/32', protocol: 'tcp', ports: { from: 443, to: 443 } },
      { cidr: '10.0.0.0/8', protocol: 'udp', ports: { from: 5000, to: 5010 } },
    ]);
    expect(policy.dnsServers).toEqual([]);
    expect(policy.portForwards).toEqual([{ protocol: 'tcp', hostPort: 8080, guestPort: 8080 }]);
  });

  it.each([
    [{ preset: 'open' }, 'policy.preset'],
    [{ allow: [{ cidr: '1.2.3.4', protocol: 'tcp', port: 0 }] }, 'policy.allow[0].port'],
    [{ allow: [{ cidr: '1.2.3.4', protocol: 'tcp', port: 65536 }] }, 'policy.allow[0].port'],
    [{ allow: [{ cidr: '1.2.3.4', protocol: 'tcp', port: { from: 9, to: 1 } }] }, 'policy.allow[0].port'],
    [
      { allow: [{ cidr: '1.2.3.4', protocol: 'tcp', port: { from: 0, to: 1 } }] },
      'policy.allow[0].port.from',
    ],
    [{ allow: [{ cidr: '1.2.3.4', protocol: 'gre' }] }, 'policy.allow[0].protocol'],
    [{ allow: [{ cidr: '1.2.3.4', port: 80 }] }, 'policy.allow[0].port'],
    [{ allow: 'all' }, 'policy.allow'],
    [{ dns: 'yes' }, 'policy.dns'],
    [{ dnsServers: ['8.8.8'] }, 'policy.dnsServers[0]'],
    [{ hostPorts: [{ protocol: 'udp' }] }, 'policy.hostPorts[0].port'],
    [{ portForwards: [{ hostPort: 80 }, { hostPort: 80 }] }, 'policy.portForwards[1].hostPort'],
    [{ portForwards: [{ hostPort: 80, protocol: 'icmp' }] }, 'policy.portForwards[0].protocol'],
    [{ egress: [] }, 'policy.egress'],
  ])('should reject %j naming %s', (policy, field) => {
    expect(() => validatePolicy(policy)).toThrow(expect.objectContaining({ name: 'ValidationError', field }));
  });
});

describe('validateTarget', () => {
  const valid = { tapName: 'tap0', guestIp: '10.0.0.2', guestMac: '06:00:0A:00:00:02' };

  it('should lower-case the MAC', () => {
    expect(validateTarget(valid).guestMac).toBe('06:00:0a:00:00:02');
  });

  it.each([
    [{ ...valid, tapName: 'x'.repeat(16) }, 'target.tapName'],
    [{ ...valid, tapName: 'tap"0' }, 'target.tapName'],
    [{ ...valid, tapName: '' }, 'target.tapName'],
    [{ ...valid, guestIp: '10.0.0.256' }, 'target.guestIp'],
    [{ ...valid, guestMac: 'zz:00:0a:00:00:02' }, 'target.guestMac'],
    [{ ...valid, dnsServers: ['::1'] }, 'target.dnsServers[0]'],
  ])('should reject %j naming %s', (target, field) => {
    expect(() => validateTarget(target)).toThrow(expect.objectContaining({ field }));
  });
});
