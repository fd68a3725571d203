/**
 * Facts that primitives publish on the VM context for each other and for the user.
 * They live here, in core, so that no primitive imports another. Every fact is plain JSON:
 * it is persisted in `vm.json`, so `reconcile()` after a crash can find what a VM owned.
 */

export interface NetworkFacts {
  /** The `iface_id` given to Firecracker. */
  ifaceId: string;
  /** The TAP device on the host (at most 15 bytes). */
  tapName: string;
  guestIp: string;
  gatewayIp: string;
  /** Prefix length of the guest's subnet, e.g. 30. */
  prefixLength: number;
  netmask: string;
  guestMac: string;
  /** The network namespace holding the TAP, when not the host's. */
  namespace?: string;
  dnsServers?: string[];
  mode?: string;
  /**
   * When the TAP lives in a namespace of the VM's own: the veth pair through which that namespace's traffic
   * reaches the host namespace (masqueraded to `peerIp`), so the host side can be filtered too.
   */
  hostLink?: HostLinkFacts;
}

export interface HostLinkFacts {
  /** The host end of the veth pair. */
  interfaceName: string;
  /** The namespace holding it, when not the current one. */
  namespace?: string;
  /** Address and MAC of the VM namespace's end: the source of everything the VM sends to the host. */
  peerIp: string;
  peerMac: string;
}

export interface VsockFacts {
  guestCid: number;
  /** Where the host connects: `CONNECT <port>` goes here, guest listeners live at `<path>_<port>`. */
  hostUdsPath: string;
}

export interface JailFacts {
  /** The jail root on the host: `<chroot_base>/<exec_file_name>/<id>/root`. Firecracker sees it as `/`. */
  rootDir: string;
  /** `<chroot_base>/<exec_file_name>/<id>`: what teardown removes. */
  jailDir: string;
  uid: number;
  gid: number;
  /** Host path of each file staged into the jail, keyed by the path Firecracker sees. */
  stagedFiles: Record<string, string>;
  /** cgroup directories the jailer created, removed on teardown. */
  cgroupDirs?: string[];
}

export interface ConsoleFacts {
  /** Capped log file of the guest console, when one is kept. */
  consoleLogPath?: string;
  vmmLogPath?: string;
}

export interface FirewallFacts {
  table: string;
  chain: string;
}

/** Every fact a VM can carry. Third-party primitives may add their own under `extensions`. */
export interface VmFacts {
  network?: NetworkFacts;
  vsock?: VsockFacts;
  jail?: JailFacts;
  console?: ConsoleFacts;
  firewall?: FirewallFacts;
  extensions?: Record<string, unknown>;
}

/**
 * The host path of a file Firecracker sees at `path`: through the jail's staging map when the VM is jailed
 * (`/v.sock` → `<jail root>/v.sock`), else the path itself.
 */
export function hostPathOf(facts: VmFacts, path: string): string {
  const jail = facts.jail;
  if (!jail) return path;
  const staged = jail.stagedFiles[path];
  if (staged !== undefined) return staged;
  return path.startsWith('/') ? `${jail.rootDir}${path}` : `${jail.rootDir}/${path}`;
}
