import { access, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ADDRESS_LEASE_POOL,
  type NetworkAttachment,
  NetworkManager,
  type NetworkMode,
  SUBNET_LEASE_POOL,
} from '../../src/index.js';
import { addressCode, formatIpv4, macForGuestIp, parseIpv4 } from '../../src/ipv4.js';
import { ipJson, type LinkInfo, processNamePrefix, Sandbox, sh } from './helpers.js';

const sandbox = new Sandbox();
afterEach(() => sandbox.cleanup());

const vmIds = (count: number, tag: string) => Array.from({ length: count }, (_, index) => `${tag}-${index}`);

async function leaseFiles(stateDir: string): Promise<string[]> {
  return readdir(join(stateDir, 'leases', SUBNET_LEASE_POOL)).catch(() => []);
}

const MODES: readonly NetworkMode[] = ['routed', 'bridge', 'namespaced'];
const CONCURRENT_VMS = 50;
// 50 namespaces (or TAPs), each made by a few `ip` processes, on a loaded 2-core host: a catch for hangs only.
const CONCURRENT_TEST_TIMEOUT_MS = 180_000;

interface RouteInfo {
  dst: string;
  dev?: string;
  gateway?: string;
  type?: string;
  table?: string;
}

/** `<pool>/<value>` → owner of every lease file in the state directory (both pools). */
async function leases(stateDir: string): Promise<Record<string, string>> {
  const held: Record<string, string> = {};
  for (const pool of [SUBNET_LEASE_POOL, ADDRESS_LEASE_POOL]) {
    const dir = join(stateDir, 'leases', pool);
    for (const value of await readdir(dir).catch(() => [])) {
      held[`${pool}/${value}`] = await readFile(join(dir, value), 'utf8');
    }
  }
  return held;
}

/** A namespace's links, IPv4 addresses and IPv4 routes of every table (local included), each as sorted lines. */
async function namespaceState(
  namespace: string,
): Promise<{ links: string[]; addresses: string[]; routes: string[] }> {
  const links = await ipJson<LinkInfo>(namespace, ['addr', 'show']);
  const routes = await ipJson<RouteInfo>(namespace, ['-4', 'route', 'show', 'table', 'all']);
  return {
    links: links.map((link) => link.ifname).sort(),
    addresses: links
      .flatMap((link) =>
        (link.addr_info ?? [])
          .filter((address) => address.family === 'inet')
          .map((address) => `${link.ifname} ${address.local}/${address.prefixlen}`),
      )
      .sort(),
    routes: routes
      .map((route) =>
        [
          route.table ?? 'main',
          route.type ?? 'unicast',
          route.dst,
          route.gateway && `via ${route.gateway}`,
          route.dev && `dev ${route.dev}`,
        ]
          .filter(Boolean)
          .join(' '),
      )
      .sort(),
  };
}

/** Names in the global /run/netns that a manager with `namePrefix` makes (`<prefix>n<code>`). */
async function namespacesOf(namePrefix: string): Promise<string[]> {
  const stdout = await sh('ip', ['-j', 'netns', 'list']);
  const namespaces = stdout.trim() === '' ? [] : (JSON.parse(stdout) as { name: string }[]);
  return namespaces
    .map((namespace) => namespace.name)
    .filter((name) => name.startsWith(`${namePrefix}n`))
    .sort();
}

const exists = (path: string) =>
  access(path).then(
    () => true,
    () => false,
  );

/** Adds `offset` to a dotted quad. */
const shift = (address: string, offset: number) => formatIpv4(parseIpv4(address)! + offset);

/** The lease each mode takes: the /30's network (routed, namespaced: the veth's) or the guest address (bridge). */
function leaseOf(mode: NetworkMode, attachment: NetworkAttachment): string {
  const { facts } = attachment;
  if (mode === 'routed') return `${SUBNET_LEASE_POOL}/${shift(facts.guestIp, -2)}`;
  if (mode === 'bridge') return `${ADDRESS_LEASE_POOL}/${facts.guestIp}`;
  return `${SUBNET_LEASE_POOL}/${shift(facts.hostLink!.peerIp!, -2)}`;
}

/**
 * `Promise.all` that waits for every operation before throwing the first failure: a test that failed must not
 * clean up while attaches are still creating namespaces and leases behind its back.
 */
async function allSettledOrThrow<T>(operations: Promise<T>[]): Promise<T[]> {
  const results = await Promise.allSettled(operations);
  const failure = results.find((result) => result.status === 'rejected');
  if (failure) throw failure.reason;
  return results.map((result) => (result as PromiseFulfilledResult<T>).value);
}

function expectDistinct(values: unknown[]): void {
  expect(new Set(values).size).toBe(values.length);
}

