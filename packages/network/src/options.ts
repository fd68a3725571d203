import type { RateLimiterSpec } from '@microvm/core';
import { LeaseStore, ValidationError, validateInterfaceName, validateResourceId } from '@microvm/core';
import { blockSize, type Ipv4Subnet, parseIpv4, parseSubnet, subnetsOverlap } from './ipv4.js';

export type NetworkMode = 'routed' | 'bridge' | 'namespaced';

/**
 * For tests and the simulator demo, exported as `@microvm/network/testing`: instead of a TAP, a veth pair whose
 * far end (`eth0`) is configured as the guest in the namespace this returns, so packets can flow without a guest.
 * Registered (`Symbol.for`) so the main and the testing entry agree on it however they are bundled.
 */
export const guestStandIn: unique symbol = Symbol.for('microvm.network.guestStandIn');

export interface NetworkManagerOptions {
  /** `routed` (default): a /30 per VM on its own TAP; `bridge`: TAPs on one bridge; `namespaced`: a namespace per VM. */
  mode?: NetworkMode;
  /** IPv4 pool. routed/namespaced: /30 subnets are leased from it; bridge: the shared subnet. Default `172.16.0.0/16`. */
  pool?: string;
  /** State directory holding the leases (`<stateDir>/leases`). Default `/var/lib/microvm`. Ignored with `leases`. */
  stateDir?: string;
  /** A lease store to share (the primitive passes the provider's). */
  leases?: LeaseStore;
  /** Network namespace in which every host-side change is made. Default: the current one. */
  namespace?: string;
  /** Interface NAT goes out of. Default: the device of the namespace's default route. */
  uplink?: string;
  /** Masquerade guest traffic out of the uplink. Default true. */
  nat?: boolean;
  /** Up to two DNS servers written into the guest's `ip=` argument. */
  dnsServers?: string[];
  /** Owner of the TAP (jailed VMs open it as this uid/gid). */
  tapOwner?: { uid: number; gid: number };
  /** MTU of the host interfaces; also passed to Firecracker (needs Firecracker ≥ 1.16). */
  mtu?: number;
  /** Prefix of every interface and namespace this manager creates: 1-6 lowercase letters/digits. Default `mv`. */
  namePrefix?: string;
  /** bridge mode: the bridge's name. Default `<namePrefix>br0`. */
  bridgeName?: string;
  /** Firecracker `iface_id`. Default `eth0`. */
  ifaceId?: string;
  /** namespaced mode: the guest subnet inside every VM namespace (the TAP holds its first address). Default `192.168.241.0/30`. */
  guestSubnet?: string;
  /** namespaced mode: the TAP's name inside every VM namespace. Default `tap0`. */
  guestTapName?: string;
  rxRateLimiter?: RateLimiterSpec;
  txRateLimiter?: RateLimiterSpec;
  /** Tests and simulator demos only (`@microvm/network/testing`): see `guestStandIn`. */
  [guestStandIn]?: (vmId: string) => string;
}

export interface ResolvedOptions {
  mode: NetworkMode;
  pool: Ipv4Subnet;
  leases: LeaseStore;
  namespace: string | undefined;
  uplink: string | undefined;
  nat: boolean;
  dnsServers: string[];
  tapOwner: { uid: number; gid: number } | undefined;
  mtu: number | undefined;
  namePrefix: string;
  bridgeName: string;
  ifaceId: string;
  guestSubnet: Ipv4Subnet;
  guestTapName: string;
  rxRateLimiter: RateLimiterSpec | undefined;
  txRateLimiter: RateLimiterSpec | undefined;
  guestStandIn: ((vmId: string) => string) | undefined;
}

const MODES: readonly NetworkMode[] = ['routed', 'bridge', 'namespaced'];
const NAMESPACE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

function fail(field: string, rule: string, value: unknown): never {
  throw new ValidationError({ field, rule, value });
}

