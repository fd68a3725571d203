/**
 * The firewall policy of one VM, its presets, and the validation that runs before nft is ever called.
 * Every value that ends up in an nft script passes through here first, so no unchecked string can become
 * nft syntax.
 */
import { ValidationError, validateVmId } from '@microvm/core';

export type FirewallPreset = 'deny-all' | 'internet-only' | 'allow-all';
export const firewallPresets: readonly FirewallPreset[] = ['deny-all', 'internet-only', 'allow-all'];

export type RuleProtocol = 'tcp' | 'udp' | 'icmp' | 'any';
const ruleProtocols: readonly RuleProtocol[] = ['tcp', 'udp', 'icmp', 'any'];

/** One port, or an inclusive range. */
export type PortSpec = number | { from: number; to: number };

/** Traffic the VM may start towards `cidr`. */
export interface EgressRule {
  /** An IPv4 address or network, e.g. `203.0.113.7` or `198.51.100.0/24`. */
  cidr: string;
  /** Default `'any'`. A port needs `'tcp'` or `'udp'`. */
  protocol?: RuleProtocol;
  port?: PortSpec;
}

/** A port of the host's own addresses the VM may reach (everything else on the host is closed to it). */
export interface HostPortRule {
  /** Default `'tcp'`. */
  protocol?: RuleProtocol;
  /** Required for `'tcp'` and `'udp'`; not allowed for `'icmp'` and `'any'`. */
  port?: PortSpec;
}

/** Connections arriving at the host's own addresses on `hostPort` go to the guest's `guestPort`. */
export interface PortForward {
  protocol?: 'tcp' | 'udp';
  hostPort: number;
  /** Default: the same as `hostPort`. */
  guestPort?: number;
}

export interface FirewallPolicy {
  /** The base verdict for traffic the VM starts. Default `'deny-all'`. */
  preset?: FirewallPreset;
  /** Extra allowed destinations, checked before the preset (so they can open a private address). */
  allow?: EgressRule[];
  /** Allow DNS (udp and tcp 53) to the resolvers. Default true. */
  dns?: boolean;
  /** Resolvers; default: the network facts' `dnsServers`. */
  dnsServers?: string[];
  /** Ports the VM may reach on the host's own addresses (e.g. its gateway). Default none. */
  hostPorts?: HostPortRule[];
  portForwards?: PortForward[];
}

/** Where a VM's traffic enters the host: the network facts the firewall needs. */
export interface FirewallTarget {
  /** The TAP (or the veth standing in for it): packets from the VM enter the host here. */
  tapName: string;
  guestIp: string;
  guestMac: string;
  dnsServers?: string[];
}

// ─── Normalised forms: what the script builder consumes ───

export interface PortRange {
  from: number;
  to: number;
}

export interface NormalisedRule {
  /** `a.b.c.d/p`, host bits zero. */
  cidr: string;
  protocol: RuleProtocol;
  ports?: PortRange;
}

export interface NormalisedHostPort {
  protocol: RuleProtocol;
  ports?: PortRange;
}

export interface NormalisedPortForward {
  protocol: 'tcp' | 'udp';
  hostPort: number;
  guestPort: number;
}

export interface NormalisedPolicy {
  preset: FirewallPreset;
  allow: NormalisedRule[];
  dnsServers: string[];
  hostPorts: NormalisedHostPort[];
  portForwards: NormalisedPortForward[];
}

export interface NormalisedTarget {
  tapName: string;
  guestIp: string;
  /** Lower case. */
  guestMac: string;
}

/**
 * What `internet-only` denies: every IPv4 range that is not the public internet. IPv6 needs no list: a VM
 * has no IPv6 identity to check its source against, so all its IPv6 is dropped.
 * TEST-NETs (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) are documentation ranges and stay allowed.
 */
export const nonPublicIpv4Ranges: readonly string[] = [
  '0.0.0.0/8', // "this network"
  '10.0.0.0/8', // private
  '100.64.0.0/10', // carrier-grade NAT
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local, including the cloud metadata address 169.254.169.254
  '172.16.0.0/12', // private
  '192.0.0.0/24', // IETF protocol assignments
  '192.168.0.0/16', // private
  '198.18.0.0/15', // benchmarking, often used inside data centres
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, including broadcast 255.255.255.255
];

const MAC_PATTERN = /^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$/;
// Stricter than the kernel: interface names are written into nft scripts between quotes.
const INTERFACE_NAME_PATTERN = /^[A-Za-z0-9_.-]{1,15}$/;
// Names of network namespaces (`ip netns`) and of our nft table: plain identifiers only.
const NAMESPACE_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
const TABLE_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const IPV4_PATTERN = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

