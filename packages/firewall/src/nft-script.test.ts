import { describe, expect, it } from 'vitest';
import { applyLines, parseChainName, parseInstalledState, removeLines, renderScript } from './nft-script.js';
import { validatePolicy, validateTarget } from './policy.js';

const target = validateTarget({ tapName: 'tap0', guestIp: '10.0.0.2', guestMac: '06:00:0a:00:00:02' });

describe('applyLines', () => {
  it('should write per-VM rules without anonymous sets, so nft changes stay cheap with many VMs', () => {
    const policy = validatePolicy({
      preset: 'internet-only',
      dnsServers: ['10.0.0.1', '1.1.1.1'],
      portForwards: [{ hostPort: 80 }],
    });
    const perVm = applyLines('microvm', 'vm-1', target, policy, undefined)
      .map((line) => line.text)
      .filter((text) => text.startsWith('add rule inet microvm vm-'));
    expect(perVm.some((text) => text.includes('{'))).toBe(false);
    expect(perVm).toContain('add rule inet microvm vm-vm-1-out ip daddr @nonpublic_ipv4 drop');
    expect(perVm).toContain('add rule inet microvm vm-vm-1-out ether saddr != 06:00:0a:00:00:02 drop');
  });

  it('should create the ingress chain exclusively for a first install, and delete old elements on a replace', () => {
    const policy = validatePolicy({});
    const first = applyLines('microvm', 'vm-1', target, policy, 'none');
    expect(first.find((line) => line.conflict === 'installed')?.text).toBe(
      'create chain inet microvm vm-vm-1-in',
    );
    const replace = renderScript(
      applyLines('microvm', 'vm-1', target, policy, {
        tapName: 'old',
        portForwards: [{ protocol: 'udp', hostPort: 53 }],
      }),
    );
    expect(replace).toContain('delete element inet microvm vm_egress { "old" }');
    expect(replace).toContain('delete element inet microvm port_forwards { udp . 53 }');
    expect(replace).not.toContain('create chain');
  });

  it('should end each egress chain with the preset’s verdict', () => {
    const last = (preset: 'deny-all' | 'allow-all') =>
      applyLines('microvm', 'a', target, validatePolicy({ preset }), undefined)
        .map((line) => line.text)
        .filter((text) => text.startsWith('add rule inet microvm vm-a-out'))
        .slice(-2);
    expect(last('deny-all')[1]).toBe('add rule inet microvm vm-a-out drop');
    expect(last('allow-all')[0]).toBe('add rule inet microvm vm-a-out return');
  });
});

describe('parseInstalledState', () => {
  it('should read back what applyLines recorded', () => {
    const listing = renderScript(
      applyLines(
        'microvm',
        'a',
        target,
        validatePolicy({ portForwards: [{ hostPort: 8080, guestPort: 80 }] }),
        undefined,
      ),
    );
    expect(parseInstalledState(listing)).toEqual({
      tapName: 'tap0',
      portForwards: [{ protocol: 'tcp', hostPort: 8080 }],
    });
    expect(parseInstalledState('chain x { drop }')).toBeUndefined();
  });
});

describe('chain names', () => {
  it.each([
    ['vm-a-in', { vmId: 'a', role: 'ingress' }],
    ['vm-a-in-out', { vmId: 'a-in', role: 'egress' }],
    ['vm-x-host', { vmId: 'x', role: 'host' }],
    ['forward', undefined],
    ['DOCKER-USER', undefined],
  ])('should parse %s', (name, expected) => {
    expect(parseChainName(name)).toEqual(expected);
  });

  it('should delete all three chains on remove', () => {
    expect(removeLines('t', 'a', undefined).map((line) => line.text)).toEqual([
      'delete chain inet t vm-a-out',
      'delete chain inet t vm-a-in',
      'delete chain inet t vm-a-host',
    ]);
  });
});
