import { access, readFile } from 'node:fs/promises';
import type { NetworkFacts, NetworkInterfaceSpec, VmSpec } from '@microvm/core';
import { ValidationError, validateVmId } from '@microvm/core';
import { NetworkError } from './errors.js';
import { HostCommands, tryRun } from './host-commands.js';
import {
  addressCode,
  blockSize,
  formatIpv4,
  formatSubnet,
  type Ipv4Subnet,
  macForGuestIp,
  netmaskOf,
  parseAddressCode,
  parseIpv4,
  subnetContains,
  subnetsOverlap,
} from './ipv4.js';
import { type NetworkManagerOptions, type ResolvedOptions, resolveOptions } from './options.js';

/** Lease pools in the state directory: /30 subnets (routed, namespaced) and single addresses (bridge). */
export const SUBNET_LEASE_POOL = 'network-subnet';
export const ADDRESS_LEASE_POOL = 'network-address';

/** What the guest of a snapshot was configured with: a clone restored from it keeps all of it. */
export interface SourceNetwork {
  guestIp: string;
  gatewayIp: string;
  prefixLength: number;
  guestMac?: string;
  /** The TAP name the source's Firecracker opened. */
  tapName?: string;
}

export interface AttachOptions {
  signal?: AbortSignal;
  /** Restoring a snapshot: give the clone the source guest's addresses (see the README). */
  restoreFrom?: SourceNetwork;
  /** Called after the allocation and before anything is created on the host (persist it here). */
  beforeCreate?: (attachment: NetworkAttachment) => Promise<void>;
}

/** Everything a VM needs from its network: the facts, the Firecracker interface and the guest's `ip=` argument. */
export interface NetworkAttachment {
  facts: NetworkFacts;
  networkInterface: NetworkInterfaceSpec;
  /** `ip=<guest>::<gateway>:<netmask>::eth0:off[:<dns0>[:<dns1>]]`, for the kernel command line. */
  kernelIpArgument: string;
  /** Set when the TAP is not in the current namespace: the VMM must run there. */
  networkNamespacePath?: string;
}

interface Plan {
  vmId: string;
  lease: { pool: string; value: string };
  guestIp: number;
  gateway: number;
  prefixLength: number;
  guestMac: string;
  tapName: string;
  /** namespaced: the VM's namespace, the host end of the veth pair and its /30. */
  vmNamespace?: string;
  hostVeth?: string;
  vethSubnet?: Ipv4Subnet;
}

interface CheckedSource {
  guestIp: number;
  gateway: number;
  prefixLength: number;
  source: SourceNetwork;
}

interface IpLink {
  ifname: string;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const NOT_FOUND = /cannot find device|does not exist|no such file|no such device|not found/i;

/**
 * Host networking for VMs: leases addresses from a pool (persisted, exclusive across processes), creates the
 * TAP (or a namespace with a veth pair), addresses, routes and NAT, and removes them again.
 */
export class NetworkManager {
  readonly #options: ResolvedOptions;
  readonly #host: HostCommands;
  #hostReady: Promise<string | undefined> | undefined;

  constructor(options: NetworkManagerOptions = {}) {
    this.#options = resolveOptions(options);
    this.#host = new HostCommands(this.#options.namespace);
  }

  get mode(): ResolvedOptions['mode'] {
    return this.#options.mode;
  }

  /** Sets up the VM's network; on failure removes whatever it had created and frees the lease. */
  async attach(vmId: string, options: AttachOptions = {}): Promise<NetworkAttachment> {
    validateVmId(vmId);
    const source = options.restoreFrom && this.#checkSource(options.restoreFrom);
    await this.#checkPrivileges();
    await this.ensureHost({ signal: options.signal });
    const plan = await this.#allocate(vmId, source);
    const attachment = this.#attachmentOf(plan);
    try {
      await options.beforeCreate?.(attachment);
      await this.#create(plan, options.signal);
    } catch (error) {
      await this.detach(vmId).catch(() => undefined);
      throw error;
    }
    return attachment;
  }

  /** Removes the VM's interfaces (and namespace) and frees its lease. Idempotent; call it after the VMM exited. */
  async detach(vmId: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    validateVmId(vmId);
    for (const lease of await this.#leasesOf(vmId)) {
      await this.#removeDevices(this.#planOfLease(vmId, lease.value), options.signal);
      await this.#options.leases.release(lease.pool, lease.value, vmId);
    }
  }

