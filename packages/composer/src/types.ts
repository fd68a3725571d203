import type { ConsoleCapture } from '@microvm/console';
import type {
  FirecrackerVmProvider,
  FirecrackerVmProviderOptions,
  NetworkFacts,
  SnapshotInfo,
  StopResult,
  VmFacts,
  VmInfo,
  VmSpec,
} from '@microvm/core';
import type { EgressPolicy } from './options.js';
import type { ComposedFirewall, ComposedVsock } from './wiring.js';

/** The primitives the composer knows, in the order their `prepare` hooks run. */
export const PRIMITIVE_NAMES = ['network', 'firewall', 'vsock', 'console', 'shutdown', 'jailer'] as const;
export type PrimitiveName = (typeof PRIMITIVE_NAMES)[number];

/** A VM described the short way; the composer turns it into a `VmSpec`. A full `VmSpec` is accepted too. */
export interface SimpleVmOptions {
  /** Host path of the guest kernel (uncompressed vmlinux). */
  kernel: string;
  /** Host path of the root filesystem image; attached read-write as the root device. */
  rootfs: string;
  initrd?: string;
  vcpuCount?: number;
  memSizeMib?: number;
  /** Appended to the default `console=ttyS0 reboot=k panic=1 pci=off`. */
  bootArgs?: string;
  /** Extra drives, read-only unless said. */
  drives?: { path: string; readOnly?: boolean }[];
  /** Egress policy for the firewall primitive: a preset or a full policy (see @microvm/firewall). */
  egress?: EgressPolicy;
}

export type ComposedVmInput = SimpleVmOptions | VmSpec;

/** Options of `composer.provider()`: the provider's, minus the primitives the composer supplies. */
export type ComposedProviderOptions = Omit<FirecrackerVmProviderOptions, 'primitives'>;

/** A VM created through the composer: its facts and the verbs of each enabled primitive. */
export interface ComposedVm extends AsyncDisposable {
  readonly vmId: string;
  info(): Promise<VmInfo>;
  /** The facts as they were when the handle was made (network, vsock, jail, console paths). */
  readonly facts: VmFacts;
  /** Present when the network primitive is on. */
  readonly network: NetworkFacts | undefined;
  /** Present when the firewall primitive is on and the VM has a network. */
  readonly firewall: ComposedFirewall | undefined;
  /** Present when the vsock primitive is on. */
  readonly vsock: ComposedVsock | undefined;
  /** The guest's serial console; present when the console primitive is on and this process spawned the VMM. */
  readonly console: ConsoleCapture | undefined;
  /** Firecracker's own log, beside the console. */
  readonly vmmLog: ConsoleCapture | undefined;
  pause(): Promise<VmInfo>;
  resume(): Promise<VmInfo>;
  snapshot(options?: { snapshotId?: string }): Promise<SnapshotInfo>;
  /** Graceful: the shutdown primitive's ladder when on, else SIGKILL. */
  shutdown(): Promise<StopResult>;
  kill(): Promise<StopResult>;
  /** Stops (gracefully when possible) and removes everything the VM owns. */
  destroy(): Promise<void>;
}

export interface ComposedProvider {
  readonly enabled: readonly PrimitiveName[];
  /** The underlying provider, for operations by id (`pause('vm-1')`, `list()`, `reconcile()`…). */
  readonly provider: FirecrackerVmProvider;
  /** Creates and starts a VM with every enabled primitive; on failure, whatever was set up is removed again. */
  create(
    vmId: string,
    input: ComposedVmInput,
    options?: { signal?: AbortSignal; egress?: EgressPolicy },
  ): Promise<ComposedVm>;
  /**
   * Restores a snapshot into a new VM. The egress policy is not part of the snapshot: pass it again, or the
   * clone gets the firewall's default policy.
   */
  restore(
    vmId: string,
    snapshotId: string,
    options?: { signal?: AbortSignal; resume?: boolean; egress?: EgressPolicy },
  ): Promise<ComposedVm>;
  /** A handle for a VM created earlier (also by another process on the same state directory). */
  get(vmId: string): Promise<ComposedVm | undefined>;
  close(): Promise<void>;
}
