import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { NetworkManager, SUBNET_LEASE_POOL } from '../../src/index.js';
import { addressCode, parseIpv4 } from '../../src/ipv4.js';
import { ipJson, type LinkInfo, Sandbox, sh } from './helpers.js';

const sandbox = new Sandbox();
afterEach(() => sandbox.cleanup());

const vmIds = (count: number, tag: string) => Array.from({ length: count }, (_, index) => `${tag}-${index}`);

async function leaseFiles(stateDir: string): Promise<string[]> {
  return readdir(join(stateDir, 'leases', SUBNET_LEASE_POOL)).catch(() => []);
}

describe('NetworkManager in routed mode', () => {
  it('should give 50 concurrent VMs distinct subnets whose TAPs, addresses and routes really exist', async () => {
    const { host } = await sandbox.hostWithInternet();
    const stateDir = await sandbox.stateDir();
    const network = new NetworkManager({
      pool: '10.202.0.0/24',
      namespace: host,
      stateDir,
      namePrefix: 'lc',
    });
    const ids = vmIds(50, 'vm');
    sandbox.onCleanup(() => Promise.all(ids.map((id) => network.detach(id))));

    const attachments = await Promise.all(ids.map((id) => network.attach(id)));

    const guestIps = attachments.map((attachment) => attachment.facts.guestIp);
    const tapNames = attachments.map((attachment) => attachment.facts.tapName);
    expect(new Set(guestIps).size).toBe(50);
    expect(new Set(tapNames).size).toBe(50);
    expect(new Set(attachments.map((attachment) => attachment.facts.guestMac)).size).toBe(50);
    for (const name of tapNames) expect(Buffer.byteLength(name)).toBeLessThanOrEqual(15);

    const links = await ipJson<LinkInfo>(host, ['addr', 'show']);
    const routes = await ipJson<{ dst: string; dev: string }>(host, ['route', 'show']);
    const tuntaps = await sh('ip', ['-n', host, 'tuntap', 'show']);
    for (const { facts } of attachments) {
      const link = links.find((candidate) => candidate.ifname === facts.tapName);
      expect(link?.flags).toContain('UP');
      expect(link?.addr_info).toContainEqual(
        expect.objectContaining({ family: 'inet', local: facts.gatewayIp, prefixlen: 30 }),
      );
      const subnet = facts.gatewayIp.replace(/\d+$/, (last) => String(Number(last) - 1));
      expect(routes).toContainEqual(expect.objectContaining({ dst: `${subnet}/30`, dev: facts.tapName }));
      expect(tuntaps).toContain(`${facts.tapName}: tap`);
      expect(facts).toMatchObject({
        prefixLength: 30,
        netmask: '255.255.255.252',
        namespace: host,
        mode: 'routed',
      });
    }
    expect(await leaseFiles(stateDir)).toHaveLength(50);

    await Promise.all(ids.map((id) => network.detach(id)));
    const after = await ipJson<LinkInfo>(host, ['link', 'show']);
    expect(after.map((link) => link.ifname).sort()).toEqual(['lo', 'up0']);
    expect(await leaseFiles(stateDir)).toEqual([]);
    // Idempotent.
    await network.detach('vm-0');
  });

  it('should reuse no live allocation after a restart, and reconcile what a dead process left', async () => {
    const { host } = await sandbox.hostWithInternet();
    const stateDir = await sandbox.stateDir();
    const options = { pool: '10.203.0.0/27', namespace: host, stateDir, namePrefix: 'rs' } as const;
    // The first "process" sets up three VMs and disappears without any teardown, as a SIGKILL would leave it.
    const first = new NetworkManager(options);
    const before = await Promise.all(['a', 'b', 'c'].map((id) => first.attach(id)));

    const second = new NetworkManager(options);
    sandbox.onCleanup(() => Promise.all(['a', 'b', 'c', 'd', 'e'].map((id) => second.detach(id))));
    const fresh = await Promise.all(['d', 'e'].map((id) => second.attach(id)));
    const beforeIps = new Set(before.map((attachment) => attachment.facts.guestIp));
    for (const attachment of fresh) expect(beforeIps.has(attachment.facts.guestIp)).toBe(false);

    // Only 'b' and 'e' are alive now. A TAP named like ours for a subnet of the pool that has no lease (made by
    // someone else) is not provably ours and stays.
    const lookAlike = `rst${addressCode(parseIpv4('10.203.0.28')!)}`;
    await sh('ip', ['-n', host, 'tuntap', 'add', 'name', lookAlike, 'mode', 'tap']);
    const removed = await second.reconcile(['b', 'e']);
    const survivors = (await ipJson<LinkInfo>(host, ['link', 'show'])).map((link) => link.ifname).sort();
    expect(survivors).toEqual(
      ['lo', 'up0', lookAlike, before[1]!.facts.tapName, fresh[1]!.facts.tapName].sort(),
    );
    expect(removed).toEqual(
      expect.arrayContaining([
        `interface ${before[0]!.facts.tapName}`,
        `interface ${fresh[0]!.facts.tapName}`,
        expect.stringMatching(/^lease network-subnet\/.* of a$/),
      ]),
    );
    expect((await leaseFiles(stateDir)).length).toBe(2);
    expect(await second.reconcile(['b', 'e'])).toEqual([]);
  });
});