/** Checks every option before anything touches the host. */
export function resolveOptions(options: NetworkManagerOptions): ResolvedOptions {
  const mode = options.mode ?? 'routed';
  if (!MODES.includes(mode)) fail('mode', `must be one of ${MODES.join(', ')}`, mode);
  // A bridge needs network, gateway, a guest and broadcast; a /30 per VM needs the pool to hold one.
  const pool = parseSubnet(options.pool ?? '172.16.0.0/16', 'pool', {
    minPrefixLength: 8,
    maxPrefixLength: 30,
  });
  const namePrefix = options.namePrefix ?? 'mv';
  if (!/^[a-z][a-z0-9]{0,5}$/.test(namePrefix)) {
    fail(
      'namePrefix',
      'must be 1-6 lowercase letters or digits, starting with a letter (names stay within 15 bytes)',
      namePrefix,
    );
  }
  if (options.namespace !== undefined && !NAMESPACE_PATTERN.test(options.namespace)) {
    fail(
      'namespace',
      'must be 1-63 letters, digits, "_", "." or "-" (a name under /run/netns)',
      options.namespace,
    );
  }
  if (options.uplink !== undefined) validateInterfaceName(options.uplink, 'uplink');
  const bridgeName = options.bridgeName ?? `${namePrefix}br0`;
  validateInterfaceName(bridgeName, 'bridgeName');
  const guestTapName = options.guestTapName ?? 'tap0';
  validateInterfaceName(guestTapName, 'guestTapName');
  if (guestTapName === 'veth0')
    fail('guestTapName', 'must not be "veth0" (the namespace side of the veth pair)', guestTapName);
  const ifaceId = validateResourceId(options.ifaceId ?? 'eth0', 'ifaceId');
  const guestSubnet = parseSubnet(options.guestSubnet ?? '192.168.241.0/30', 'guestSubnet', {
    minPrefixLength: 8,
    maxPrefixLength: 30,
  });
  if (mode === 'namespaced' && subnetsOverlap(pool, guestSubnet)) {
    fail(
      'guestSubnet',
      'must not overlap pool (inside a VM namespace both are routed)',
      options.guestSubnet ?? '192.168.241.0/30',
    );
  }
  const dnsServers = options.dnsServers ?? [];
  if (!Array.isArray(dnsServers) || dnsServers.length > 2) {
    fail(
      'dnsServers',
      'must be an array of at most two IPv4 addresses (the kernel ip= argument takes two)',
      dnsServers,
    );
  }
  dnsServers.forEach((server, index) => {
    if (typeof server !== 'string' || parseIpv4(server) === undefined)
      fail(`dnsServers[${index}]`, 'must be an IPv4 address', server);
  });
  if (options.tapOwner !== undefined) {
    for (const key of ['uid', 'gid'] as const) {
      const id = options.tapOwner[key];
      if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe)
        fail(`tapOwner.${key}`, 'must be an integer from 0 to 4294967294', id);
    }
  }
  if (
    options.mtu !== undefined &&
    !(Number.isInteger(options.mtu) && options.mtu >= 68 && options.mtu <= 65535)
  ) {
    fail('mtu', 'must be an integer from 68 to 65535', options.mtu);
  }
  if (mode === 'bridge' && blockSize(pool.prefixLength) < 4)
    fail('pool', 'must hold at least one guest', options.pool);
  return {
    mode,
    pool,
    leases: options.leases ?? new LeaseStore(options.stateDir ?? '/var/lib/microvm'),
    namespace: options.namespace,
    uplink: options.uplink,
    nat: options.nat ?? true,
    dnsServers: [...dnsServers],
    tapOwner: options.tapOwner,
    mtu: options.mtu,
    namePrefix,
    bridgeName,
    ifaceId,
    guestSubnet,
    guestTapName,
    rxRateLimiter: options.rxRateLimiter,
    txRateLimiter: options.txRateLimiter,
    guestStandIn: options[guestStandIn],
  };
}
