import type { ConsolePrimitiveOptions, ConsoleSource } from '@microvm/console';
import { ValidationError } from '@microvm/core';
import type { EgressRule, FirewallPolicy, FirewallPreset, RuleProtocol } from '@microvm/firewall';
import type { JailerOptions } from '@microvm/jailer';
import type { NetworkMode, NetworkPrimitiveOptions } from '@microvm/network';
import type { ShutdownLadderOptions } from '@microvm/shutdown';
import type { VsockPrimitiveOptions } from '@microvm/vsock';
import type { ComposerJailerOptions, PrimitiveOptions } from './options.js';
import { FALSE_WORDS, TRUE_WORDS } from './toggles.js';
import type { PrimitiveName } from './types.js';

/**
 * One documented environment variable: the README's table is checked against this list by a test, so the two
 * cannot drift apart.
 */
export interface EnvVariable {
  name: string;
  primitive: PrimitiveName;
  meaning: string;
}

export const ENV_VARIABLES: readonly EnvVariable[] = [
  {
    primitive: 'network',
    name: 'MICROVM_NETWORK_MODE',
    meaning: '`routed` (default), `bridge` or `namespaced`',
  },
  {
    primitive: 'network',
    name: 'MICROVM_NETWORK_POOL',
    meaning: 'IPv4 pool of guest subnets (default `172.16.0.0/16`)',
  },
  {
    primitive: 'network',
    name: 'MICROVM_NETWORK_NAMESPACE',
    meaning: 'network namespace for the host side (default: the current one)',
  },
  {
    primitive: 'network',
    name: 'MICROVM_NETWORK_UPLINK',
    meaning: "interface NAT goes out of (default: the default route's)",
  },
  {
    primitive: 'network',
    name: 'MICROVM_NETWORK_NAT',
    meaning: 'masquerade guest traffic (boolean, default on)',
  },
  {
    primitive: 'network',
    name: 'MICROVM_NETWORK_DNS_SERVERS',
    meaning: 'comma-separated resolvers given to the guest',
  },
  { primitive: 'network', name: 'MICROVM_NETWORK_MTU', meaning: 'MTU of the host interfaces' },
  {
    primitive: 'network',
    name: 'MICROVM_NETWORK_NAME_PREFIX',
    meaning: 'prefix of interface names (default `mv`)',
  },
  {
    primitive: 'firewall',
    name: 'MICROVM_FIREWALL_PRESET',
    meaning: '`deny-all` (default), `internet-only` or `allow-all`',
  },
  {
    primitive: 'firewall',
    name: 'MICROVM_FIREWALL_ALLOW',
    meaning: 'comma-separated extra destinations: `cidr`, `tcp:cidr:port` or `udp:cidr:port`',
  },
  {
    primitive: 'firewall',
    name: 'MICROVM_FIREWALL_DNS',
    meaning: 'allow DNS to the resolvers (boolean, default on)',
  },
  {
    primitive: 'firewall',
    name: 'MICROVM_FIREWALL_TABLE',
    meaning: 'nftables table name (default `microvm`)',
  },
  { primitive: 'vsock', name: 'MICROVM_VSOCK_MIN_CID', meaning: 'lowest guest CID handed out (default 3)' },
  { primitive: 'vsock', name: 'MICROVM_VSOCK_MAX_CID', meaning: 'highest guest CID handed out' },
  {
    primitive: 'vsock',
    name: 'MICROVM_VSOCK_CONNECT_TIMEOUT_MS',
    meaning: 'default deadline of `connect()` (default 10000)',
  },
  {
    primitive: 'console',
    name: 'MICROVM_CONSOLE_SOURCE',
    meaning: '`auto` (default), `stdout` or `serial-file`',
  },
  {
    primitive: 'console',
    name: 'MICROVM_CONSOLE_LOG_FILES',
    meaning: 'keep rotated log files in the VM folder (boolean, default off)',
  },
  {
    primitive: 'console',
    name: 'MICROVM_CONSOLE_MAX_LINES',
    meaning: 'console lines kept in memory (default 1000)',
  },
  {
    primitive: 'console',
    name: 'MICROVM_CONSOLE_MAX_BYTES',
    meaning: 'console bytes kept in memory (default 1 MiB)',
  },
  {
    primitive: 'shutdown',
    name: 'MICROVM_SHUTDOWN_CTRL_ALT_DEL',
    meaning: 'send Ctrl-Alt-Del first (boolean, default on x86_64)',
  },
  {
    primitive: 'shutdown',
    name: 'MICROVM_SHUTDOWN_CTRL_ALT_DEL_GRACE_MS',
    meaning: 'grace after Ctrl-Alt-Del (default 5000)',
  },
  {
    primitive: 'shutdown',
    name: 'MICROVM_SHUTDOWN_TERMINATE_GRACE_MS',
    meaning: 'grace after SIGTERM (default 1000)',
  },
  {
    primitive: 'shutdown',
    name: 'MICROVM_SHUTDOWN_KILL_TIMEOUT_MS',
    meaning: 'wait after SIGKILL before a timeout error (default 5000)',
  },
  {
    primitive: 'jailer',
    name: 'MICROVM_JAILER_BIN',
    meaning: 'the `jailer` executable (default `jailer` on PATH)',
  },
  { primitive: 'jailer', name: 'MICROVM_JAILER_UID', meaning: 'uid Firecracker runs as (default 65534)' },
  { primitive: 'jailer', name: 'MICROVM_JAILER_GID', meaning: 'gid Firecracker runs as (default 65534)' },
  {
    primitive: 'jailer',
    name: 'MICROVM_JAILER_CHROOT_BASE_DIR',
    meaning: 'existing folder holding the jails (default `/srv/jailer`)',
  },
  { primitive: 'jailer', name: 'MICROVM_JAILER_DAEMONIZE', meaning: '`--daemonize` (boolean, default off)' },
  {
    primitive: 'jailer',
    name: 'MICROVM_JAILER_NEW_PID_NS',
    meaning: '`--new-pid-ns` (boolean, default off)',
  },
  {
    primitive: 'jailer',
    name: 'MICROVM_JAILER_CGROUP_VERSION',
    meaning: '`1` or `2` (default 1, as the jailer)',
  },
  { primitive: 'jailer', name: 'MICROVM_JAILER_PARENT_CGROUP', meaning: '`--parent-cgroup` (relative)' },
];

