/**
 * Firecracker v1.16.1 API bodies, exactly as the wire spells them (snake_case).
 * These mirror the `definitions` of Firecracker's swagger file; the conformance test checks the
 * bodies the client sends against that file. Only `spec-to-wire.ts` maps the camelCase model to them.
 */

export interface TokenBucket {
  size: number;
  refill_time: number;
  one_time_burst?: number;
}

export interface RateLimiter {
  bandwidth?: TokenBucket;
  ops?: TokenBucket;
}

export interface BootSource {
  kernel_image_path: string;
  boot_args?: string;
  initrd_path?: string;
}

export type CpuTemplate = 'C3' | 'T2' | 'T2S' | 'T2CL' | 'T2A' | 'V1N1' | 'None';
export type HugePages = 'None' | '2M';

export interface MachineConfiguration {
  vcpu_count: number;
  mem_size_mib: number;
  smt?: boolean;
  track_dirty_pages?: boolean;
  huge_pages?: HugePages;
  /** Deprecated by Firecracker; prefer a custom CPU template through `PUT /cpu-config`. */
  cpu_template?: CpuTemplate;
}

export type PartialMachineConfiguration = Partial<MachineConfiguration>;

export interface CpuidRegisterModifier {
  register: 'eax' | 'ebx' | 'ecx' | 'edx';
  bitmap: string;
}

export interface CpuidLeafModifier {
  leaf: string;
  subleaf: string;
  flags: number;
  modifiers: CpuidRegisterModifier[];
}

export interface MsrModifier {
  addr: string;
  bitmap: string;
}

export interface ArmRegisterModifier {
  addr: string;
  bitmap: string;
}

export interface VcpuFeatures {
  index: number;
  bitmap: string;
}

export interface CpuConfig {
  kvm_capabilities?: string[];
  cpuid_modifiers?: CpuidLeafModifier[];
  msr_modifiers?: MsrModifier[];
  reg_modifiers?: ArmRegisterModifier[];
  vcpu_features?: VcpuFeatures[];
}

export type DriveCacheType = 'Unsafe' | 'Writeback';
export type DriveIoEngine = 'Sync' | 'Async';

export interface Drive {
  drive_id: string;
  is_root_device: boolean;
  partuuid?: string;
  cache_type?: DriveCacheType;
  /** virtio-block */
  is_read_only?: boolean;
  path_on_host?: string;
  rate_limiter?: RateLimiter;
  io_engine?: DriveIoEngine;
  /** vhost-user-block: the backend's socket, instead of `path_on_host`. */
  socket?: string;
}

export interface PartialDrive {
  drive_id: string;
  path_on_host?: string;
  rate_limiter?: RateLimiter;
}

export interface Pmem {
  id: string;
  path_on_host: string;
  root_device?: boolean;
  read_only?: boolean;
  rate_limiter?: RateLimiter;
}

export interface PartialPmem {
  id: string;
  rate_limiter?: RateLimiter;
}

export interface NetworkInterface {
  iface_id: string;
  host_dev_name: string;
  guest_mac?: string;
  mtu?: number;
  rx_rate_limiter?: RateLimiter;
  tx_rate_limiter?: RateLimiter;
}

export interface PartialNetworkInterface {
  iface_id: string;
  rx_rate_limiter?: RateLimiter;
  tx_rate_limiter?: RateLimiter;
}

export interface Vsock {
  guest_cid: number;
  uds_path: string;
  /** Deprecated by Firecracker. */
  vsock_id?: string;
}

export interface Balloon {
  amount_mib: number;
  deflate_on_oom: boolean;
  stats_polling_interval_s?: number;
  free_page_hinting?: boolean;
  free_page_reporting?: boolean;
}

export interface BalloonUpdate {
  amount_mib: number;
}

export interface BalloonStatsUpdate {
  stats_polling_interval_s: number;
}

export interface BalloonStartCmd {
  acknowledge_on_stop?: boolean;
}

export interface BalloonHintingStatus {
  host_cmd: number;
  guest_cmd?: number;
}