/** Reads back, with `ip -j`, every link, address and route the attachments say exist in routed mode. */
async function expectRoutedVms(host: string, attachments: NetworkAttachment[]): Promise<void> {
  const tapNames = attachments.map((attachment) => attachment.facts.tapName);
  expectDistinct(attachments.map((attachment) => attachment.facts.guestIp));
  expectDistinct(attachments.map((attachment) => attachment.facts.guestMac));
  expectDistinct(tapNames);
  const links = await ipJson<LinkInfo>(host, ['addr', 'show']);
  expect(links.map((link) => link.ifname).sort()).toEqual(['lo', 'up0', ...tapNames].sort());
  const routes = await ipJson<RouteInfo>(host, ['route', 'show']);
  const tuntaps = await sh('ip', ['-n', host, 'tuntap', 'show']);
  for (const { facts } of attachments) {
    expect(facts).toMatchObject({
      mode: 'routed',
      namespace: host,
      gatewayIp: shift(facts.guestIp, -1),
      prefixLength: 30,
      netmask: '255.255.255.252',
      guestMac: macForGuestIp(parseIpv4(facts.guestIp)!),
    });
    expect(Buffer.byteLength(facts.tapName)).toBeLessThanOrEqual(15);
    const link = links.find((candidate) => candidate.ifname === facts.tapName);
    expect(link?.flags).toContain('UP');
    expect(link?.addr_info?.filter((address) => address.family === 'inet')).toEqual([
      expect.objectContaining({ local: facts.gatewayIp, prefixlen: 30 }),
    ]);
    expect(routes).toContainEqual(
      expect.objectContaining({ dst: `${shift(facts.guestIp, -2)}/30`, dev: facts.tapName }),
    );
    expect(tuntaps).toContain(`${facts.tapName}: tap`);
  }
}

/** bridge mode: every TAP a port of the one bridge, which holds the pool's gateway; guests share its subnet. */
async function expectBridgedVms(
  host: string,
  bridgeName: string,
  attachments: NetworkAttachment[],
): Promise<void> {
  const tapNames = attachments.map((attachment) => attachment.facts.tapName);
  expectDistinct(attachments.map((attachment) => attachment.facts.guestIp));
  expectDistinct(attachments.map((attachment) => attachment.facts.guestMac));
  expectDistinct(tapNames);
  const links = await ipJson<LinkInfo>(host, ['addr', 'show']);
  expect(links.map((link) => link.ifname).sort()).toEqual(['lo', 'up0', bridgeName, ...tapNames].sort());
  const bridge = links.find((link) => link.ifname === bridgeName);
  expect(bridge?.flags).toContain('UP');
  expect(bridge?.addr_info?.filter((address) => address.family === 'inet')).toEqual([
    expect.objectContaining({ local: '10.202.0.1', prefixlen: 24 }),
  ]);
  const ports = await ipJson<LinkInfo>(host, ['link', 'show', 'master', bridgeName]);
  expect(ports.map((port) => port.ifname).sort()).toEqual([...tapNames].sort());
  const routes = await ipJson<RouteInfo>(host, ['route', 'show']);
  expect(routes).toContainEqual(expect.objectContaining({ dst: '10.202.0.0/24', dev: bridgeName }));
  const tuntaps = await sh('ip', ['-n', host, 'tuntap', 'show']);
  for (const { facts } of attachments) {
    expect(facts).toMatchObject({
      mode: 'bridge',
      namespace: host,
      gatewayIp: '10.202.0.1',
      prefixLength: 24,
      netmask: '255.255.255.0',
      guestIp: expect.stringMatching(/^10\.202\.0\.\d+$/),
      guestMac: macForGuestIp(parseIpv4(facts.guestIp)!),
    });
    expect(facts.guestIp).not.toMatch(/\.(0|1|255)$/);
    expect(Buffer.byteLength(facts.tapName)).toBeLessThanOrEqual(15);
    const link = links.find((candidate) => candidate.ifname === facts.tapName);
    expect(link?.master).toBe(bridgeName);
    expect(link?.flags).toContain('UP');
    // The gateway is the bridge's: a port holds no address of its own.
    expect(link?.addr_info?.filter((address) => address.family === 'inet')).toEqual([]);
    expect(tuntaps).toContain(`${facts.tapName}: tap`);
  }
}

/**
 * namespaced mode: the same TAP name, guest subnet and MAC in every VM namespace (by design: clones run side by
 * side); what differs is the namespace, the host's veth and the veth /30. Read back on both sides of each pair.
 */
