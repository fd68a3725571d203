import {
  MicrovmError,
  type NetworkFacts,
  type PrepareContext,
  type ReconcileContext,
  type ReconcileResult,
  type TeardownContext,
  ValidationError,
  type VmPrimitive,
  type VmSpec,
} from '@microvm/core';
import { type AppliedFirewall, FirewallManager } from './firewall-manager.js';
import {
  type FirewallPolicy,
  type FirewallTarget,
  validateNamespace,
  validatePolicy,
  validateTableName,
} from './policy.js';

export interface FirewallPrimitiveOptions {
  /** The policy of every VM that `policyFor` does not decide. Default `{ preset: 'deny-all' }`. */
  policy?: FirewallPolicy;
  /** A VM's own policy; return undefined to use `policy`. Called in `prepare`. */
  policyFor?: (vmId: string, spec: VmSpec) => FirewallPolicy | undefined;
  /** Namespace of the TAPs when the network facts name none. Default: the caller's own. */
  namespace?: string;
  /** Default `microvm`. */
  tableName?: string;
  nftPath?: string;
}

export interface FirewallPrimitive extends VmPrimitive {
  readonly name: 'firewall';
  /**
   * Replaces a running VM's rules (one atomic swap). The VM's network facts are remembered from `prepare`;
   * after a restart of the host program pass them (they are in the VM's record, `facts.network`).
   */
  update(vmId: string, policy: FirewallPolicy, network?: NetworkFacts): Promise<AppliedFirewall>;
}

function targetOf(network: NetworkFacts): FirewallTarget {
  return {
    tapName: network.tapName,
    guestIp: network.guestIp,
    guestMac: network.guestMac,
    ...(network.dnsServers ? { dnsServers: network.dnsServers } : {}),
  };
}

/**
 * The firewall as a VM primitive: in `prepare` (after the network primitive published `facts.network`, and
 * before the VMM exists, so the guest never sends an unfiltered packet) it installs the VM's chains and
 * publishes `facts.firewall`; `teardown` removes them; `reconcile` removes chains of VMs that are gone.
 */
export function firewallPrimitive(options: FirewallPrimitiveOptions = {}): FirewallPrimitive {
  const defaultNamespace = validateNamespace(options.namespace, 'namespace');
  const tableName = validateTableName(options.tableName ?? 'microvm', 'tableName');
  validatePolicy(options.policy ?? {}, [], 'policy');
  const managers = new Map<string, FirewallManager>();
  const networks = new Map<string, NetworkFacts>();

  // TAPs of the `namespaced` network mode live in the VM's own namespace: one manager per namespace.
  const managerFor = (namespace: string | undefined): FirewallManager => {
    const key = namespace ?? '';
    let manager = managers.get(key);
    if (!manager) {
      manager = new FirewallManager({
        ...(namespace ? { namespace } : {}),
        tableName,
        ...(options.nftPath ? { nftPath: options.nftPath } : {}),
      });
      managers.set(key, manager);
    }
    return manager;
  };

  const networkOf = (network: NetworkFacts | undefined): NetworkFacts => {
    if (!network) {
      throw new ValidationError({
        field: 'facts.network',
        rule: 'must be published by the network primitive, which must come before the firewall',
        value: network,
      });
    }
    if (network.mode === 'bridge') {
      // Bridged TAPs reach the forward hook as the bridge, so rules keyed by the TAP would never match.
      throw new ValidationError({
        field: 'facts.network.mode',
        rule: "must be 'routed' or 'namespaced': the firewall cannot filter TAPs that are bridge ports",
        value: network.mode,
      });
    }
    return network;
  };

  const apply = (vmId: string, network: NetworkFacts, policy: FirewallPolicy) =>
    managerFor(network.namespace ?? defaultNamespace).apply(vmId, targetOf(network), policy);

  return {
    name: 'firewall',

    async prepare(context: PrepareContext): Promise<void> {
      const network = networkOf(context.facts.network);
      const policy = options.policyFor?.(context.vmId, context.spec) ?? options.policy ?? {};
      const applied = await apply(context.vmId, network, policy);
      networks.set(context.vmId, network);
      context.facts.firewall = { table: `inet ${applied.table}`, chain: applied.chains.egress };
    },

    async teardown(context: TeardownContext): Promise<void> {
      networks.delete(context.vmId);
      const namespace = context.facts.network?.namespace ?? defaultNamespace;
      await managerFor(namespace).remove(context.vmId);
    },

    async reconcile(context: ReconcileContext): Promise<ReconcileResult> {
      const removed = await managerFor(defaultNamespace).reconcile(context.liveVmIds);
      return { removed: removed.map((vmId) => `firewall chains of ${vmId} (inet ${tableName})`) };
    },

    async update(vmId: string, policy: FirewallPolicy, network?: NetworkFacts): Promise<AppliedFirewall> {
      const known = network ?? networks.get(vmId);
      if (!known) {
        throw new MicrovmError({
          code: 'ERR_MICROVM_VM_NOT_FOUND',
          message: `The firewall knows no VM ${vmId}: pass its network facts to update()`,
        });
      }
      const applied = await apply(vmId, networkOf(known), policy);
      networks.set(vmId, known);
      return applied;
    },
  };
}