function fail(field: string, rule: string, value: unknown): never {
  throw new ValidationError({ field, rule, value });
}

/** Parses a dotted-quad IPv4 address into a 32-bit number, or undefined. */
export function parseIpv4(value: string): number | undefined {
  const match = IPV4_PATTERN.exec(value);
  if (!match) return undefined;
  let result = 0;
  for (const part of match.slice(1)) {
    // Leading zeros are refused: some tools read them as octal.
    if (part.length > 1 && part.startsWith('0')) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    result = result * 256 + octet;
  }
  return result;
}

export function validateIpv4(value: unknown, field: string): string {
  if (typeof value !== 'string' || parseIpv4(value) === undefined) {
    fail(field, 'must be an IPv4 address (a.b.c.d, each 0-255, no leading zeros)', value);
  }
  return value;
}

/** Accepts `a.b.c.d` (a /32) or `a.b.c.d/p`; refuses IPv6 and host bits set past the prefix. */
export function validateCidr(value: unknown, field: string): string {
  if (typeof value !== 'string')
    fail(field, 'must be a string (an IPv4 CIDR such as 198.51.100.0/24)', value);
  if (value.includes(':')) {
    fail(
      field,
      'must be IPv4: a VM has no IPv6 identity to check, so its IPv6 traffic is always dropped',
      value,
    );
  }
  const [address = '', prefixText, ...rest] = value.split('/');
  const numeric = parseIpv4(address);
  if (numeric === undefined || rest.length > 0) {
    fail(field, 'must be an IPv4 CIDR: a.b.c.d or a.b.c.d/prefix', value);
  }
  if (prefixText === undefined) return `${address}/32`;
  if (!/^\d{1,2}$/.test(prefixText) || Number(prefixText) > 32) {
    fail(field, 'must have a prefix length from 0 to 32', value);
  }
  const prefix = Number(prefixText);
  const hostBits = 32 - prefix;
  if (hostBits > 0 && numeric % 2 ** hostBits !== 0) {
    fail(field, `must have no host bits set past the /${prefix} prefix`, value);
  }
  return `${address}/${prefix}`;
}

function validatePort(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 65535) {
    fail(field, 'must be an integer port from 1 to 65535', value);
  }
  return value;
}

function validatePortSpec(value: unknown, field: string): PortRange {
  if (typeof value === 'number') {
    const port = validatePort(value, field);
    return { from: port, to: port };
  }
  if (typeof value !== 'object' || value === null) {
    fail(field, 'must be a port (1-65535) or a range { from, to }', value);
  }
  const range = value as Record<string, unknown>;
  const from = validatePort(range.from, `${field}.from`);
  const to = validatePort(range.to, `${field}.to`);
  if (from > to) fail(field, 'must be an ordered range: from ≤ to', value);
  return { from, to };
}

function validateProtocol(value: unknown, field: string, fallback: RuleProtocol): RuleProtocol {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !ruleProtocols.includes(value as RuleProtocol)) {
    fail(field, `must be one of ${ruleProtocols.map((name) => `'${name}'`).join(', ')}`, value);
  }
  return value as RuleProtocol;
}

function validatePortForProtocol(
  protocol: RuleProtocol,
  port: unknown,
  field: string,
  required: boolean,
): PortRange | undefined {
  if (port === undefined) {
    if (required && (protocol === 'tcp' || protocol === 'udp')) {
      fail(`${field}.port`, `is required for protocol '${protocol}'`, port);
    }
    return undefined;
  }
  if (protocol !== 'tcp' && protocol !== 'udp') {
    fail(`${field}.port`, `needs protocol 'tcp' or 'udp' (protocol is '${protocol}')`, port);
  }
  return validatePortSpec(port, `${field}.port`);
}

function validateArray(value: unknown, field: string): unknown[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) fail(field, 'must be an array', value);
  return value;
}

function validateObject(value: unknown, field: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    fail(field, 'must be an object', value);
  return value as Record<string, unknown>;
}

const policyKeys = new Set(['preset', 'allow', 'dns', 'dnsServers', 'hostPorts', 'portForwards']);