  /**
   * Removes interfaces, namespaces and leases of this manager's pool whose owner is not in `keepVmIds` (the
   * primitive passes every VM the provider knows). Only things provably ours are touched: a name made by this
   * manager whose lease is held by a VM that is gone.
   */
  async reconcile(keepVmIds: Iterable<string>, options: { signal?: AbortSignal } = {}): Promise<string[]> {
    const live = new Set(keepVmIds);
    const removed: string[] = [];
    const pool = this.#leasePool();
    const stale = new Map<string, string>();
    for (const lease of await this.#options.leases.list(pool)) {
      if (!live.has(lease.owner) && this.#leaseInPool(lease.value)) stale.set(lease.value, lease.owner);
    }
    const prefix = this.#options.namePrefix;
    const links = await this.#host.ipJson<IpLink>(['link', 'show'], options.signal);
    const namespaces =
      this.#options.mode === 'namespaced'
        ? await tryRun('ip', ['-j', 'netns', 'list']).then((result) =>
            result.stdout.trim() === '' ? [] : (JSON.parse(result.stdout) as { name: string }[]),
          )
        : [];
    const names = [...links.map((link) => link.ifname), ...namespaces.map((namespace) => namespace.name)];
    const found = new Set<string>();
    for (const name of names) {
      const match = new RegExp(`^${prefix}([tbvn])([0-9a-z]{7})$`).exec(name);
      const address = match ? parseAddressCode(match[2]!) : undefined;
      if (address === undefined) continue;
      const owner = stale.get(formatIpv4(address));
      if (owner === undefined || found.has(formatIpv4(address))) continue;
      // The lease may have changed hands since it was listed (a detach, then a new attach): then the device is live.
      if ((await this.#options.leases.ownerOf(pool, formatIpv4(address))) !== owner) continue;
      found.add(formatIpv4(address));
      const plan = this.#planOfLease(owner, formatIpv4(address));
      await this.#removeDevices(plan, options.signal);
      removed.push(...this.#describe(plan));
    }
    for (const [value, owner] of stale) {
      if (await this.#options.leases.release(pool, value, owner))
        removed.push(`lease ${pool}/${value} of ${owner}`);
    }
    return removed;
  }

  /**
   * Once per manager (cached): checks the namespace, the uplink and that the pool overlaps no address already
   * there, then enables forwarding, NAT (and the bridge). Returns the uplink.
   */
  ensureHost(options: { signal?: AbortSignal } = {}): Promise<string | undefined> {
    this.#hostReady ??= this.#setUpHost(options.signal).catch((error: unknown) => {
      this.#hostReady = undefined;
      throw error;
    });
    return this.#hostReady;
  }

  /** Removes what `ensureHost` added (this pool's NAT chain, the bridge). For hosts that stop running VMs. */
  async removeHostSetup(options: { signal?: AbortSignal } = {}): Promise<void> {
    this.#hostReady = undefined;
    await this.#host.tryNft(`delete chain ip microvm-nat ${this.#natChain()}\n`, options.signal);
    if (this.#options.mode === 'bridge') {
      await this.#host.ipBatchForce([`link del ${this.#options.bridgeName}`], options.signal);
    }
  }

  // ---------------------------------------------------------------------------------------------------------

  async #setUpHost(signal: AbortSignal | undefined): Promise<string | undefined> {
    const { namespace, nat, pool, mode, bridgeName } = this.#options;
    if (namespace !== undefined) {
      await access(`/run/netns/${namespace}`).catch(() => {
        throw new ValidationError({
          field: 'namespace',
          rule: `must name an existing network namespace (/run/netns/${namespace} is missing)`,
          value: namespace,
        });
      });
    }
    const links = await this.#host.ipJson<IpLink>(['addr', 'show'], signal);
    const ours = new RegExp(`^${this.#options.namePrefix}[tbv][0-9a-z]{7}$`);
    for (const link of links) {
      if (ours.test(link.ifname) || (mode === 'bridge' && link.ifname === bridgeName)) continue;
      for (const address of link.addr_info ?? []) {
        const local = address.family === 'inet' ? parseIpv4(address.local) : undefined;
        if (local === undefined) continue;
        const subnet = {
          network: local - (local % blockSize(address.prefixlen)),
          prefixLength: address.prefixlen,
        };
        if (subnetsOverlap(pool, subnet)) {
          throw new ValidationError({
            field: 'pool',
            rule: `must not overlap an address already on the host (${link.ifname} has ${address.local}/${address.prefixlen})`,
            value: formatSubnet(pool),
          });
        }
      }
    }
    let uplink = this.#options.uplink;
    if (nat) {
      if (uplink === undefined) {
        const routes = await this.#host.ipJson<{ dev?: string }>(['route', 'show', 'default'], signal);
        uplink = routes.find((route) => route.dev !== undefined)?.dev;
        if (uplink === undefined) {
          throw new ValidationError({
            field: 'uplink',
            rule: `is required: the namespace ${namespace ?? '(current)'} has no default route to take it from`,
            value: undefined,
          });
        }
      } else if (!links.some((link) => link.ifname === uplink)) {
        throw new ValidationError({
          field: 'uplink',
          rule: 'must name an existing interface',
          value: uplink,
        });
      }
    }
    await this.#host.enableForwarding(signal);
    if (nat) {
      const chain = this.#natChain();
      await this.#host.nft(
        [
          'add table ip microvm-nat',
          `add chain ip microvm-nat ${chain} { type nat hook postrouting priority srcnat; policy accept; }`,
          `flush chain ip microvm-nat ${chain}`,
          `add rule ip microvm-nat ${chain} ip saddr ${formatSubnet(pool)} oifname "${uplink}" masquerade`,
          '',
        ].join('\n'),
        signal,
      );
    }
    if (mode === 'bridge') {
      const gateway = `${formatIpv4(pool.network + 1)}/${pool.prefixLength}`;
      if (!links.some((link) => link.ifname === bridgeName)) {
        // Another manager (another process) sharing the namespace may create it after our read: theirs will do.
        const created = await this.#host.ipBatchForce([`link add name ${bridgeName} type bridge`], signal);
        if (created.exitCode !== 0 && !/file exists/i.test(created.stderr)) {
          throw new NetworkError({
            reason: 'host-command-failed',
            message: `Could not create the bridge ${bridgeName}: ${created.stderr.trim()}`,
            command: ['ip', ...this.#host.ipArgs(['-force', '-batch', '-'])],
            stderr: created.stderr,
          });
        }
      }
      await this.#host.ipBatch(
        [
          // `replace`, not `add`: a concurrent setup may have added the gateway already.
          `addr replace ${gateway} dev ${bridgeName}`,
          ...(this.#options.mtu === undefined ? [] : [`link set ${bridgeName} mtu ${this.#options.mtu}`]),
          `link set ${bridgeName} up`,
        ],
        signal,
      );
    }
    return uplink;
  }

  #natChain(): string {
    const { pool } = this.#options;
    return `pool-${formatIpv4(pool.network)}-${pool.prefixLength}`;
  }

  async #checkPrivileges(): Promise<void> {
    const status = await readFile('/proc/self/status', 'utf8');
    const effective = BigInt(`0x${/^CapEff:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? '0'}`);
    const needed = this.#options.mode === 'namespaced' ? [CAP_NET_ADMIN, CAP_SYS_ADMIN] : [CAP_NET_ADMIN];
    if (needed.every((capability) => (effective >> capability) & 1n)) return;
    throw new NetworkError({
      reason: 'not-permitted',
      message: `Setting up VM networks needs root (CAP_NET_ADMIN${
        this.#options.mode === 'namespaced' ? ' and CAP_SYS_ADMIN' : ''
      }); this process runs as uid ${process.getuid?.()} without them`,
    });
  }

