import { execa } from 'execa';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FirewallManager } from '../../src/index.js';
import { dockerLikeTables } from './docker-like-tables.js';

let counter = 0;
let namespace: string;
let firewall: FirewallManager;

const target = (index: number) => ({
  tapName: `tap-vm${index}`,
  guestIp: `10.0.${Math.floor(index / 60)}.${(index % 60) * 4 + 2}`,
  guestMac: '06:00:0a:00:00:02',
  dnsServers: ['10.0.0.1'],
});

async function nft(...args: string[]): Promise<string> {
  return (await execa('ip', ['netns', 'exec', namespace, 'nft', ...args])).stdout;
}

/** The whole ruleset with handles: any change to any table shows. */
const ruleset = () => nft('-j', '-a', 'list', 'ruleset');

beforeEach(async () => {
  counter += 1;
  namespace = `fw${process.pid}-m${counter}`;
  await execa('ip', ['netns', 'add', namespace]);
  firewall = new FirewallManager({ namespace });
});

afterEach(async () => {
  await execa('ip', ['netns', 'del', namespace], { reject: false });
});

describe('FirewallManager lifecycle', () => {
  it('should be idempotent: applying the same policy twice gives the same ruleset', async () => {
    const policy = { preset: 'internet-only' as const, portForwards: [{ hostPort: 8080 }] };
    await firewall.apply('vm-1', target(1), policy);
    const first = await nft('list', 'ruleset');
    await firewall.apply('vm-1', target(1), policy);
    expect(await nft('list', 'ruleset')).toBe(first);
  });

  it('should replace a VM’s TAP and forwards without leaving the old ones behind', async () => {
    await firewall.apply('vm-1', target(1), {
      portForwards: [{ hostPort: 8080 }, { hostPort: 53, protocol: 'udp' }],
    });
    await firewall.apply(
      'vm-1',
      { ...target(1), tapName: 'tap-new' },
      { portForwards: [{ hostPort: 9090 }] },
    );
    const listing = await nft('list', 'table', 'inet', 'microvm');
    expect(listing).not.toContain('"tap-vm1"');
    expect(listing).not.toContain('8080');
    expect(listing).not.toContain('udp . 53');
    expect(await firewall.list()).toEqual([
      { vmId: 'vm-1', tapName: 'tap-new', portForwards: [{ protocol: 'tcp', hostPort: 9090 }] },
    ]);
  });

  it('should remove idempotently and leave an empty table', async () => {
    const empty = await (async () => {
      await firewall.apply('vm-x', target(9));
      await firewall.remove('vm-x');
      return nft('list', 'table', 'inet', 'microvm');
    })();
    await firewall.apply('vm-1', target(1), { portForwards: [{ hostPort: 8080 }] });
    expect(await firewall.remove('vm-1')).toBe(true);
    expect(await firewall.remove('vm-1')).toBe(false);
    expect(await firewall.remove('never-installed')).toBe(false);
    expect(await nft('list', 'table', 'inet', 'microvm')).toBe(empty);
  });

  it('should remove what is left even when someone deleted one of the VM’s map entries', async () => {
    await firewall.apply('vm-1', target(1));
    await nft('delete', 'element', 'inet', 'microvm', 'vm_host', '{ "tap-vm1" }');
    expect(await firewall.remove('vm-1')).toBe(true);
    expect(await firewall.list()).toEqual([]);
  });

  it('should put back map entries someone deleted when the VM’s rules are applied again', async () => {
    const policy = { portForwards: [{ hostPort: 8080, guestPort: 80 }] };
    await firewall.apply('vm-1', target(1), policy);
    const installed = await nft('list', 'table', 'inet', 'microvm');
    await nft('delete', 'element', 'inet', 'microvm', 'vm_host', '{ "tap-vm1" }');
    await nft('delete', 'element', 'inet', 'microvm', 'port_forwards', '{ tcp . 8080 }');
    await firewall.apply('vm-1', target(1), policy);
    expect(await nft('list', 'table', 'inet', 'microvm')).toBe(installed);
  });

  it('should reconcile: remove the chains of VMs that no longer exist, keep the live ones', async () => {
    for (const index of [1, 2, 3]) await firewall.apply(`vm-${index}`, target(index));
    expect(await firewall.reconcile(['vm-2'])).toEqual(['vm-1', 'vm-3']);
    expect((await firewall.list()).map((installed) => installed.vmId)).toEqual(['vm-2']);
    expect(await firewall.reconcile(['vm-2'])).toEqual([]);
  });

  it('should refuse a host port or a TAP another VM holds, and leave the ruleset unchanged', async () => {
    await firewall.apply('vm-1', target(1), { portForwards: [{ hostPort: 8080 }] });
    const before = await ruleset();
    await expect(
      firewall.apply('vm-2', target(2), { portForwards: [{ hostPort: 8080 }] }),
    ).rejects.toMatchObject({ code: 'ERR_MICROVM_INVALID_INPUT', field: 'policy.portForwards[0].hostPort' });
    await expect(firewall.apply('vm-2', { ...target(2), tapName: 'tap-vm1' })).rejects.toMatchObject({
      code: 'ERR_MICROVM_INVALID_INPUT',
      field: 'target.tapName',
    });
    expect(await ruleset()).toBe(before);
  });

  it('should serialise concurrent changes to one VM and run different VMs in parallel', async () => {
    await Promise.all([
      ...Array.from({ length: 10 }, (_, index) => firewall.apply(`vm-${index}`, target(index))),
      firewall.apply('vm-0', target(0), { preset: 'allow-all' }),
      firewall.apply('vm-0', target(0), { preset: 'internet-only' }),
    ]);
    expect(await firewall.list()).toHaveLength(10);
    expect(await nft('list', 'chain', 'inet', 'microvm', 'vm-vm-0-out')).toContain(
      'ip daddr @nonpublic_ipv4 drop',
    );
  });
});