export interface BalloonStats {
  target_pages: number;
  actual_pages: number;
  target_mib: number;
  actual_mib: number;
  swap_in?: number;
  swap_out?: number;
  major_faults?: number;
  minor_faults?: number;
  free_memory?: number;
  total_memory?: number;
  available_memory?: number;
  disk_caches?: number;
  hugetlb_allocations?: number;
  hugetlb_failures?: number;
  oom_kill?: number;
  alloc_stall?: number;
  async_scan?: number;
  direct_scan?: number;
  async_reclaim?: number;
  direct_reclaim?: number;
}

export interface EntropyDevice {
  rate_limiter?: RateLimiter;
}

export interface SerialDevice {
  serial_out_path?: string;
  /** A single token bucket (bytes), not a `RateLimiter`. */
  rate_limiter?: TokenBucket;
}

export type LoggerLevel = 'Error' | 'Warning' | 'Info' | 'Debug' | 'Trace' | 'Off';

export interface Logger {
  log_path?: string;
  level?: LoggerLevel;
  show_level?: boolean;
  show_log_origin?: boolean;
  module?: string;
}

export interface Metrics {
  metrics_path: string;
}

export interface MmdsConfig {
  network_interfaces: string[];
  version?: 'V1' | 'V2';
  ipv4_address?: string;
  imds_compat?: boolean;
}

/** Free-form JSON held by the MMDS data store. */
export type MmdsContents = Record<string, unknown>;

export interface MemoryHotplugConfig {
  total_size_mib?: number;
  slot_size_mib?: number;
  block_size_mib?: number;
}

export interface MemoryHotplugSizeUpdate {
  requested_size_mib?: number;
}

export interface MemoryHotplugStatus {
  total_size_mib?: number;
  slot_size_mib?: number;
  block_size_mib?: number;
  plugged_size_mib?: number;
  requested_size_mib?: number;
}

export type InstanceActionType = 'FlushMetrics' | 'InstanceStart' | 'SendCtrlAltDel';

export interface InstanceActionInfo {
  action_type: InstanceActionType;
}

export type InstanceState = 'Not started' | 'Running' | 'Paused';

export interface InstanceInfo {
  app_name: string;
  id: string;
  state: InstanceState;
  vmm_version: string;
}

export interface Vm {
  state: 'Paused' | 'Resumed';
}

export type SnapshotType = 'Full' | 'Diff';

export interface SnapshotCreateParams {
  snapshot_path: string;
  mem_file_path: string;
  snapshot_type?: SnapshotType;
}

export interface MemoryBackend {
  backend_type: 'File' | 'Uffd';
  backend_path: string;
}

export interface NetworkOverride {
  iface_id: string;
  host_dev_name: string;
}

export interface VsockOverride {
  uds_path: string;
}

export interface SnapshotLoadParams {
  snapshot_path: string;
  mem_backend?: MemoryBackend;
  /** Deprecated by Firecracker; use `mem_backend`. */
  mem_file_path?: string;
  track_dirty_pages?: boolean;
  /** Deprecated by Firecracker; use `track_dirty_pages`. */
  enable_diff_snapshots?: boolean;
  resume_vm?: boolean;
  /** Firecracker >= 1.12 */
  network_overrides?: NetworkOverride[];
  /** Firecracker >= 1.16 */
  vsock_override?: VsockOverride;
  /** Firecracker >= 1.16, x86_64 only. */
  clock_realtime?: boolean;
}

export interface FirecrackerVersion {
  firecracker_version: string;
}

/** `GET /vm/config`: the same kebab-case shape as Firecracker's `--config-file`. */
export interface FullVmConfiguration {
  balloon?: Balloon;
  drives?: Drive[];
  'boot-source'?: BootSource;
  'cpu-config'?: CpuConfig;
  logger?: Logger;
  'machine-config'?: MachineConfiguration;
  metrics?: Metrics;
  'memory-hotplug'?: MemoryHotplugConfig;
  'mmds-config'?: MmdsConfig;
  'network-interfaces'?: NetworkInterface[];
  pmem?: Pmem[];
  vsock?: Vsock;
  entropy?: EntropyDevice;
}

/** The two error body shapes: Firecracker's own and micro_http's. */
export interface ApiErrorBody {
  fault_message?: string;
  error?: string;
}
