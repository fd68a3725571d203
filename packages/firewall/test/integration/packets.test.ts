import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { FirewallManager } from '../../src/index.js';
import { createTopology, type Flow, inNamespace, probe, startServer, type Topology } from './topology.js';

let topology: Topology;
let firewall: FirewallManager;

beforeEach(async () => {
  topology = await createTopology();
  firewall = new FirewallManager({ namespace: topology.host });
});

afterEach(async () => {
  await topology.destroy();
});

const tcp = (host: string, port: number, from?: string): Flow => ({
  protocol: 'tcp',
  host,
  port,
  ...(from ? { from } : {}),
});
const udp = (host: string, port: number, from?: string): Flow => ({
  protocol: 'udp',
  host,
  port,
  ...(from ? { from } : {}),
});

/** Servers everywhere a VM might try to go. */
async function startServers() {
  const internet = await startServer(topology, topology.internet, { tcp: [80, 443], udp: [53, 5000] });
  const host = await startServer(topology, topology.host, { tcp: [2222], udp: [5353] });
  const otherVm = await startServer(topology, topology.vm2.namespace, { tcp: [80] });
  return { internet, host, otherVm };
}

/** Every flow a guest can try, by name, so each test states what it expects of each. */
function guestFlows() {
  const { publicIp, privateIp, metadataIp, hostUplinkIp, vm1, vm2 } = topology;
  return {
    publicHttp: tcp(publicIp, 80),
    publicHttps: tcp(publicIp, 443),
    publicUdp: udp(publicIp, 5000),
    dnsUdp: udp(publicIp, 53),
    privateHttp: tcp(privateIp, 80),
    metadataHttp: tcp(metadataIp, 80),
    otherVm: tcp(vm2.target.guestIp, 80),
    hostGateway: tcp(vm1.gatewayIp, 2222),
    hostUplink: tcp(hostUplinkIp, 2222),
    hostUdp: udp(vm1.gatewayIp, 5353),
  };
}

async function probeAll(namespace: string, flows: Record<string, Flow>): Promise<Record<string, string>> {
  const names = Object.keys(flows);
  const results = await probe(namespace, Object.values(flows));
  return Object.fromEntries(names.map((name, index) => [name, results[index]!]));
}

describe('without a firewall (the control: proves each probe can succeed)', () => {
  it('should let every flow through, spoofed ones included', async () => {
    const servers = await startServers();
    const results = await probeAll(topology.vm1.namespace, guestFlows());
    expect(Object.values(results).every((result) => result === 'connected')).toBe(true);

    await inNamespace(topology.vm1.namespace, 'ip', 'addr', 'add', '10.0.0.99/32', 'dev', 'eth0');
    await probe(topology.vm1.namespace, [udp(topology.publicIp, 5000, '10.0.0.99')], 500);
    // The server is another process: its report of the datagram may come after the probe's short wait.
    await vi.waitFor(
      () => expect(servers.internet.seen.some((packet) => packet.from === '10.0.0.99')).toBe(true),
      { timeout: 10_000 },
    );

    await inNamespace(topology.vm1.namespace, 'ip', 'link', 'set', 'eth0', 'address', '06:00:0a:00:00:99');
    const before = servers.internet.seen.length;
    await probe(topology.vm1.namespace, [udp(topology.publicIp, 5000)], 500);
    await vi.waitFor(() => expect(servers.internet.seen.length).toBe(before + 1), { timeout: 10_000 });
  });
});

