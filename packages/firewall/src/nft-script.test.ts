import { describe, expect, it } from 'vitest';
import {
  applyLines,
  parseChainName,
  parseInstalledState,
  removeLines,
  renderScript,
  type ScriptLine,
} from './nft-script.js';
import { validatePolicy, validateTarget } from './policy.js';

const target = validateTarget({ tapName: 'tap0', guestIp: '10.0.0.2', guestMac: '06:00:0a:00:00:02' });

/** The rules of the block that fills `chain`, in order. */
function blockRules(lines: readonly ScriptLine[], chain: string): string[] {
  const prefix = `add chain inet microvm ${chain} { `;
  const block = lines
    .map((line) => line.text)
    .find((text) => text.startsWith(prefix) && !text.includes('type '));
  if (!block) throw new Error(`no block fills ${chain}`);
  return block
    .slice(prefix.length, -1)
    .split('; ')
    .filter((rule) => rule.trim() !== '');
}

describe('applyLines', () => {
  const forwarding = validatePolicy({
    preset: 'internet-only',
    dnsServers: ['10.0.0.1', '1.1.1.1'],
    portForwards: [{ hostPort: 80 }],
  });

  it('should install a VM with chain and map blocks only, the commands for which nft reads no chain cache', () => {
    const lines = applyLines('microvm', 'vm-1', target, forwarding, 'none');
    const commands = lines.map((line) => line.text.split(' ').slice(0, 2).join(' '));
    expect(new Set(commands)).toEqual(
      new Set(['add table', 'add map', 'add set', 'add chain', 'flush chain', 'create chain']),
    );
    const egress = blockRules(lines, 'vm-vm-1-out');
    expect(egress).toContain('ip daddr @nonpublic_ipv4 drop');
    expect(egress).toContain('ether saddr != 06:00:0a:00:00:02 drop');
    // No anonymous sets either: commands that do read the cache would read every one of them.
    for (const chain of ['vm-vm-1-out', 'vm-vm-1-in', 'vm-vm-1-host']) {
      expect(blockRules(lines, chain).some((rule) => rule.includes('{'))).toBe(false);
    }
    expect(renderScript(lines)).toContain(
      'add map inet microvm vm_egress { type ifname : verdict; elements = { "tap0" : jump vm-vm-1-out }; }',
    );
  });

  it('should create the ingress chain exclusively for a first install', () => {
    const first = applyLines('microvm', 'vm-1', target, validatePolicy({}), 'none');
    expect(first.find((line) => line.conflict === 'installed')?.text).toBe(
      'create chain inet microvm vm-vm-1-in',
    );
  });

  it('should delete on a replace only the elements whose key may change', () => {
    const policy = validatePolicy({});
    const replace = renderScript(
      applyLines('microvm', 'vm-1', target, policy, {
        tapName: 'old',
        portForwards: [{ protocol: 'udp', hostPort: 53 }],
      }),
    );
    expect(replace).toContain('delete element inet microvm vm_egress { "old" }');
    expect(replace).toContain('delete element inet microvm port_forwards { udp . 53 }');
    expect(replace).not.toContain('create chain');
    // Same TAP, no forwards: the elements are re-added as they are, and nothing is deleted.
    const sameTap = renderScript(
      applyLines('microvm', 'vm-1', target, policy, { tapName: 'tap0', portForwards: [] }),
    );
    expect(sameTap).not.toContain('delete ');
    expect(sameTap).toContain('elements = { "tap0" : jump vm-vm-1-host }');
  });

  it('should end each egress chain with the preset’s verdict', () => {
    const last = (preset: 'deny-all' | 'allow-all') =>
      blockRules(applyLines('microvm', 'a', target, validatePolicy({ preset }), undefined), 'vm-a-out').slice(
        -2,
      );
    expect(last('deny-all')[1]).toBe('drop');
    expect(last('allow-all')[0]).toBe('return');
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