describe('TAP options', () => {
  it('should give the TAP its owner (for a jailed Firecracker) and MTU, and pass the MTU to Firecracker', async () => {
    const { host } = await sandbox.hostWithInternet();
    const stateDir = await sandbox.stateDir();
    const network = new NetworkManager({
      pool: '10.206.0.0/24',
      namespace: host,
      stateDir,
      namePrefix: 'to',
      tapOwner: { uid: 65534, gid: 65534 },
      mtu: 1400,
    });
    sandbox.onCleanup(() => network.detach('vm-owned'));
    const attachment = await network.attach('vm-owned');
    const tapName = attachment.facts.tapName;
    const [link] = await ipJson<LinkInfo & { mtu?: number }>(host, ['link', 'show', tapName]);
    expect(link?.mtu).toBe(1400);
    expect(attachment.networkInterface.mtu).toBe(1400);
    const owner = await sh('ip', ['netns', 'exec', host, 'cat', `/sys/class/net/${tapName}/owner`]);
    const group = await sh('ip', ['netns', 'exec', host, 'cat', `/sys/class/net/${tapName}/group`]);
    expect([owner.trim(), group.trim()]).toEqual(['65534', '65534']);
    await network.detach('vm-owned');
    expect(await ipJson<LinkInfo>(host, ['link', 'show'])).not.toContainEqual(
      expect.objectContaining({ ifname: tapName }),
    );
  });
});

describe('NetworkManager in namespaced mode', () => {
  it('should give concurrent VMs their own namespace with the same TAP name and guest IP, and remove them', async () => {
    const { host } = await sandbox.hostWithInternet();
    const stateDir = await sandbox.stateDir();
    const network = new NetworkManager({
      mode: 'namespaced',
      pool: '10.204.0.0/24',
      namespace: host,
      stateDir,
      namePrefix: 'ns',
    });
    const ids = vmIds(10, 'ns');
    sandbox.onCleanup(() => Promise.all(ids.map((id) => network.detach(id))));
    const attachments = await Promise.all(ids.map((id) => network.attach(id)));

    expect(new Set(attachments.map((attachment) => attachment.facts.namespace)).size).toBe(10);
    for (const attachment of attachments) {
      expect(attachment.facts).toMatchObject({
        tapName: 'tap0',
        guestIp: '192.168.241.2',
        gatewayIp: '192.168.241.1',
      });
      expect(attachment.networkNamespacePath).toBe(`/run/netns/${attachment.facts.namespace}`);
      const inside = await ipJson<LinkInfo>(attachment.facts.namespace!, ['addr', 'show']);
      expect(inside.find((link) => link.ifname === 'tap0')?.addr_info).toContainEqual(
        expect.objectContaining({ local: '192.168.241.1', prefixlen: 30 }),
      );
      const routes = await ipJson<{ dst: string; gateway?: string }>(attachment.facts.namespace!, [
        'route',
        'show',
      ]);
      expect(routes).toContainEqual(expect.objectContaining({ dst: 'default' }));
      const ruleset = await sh('ip', [
        'netns',
        'exec',
        attachment.facts.namespace!,
        'nft',
        'list',
        'ruleset',
      ]);
      expect(ruleset).toContain('masquerade');
    }

    await Promise.all(ids.map((id) => network.detach(id)));
    const namespaces = await sh('ip', ['netns', 'list']);
    for (const attachment of attachments) expect(namespaces).not.toContain(attachment.facts.namespace);
    expect((await ipJson<LinkInfo>(host, ['link', 'show'])).map((link) => link.ifname).sort()).toEqual([
      'lo',
      'up0',
    ]);
    expect(await leaseFiles(stateDir)).toEqual([]);
  });
});
