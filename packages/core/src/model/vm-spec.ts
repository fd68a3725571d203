/**
 * The camelCase model of a Firecracker v1.16.1 microVM: everything that can be configured before boot,
 * plus the inputs of a snapshot create and load. Each field maps to exactly one snake_case wire field
 * (see `spec-to-wire.ts`, the only place that knows both shapes). Users pass these as plain objects,
 * often parsed from JSON, so `validate.ts` checks them at runtime as well.
 */
import type {
  CpuTemplate,
  DriveCacheType,
  DriveIoEngine,
  HugePages,
  LoggerLevel,
  SnapshotType,
} from '../wire.js';

/**
 * A token bucket. `size == 0` or `refillTimeMs == 0` disables the bucket.
 * The refill rate is `size / refillTimeMs`; the bucket starts full.
 */
export interface TokenBucketSpec {
  /** Capacity in tokens (bytes for `bandwidth`, operations for `ops`). */
  size: number;
  /** Milliseconds to refill the whole bucket. Wire: `refill_time`. */
  refillTimeMs: number;
  /** Extra tokens spent before refilling starts. */
  oneTimeBurst?: number;
}

export interface RateLimiterSpec {
  /** Bytes. */
  bandwidth?: TokenBucketSpec;
  /** Operations. */
  ops?: TokenBucketSpec;
}

export interface BootSourceSpec {
  kernelImagePath: string;
  /**
   * Replaces Firecracker's default cmdline, which disables the serial console
   * (`8250.nr_uarts=0`); pass e.g. `console=ttyS0 reboot=k panic=1` to see output.
   */
  bootArgs?: string;
  initrdPath?: string;
}

export interface MachineSpec {
  /** 1..32; with `smt: true`, 1 or even. */
  vcpuCount: number;
  /** > 0; even with `hugePages: '2M'`. */
  memSizeMib: number;
  /** Simultaneous multithreading (x86 only). */
  smt?: boolean;
  /** Needed for `Diff` snapshots built from the KVM dirty log. */
  trackDirtyPages?: boolean;
  hugePages?: HugePages;
  /** Deprecated by Firecracker: prefer `cpuConfig`. */
  cpuTemplate?: CpuTemplate;
}

export interface CpuidRegisterModifierSpec {
  register: 'eax' | 'ebx' | 'ecx' | 'edx';
  /** `0b` + up to 32 of `0`, `1`, `x` (keep); underscores allowed for readability. */
  bitmap: string;
}

export interface CpuidLeafModifierSpec {
  /** `0x…`, `0b…` or decimal. */
  leaf: string;
  subleaf: string;
  /** KVM CPUID flags for this leaf/subleaf. */
  flags: number;
  modifiers: CpuidRegisterModifierSpec[];
}

export interface MsrModifierSpec {
  /** 32-bit MSR address: `0x…`, `0b…` or decimal. */
  addr: string;
  /** `0b` + up to 64 of `0`, `1`, `x`. */
  bitmap: string;
}

export interface ArmRegisterModifierSpec {
  /** 64-bit register id: `0x…`, `0b…` or decimal. */
  addr: string;
  /** `0b` + up to 128 of `0`, `1`, `x`. */
  bitmap: string;
}

export interface VcpuFeaturesSpec {
  /** Index in `kvm_vcpu_init.features`. */
  index: number;
  /** `0b` + up to 32 of `0`, `1`, `x`. */
  bitmap: string;
}

/**
 * A custom CPU template (`PUT /cpu-config`). `cpuidModifiers`/`msrModifiers` are x86_64 only,
 * `regModifiers`/`vcpuFeatures` aarch64 only: Firecracker rejects the other architecture's fields.
 */
export interface CpuConfigSpec {
  /** Capability numbers as strings: `"121"` adds, `"!121"` removes. */
  kvmCapabilities?: string[];
  cpuidModifiers?: CpuidLeafModifierSpec[];
  msrModifiers?: MsrModifierSpec[];
  regModifiers?: ArmRegisterModifierSpec[];
  vcpuFeatures?: VcpuFeaturesSpec[];
}

