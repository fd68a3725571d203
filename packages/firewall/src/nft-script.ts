/**
 * Builds the nft scripts the manager feeds to `nft -f -`. Pure functions over validated input: every value
 * written here has passed `policy.ts`, so the scripts can interpolate it.
 *
 * Layout of our table (family inet, so one rule serves IPv4 and IPv6):
 *   map vm_egress / vm_ingress / vm_host   ifname → jump <per-VM chain>   (one lookup per packet, any VM count)
 *   map port_forwards                      proto . host port → guest ip . guest port
 *   set nonpublic_ipv4                     what internet-only denies
 *   chain forward   (hook forward, policy accept)  iifname vmap @vm_egress; oifname vmap @vm_ingress
 *   chain input     (hook input,   policy accept)  iifname vmap @vm_host
 *   chain prerouting (nat, dstnat)                 DNAT to the port_forwards map for the host's own addresses
 * Base chains accept by default: packets that are not ours pass untouched, so other tools keep working.
 *
 * Why the scripts look the way they do: before a transaction, nft reads part of the ruleset into a cache, and
 * which part depends on the commands. In nft 1.0.x an `add rule` or `add element` makes it read every chain in
 * the namespace (about 200 kB of netlink at 1,000 VMs, +10 ms per call), while `add chain … { rules }` and
 * `add map … { elements = … }` need only the table. So a VM's chains are written as chain blocks and its map
 * entries as map blocks: installing a VM costs the same with 0 or 1,000 others. The sets and maps those blocks
 * refer to are declared earlier in the same script, which puts them in nft's cache. Deletions (`remove`, or a
 * replacement that changes the TAP or has port forwards) still read every chain: nft has no cheaper delete.
 * Per-VM rules use no anonymous sets (`{ a, b }`): commands that do read the cache would read those too.
 */
import {
  type NormalisedPolicy,
  type NormalisedPortForward,
  type NormalisedRule,
  type NormalisedTarget,
  nonPublicIpv4Ranges,
  type PortRange,
  type RuleProtocol,
} from './policy.js';

export const EGRESS_MAP = 'vm_egress';
export const INGRESS_MAP = 'vm_ingress';
export const HOST_MAP = 'vm_host';
export const PORT_FORWARD_MAP = 'port_forwards';
export const NON_PUBLIC_SET = 'nonpublic_ipv4';
const PORT_FORWARD_TYPE = 'inet_proto . inet_service : ipv4_addr . inet_service';

export interface VmChains {
  /** Packets the VM sends through the host (forward hook). */
  egress: string;
  /** Packets routed to the VM (forward hook). */
  ingress: string;
  /** Packets the VM sends to the host itself (input hook). */
  host: string;
}

/** Chain names are derived from the VM id alone (`[A-Za-z0-9-]{1,64}`), so removal needs nothing else. */
export function chainsOf(vmId: string): VmChains {
  return { egress: `vm-${vmId}-out`, ingress: `vm-${vmId}-in`, host: `vm-${vmId}-host` };
}

const CHAIN_PATTERN = /^vm-([A-Za-z0-9-]{1,64})-(out|in|host)$/;

/** The VM a chain of ours belongs to and its role, or undefined for any other chain. */
export function parseChainName(chain: string): { vmId: string; role: keyof VmChains } | undefined {
  const match = CHAIN_PATTERN.exec(chain);
  if (!match) return undefined;
  const role = match[2] === 'out' ? 'egress' : match[2] === 'in' ? 'ingress' : 'host';
  return { vmId: match[1]!, role };
}

/** What is installed for a VM beyond its chains, recorded in rule comments of its ingress chain. */
export interface InstalledState {
  tapName: string;
  portForwards: Array<{ protocol: 'tcp' | 'udp'; hostPort: number }>;
}

/** One line of a script, with what to blame when the kernel refuses exactly that line. */
export interface ScriptLine {
  text: string;
  /**
   * What it means when the kernel answers "File exists" to this line: a key another VM holds (the caller's
   * conflict), or `'installed'`: the VM already has rules, so the change must be redone as a replacement.
   */
  conflict?: { field: string; rule: string; value: unknown } | 'installed';
  /** A deletion of something that may be gone already (removed by hand): dropped and the script rerun. */
  mayBeMissing?: true;
}

export function renderScript(lines: readonly ScriptLine[]): string {
  return `${lines.map((line) => line.text).join('\n')}\n`;
}