async function expectNamespacedVms(host: string, attachments: NetworkAttachment[]): Promise<void> {
  const hostLinks = attachments.map((attachment) => attachment.facts.hostLink!);
  expectDistinct(attachments.map((attachment) => attachment.facts.namespace));
  expectDistinct(hostLinks.map((hostLink) => hostLink.interfaceName));
  expectDistinct(hostLinks.map((hostLink) => hostLink.peerIp));
  expectDistinct(hostLinks.map((hostLink) => hostLink.peerMac));
  const links = await ipJson<LinkInfo>(host, ['addr', 'show']);
  expect(links.map((link) => link.ifname).sort()).toEqual(
    ['lo', 'up0', ...hostLinks.map((hostLink) => hostLink.interfaceName)].sort(),
  );
  const routes = await ipJson<RouteInfo>(host, ['route', 'show']);
  for (const attachment of attachments) {
    const { facts } = attachment;
    const vmNamespace = facts.namespace!;
    const hostLink = facts.hostLink!;
    const hostSide = shift(hostLink.peerIp!, -1);
    const vethSubnet = `${shift(hostLink.peerIp!, -2)}/30`;
    expect(facts).toMatchObject({
      mode: 'namespaced',
      tapName: 'tap0',
      guestIp: '192.168.241.2',
      gatewayIp: '192.168.241.1',
      prefixLength: 30,
      guestMac: macForGuestIp(parseIpv4('192.168.241.2')!),
      hostLink: { namespace: host, peerMac: macForGuestIp(parseIpv4(hostLink.peerIp!)!) },
    });
    expect(attachment.networkNamespacePath).toBe(`/run/netns/${vmNamespace}`);

    // Host side: the veth holds the /30's first address, routed to it.
    const hostVeth = links.find((link) => link.ifname === hostLink.interfaceName);
    expect(hostVeth?.flags).toContain('UP');
    expect(hostVeth?.addr_info).toContainEqual(
      expect.objectContaining({ family: 'inet', local: hostSide, prefixlen: 30 }),
    );
    expect(routes).toContainEqual(expect.objectContaining({ dst: vethSubnet, dev: hostLink.interfaceName }));

    // Inside: lo, the veth's peer (known MAC, second address, default route) and the TAP with the gateway.
    const inside = await ipJson<LinkInfo>(vmNamespace, ['addr', 'show']);
    expect(inside.map((link) => link.ifname).sort()).toEqual(['lo', 'tap0', 'veth0']);
    for (const link of inside) expect(link.flags).toContain('UP');
    const veth = inside.find((link) => link.ifname === 'veth0');
    expect(veth?.address).toBe(hostLink.peerMac);
    expect(veth?.addr_info).toContainEqual(
      expect.objectContaining({ family: 'inet', local: hostLink.peerIp, prefixlen: 30 }),
    );
    expect(inside.find((link) => link.ifname === 'tap0')?.addr_info).toContainEqual(
      expect.objectContaining({ family: 'inet', local: '192.168.241.1', prefixlen: 30 }),
    );
    const insideRoutes = await ipJson<RouteInfo>(vmNamespace, ['route', 'show']);
    expect(insideRoutes).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ dst: 'default', gateway: hostSide, dev: 'veth0' }),
        expect.objectContaining({ dst: vethSubnet, dev: 'veth0' }),
        expect.objectContaining({ dst: '192.168.241.0/30', dev: 'tap0' }),
      ]),
    );
    expect(insideRoutes).toHaveLength(3);
    expect(await sh('ip', ['-n', vmNamespace, 'tuntap', 'show'])).toContain('tap0: tap');
    const ruleset = await sh('ip', ['netns', 'exec', vmNamespace, 'nft', 'list', 'ruleset']);
    expect(ruleset).toMatch(/ip saddr 192\.168\.241\.0\/30 oifname "veth0" masquerade/);
  }
}

