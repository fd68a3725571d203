import { ValidationError } from '@microvm/core';

/** An IPv4 block: the network address (host bits zero) as an unsigned 32-bit number, and its prefix. */
export interface Ipv4Subnet {
  network: number;
  prefixLength: number;
}

const OCTET = /^(0|[1-9][0-9]{0,2})$/;

/** Parses a dotted quad strictly (no leading zeros, which some tools read as octal). Undefined when malformed. */
export function parseIpv4(text: string): number | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  let value = 0;
  for (const part of parts) {
    if (!OCTET.test(part)) return undefined;
    const octet = Number(part);
    if (octet > 255) return undefined;
    value = value * 256 + octet;
  }
  return value;
}

export function formatIpv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

export function blockSize(prefixLength: number): number {
  return 2 ** (32 - prefixLength);
}

export function netmaskOf(prefixLength: number): string {
  return formatIpv4(prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0);
}

export function formatSubnet(subnet: Ipv4Subnet): string {
  return `${formatIpv4(subnet.network)}/${subnet.prefixLength}`;
}

export function subnetContains(subnet: Ipv4Subnet, address: number): boolean {
  return address >= subnet.network && address < subnet.network + blockSize(subnet.prefixLength);
}

export function subnetsOverlap(left: Ipv4Subnet, right: Ipv4Subnet): boolean {
  return subnetContains(left, right.network) || subnetContains(right, left.network);
}

/**
 * Parses `a.b.c.d/p` into a subnet; throws a ValidationError naming `field` when it is malformed, when host
 * bits are set (`10.0.0.1/24` is almost always a typo for `10.0.0.0/24`), or the prefix is outside the range.
 */
export function parseSubnet(
  text: unknown,
  field: string,
  range: { minPrefixLength: number; maxPrefixLength: number },
): Ipv4Subnet {
  const rule = `must be an IPv4 CIDR "a.b.c.d/p" with p from ${range.minPrefixLength} to ${range.maxPrefixLength} and no host bits set`;
  if (typeof text !== 'string') throw new ValidationError({ field, rule, value: text });
  const match = /^([0-9.]+)\/([0-9]{1,2})$/.exec(text);
  const address = match ? parseIpv4(match[1]!) : undefined;
  const prefixLength = match ? Number(match[2]) : Number.NaN;
  if (
    address === undefined ||
    !(prefixLength >= range.minPrefixLength && prefixLength <= range.maxPrefixLength)
  ) {
    throw new ValidationError({ field, rule, value: text });
  }
  if (address % blockSize(prefixLength) !== 0) {
    throw new ValidationError({
      field,
      rule: `must not have host bits set (did you mean ${formatIpv4(address - (address % blockSize(prefixLength)))}/${prefixLength}?)`,
      value: text,
    });
  }
  return { network: address, prefixLength };
}

/** The Firecracker CI convention: `06:00:` + the guest IPv4 in hex (locally administered, unicast). */
export function macForGuestIp(guestIp: number): string {
  const octets = [6, 0, guestIp >>> 24, (guestIp >>> 16) & 255, (guestIp >>> 8) & 255, guestIp & 255];
  return octets.map((octet) => octet.toString(16).padStart(2, '0')).join(':');
}

/**
 * A short, reversible code for a 32-bit address: 7 base-36 digits. Interface and namespace names are built
 * from it, so they are unique exactly when the leased addresses are (no hash, no collision) and a name found
 * on the host leads back to its lease.
 */
export function addressCode(address: number): string {
  return address.toString(36).padStart(7, '0');
}

export function parseAddressCode(code: string): number | undefined {
  if (!/^[0-9a-z]{7}$/.test(code)) return undefined;
  const value = Number.parseInt(code, 36);
  return value <= 0xffffffff ? value : undefined;
}