describe('presets with real packets', () => {
  it('should allow only DNS to the resolvers with deny-all (the default)', async () => {
    await startServers();
    await firewall.apply('vm1', topology.vm1.target);
    expect(await probeAll(topology.vm1.namespace, guestFlows())).toEqual({
      publicHttp: 'timeout',
      publicHttps: 'timeout',
      publicUdp: 'timeout',
      dnsUdp: 'connected',
      privateHttp: 'timeout',
      metadataHttp: 'timeout',
      otherVm: 'timeout',
      hostGateway: 'timeout',
      hostUplink: 'timeout',
      hostUdp: 'timeout',
    });
  });

  it('should allow public addresses but no private, metadata, other VM or host with internet-only', async () => {
    await startServers();
    await firewall.apply('vm1', topology.vm1.target, { preset: 'internet-only' });
    expect(await probeAll(topology.vm1.namespace, guestFlows())).toEqual({
      publicHttp: 'connected',
      publicHttps: 'connected',
      publicUdp: 'connected',
      dnsUdp: 'connected',
      privateHttp: 'timeout',
      metadataHttp: 'timeout',
      otherVm: 'timeout',
      hostGateway: 'timeout',
      hostUplink: 'timeout',
      hostUdp: 'timeout',
    });
  });

  it('should allow everything but other VMs and the host with allow-all', async () => {
    await startServers();
    // The other VM has rules too (deny-all): it never asked for inbound connections.
    await firewall.apply('vm2', topology.vm2.target);
    await firewall.apply('vm1', topology.vm1.target, { preset: 'allow-all' });
    expect(await probeAll(topology.vm1.namespace, guestFlows())).toEqual({
      publicHttp: 'connected',
      publicHttps: 'connected',
      publicUdp: 'connected',
      dnsUdp: 'connected',
      privateHttp: 'connected',
      metadataHttp: 'connected',
      otherVm: 'timeout',
      hostGateway: 'timeout',
      hostUplink: 'timeout',
      hostUdp: 'timeout',
    });
  });
});

describe('allowlist rules', () => {
  it('should allow exactly the listed destination, protocol and port range', async () => {
    await startServers();
    await firewall.apply('vm1', topology.vm1.target, {
      dns: false,
      allow: [
        { cidr: '198.51.100.0/24', protocol: 'tcp', port: { from: 400, to: 500 } },
        { cidr: `${topology.privateIp}/32`, protocol: 'tcp', port: 80 },
      ],
    });
    const { publicHttp, publicHttps, publicUdp, dnsUdp, privateHttp } = guestFlows();
    expect(
      await probeAll(topology.vm1.namespace, { publicHttp, publicHttps, publicUdp, dnsUdp, privateHttp }),
    ).toEqual({
      publicHttp: 'timeout',
      publicHttps: 'connected',
      publicUdp: 'timeout',
      dnsUdp: 'timeout',
      privateHttp: 'connected',
    });
  });

  it('should open only the host ports the owner lists', async () => {
    await startServers();
    await firewall.apply('vm1', topology.vm1.target, { hostPorts: [{ protocol: 'tcp', port: 2222 }] });
    const { hostGateway, hostUplink, hostUdp } = guestFlows();
    expect(await probeAll(topology.vm1.namespace, { hostGateway, hostUplink, hostUdp })).toEqual({
      hostGateway: 'connected',
      hostUplink: 'connected',
      hostUdp: 'timeout',
    });
  });
});

describe('anti-spoofing', () => {
  it('should drop packets from an address that is not the guest’s', async () => {
    const servers = await startServers();
    await firewall.apply('vm1', topology.vm1.target, { preset: 'allow-all' });
    await inNamespace(topology.vm1.namespace, 'ip', 'addr', 'add', '10.0.0.99/32', 'dev', 'eth0');
    const results = await probe(topology.vm1.namespace, [
      udp(topology.publicIp, 5000, '10.0.0.99'),
      udp(topology.vm1.gatewayIp, 5353, '10.0.0.99'),
      udp(topology.publicIp, 5000),
    ]);
    expect(results).toEqual(['timeout', 'timeout', 'connected']);
    // The server reports from another process: wait for its line (a spoofed packet in the list still fails).
    await vi.waitFor(
      () => expect(servers.internet.seen.map((packet) => packet.from)).toEqual([topology.vm1.target.guestIp]),
      { timeout: 10_000 },
    );
    expect(servers.host.seen).toEqual([]);
  });

  it('should drop packets from a MAC address that is not the guest’s', async () => {
    const servers = await startServers();
    await firewall.apply('vm1', topology.vm1.target, { preset: 'allow-all' });
    await inNamespace(topology.vm1.namespace, 'ip', 'link', 'set', 'eth0', 'address', '06:00:0a:00:00:99');
    expect(await probe(topology.vm1.namespace, [udp(topology.publicIp, 5000)])).toEqual(['timeout']);
    expect(servers.internet.seen).toEqual([]);
  });
});

