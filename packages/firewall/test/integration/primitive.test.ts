import type { NetworkFacts, PrepareContext, ReconcileContext, TeardownContext, VmFacts } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FirewallManager, firewallPrimitive } from '../../src/index.js';
import { createTopology, probe, startServer, type Topology } from './topology.js';

let topology: Topology;

beforeEach(async () => {
  topology = await createTopology();
});

afterEach(async () => {
  await topology.destroy();
});

function networkFacts(): NetworkFacts {
  const { target, gatewayIp } = topology.vm1;
  return {
    ifaceId: 'eth0',
    tapName: target.tapName,
    guestIp: target.guestIp,
    guestMac: target.guestMac,
    gatewayIp,
    prefixLength: 30,
    netmask: '255.255.255.252',
    namespace: topology.host,
    dnsServers: target.dnsServers,
    mode: 'routed',
  };
}

// The provider builds these; the primitive reads only vmId, spec and facts.
function prepareContext(vmId: string, facts: VmFacts): PrepareContext {
  return { vmId, facts, spec: {} as PrepareContext['spec'] } as unknown as PrepareContext;
}
function teardownContext(vmId: string, facts: VmFacts): TeardownContext {
  return { vmId, facts, state: 'stopped' } as unknown as TeardownContext;
}
function reconcileContext(liveVmIds: string[]): ReconcileContext {
  return { liveVmIds: new Set(liveVmIds), knownVmIds: new Set(liveVmIds) } as unknown as ReconcileContext;
}

describe('firewallPrimitive', () => {
  it('should install the VM’s rules in prepare, publish the facts, and remove them in teardown', async () => {
    await startServer(topology, topology.internet, { tcp: [80], udp: [53] });
    const primitive = firewallPrimitive({
      namespace: topology.host,
      policy: { preset: 'deny-all' },
      policyFor: (vmId) => (vmId === 'web' ? { preset: 'internet-only' } : undefined),
    });
    const facts: VmFacts = { network: networkFacts() };
    await primitive.prepare!(prepareContext('web', facts));
    expect(facts.firewall).toEqual({ table: 'inet microvm', chain: 'vm-web-out' });
    const flows = [
      { protocol: 'tcp' as const, host: topology.publicIp, port: 80 },
      { protocol: 'udp' as const, host: topology.publicIp, port: 53 },
    ];
    expect(await probe(topology.vm1.namespace, flows)).toEqual(['connected', 'connected']);

    await primitive.update('web', { preset: 'deny-all' });
    expect(await probe(topology.vm1.namespace, flows)).toEqual(['timeout', 'connected']);

    await primitive.teardown!(teardownContext('web', facts));
    await primitive.teardown!(teardownContext('web', facts));
    expect(await new FirewallManager({ namespace: topology.host }).list()).toEqual([]);
  });

  it('should remove the chains of VMs that are gone in reconcile', async () => {
    const primitive = firewallPrimitive({ namespace: topology.host });
    const { namespace: _namespace, ...facts } = networkFacts();
    await primitive.prepare!(prepareContext('alive', { network: facts }));
    await primitive.prepare!(
      prepareContext('dead', {
        network: { ...facts, tapName: 'tap-vm2', guestIp: topology.vm2.target.guestIp },
      }),
    );
    expect(await primitive.reconcile!(reconcileContext(['alive']))).toEqual({
      removed: ['firewall chains of dead (inet microvm)'],
    });
    expect((await new FirewallManager({ namespace: topology.host }).list()).map((vm) => vm.vmId)).toEqual([
      'alive',
    ]);
  });

  it('should refuse to run without network facts or on a bridged TAP, before touching the host', async () => {
    const primitive = firewallPrimitive({ namespace: topology.host });
    await expect(primitive.prepare!(prepareContext('vm', {}))).rejects.toMatchObject({
      field: 'facts.network',
    });
    await expect(
      primitive.prepare!(prepareContext('vm', { network: { ...networkFacts(), mode: 'bridge' } })),
    ).rejects.toMatchObject({ field: 'facts.network.mode' });
    // Rules in a namespace reconcile() never looks at would outlive their VM.
    await expect(
      firewallPrimitive().prepare!(prepareContext('vm', { network: networkFacts() })),
    ).rejects.toMatchObject({ field: 'namespace' });
    await expect(primitive.update('unknown', {})).rejects.toMatchObject({ code: 'ERR_MICROVM_VM_NOT_FOUND' });
    expect(await new FirewallManager({ namespace: topology.host }).list()).toEqual([]);
  });

  it('should reject a bad default policy when it is created', () => {
    expect(() => firewallPrimitive({ policy: { allow: [{ cidr: 'nope' }] } })).toThrow(
      expect.objectContaining({ field: 'policy.allow[0].cidr' }),
    );
  });
});
