import type { ConsolePrimitiveOptions } from '@microvm/console';
import type { FirewallPolicy, FirewallPreset, FirewallPrimitiveOptions } from '@microvm/firewall';
import type { JailerOptions } from '@microvm/jailer';
import type { NetworkPrimitiveOptions } from '@microvm/network';
import type { ShutdownLadderOptions } from '@microvm/shutdown';
import type { VsockPrimitiveOptions } from '@microvm/vsock';

/** The jailer's options with `uid` and `gid` optional: the composer defaults both to 65534 (nobody). */
export type ComposerJailerOptions = Partial<JailerOptions>;

/** Options of each primitive the composer runs; a key that is present switches that primitive on. */
export interface PrimitiveOptions {
  network?: NetworkPrimitiveOptions;
  firewall?: FirewallPrimitiveOptions;
  vsock?: VsockPrimitiveOptions;
  console?: ConsolePrimitiveOptions;
  shutdown?: ShutdownLadderOptions;
  jailer?: ComposerJailerOptions;
}

/** A VM's egress: a preset name or a full policy (see @microvm/firewall). */
export type EgressPolicy = FirewallPreset | FirewallPolicy;

/** Unprivileged by default: a jailed Firecracker never runs as root unless asked. */
export const DEFAULT_JAIL_UID = 65534;
export const DEFAULT_JAIL_GID = 65534;