/** Creates our table, maps and base chains if missing, and resets the base chains' few rules. Idempotent. */
export function baseLines(table: string): ScriptLine[] {
  const t = `inet ${table}`;
  return [
    `add table ${t}`,
    `add map ${t} ${EGRESS_MAP} { type ifname : verdict; }`,
    `add map ${t} ${INGRESS_MAP} { type ifname : verdict; }`,
    `add map ${t} ${HOST_MAP} { type ifname : verdict; }`,
    `add map ${t} ${PORT_FORWARD_MAP} { type ${PORT_FORWARD_TYPE}; }`,
    `add set ${t} ${NON_PUBLIC_SET} { type ipv4_addr; flags interval; elements = { ${nonPublicIpv4Ranges.join(', ')} }; }`,
    `add chain ${t} forward { type filter hook forward priority filter; policy accept; }`,
    `flush chain ${t} forward`,
    chainBlock(t, 'forward', [`iifname vmap @${EGRESS_MAP}`, `oifname vmap @${INGRESS_MAP}`]),
    `add chain ${t} input { type filter hook input priority filter; policy accept; }`,
    `flush chain ${t} input`,
    chainBlock(t, 'input', [`iifname vmap @${HOST_MAP}`]),
    `add chain ${t} prerouting { type nat hook prerouting priority dstnat; policy accept; }`,
    `flush chain ${t} prerouting`,
    chainBlock(t, 'prerouting', [
      `meta nfproto ipv4 fib daddr type local dnat ip to meta l4proto . th dport map @${PORT_FORWARD_MAP}`,
    ]),
  ].map((text) => ({ text }));
}

/** Appends `rules` to `chain` in one command that needs no chain cache (see the top of this file). */
function chainBlock(t: string, chain: string, rules: readonly string[]): string {
  return `add chain ${t} ${chain} { ${rules.map((rule) => `${rule}; `).join('')}}`;
}

/** Adds elements to a map in one command that needs no chain cache; a key held with other data → EEXIST. */
function mapBlock(t: string, map: string, type: string, element: string): string {
  return `add map ${t} ${map} { type ${type}; elements = { ${element} }; }`;
}

function portMatch(protocol: RuleProtocol, ports: PortRange | undefined): string {
  const parts: string[] = [];
  if (protocol !== 'any') parts.push(`meta l4proto ${protocol}`);
  if (ports)
    parts.push(ports.from === ports.to ? `th dport ${ports.from}` : `th dport ${ports.from}-${ports.to}`);
  return parts.join(' ');
}

function allowRuleMatch(rule: NormalisedRule): string {
  const destination = rule.cidr === '0.0.0.0/0' ? '' : `ip daddr ${rule.cidr}`;
  return [destination, portMatch(rule.protocol, rule.ports)].filter(Boolean).join(' ');
}

/** The VM may only send as itself: its MAC, its IPv4 address, and no IPv6 (it has no IPv6 identity). */
function antiSpoofing(target: NormalisedTarget): string[] {
  return [
    `ether saddr != ${target.guestMac} drop`,
    'meta nfproto != ipv4 drop',
    `ip saddr != ${target.guestIp} drop`,
    'ct state invalid drop',
  ];
}

/** One match per resolver and protocol (DNS uses udp, and tcp for large answers). */
function dnsMatches(dnsServers: readonly string[]): string[] {
  return [...new Set(dnsServers)].flatMap((server) => [
    `ip daddr ${server} udp dport 53`,
    `ip daddr ${server} tcp dport 53`,
  ]);
}

function stateComment(target: NormalisedTarget): string {
  return `microvm tap=${target.tapName}`;
}

function forwardComment(forward: NormalisedPortForward): string {
  return `microvm forward=${forward.protocol}/${forward.hostPort}`;
}

/**
 * Reads what `applyLines` recorded in the ingress chain's rule comments, from `nft list chain` text output.
 * Only our own comments are matched; they hold values that were validated when written.
 */
export function parseInstalledState(chainListing: string): InstalledState | undefined {
  const tap = /comment "microvm tap=([A-Za-z0-9_.-]{1,15})"/.exec(chainListing)?.[1];
  if (tap === undefined) return undefined;
  const portForwards = [...chainListing.matchAll(/comment "microvm forward=(tcp|udp)\/(\d{1,5})"/g)].map(
    (match) => ({ protocol: match[1] as 'tcp' | 'udp', hostPort: Number(match[2]) }),
  );
  return { tapName: tap, portForwards };
}

/** Deletes a VM's map elements (as recorded in `state`) and its chains. */
export function removeLines(table: string, vmId: string, state: InstalledState | undefined): ScriptLine[] {
  const t = `inet ${table}`;
  const chains = chainsOf(vmId);
  const lines: string[] = [];
  if (state) lines.push(...elementDeletions(table, state));
  lines.push(
    `delete chain ${t} ${chains.egress}`,
    `delete chain ${t} ${chains.ingress}`,
    `delete chain ${t} ${chains.host}`,
  );
  return lines.map((text) => ({ text }));
}

/** The VM's recorded map elements; the TAP's are kept when `keepTapName` names the same TAP. */
function elementDeletions(table: string, state: InstalledState, keepTapName?: string): string[] {
  const t = `inet ${table}`;
  const tap = `"${state.tapName}"`;
  const tapElements =
    state.tapName === keepTapName
      ? []
      : [
          `delete element ${t} ${EGRESS_MAP} { ${tap} }`,
          `delete element ${t} ${INGRESS_MAP} { ${tap} }`,
          `delete element ${t} ${HOST_MAP} { ${tap} }`,
        ];
  return [
    ...tapElements,
    ...state.portForwards.map(
      (forward) => `delete element ${t} ${PORT_FORWARD_MAP} { ${forward.protocol} . ${forward.hostPort} }`,
    ),
  ];
}