describe('inbound', () => {
  it('should drop unsolicited connections and forward a host port to the guest', async () => {
    const guestServer = await startServer(topology, topology.vm1.namespace, { tcp: [80, 81] });
    await firewall.apply('vm1', topology.vm1.target, { portForwards: [{ hostPort: 8080, guestPort: 80 }] });
    const results = await probe(topology.internet, [
      tcp(topology.vm1.target.guestIp, 80),
      tcp(topology.vm1.target.guestIp, 81),
      tcp(topology.hostUplinkIp, 8080),
      tcp(topology.hostUplinkIp, 8081),
    ]);
    expect(results).toEqual(['timeout', 'timeout', 'connected', 'refused']);
    await vi.waitFor(
      () => expect(guestServer.seen).toEqual([{ protocol: 'tcp', port: 80, from: topology.publicIp }]),
      { timeout: 10_000 },
    );
  });

  it('should let a guest reach another VM only through that VM’s port forward', async () => {
    await startServers();
    await firewall.apply('vm2', topology.vm2.target, { portForwards: [{ hostPort: 9080, guestPort: 80 }] });
    await firewall.apply('vm1', topology.vm1.target, { preset: 'allow-all' });
    const results = await probe(topology.vm1.namespace, [
      tcp(topology.vm2.target.guestIp, 80),
      tcp(topology.hostUplinkIp, 9080),
    ]);
    expect(results).toEqual(['timeout', 'connected']);
  });
});

describe('changes on a live VM', () => {
  it('should take effect at once when the rules are replaced', async () => {
    await startServers();
    const flows = [tcp(topology.publicIp, 80), tcp(topology.privateIp, 80)];
    await firewall.apply('vm1', topology.vm1.target);
    expect(await probe(topology.vm1.namespace, flows)).toEqual(['timeout', 'timeout']);
    await firewall.apply('vm1', topology.vm1.target, { preset: 'internet-only' });
    expect(await probe(topology.vm1.namespace, flows)).toEqual(['connected', 'timeout']);
    await firewall.apply('vm1', topology.vm1.target, {
      preset: 'internet-only',
      allow: [{ cidr: topology.privateIp }],
    });
    expect(await probe(topology.vm1.namespace, flows)).toEqual(['connected', 'connected']);
    await firewall.apply('vm1', topology.vm1.target, { preset: 'deny-all' });
    expect(await probe(topology.vm1.namespace, flows)).toEqual(['timeout', 'timeout']);
  });

  it('should move a port forward when it changes', async () => {
    await startServer(topology, topology.vm1.namespace, { tcp: [80] });
    await firewall.apply('vm1', topology.vm1.target, { portForwards: [{ hostPort: 8080, guestPort: 80 }] });
    await firewall.apply('vm1', topology.vm1.target, { portForwards: [{ hostPort: 8090, guestPort: 80 }] });
    expect(
      await probe(topology.internet, [tcp(topology.hostUplinkIp, 8080), tcp(topology.hostUplinkIp, 8090)]),
    ).toEqual(['refused', 'connected']);
  });

  it('should let all traffic through again once the rules are removed', async () => {
    await startServers();
    await firewall.apply('vm1', topology.vm1.target);
    expect(await firewall.remove('vm1')).toBe(true);
    expect(await probe(topology.vm1.namespace, [tcp(topology.publicIp, 80)])).toEqual(['connected']);
  });
});
