import { afterEach, describe, expect, it } from 'vitest';
import { NetworkManager } from '../../src/index.js';
import { guestStandIn } from '../../src/options.js';
import { Sandbox, tcpProbe } from './helpers.js';

const sandbox = new Sandbox();
afterEach(() => sandbox.cleanup());

// A TAP carries no packets without a VMM behind it, so the guest is played by a veth pair whose far end sits in a
// "guest" namespace with the guest's IP and a default route via the gateway (the test-only `guestStandIn` hook).
describe.each(['routed', 'bridge', 'namespaced'] as const)('packets in %s mode', (mode) => {
  it('should let the guest reach its gateway and, through NAT, a server in another namespace', async () => {
    const { host, internet } = await sandbox.hostWithInternet();
    const guest = await sandbox.namespace('g');
    const network = new NetworkManager({
      mode,
      pool: '10.201.0.0/24',
      namespace: host,
      stateDir: await sandbox.stateDir(),
      namePrefix: 'pk',
      [guestStandIn]: () => guest,
    });
    const attachment = await network.attach('vm-packets');
    sandbox.onCleanup(() => network.detach('vm-packets'));
    const gatewayNamespace = attachment.facts.namespace!;
    expect(gatewayNamespace).toEqual(mode === 'namespaced' ? expect.stringMatching(/^pkn/) : host);

    const atGateway = await tcpProbe({
      serverNamespace: gatewayNamespace,
      clientNamespace: guest,
      host: attachment.facts.gatewayIp,
      port: 7001,
    });
    expect(atGateway).toBe(attachment.facts.guestIp);

    const atInternet = await tcpProbe({
      serverNamespace: internet,
      clientNamespace: guest,
      host: '198.51.100.2',
      port: 7002,
    });
    // Masqueraded out of the uplink: the server sees the host's uplink address, not the guest's.
    expect(atInternet).toBe('198.51.100.1');

    await network.detach('vm-packets');
  });
});
