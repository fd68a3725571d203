import type {
  PrepareContext,
  ReconcileContext,
  ReconcileResult,
  TeardownContext,
  VmPrimitive,
} from '@microvm/core';
import { ValidationError } from '@microvm/core';
import { NetworkManager, sourceNetworkOf } from './network-manager.js';
import type { NetworkManagerOptions } from './options.js';

export type NetworkPrimitiveOptions = Omit<NetworkManagerOptions, 'stateDir' | 'leases'>;

/**
 * The `network` primitive: in `prepare` leases and persists the VM's network before creating it, adds the
 * `networkInterfaces` entry and the guest's `ip=` boot argument, publishes `facts.network`, and points the VMM at
 * the TAP's namespace. `teardown` removes it all; `reconcile` removes what no live VM owns.
 */
export function networkPrimitive(options: NetworkPrimitiveOptions = {}): VmPrimitive {
  // Validate now, so a bad option fails when the provider is built, not at the first VM.
  new NetworkManager({ ...options, leases: undefined, stateDir: '/' });
  const managers = new WeakMap<object, NetworkManager>();
  const managerFor = (leases: PrepareContext['leases']): NetworkManager => {
    let manager = managers.get(leases);
    if (!manager) {
      manager = new NetworkManager({ ...options, leases });
      managers.set(leases, manager);
    }
    return manager;
  };

  return {
    name: 'network',

    async prepare(context: PrepareContext): Promise<void> {
      const manager = managerFor(context.leases);
      const ifaceId = options.ifaceId ?? 'eth0';
      if (context.spec.networkInterfaces?.some((networkInterface) => networkInterface.ifaceId === ifaceId)) {
        throw new ValidationError({
          field: 'spec.networkInterfaces',
          rule: `must not already have an interface '${ifaceId}': the network primitive adds it (or set its ifaceId option)`,
          value: ifaceId,
        });
      }
      const restoreFrom =
        context.mode === 'restore' && context.restore
          ? sourceNetworkOf(context.restore.sourceSpec, ifaceId)
          : undefined;
      await manager.attach(context.vmId, {
        signal: context.signal,
        ...(restoreFrom && { restoreFrom }),
        beforeCreate: async (attachment) => {
          context.facts.network = attachment.facts;
          context.spec = {
            ...context.spec,
            networkInterfaces: [...(context.spec.networkInterfaces ?? []), attachment.networkInterface],
            bootSource: {
              ...context.spec.bootSource,
              bootArgs: [context.spec.bootSource.bootArgs, attachment.kernelIpArgument]
                .filter(Boolean)
                .join(' '),
            },
          };
          if (attachment.networkNamespacePath)
            context.launch.networkNamespacePath = attachment.networkNamespacePath;
          // Recorded before anything exists on the host, so reconcile() finds it after a crash.
          await context.persist();
        },
      });
    },

    async teardown(context: TeardownContext): Promise<void> {
      await managerFor(context.leases).detach(context.vmId, { signal: context.signal });
    },

    async reconcile(context: ReconcileContext): Promise<ReconcileResult> {
      // Not only live VMs: one being prepared has its TAP before its VMM exists.
      const removed = await managerFor(context.leases).reconcile(context.knownVmIds, {
        signal: context.signal,
      });
      return { removed };
    },
  };
}