describe('coexistence with other tools', () => {
  it('should leave foreign tables exactly as they were through apply, remove, reconcile and deleteTable', async () => {
    await execa('ip', ['netns', 'exec', namespace, 'nft', '-f', '-'], { input: dockerLikeTables });
    const foreign = async () =>
      `${await nft('-j', '-a', 'list', 'table', 'ip', 'filter')}\n${await nft('-j', '-a', 'list', 'table', 'ip', 'nat')}`;
    const before = await foreign();
    await firewall.apply('vm-1', target(1), { preset: 'internet-only', portForwards: [{ hostPort: 8080 }] });
    await firewall.apply('vm-2', target(2));
    expect(await foreign()).toBe(before);
    await firewall.remove('vm-1');
    await firewall.reconcile([]);
    expect(await foreign()).toBe(before);
    await firewall.deleteTable();
    await firewall.deleteTable();
    expect(await foreign()).toBe(before);
    expect(await nft('list', 'tables')).toBe('table ip filter\ntable ip nat');
  });

  it('should keep two managers with different tables apart', async () => {
    const other = new FirewallManager({ namespace, tableName: 'other_tool' });
    await other.apply('vm-1', target(1));
    await firewall.apply('vm-1', target(1));
    await firewall.reconcile([]);
    expect(await other.list()).toHaveLength(1);
    expect(await firewall.list()).toEqual([]);
  });
});