  #leasePool(): string {
    return this.#options.mode === 'bridge' ? ADDRESS_LEASE_POOL : SUBNET_LEASE_POOL;
  }

  #leaseInPool(value: string): boolean {
    const address = parseIpv4(value);
    return address !== undefined && subnetContains(this.#options.pool, address);
  }

  async #leasesOf(vmId: string): Promise<{ pool: string; value: string }[]> {
    const pool = this.#leasePool();
    return (await this.#options.leases.list(pool)).filter(
      (lease) => lease.owner === vmId && this.#leaseInPool(lease.value),
    );
  }

  #checkSource(source: SourceNetwork): CheckedSource {
    const guestIp = parseIpv4(source.guestIp);
    const gateway = parseIpv4(source.gatewayIp);
    const { prefixLength } = source;
    if (guestIp === undefined || gateway === undefined || !(prefixLength >= 8 && prefixLength <= 30)) {
      throw new ValidationError({
        field: 'restoreFrom',
        rule: "must hold the source guest's IPv4, gateway and prefix",
        value: source,
      });
    }
    const { mode, pool } = this.#options;
    const sourceSubnet = { network: guestIp - (guestIp % blockSize(prefixLength)), prefixLength };
    const fits =
      mode === 'routed'
        ? prefixLength === 30 && subnetContains(pool, guestIp) && gateway === sourceSubnet.network + 1
        : mode === 'bridge'
          ? prefixLength === pool.prefixLength &&
            subnetContains(pool, guestIp) &&
            gateway === pool.network + 1
          : // Inside its own namespace the clone may keep any guest subnet that is not routed on the veth side.
            !subnetsOverlap(pool, sourceSubnet) && subnetContains(sourceSubnet, gateway);
    if (!fits) {
      throw new ValidationError({
        field: 'restoreFrom',
        rule: `must be a guest network this ${mode} manager can recreate (pool ${formatSubnet(pool)})`,
        value: source,
      });
    }
    return { guestIp, gateway, prefixLength, source };
  }

  async #allocate(vmId: string, source: CheckedSource | undefined): Promise<Plan> {
    const { leases, pool, mode } = this.#options;
    const leasePool = this.#leasePool();
    let value: string | undefined;
    if (source && mode !== 'namespaced') {
      // The clone's guest keeps the source's address in memory: it can only use the same lease.
      value =
        mode === 'routed' ? formatIpv4(source.guestIp - (source.guestIp % 4)) : formatIpv4(source.guestIp);
      if (!(await leases.claim(leasePool, value, vmId))) {
        const owner = await leases.ownerOf(leasePool, value);
        throw new NetworkError({
          reason: 'address-in-use',
          message: `The snapshot's guest has ${source.source.guestIp}, which VM '${owner}' still holds: destroy it first, or use mode 'namespaced' so that clones can run side by side`,
        });
      }
    } else {
      value = await leases.claimFirstFree(leasePool, vmId, this.#candidates());
      if (value !== undefined && !this.#leaseInPool(value)) {
        // claimFirstFree returns what the VM already holds in the lease pool, which other managers share.
        throw new ValidationError({
          field: 'vmId',
          rule: `already holds ${value} from another network pool in this state directory (detach it there first)`,
          value: vmId,
        });
      }
    }
    if (value === undefined) {
      throw new NetworkError({
        reason: 'pool-exhausted',
        message: `The pool ${formatSubnet(pool)} has no free ${mode === 'bridge' ? 'address' : '/30 subnet'} left for VM '${vmId}'`,
      });
    }
    const plan = this.#planOfLease(vmId, value);
    if (source) {
      plan.guestIp = source.guestIp;
      plan.gateway = source.gateway;
      plan.prefixLength = source.prefixLength;
      if (source.source.guestMac) plan.guestMac = source.source.guestMac;
      if (mode === 'namespaced' && source.source.tapName) plan.tapName = source.source.tapName;
    }
    return plan;
  }

  *#candidates(): Generator<string> {
    const { pool, mode } = this.#options;
    const size = blockSize(pool.prefixLength);
    if (mode === 'bridge') {
      for (let offset = 2; offset < size - 1; offset += 1) yield formatIpv4(pool.network + offset);
    } else {
      for (let offset = 0; offset + 4 <= size; offset += 4) yield formatIpv4(pool.network + offset);
    }
  }

  /** Everything about a VM follows from its lease: addresses, MAC and names. */
  #planOfLease(vmId: string, value: string): Plan {
    const { mode, namePrefix, guestSubnet, guestTapName, pool } = this.#options;
    const address = parseIpv4(value)!;
    const code = addressCode(address);
    const lease = { pool: this.#leasePool(), value };
    if (mode === 'routed') {
      return {
        vmId,
        lease,
        guestIp: address + 2,
        gateway: address + 1,
        prefixLength: 30,
        guestMac: macForGuestIp(address + 2),
        tapName: `${namePrefix}t${code}`,
      };
    }
    if (mode === 'bridge') {
      return {
        vmId,
        lease,
        guestIp: address,
        gateway: pool.network + 1,
        prefixLength: pool.prefixLength,
        guestMac: macForGuestIp(address),
        tapName: `${namePrefix}b${code}`,
      };
    }
    return {
      vmId,
      lease,
      guestIp: guestSubnet.network + 2,
      gateway: guestSubnet.network + 1,
      prefixLength: guestSubnet.prefixLength,
      guestMac: macForGuestIp(guestSubnet.network + 2),
      tapName: guestTapName,
      vmNamespace: `${namePrefix}n${code}`,
      hostVeth: `${namePrefix}v${code}`,
      vethSubnet: { network: address, prefixLength: 30 },
    };
  }

  #attachmentOf(plan: Plan): NetworkAttachment {
    const { mode, namespace, ifaceId, dnsServers, mtu, rxRateLimiter, txRateLimiter } = this.#options;
    const tapNamespace = plan.vmNamespace ?? namespace;
    const netmask = netmaskOf(plan.prefixLength);
    const facts: NetworkFacts = {
      ifaceId,
      tapName: plan.tapName,
      guestIp: formatIpv4(plan.guestIp),
      gatewayIp: formatIpv4(plan.gateway),
      prefixLength: plan.prefixLength,
      netmask,
      guestMac: plan.guestMac,
      ...(tapNamespace !== undefined && { namespace: tapNamespace }),
      ...(dnsServers.length > 0 && { dnsServers: [...dnsServers] }),
      mode,
      ...(plan.hostVeth !== undefined &&
        plan.vethSubnet !== undefined && {
          hostLink: {
            interfaceName: plan.hostVeth,
            ...(namespace !== undefined && { namespace }),
            peerIp: formatIpv4(plan.vethSubnet.network + 2),
            peerMac: macForGuestIp(plan.vethSubnet.network + 2),
          },
        }),
    };
    const networkInterface: NetworkInterfaceSpec = {
      ifaceId,
      hostDevName: plan.tapName,
      guestMac: plan.guestMac,
      ...(mtu !== undefined && { mtu }),
      ...(rxRateLimiter && { rxRateLimiter }),
      ...(txRateLimiter && { txRateLimiter }),
    };
    return {
      facts,
      networkInterface,
      kernelIpArgument: kernelIpArgument(facts),
      ...(tapNamespace !== undefined && { networkNamespacePath: `/run/netns/${tapNamespace}` }),
    };
  }

  /** The TAP, or in tests a veth pair whose far end plays the guest. */
  #tapLines(plan: Plan, guestNamespace: string | undefined): string[] {
    const { tapOwner } = this.#options;
    if (guestNamespace !== undefined)
      return [`link add name ${plan.tapName} type veth peer name eth0 netns ${guestNamespace}`];
    const owner = tapOwner ? ` user ${tapOwner.uid} group ${tapOwner.gid}` : '';
    return [`tuntap add name ${plan.tapName} mode tap${owner}`];
  }

  async #create(plan: Plan, signal: AbortSignal | undefined): Promise<void> {
    const { mode, mtu, bridgeName } = this.#options;
    const guestNamespace = this.#options.guestStandIn?.(plan.vmId);
    const mtuLines = (name: string) => (mtu === undefined ? [] : [`link set ${name} mtu ${mtu}`]);
    const gatewayCidr = `${formatIpv4(plan.gateway)}/${plan.prefixLength}`;
    if (mode === 'routed') {
      await this.#host.ipBatch(
        [
          ...this.#tapLines(plan, guestNamespace),
          ...mtuLines(plan.tapName),
          `addr add ${gatewayCidr} dev ${plan.tapName}`,
          `link set ${plan.tapName} up`,
        ],
        signal,
      );
    } else if (mode === 'bridge') {
      await this.#host.ipBatch(
        [
          ...this.#tapLines(plan, guestNamespace),
          ...mtuLines(plan.tapName),
          `link set ${plan.tapName} master ${bridgeName}`,
          `link set ${plan.tapName} up`,
        ],
        signal,
      );
    } else {
      const vmNamespace = plan.vmNamespace!;
      const hostVeth = plan.hostVeth!;
      const veth = plan.vethSubnet!;
      const hostSide = `${formatIpv4(veth.network + 1)}/30`;
      const namespaceSide = `${formatIpv4(veth.network + 2)}/30`;
      const guestCidr = `${formatIpv4(plan.guestIp - (plan.guestIp % blockSize(plan.prefixLength)))}/${plan.prefixLength}`;
      // `netns add` must not run under `ip -n`: its bind mount would stay in that process's private mount namespace.
      await new HostCommands(undefined).ipBatch([`netns add ${vmNamespace}`], signal);
      await this.#host.ipBatch(
        [
          // A known MAC on the VM namespace's end: the firewall on the host side matches it (anti-spoofing).
          `link add name ${hostVeth} type veth peer name veth0 address ${macForGuestIp(veth.network + 2)} netns ${vmNamespace}`,
          ...mtuLines(hostVeth),
          `addr add ${hostSide} dev ${hostVeth}`,
          `link set ${hostVeth} up`,
          `netns exec ${vmNamespace} sysctl -q -w net.ipv4.ip_forward=1`,
          `netns exec ${vmNamespace} nft "add table ip microvm-nat; add chain ip microvm-nat guest { type nat hook postrouting priority srcnat; policy accept; }; add rule ip microvm-nat guest ip saddr ${guestCidr} oifname veth0 masquerade"`,
        ],
        signal,
      );
      await new HostCommands(vmNamespace).ipBatch(
        [
          'link set lo up',
          ...mtuLines('veth0'),
          `addr add ${namespaceSide} dev veth0`,
          'link set veth0 up',
          `route add default via ${formatIpv4(veth.network + 1)}`,
          ...this.#tapLines(plan, guestNamespace),
          ...mtuLines(plan.tapName),
          `addr add ${gatewayCidr} dev ${plan.tapName}`,
          `link set ${plan.tapName} up`,
        ],
        signal,
      );
    }
    if (guestNamespace !== undefined) {
      await new HostCommands(guestNamespace).ipBatch(
        [
          'link set lo up',
          // The stand-in sends as the guest would: the firewall's anti-spoofing matches the guest's MAC.
          `link set eth0 address ${plan.guestMac}`,
          `addr add ${formatIpv4(plan.guestIp)}/${plan.prefixLength} dev eth0`,
          'link set eth0 up',
          `route add default via ${formatIpv4(plan.gateway)}`,
        ],
        signal,
      );
    }
  }

  async #removeDevices(plan: Plan, signal: AbortSignal | undefined): Promise<void> {
    if (this.#options.mode !== 'namespaced') {
      await this.#deleteTolerant(this.#host, [`link del ${plan.tapName}`], signal);
      return;
    }
    // Deleting the host end removes the pair at once; a namespace's own devices go away asynchronously.
    await this.#deleteTolerant(this.#host, [`link del ${plan.hostVeth!}`], signal);
    await this.#deleteTolerant(new HostCommands(undefined), [`netns del ${plan.vmNamespace!}`], signal);
  }

  async #deleteTolerant(host: HostCommands, lines: string[], signal: AbortSignal | undefined): Promise<void> {
    const result = await host.ipBatchForce(lines, signal);
    if (result.exitCode === 0 || NOT_FOUND.test(result.stderr)) return;
    throw new NetworkError({
      reason: 'host-command-failed',
      message: `Could not remove ${lines.join(', ')}: ${result.stderr.trim()}`,
      command: ['ip', ...host.ipArgs(['-force', '-batch', '-'])],
      stderr: result.stderr,
    });
  }

  #describe(plan: Plan): string[] {
    if (this.#options.mode !== 'namespaced') return [`interface ${plan.tapName}`];
    return [`interface ${plan.hostVeth}`, `namespace ${plan.vmNamespace}`];
  }
}