interface DriveSpecBase {
  /** API resource id: `[A-Za-z0-9_]+`. */
  driveId: string;
  /** At most one root device across `drives` and `pmem`. */
  isRootDevice: boolean;
  /** Boot from this partition (`root=PARTUUID=…`) instead of the whole device; root devices only. */
  partuuid?: string;
  cacheType?: DriveCacheType;
}

/** A virtio-block drive backed by a file or block device on the host. */
export interface VirtioBlockDriveSpec extends DriveSpecBase {
  pathOnHost: string;
  /** Defaults to `false`; always sent, since Firecracker < 1.5 requires it. */
  isReadOnly?: boolean;
  ioEngine?: DriveIoEngine;
  rateLimiter?: RateLimiterSpec;
  socket?: never;
}

/** A vhost-user-block drive served by a backend process listening on `socket`. */
export interface VhostUserBlockDriveSpec extends DriveSpecBase {
  /** The backend's Unix socket (≤ 107 bytes). */
  socket: string;
  pathOnHost?: never;
  isReadOnly?: never;
  ioEngine?: never;
  rateLimiter?: never;
}

export type DriveSpec = VirtioBlockDriveSpec | VhostUserBlockDriveSpec;

export interface NetworkInterfaceSpec {
  /** API resource id: `[A-Za-z0-9_]+`. Host-internal; the guest names its interfaces itself. */
  ifaceId: string;
  /** The TAP device on the host: 1..15 bytes. */
  hostDevName: string;
  /** `xx:xx:xx:xx:xx:xx`; unique across interfaces. Without it the guest picks a random MAC. */
  guestMac?: string;
  /** 68..65535, advertised through VIRTIO_NET_F_MTU (Firecracker ≥ 1.16). */
  mtu?: number;
  rxRateLimiter?: RateLimiterSpec;
  txRateLimiter?: RateLimiterSpec;
}

export interface VsockSpec {
  /** 3 ≤ cid ≤ 2^32−2 (0–2 are reserved; Firecracker does not check). */
  guestCid: number;
  /** Host-side Unix socket Firecracker binds (≤ 107 bytes); guest-initiated connections go to `<udsPath>_<port>`. */
  udsPath: string;
}

export interface BalloonSpec {
  /** Target balloon size; ≤ `machine.memSizeMib`. */
  amountMib: number;
  deflateOnOom: boolean;
  /** 0 (default) disables statistics; cannot be switched on or off after boot. */
  statsPollingIntervalS?: number;
  freePageHinting?: boolean;
  freePageReporting?: boolean;
}

export interface EntropySpec {
  rateLimiter?: RateLimiterSpec;
}

export interface PmemSpec {
  /** API resource id: `[A-Za-z0-9_]+`. */
  id: string;
  pathOnHost: string;
  /** At most one root device across `drives` and `pmem`. */
  rootDevice?: boolean;
  readOnly?: boolean;
  rateLimiter?: RateLimiterSpec;
}

export type MmdsVersion = 'V1' | 'V2';

export interface MmdsConfigSpec {
  /** Non-empty; each names an `ifaceId` of `networkInterfaces`. */
  networkInterfaces: string[];
  /** Defaults to `'V2'` here (Firecracker's own default, V1, is deprecated). */
  version?: MmdsVersion;
  /** Link-local `169.254.x.y`; Firecracker's default is `169.254.169.254`. */
  ipv4Address?: string;
  /** Always answer in the EC2 IMDS text format. */
  imdsCompat?: boolean;
}

export interface MmdsSpec {
  config: MmdsConfigSpec;
  /** Initial contents of the data store (free-form JSON object). Not part of snapshots. */
  data?: Record<string, unknown>;
}

