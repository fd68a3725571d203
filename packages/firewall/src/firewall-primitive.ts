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
    // reconcile() looks in this primitive's namespace: rules put elsewhere would never be found again.
    const hostSide = network.mode === 'namespaced' ? network.hostLink?.namespace : network.namespace;
    if ((hostSide ?? defaultNamespace) !== defaultNamespace) {
      throw new ValidationError({
        field: 'namespace',
        rule: `must be the network's namespace ('${hostSide ?? '(current)'}'), or reconcile cannot find the rules`,
        value: defaultNamespace,
      });
    }
    return network;
  };

  /**
   * The VM's TAP, and in the network's namespaced mode also the host end of the VM namespace's veth pair:
   * traffic to the real host leaves the VM's namespace there (masqueraded), and only rules on that side can
   * keep the host closed to the VM. Port forwards stay on the TAP's side.
   */
  const apply = async (vmId: string, network: NetworkFacts, policy: FirewallPolicy) => {
    const applied = await managerFor(network.namespace ?? defaultNamespace).apply(
      vmId,
      targetOf(network),
      policy,
    );
    const link = network.mode === 'namespaced' ? network.hostLink : undefined;
    if (link) {
      await managerFor(link.namespace ?? defaultNamespace).apply(
        vmId,
        {
          tapName: link.interfaceName,
          guestIp: link.peerIp,
          guestMac: link.peerMac,
          ...(network.dnsServers ? { dnsServers: network.dnsServers } : {}),
        },
        { ...policy, portForwards: [] },
      );
    }
    return applied;
  };

  const remove = async (vmId: string, network: NetworkFacts | undefined) => {
    await managerFor(network?.namespace ?? defaultNamespace).remove(vmId);
    const link = network?.mode === 'namespaced' ? network.hostLink : undefined;
    if (link) await managerFor(link.namespace ?? defaultNamespace).remove(vmId);
  };

  return {
    name: 'firewall',

    async prepare(context: PrepareContext): Promise<void> {
      const network = networkOf(context.facts.network);
      const policy = options.policyFor?.(context.vmId, context.spec) ?? options.policy ?? {};
      const applied = await apply(context.vmId, network, policy).catch(async (error: unknown) => {
        // Half applied (the TAP's side, not the host's): teardown would run, but leave nothing even without it.
        await remove(context.vmId, network).catch(() => undefined);
        throw error;
      });
      networks.set(context.vmId, network);
      context.facts.firewall = { table: `inet ${applied.table}`, chain: applied.chains.egress };
    },

    async teardown(context: TeardownContext): Promise<void> {
      networks.delete(context.vmId);
      await remove(context.vmId, context.facts.network);
    },

    async reconcile(context: ReconcileContext): Promise<ReconcileResult> {
      // A VM still being prepared (or whose destroy failed) has a folder but no VMM yet: removing its rules
      // would let it start unfiltered. knownVmIds includes the live ones.
      const removed = await managerFor(defaultNamespace).reconcile(context.knownVmIds);
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