/** Reads the `MICROVM_<NAME>_*` variables of one primitive into its options. Unknown values fail, naming the variable. */
export function optionsFromEnv<Name extends PrimitiveName>(
  name: Name,
  env: NodeJS.ProcessEnv,
): NonNullable<PrimitiveOptions[Name]> {
  const read = new EnvReader(env);
  const readers: { [Key in PrimitiveName]: () => NonNullable<PrimitiveOptions[Key]> } = {
    network: () => networkFromEnv(read),
    firewall: () => firewallFromEnv(read),
    vsock: () => vsockFromEnv(read),
    console: () => consoleFromEnv(read),
    shutdown: () => shutdownFromEnv(read),
    jailer: () => jailerFromEnv(read),
  };
  return readers[name]() as NonNullable<PrimitiveOptions[Name]>;
}

function networkFromEnv(read: EnvReader): NetworkPrimitiveOptions {
  return definedOnly({
    mode: read.oneOf<NetworkMode>('MICROVM_NETWORK_MODE', ['routed', 'bridge', 'namespaced']),
    pool: read.string('MICROVM_NETWORK_POOL'),
    namespace: read.string('MICROVM_NETWORK_NAMESPACE'),
    uplink: read.string('MICROVM_NETWORK_UPLINK'),
    nat: read.boolean('MICROVM_NETWORK_NAT'),
    dnsServers: read.list('MICROVM_NETWORK_DNS_SERVERS'),
    mtu: read.integer('MICROVM_NETWORK_MTU'),
    namePrefix: read.string('MICROVM_NETWORK_NAME_PREFIX'),
  });
}

function firewallFromEnv(read: EnvReader): { policy?: FirewallPolicy; tableName?: string } {
  const policy = definedOnly<FirewallPolicy>({
    preset: read.oneOf<FirewallPreset>('MICROVM_FIREWALL_PRESET', ['deny-all', 'internet-only', 'allow-all']),
    allow: read.list('MICROVM_FIREWALL_ALLOW')?.map((entry) => parseEgressRule(entry)),
    dns: read.boolean('MICROVM_FIREWALL_DNS'),
  });
  return definedOnly({
    policy: Object.keys(policy).length > 0 ? policy : undefined,
    tableName: read.string('MICROVM_FIREWALL_TABLE'),
  });
}

function vsockFromEnv(read: EnvReader): VsockPrimitiveOptions {
  return definedOnly({
    minGuestCid: read.integer('MICROVM_VSOCK_MIN_CID'),
    maxGuestCid: read.integer('MICROVM_VSOCK_MAX_CID'),
    connectTimeoutMs: read.integer('MICROVM_VSOCK_CONNECT_TIMEOUT_MS'),
  });
}