export interface LoggerSpec {
  logPath?: string;
  /** Default `Info`. Accepted case-insensitively (and `Warn`), normalised to these names. */
  level?: LoggerLevel;
  showLevel?: boolean;
  showLogOrigin?: boolean;
  /** Only log messages from this module path, e.g. `api_server::request`. */
  module?: string;
}

export interface MetricsSpec {
  metricsPath: string;
}

export interface SerialSpec {
  /** A file or FIFO; without it serial output goes to Firecracker's stdout. */
  serialOutPath?: string;
  /** One bucket of bytes (not a `RateLimiterSpec`); output over the rate is dropped. */
  rateLimiter?: TokenBucketSpec;
}

export interface MemoryHotplugSpec {
  /** A multiple of `slotSizeMib`, ≥ `slotSizeMib`. */
  totalSizeMib: number;
  /** Default 128; ≥ 128, a multiple of `blockSizeMib`. */
  slotSizeMib?: number;
  /** Default 2; ≥ 2, a power of two. */
  blockSizeMib?: number;
}

/** Everything Firecracker v1.16.1 can configure before `InstanceStart`. */
export interface VmSpec {
  bootSource: BootSourceSpec;
  machine: MachineSpec;
  cpuConfig?: CpuConfigSpec;
  drives?: DriveSpec[];
  networkInterfaces?: NetworkInterfaceSpec[];
  vsock?: VsockSpec;
  balloon?: BalloonSpec;
  entropy?: EntropySpec;
  pmem?: PmemSpec[];
  mmds?: MmdsSpec;
  logger?: LoggerSpec;
  metrics?: MetricsSpec;
  serial?: SerialSpec;
  memoryHotplug?: MemoryHotplugSpec;
}

export interface SnapshotCreateSpec {
  /** Where the VM state (vmstate) is written. Existing files are overwritten. */
  snapshotPath: string;
  /** Where guest memory is written. */
  memFilePath: string;
  /** Default `Full`; `Diff` holds only pages dirtied since the last snapshot. */
  snapshotType?: SnapshotType;
}

export type MemoryBackendType = 'File' | 'Uffd';

export interface MemoryBackendSpec {
  /** `File` maps the memory file; `Uffd` hands page faults to a handler (required for hugetlbfs). */
  backendType: MemoryBackendType;
  /** The memory file (`File`) or the handler's Unix socket, ≤ 107 bytes (`Uffd`). */
  backendPath: string;
}

export interface NetworkOverrideSpec {
  ifaceId: string;
  /** The TAP the restored interface uses instead of the one saved in the snapshot. */
  hostDevName: string;
}

export interface VsockOverrideSpec {
  /** The host socket the restored vsock binds instead of the saved one (Firecracker ≥ 1.16). */
  udsPath: string;
}

interface SnapshotLoadSpecBase {
  snapshotPath: string;
  /** Not saved in the snapshot: set it again to take `Diff` snapshots of the restored VM. */
  trackDirtyPages?: boolean;
  /** Default false: the restored VM stays `Paused`. */
  resumeVm?: boolean;
  /** Firecracker ≥ 1.12. */
  networkOverrides?: NetworkOverrideSpec[];
  /** Firecracker ≥ 1.16. */
  vsockOverride?: VsockOverrideSpec;
  /** Advance kvmclock by the wall time elapsed since the snapshot (x86_64, Firecracker ≥ 1.16, host ≥ 5.16). */
  clockRealtime?: boolean;
}

/**
 * Inputs of `PUT /snapshot/load`, on a fresh Firecracker process. Guest memory comes from exactly one of
 * `memBackend` or `memFilePath`; the latter is shorthand for `{ backendType: 'File', backendPath }` and is
 * sent as `mem_backend` too (Firecracker's own `mem_file_path` is deprecated).
 */
export type SnapshotLoadSpec = SnapshotLoadSpecBase &
  ({ memBackend: MemoryBackendSpec; memFilePath?: never } | { memFilePath: string; memBackend?: never });
