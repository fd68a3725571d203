import type { Socket } from 'node:net';
import { type ConsolePrimitive, consolePrimitive } from '@microvm/console';
import {
  type NetworkFacts,
  ValidationError,
  type VmPrimitive,
  type VmSpec,
  type VsockFacts,
} from '@microvm/core';
import { type FirewallPolicy, type FirewallPrimitive, firewallPrimitive } from '@microvm/firewall';
import { jailerPrimitive } from '@microvm/jailer';
import { networkPrimitive } from '@microvm/network';
import { shutdownPrimitive } from '@microvm/shutdown';
import { type VsockListener, type VsockPrimitive, vsockPrimitive } from '@microvm/vsock';
import { DEFAULT_JAIL_GID, DEFAULT_JAIL_UID, type EgressPolicy, type PrimitiveOptions } from './options.js';
import { PRIMITIVE_NAMES } from './types.js';

/** The primitives built for one provider, and the per-VM verbs the composed handles expose. */
export interface Wiring {
  /** In prepare order: network, firewall, vsock, console, shutdown, jailer. */
  readonly primitives: VmPrimitive[];
  /** Remembers the egress a `create()` asked for until the firewall's prepare has read it. */
  setEgress(vmId: string, egress: EgressPolicy | undefined): void;
  readonly firewall: FirewallPrimitive | undefined;
  readonly vsock: VsockPrimitive | undefined;
  readonly console: ConsolePrimitive | undefined;
}

/**
 * Builds each enabled primitive and the facts one needs from another's options: a jailed Firecracker opens its
 * TAP as the jail's uid, so the network gives the TAP to that owner; the firewall works in the network's namespace.
 * Every option is validated here, before any VM exists.
 */
export function wirePrimitives(options: PrimitiveOptions): Wiring {
  const egressByVm = new Map<string, EgressPolicy>();
  const jail = options.jailer && {
    ...options.jailer,
    uid: options.jailer.uid ?? DEFAULT_JAIL_UID,
    gid: options.jailer.gid ?? DEFAULT_JAIL_GID,
  };

  const network =
    options.network &&
    networkPrimitive({
      ...(jail && { tapOwner: { uid: jail.uid, gid: jail.gid } }),
      ...options.network,
    });

  if (options.firewall && options.network?.mode === 'bridge') {
    // Bridged TAPs reach nftables as the bridge: per-VM rules could never match, so refuse before any VM exists.
    throw new ValidationError({
      field: 'network.mode',
      rule: "must be 'routed' or 'namespaced' when the firewall is on: it cannot filter bridge ports",
      value: 'bridge',
    });
  }

  let firewall: FirewallPrimitive | undefined;
  if (options.firewall) {
    const { policyFor, ...firewallOptions } = options.firewall;
    firewall = firewallPrimitive({
      ...(options.network?.namespace && { namespace: options.network.namespace }),
      ...firewallOptions,
      policyFor: (vmId: string, spec: VmSpec): FirewallPolicy | undefined => {
        const egress = egressByVm.get(vmId);
        if (egress !== undefined) return typeof egress === 'string' ? { preset: egress } : egress;
        return policyFor?.(vmId, spec);
      },
    });
  }

  if (firewall && !network) firewall = withoutNicSkipped(firewall);

  const vsock = options.vsock && vsockPrimitive(options.vsock);
  const vmConsole = options.console && consolePrimitive(options.console);
  const shutdown = options.shutdown && shutdownPrimitive(options.shutdown);
  const jailer = jail && jailerPrimitive(jail);

  const byName: Record<(typeof PRIMITIVE_NAMES)[number], VmPrimitive | undefined> = {
    network,
    firewall,
    vsock,
    console: vmConsole,
    shutdown,
    jailer,
  };
  return {
    primitives: PRIMITIVE_NAMES.map((name) => byName[name]).filter((primitive) => primitive !== undefined),
    setEgress(vmId, egress) {
      if (egress === undefined) egressByVm.delete(vmId);
      else egressByVm.set(vmId, egress);
    },
    firewall,
    vsock,
    console: vmConsole,
  };
}

/**
 * Without the network primitive a VM has no network interface unless its spec names one: nothing can leave it,
 * which is stricter than any policy, so the firewall has nothing to do. A spec that brings its own interface still
 * meets the firewall, which refuses it (it cannot know which TAP to filter).
 */
function withoutNicSkipped(firewall: FirewallPrimitive): FirewallPrimitive {
  return {
    ...firewall,
    async prepare(context) {
      if (!context.facts.network && (context.spec.networkInterfaces ?? []).length === 0) return;
      await firewall.prepare!(context);
    },
    async teardown(context) {
      if (!context.facts.network) return;
      await firewall.teardown!(context);
    },
  };
}

/** The per-VM verbs a composed handle offers for the vsock primitive. */
export interface ComposedVsock {
  readonly guestCid: number;
  readonly hostUdsPath: string;
  /** Opens a connection to a port the guest listens on; waits for the guest up to `timeoutMs`. */
  connect(port: number, options?: { timeoutMs?: number; signal?: AbortSignal }): Promise<Socket>;
  /** Serves connections the guest opens to `port` until the listener is closed or the VM is destroyed. */
  listen(port: number, handler: (socket: Socket) => unknown): Promise<VsockListener>;
}

export function composedVsock(primitive: VsockPrimitive, vmId: string, facts: VsockFacts): ComposedVsock {
  return {
    guestCid: facts.guestCid,
    hostUdsPath: facts.hostUdsPath,
    // By facts when this process did not prepare the VM (a handle from `get()` after a restart).
    connect: (port, connectOptions) =>
      primitive.connect(primitive.vsockOf(vmId) ? vmId : facts, port, connectOptions),
    listen: (port, handler) => primitive.listen(vmId, port, handler),
  };
}

/** The per-VM verbs a composed handle offers for the firewall primitive. */
export interface ComposedFirewall {
  /** Replaces the VM's egress rules in one atomic swap. */
  update(egress: EgressPolicy): Promise<void>;
}

export function composedFirewall(
  primitive: FirewallPrimitive,
  vmId: string,
  network: NetworkFacts,
): ComposedFirewall {
  return {
    update: async (egress) => {
      await primitive.update(vmId, typeof egress === 'string' ? { preset: egress } : egress, network);
    },
  };
}