describe.each(MODES)('NetworkManager with 50 VMs attached at once in %s mode', (mode) => {
  it(
    'should give them distinct networks that really exist, and leave nothing behind when all detach at once',
    async () => {
      const { host } = await sandbox.hostWithInternet();
      const stateDir = await sandbox.stateDir();
      const namePrefix = processNamePrefix('c');
      const bridgeName = `${namePrefix}br0`;
      const network = new NetworkManager({
        mode,
        pool: '10.202.0.0/24',
        namespace: host,
        stateDir,
        namePrefix,
      });
      const ids = vmIds(CONCURRENT_VMS, 'vm');
      const vmNamespaces: string[] = [];
      sandbox.onCleanup(async () => {
        await Promise.allSettled(ids.map((id) => network.detach(id)));
        await deleteNamespacesLeft(vmNamespaces);
      });
      const beforeCreate = async (attachment: NetworkAttachment) => {
        if (mode === 'namespaced') vmNamespaces.push(attachment.facts.namespace!);
      };

      // Nothing set up yet, not even the bridge: the 50 attaches are also the manager's first use of the host.
      const before = await namespaceState(host);
      expect(before.links).toEqual(['lo', 'up0']);
      expect(await namespacesOf(namePrefix)).toEqual([]);

      const attachments = await allSettledOrThrow(ids.map((id) => network.attach(id, { beforeCreate })));

      if (mode === 'routed') await expectRoutedVms(host, attachments);
      if (mode === 'bridge') await expectBridgedVms(host, bridgeName, attachments);
      if (mode === 'namespaced') {
        await expectNamespacedVms(host, attachments);
        expect(await namespacesOf(namePrefix)).toEqual(
          attachments.map((attachment) => attachment.facts.namespace).sort(),
        );
      }
      expect(await leases(stateDir)).toEqual(
        Object.fromEntries(attachments.map((attachment, index) => [leaseOf(mode, attachment), ids[index]])),
      );

      await allSettledOrThrow(ids.map((id) => network.detach(id)));

      const after = await namespaceState(host);
      if (mode === 'bridge') {
        // The bridge is host setup, like the NAT chain: it outlives the VMs (until removeHostSetup), with no port.
        expect(await ipJson<LinkInfo>(host, ['link', 'show', 'master', bridgeName])).toEqual([]);
        const notBridge = (line: string) => !line.split(' ').includes(bridgeName);
        expect({
          links: after.links.filter(notBridge),
          addresses: after.addresses.filter(notBridge),
          routes: after.routes.filter(notBridge),
        }).toEqual(before);
      } else {
        expect(after).toEqual(before);
      }
      expect(await namespacesOf(namePrefix)).toEqual([]);
      expect(await leases(stateDir)).toEqual({});
      await network.removeHostSetup();
      expect(await namespaceState(host)).toEqual(before);
      // Idempotent.
      await network.detach('vm-0');
    },
    CONCURRENT_TEST_TIMEOUT_MS,
  );
});

describe.each(MODES)('several managers sharing one host namespace and state directory in %s mode', (mode) => {
  // What several processes (CLI invocations, providers) do: each manager sets the host up on its own first use.
  // Each manager sets the host up on its own first attach: in bridge mode they all try to create one bridge.
  it(
    'should set up the host without a race when their first VMs are attached at once, and lease each address once',
    async () => {
      const { host } = await sandbox.hostWithInternet();
      const stateDir = await sandbox.stateDir();
      const namePrefix = processNamePrefix('r');
      const managers = Array.from(
        { length: 5 },
        () => new NetworkManager({ mode, pool: '10.202.0.0/24', namespace: host, stateDir, namePrefix }),
      );
      const idsOf = (managerIndex: number) => vmIds(4, `manager${managerIndex}`);
      const vmNamespaces: string[] = [];
      sandbox.onCleanup(async () => {
        await Promise.allSettled(
          managers.flatMap((manager, index) => idsOf(index).map((id) => manager.detach(id))),
        );
        await deleteNamespacesLeft(vmNamespaces);
      });
      const beforeCreate = async (attachment: NetworkAttachment) => {
        if (mode === 'namespaced') vmNamespaces.push(attachment.facts.namespace!);
      };
      const before = await namespaceState(host);

      const attachments = await allSettledOrThrow(
        managers.flatMap((manager, index) => idsOf(index).map((id) => manager.attach(id, { beforeCreate }))),
      );

      expectDistinct(attachments.map((attachment) => leaseOf(mode, attachment)));
      expect(Object.keys(await leases(stateDir))).toHaveLength(attachments.length);
      if (mode === 'bridge') {
        const ports = await ipJson<LinkInfo>(host, ['link', 'show', 'master', `${namePrefix}br0`]);
        expect(ports).toHaveLength(attachments.length);
      }
      await allSettledOrThrow(
        managers.flatMap((manager, index) => idsOf(index).map((id) => manager.detach(id))),
      );
      expect(await leases(stateDir)).toEqual({});
      expect(await namespacesOf(namePrefix)).toEqual([]);
      await managers[0]!.removeHostSetup();
      expect(await namespaceState(host)).toEqual(before);
    },
    CONCURRENT_TEST_TIMEOUT_MS,
  );
});

/** VM namespaces are global: whatever a failed detach left is deleted (the host namespace's deletion takes none). */
async function deleteNamespacesLeft(names: readonly string[]): Promise<void> {
  for (const name of names) {
    if (await exists(`/run/netns/${name}`)) await sh('ip', ['netns', 'del', name]).catch(() => undefined);
  }
}

describe('NetworkManager in routed mode', () => {
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