/** Checks every field of a policy and returns its normalised form, or throws a `ValidationError`. */
export function validatePolicy(
  policy: unknown,
  defaultDnsServers: readonly string[] = [],
  field = 'policy',
): NormalisedPolicy {
  const input = validateObject(policy ?? {}, field);
  for (const key of Object.keys(input)) {
    if (!policyKeys.has(key)) fail(`${field}.${key}`, 'is not a known policy field', input[key]);
  }
  const preset = input.preset ?? 'deny-all';
  if (typeof preset !== 'string' || !firewallPresets.includes(preset as FirewallPreset)) {
    fail(
      `${field}.preset`,
      `must be one of ${firewallPresets.map((name) => `'${name}'`).join(', ')}`,
      preset,
    );
  }
  const allow = validateArray(input.allow, `${field}.allow`).map((entry, index) => {
    const ruleField = `${field}.allow[${index}]`;
    const rule = validateObject(entry, ruleField);
    const protocol = validateProtocol(rule.protocol, `${ruleField}.protocol`, 'any');
    const ports = validatePortForProtocol(protocol, rule.port, ruleField, false);
    return { cidr: validateCidr(rule.cidr, `${ruleField}.cidr`), protocol, ...(ports ? { ports } : {}) };
  });
  const dns = input.dns ?? true;
  if (typeof dns !== 'boolean') fail(`${field}.dns`, 'must be a boolean', dns);
  const dnsServers = dns
    ? input.dnsServers === undefined
      ? [...defaultDnsServers]
      : validateArray(input.dnsServers, `${field}.dnsServers`).map((server, index) =>
          validateIpv4(server, `${field}.dnsServers[${index}]`),
        )
    : [];
  const hostPorts = validateArray(input.hostPorts, `${field}.hostPorts`).map((entry, index) => {
    const ruleField = `${field}.hostPorts[${index}]`;
    const rule = validateObject(entry, ruleField);
    const protocol = validateProtocol(rule.protocol, `${ruleField}.protocol`, 'tcp');
    const ports = validatePortForProtocol(protocol, rule.port, ruleField, true);
    return { protocol, ...(ports ? { ports } : {}) };
  });
  const seenHostPorts = new Set<string>();
  const portForwards = validateArray(input.portForwards, `${field}.portForwards`).map((entry, index) => {
    const ruleField = `${field}.portForwards[${index}]`;
    const forward = validateObject(entry, ruleField);
    const protocol = forward.protocol ?? 'tcp';
    if (protocol !== 'tcp' && protocol !== 'udp')
      fail(`${ruleField}.protocol`, "must be 'tcp' or 'udp'", protocol);
    const hostPort = validatePort(forward.hostPort, `${ruleField}.hostPort`);
    const guestPort =
      forward.guestPort === undefined ? hostPort : validatePort(forward.guestPort, `${ruleField}.guestPort`);
    const key = `${protocol}/${hostPort}`;
    if (seenHostPorts.has(key))
      fail(`${ruleField}.hostPort`, `must be unique: ${key} is forwarded twice`, hostPort);
    seenHostPorts.add(key);
    return { protocol, hostPort, guestPort } as NormalisedPortForward;
  });
  return { preset: preset as FirewallPreset, allow, dnsServers, hostPorts, portForwards };
}

export function validateInterfaceName(value: unknown, field: string): string {
  if (typeof value !== 'string' || !INTERFACE_NAME_PATTERN.test(value) || value === '.' || value === '..') {
    fail(field, 'must be an interface name of 1 to 15 bytes from [A-Za-z0-9_.-]', value);
  }
  return value;
}

export function validateTarget(
  target: unknown,
  field = 'target',
): NormalisedTarget & { dnsServers: string[] } {
  const input = validateObject(target, field);
  const tapName = validateInterfaceName(input.tapName, `${field}.tapName`);
  const guestIp = validateIpv4(input.guestIp, `${field}.guestIp`);
  if (typeof input.guestMac !== 'string' || !MAC_PATTERN.test(input.guestMac)) {
    fail(`${field}.guestMac`, 'must be a MAC address (xx:xx:xx:xx:xx:xx)', input.guestMac);
  }
  const dnsServers = validateArray(input.dnsServers, `${field}.dnsServers`).map((server, index) =>
    validateIpv4(server, `${field}.dnsServers[${index}]`),
  );
  return { tapName, guestIp, guestMac: input.guestMac.toLowerCase(), dnsServers };
}

export function validateNamespace(value: unknown, field = 'namespace'): string | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !NAMESPACE_PATTERN.test(value) || value === '.' || value === '..') {
    fail(field, 'must be a network namespace name of 1 to 64 characters from [A-Za-z0-9_.-]', value);
  }
  return value;
}

export function validateTableName(value: unknown, field = 'tableName'): string {
  if (typeof value !== 'string' || !TABLE_NAME_PATTERN.test(value)) {
    fail(field, 'must be 1 to 32 characters: a letter, then letters, digits or underscores', value);
  }
  return value;
}

export function validateFirewallVmId(value: unknown, field = 'vmId'): string {
  return validateVmId(value, field);
}