describe('bad input', () => {
  const valid = target(1);
  const cases: Array<[string, () => Promise<unknown>, string]> = [
    [
      'malformed CIDR',
      () => firewall.apply('vm-1', valid, { allow: [{ cidr: '10.0.0/8' }] }),
      'policy.allow[0].cidr',
    ],
    [
      'CIDR prefix > 32',
      () => firewall.apply('vm-1', valid, { allow: [{ cidr: '10.0.0.0/33' }] }),
      'policy.allow[0].cidr',
    ],
    [
      'CIDR host bits',
      () => firewall.apply('vm-1', valid, { allow: [{ cidr: '10.0.0.1/8' }] }),
      'policy.allow[0].cidr',
    ],
    [
      'octet > 255',
      () => firewall.apply('vm-1', valid, { allow: [{ cidr: '10.0.0.256' }] }),
      'policy.allow[0].cidr',
    ],
    [
      'nft syntax in a CIDR',
      () => firewall.apply('vm-1', valid, { allow: [{ cidr: '0.0.0.0/0 accept; flush ruleset' }] }),
      'policy.allow[0].cidr',
    ],
    [
      'port 0',
      () => firewall.apply('vm-1', valid, { allow: [{ cidr: '1.2.3.4', protocol: 'tcp', port: 0 }] }),
      'policy.allow[0].port',
    ],
    [
      'port > 65535',
      () => firewall.apply('vm-1', valid, { allow: [{ cidr: '1.2.3.4', protocol: 'udp', port: 65536 }] }),
      'policy.allow[0].port',
    ],
    [
      'reversed range',
      () =>
        firewall.apply('vm-1', valid, {
          allow: [{ cidr: '1.2.3.4', protocol: 'tcp', port: { from: 90, to: 80 } }],
        }),
      'policy.allow[0].port',
    ],
    [
      'unknown protocol',
      () => firewall.apply('vm-1', valid, { allow: [{ cidr: '1.2.3.4', protocol: 'sctp' as 'tcp' }] }),
      'policy.allow[0].protocol',
    ],
    [
      'port without tcp/udp',
      () => firewall.apply('vm-1', valid, { allow: [{ cidr: '1.2.3.4', protocol: 'icmp', port: 1 }] }),
      'policy.allow[0].port',
    ],
    [
      'unknown preset',
      () => firewall.apply('vm-1', valid, { preset: 'open' as 'allow-all' }),
      'policy.preset',
    ],
    [
      'forward port 0',
      () => firewall.apply('vm-1', valid, { portForwards: [{ hostPort: 0 }] }),
      'policy.portForwards[0].hostPort',
    ],
    [
      'host port missing',
      () => firewall.apply('vm-1', valid, { hostPorts: [{ protocol: 'tcp' }] }),
      'policy.hostPorts[0].port',
    ],
    [
      'overlong TAP name',
      () => firewall.apply('vm-1', { ...valid, tapName: 'tap-0123456789ab' }),
      'target.tapName',
    ],
    ['quote in TAP name', () => firewall.apply('vm-1', { ...valid, tapName: 'tap"0' }), 'target.tapName'],
    ['bad guest IP', () => firewall.apply('vm-1', { ...valid, guestIp: '10.0.0' }), 'target.guestIp'],
    [
      'bad guest MAC',
      () => firewall.apply('vm-1', { ...valid, guestMac: '06:00:0a:00:00' }),
      'target.guestMac',
    ],
    [
      'bad DNS server',
      () => firewall.apply('vm-1', valid, { dnsServers: ['1.1.1.1; drop'] }),
      'policy.dnsServers[0]',
    ],
    ['bad VM id', () => firewall.apply('vm_1', valid), 'vmId'],
    ['overlong VM id', () => firewall.apply('v'.repeat(65), valid), 'vmId'],
    ['bad VM id on remove', () => firewall.remove('vm 1'), 'vmId'],
    ['bad namespace', async () => new FirewallManager({ namespace: '../etc' }), 'namespace'],
    ['bad table name', async () => new FirewallManager({ tableName: 'micro vm' }), 'tableName'],
  ];

  it.each(cases)('should reject %s with a ValidationError and change nothing', async (_name, run, field) => {
    await firewall.apply('vm-0', target(0), { preset: 'internet-only' });
    await execa('ip', ['netns', 'exec', namespace, 'nft', '-f', '-'], { input: dockerLikeTables });
    const before = await ruleset();
    await expect(run()).rejects.toMatchObject({
      name: 'ValidationError',
      code: 'ERR_MICROVM_INVALID_INPUT',
      field,
    });
    expect(await ruleset()).toBe(before);
  });
});