function consoleFromEnv(read: EnvReader): ConsolePrimitiveOptions {
  const maxLines = read.integer('MICROVM_CONSOLE_MAX_LINES');
  const maxBytes = read.integer('MICROVM_CONSOLE_MAX_BYTES');
  const bounds = definedOnly({ maxLines, maxBytes });
  return definedOnly({
    source: read.oneOf<ConsoleSource>('MICROVM_CONSOLE_SOURCE', ['auto', 'stdout', 'serial-file']),
    logFiles: read.boolean('MICROVM_CONSOLE_LOG_FILES'),
    console: Object.keys(bounds).length > 0 ? bounds : undefined,
  });
}

function shutdownFromEnv(read: EnvReader): ShutdownLadderOptions {
  return definedOnly({
    ctrlAltDel: read.boolean('MICROVM_SHUTDOWN_CTRL_ALT_DEL'),
    ctrlAltDelGraceMs: read.integer('MICROVM_SHUTDOWN_CTRL_ALT_DEL_GRACE_MS'),
    terminateGraceMs: read.integer('MICROVM_SHUTDOWN_TERMINATE_GRACE_MS'),
    killTimeoutMs: read.integer('MICROVM_SHUTDOWN_KILL_TIMEOUT_MS'),
  });
}

function jailerFromEnv(read: EnvReader): ComposerJailerOptions {
  const cgroupVersion = read.oneOf('MICROVM_JAILER_CGROUP_VERSION', ['1', '2']);
  return definedOnly<Partial<JailerOptions>>({
    jailerBinary: read.string('MICROVM_JAILER_BIN'),
    uid: read.integer('MICROVM_JAILER_UID'),
    gid: read.integer('MICROVM_JAILER_GID'),
    chrootBaseDir: read.string('MICROVM_JAILER_CHROOT_BASE_DIR'),
    daemonize: read.boolean('MICROVM_JAILER_DAEMONIZE'),
    newPidNamespace: read.boolean('MICROVM_JAILER_NEW_PID_NS'),
    cgroupVersion: cgroupVersion === undefined ? undefined : (Number(cgroupVersion) as 1 | 2),
    parentCgroup: read.string('MICROVM_JAILER_PARENT_CGROUP'),
  });
}

const allowFormat = 'must be `cidr`, `tcp:cidr:port` or `udp:cidr:port`, comma-separated';

/** `203.0.113.0/24`, `tcp:198.51.100.7:443` or `udp:192.0.2.53:53`; the firewall validates the parts. */
function parseEgressRule(entry: string): EgressRule {
  const parts = entry.split(':');
  if (parts.length === 1) return { cidr: entry };
  const [protocol, cidr, port] = parts;
  if (
    parts.length !== 3 ||
    (protocol !== 'tcp' && protocol !== 'udp') ||
    !cidr ||
    !/^\d+$/.test(port ?? '')
  ) {
    throw new ValidationError({ field: 'MICROVM_FIREWALL_ALLOW', rule: allowFormat, value: entry });
  }
  return { cidr, protocol: protocol as RuleProtocol, port: Number(port) };
}

/** Drops undefined values, so an unset variable leaves the primitive's own default in place. */
function definedOnly<T extends object>(options: { [Key in keyof T]: T[Key] | undefined }): T {
  return Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined)) as T;
}

/** Typed reads of environment variables; an empty value counts as unset. */
class EnvReader {
  readonly #env: NodeJS.ProcessEnv;

  constructor(env: NodeJS.ProcessEnv) {
    this.#env = env;
  }

  string(name: string): string | undefined {
    const value = this.#env[name]?.trim();
    return value ? value : undefined;
  }

  list(name: string): string[] | undefined {
    const value = this.string(name);
    return value
      ?.split(',')
      .map((item) => item.trim())
      .filter(Boolean);
  }

  integer(name: string): number | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    if (!/^\d+$/.test(value)) {
      throw new ValidationError({ field: name, rule: 'must be a non-negative integer', value });
    }
    return Number(value);
  }

  boolean(name: string): boolean | undefined {
    const value = this.string(name)?.toLowerCase();
    if (value === undefined) return undefined;
    if (TRUE_WORDS.has(value)) return true;
    if (FALSE_WORDS.has(value)) return false;
    throw new ValidationError({
      field: name,
      rule: 'must be one of 1, true, yes, on, 0, false, no, off',
      value,
    });
  }

  oneOf<Value extends string>(name: string, allowed: readonly Value[]): Value | undefined {
    const value = this.string(name);
    if (value === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(value)) {
      throw new ValidationError({ field: name, rule: `must be one of ${allowed.join(', ')}`, value });
    }
    return value as Value;
  }
}