/** `ip=<guest>::<gateway>:<netmask>::eth0:off[:<dns0>[:<dns1>]]` (the kernel's nfsroot ip= syntax). */
export function kernelIpArgument(facts: NetworkFacts): string {
  const dns = (facts.dnsServers ?? []).slice(0, 2);
  return [`ip=${facts.guestIp}`, '', facts.gatewayIp, facts.netmask, '', 'eth0', 'off', ...dns].join(':');
}

/**
 * What a snapshot's guest was configured with, read from the source spec: its `ip=` boot argument and the
 * interface `ifaceId`. Undefined when the source had no `ip=` argument (its network was not set up by us).
 */
export function sourceNetworkOf(spec: VmSpec, ifaceId: string): SourceNetwork | undefined {
  const match = /(?:^|\s)ip=([0-9.]+)::([0-9.]+):([0-9.]+):/.exec(spec.bootSource.bootArgs ?? '');
  if (!match) return undefined;
  const netmask = parseIpv4(match[3]!);
  if (netmask === undefined) return undefined;
  const prefixLength = 32 - Math.log2(2 ** 32 - netmask);
  if (!Number.isInteger(prefixLength)) return undefined;
  const networkInterface = spec.networkInterfaces?.find((candidate) => candidate.ifaceId === ifaceId);
  return {
    guestIp: match[1]!,
    gatewayIp: match[2]!,
    prefixLength,
    ...(networkInterface?.guestMac && { guestMac: networkInterface.guestMac }),
    ...(networkInterface && { tapName: networkInterface.hostDevName }),
  };
}