/**
 * Installs or replaces a VM's rules in one transaction: base objects, then the VM's chains flushed and
 * refilled, then its map elements (old ones deleted first, so a changed TAP or forward leaves nothing behind).
 * With `previous` set to `'none'` the VM is assumed new: its ingress chain is created with `create chain`, which
 * fails the whole transaction if the VM has rules already, so a first install needs no read beforehand.
 */
export function applyLines(
  table: string,
  vmId: string,
  target: NormalisedTarget,
  policy: NormalisedPolicy,
  previous: InstalledState | 'none' | undefined,
): ScriptLine[] {
  const t = `inet ${table}`;
  const chains = chainsOf(vmId);
  const lines: ScriptLine[] = baseLines(table);
  const push = (...texts: string[]) => lines.push(...texts.map((text) => ({ text })));
  if (previous === 'none') lines.push({ text: `create chain ${t} ${chains.ingress}`, conflict: 'installed' });
  for (const chain of [chains.egress, chains.ingress, chains.host]) {
    if (previous !== 'none' || chain !== chains.ingress) push(`add chain ${t} ${chain}`);
    push(`flush chain ${t} ${chain}`);
  }

  // Egress (forward hook): allowed packets `return`, so the base chain still runs the destination's ingress
  // chain: another VM's ingress drops what it did not ask for, whatever this VM's policy allows.
  const egressRules: string[] = [];
  const egress = (rule: string) => egressRules.push(rule);
  for (const rule of antiSpoofing(target)) egress(rule);
  egress('ct state established,related return');
  const dns = dnsMatches(policy.dnsServers);
  for (const match of dns) egress(`${match} return`);
  for (const rule of policy.allow) egress(`${allowRuleMatch(rule)} return`.trim());
  if (policy.preset === 'internet-only') {
    egress(`ip daddr @${NON_PUBLIC_SET} drop`);
    egress('return');
  } else if (policy.preset === 'allow-all') {
    egress('return');
  }
  egress('drop');
  push(chainBlock(t, chains.egress, egressRules));

  // Ingress (forward hook): only replies and the VM's own port forwards.
  const ingressRules: string[] = [];
  const ingress = (rule: string) => ingressRules.push(rule);
  ingress(`ct state established,related accept comment "${stateComment(target)}"`);
  ingress('ct state invalid drop');
  for (const forward of policy.portForwards) {
    ingress(
      `ip daddr ${target.guestIp} meta l4proto ${forward.protocol} th dport ${forward.guestPort} ct status dnat accept comment "${forwardComment(forward)}"`,
    );
  }
  ingress('drop');
  push(chainBlock(t, chains.ingress, ingressRules));

  // Host (input hook): the host's own addresses, closed except DNS and the ports the owner opened.
  const hostRules: string[] = [];
  const host = (rule: string) => hostRules.push(rule);
  for (const rule of antiSpoofing(target)) host(rule);
  host('ct state established,related accept');
  for (const match of dns) host(`${match} accept`);
  for (const port of policy.hostPorts) host(`${portMatch(port.protocol, port.ports)} accept`.trim());
  host('drop');
  push(chainBlock(t, chains.host, hostRules));

  // The TAP's elements go only when the TAP changes: unchanged, they are re-added as they are (same data, no
  // error), and a replacement without deletions keeps the cheap cache (see the top of this file). Port forwards
  // always go first, since their recorded state does not say where they pointed.
  if (previous && previous !== 'none') {
    for (const text of elementDeletions(table, previous, target.tapName))
      lines.push({ text, mayBeMissing: true });
  }
  const tap = `"${target.tapName}"`;
  const tapConflict = {
    field: 'target.tapName',
    rule: 'is already firewalled for another VM (remove that VM first)',
    value: target.tapName,
  };
  const verdictMap = 'ifname : verdict';
  lines.push(
    { text: mapBlock(t, EGRESS_MAP, verdictMap, `${tap} : jump ${chains.egress}`), conflict: tapConflict },
    { text: mapBlock(t, INGRESS_MAP, verdictMap, `${tap} : jump ${chains.ingress}`), conflict: tapConflict },
    { text: mapBlock(t, HOST_MAP, verdictMap, `${tap} : jump ${chains.host}`), conflict: tapConflict },
  );
  policy.portForwards.forEach((forward, index) => {
    lines.push({
      text: mapBlock(
        t,
        PORT_FORWARD_MAP,
        PORT_FORWARD_TYPE,
        `${forward.protocol} . ${forward.hostPort} : ${target.guestIp} . ${forward.guestPort}`,
      ),
      conflict: {
        field: `policy.portForwards[${index}].hostPort`,
        rule: `is already forwarded to another VM (${forward.protocol}/${forward.hostPort})`,
        value: forward.hostPort,
      },
    });
  });
  return lines;
}
