/**
 * The one place that knows both shapes: the camelCase model and Firecracker's snake_case wire bodies.
 * Every model field maps to exactly one wire field; undefined fields are left out (never `undefined` or
 * `null` on the wire), so a body carries only what the user set, plus the two defaults documented below.
 */
import type {
  Balloon,
  BootSource,
  CpuConfig,
  Drive,
  EntropyDevice,
  Logger,
  MachineConfiguration,
  MemoryHotplugConfig,
  Metrics,
  MmdsConfig,
  MmdsContents,
  NetworkInterface,
  Pmem,
  RateLimiter,
  SerialDevice,
  SnapshotCreateParams,
  SnapshotLoadParams,
  TokenBucket,
  Vsock,
} from '../wire.js';
import { validateSnapshotCreateSpec, validateSnapshotLoadSpec, validateVmSpec } from './validate.js';
import type {
  BalloonSpec,
  BootSourceSpec,
  CpuConfigSpec,
  DriveSpec,
  EntropySpec,
  LoggerSpec,
  MachineSpec,
  MemoryHotplugSpec,
  MetricsSpec,
  MmdsConfigSpec,
  NetworkInterfaceSpec,
  PmemSpec,
  RateLimiterSpec,
  SerialSpec,
  SnapshotCreateSpec,
  SnapshotLoadSpec,
  TokenBucketSpec,
  VmSpec,
  VsockSpec,
} from './vm-spec.js';

/** One pre-boot API call. `endpoint` is the path template of Firecracker's swagger file. */
interface PutRequest<Endpoint extends string, Path extends string, Body> {
  method: 'PUT';
  endpoint: Endpoint;
  path: Path;
  body: Body;
}

/**
 * An API call that configures a VM before boot, typed per endpoint: narrow on `endpoint`
 * (e.g. `request.endpoint === '/drives/{drive_id}'`) to get the body's wire type.
 */
export type WireRequest =
  | PutRequest<'/logger', '/logger', Logger>
  | PutRequest<'/metrics', '/metrics', Metrics>
  | PutRequest<'/serial', '/serial', SerialDevice>
  | PutRequest<'/boot-source', '/boot-source', BootSource>
  | PutRequest<'/machine-config', '/machine-config', MachineConfiguration>
  | PutRequest<'/cpu-config', '/cpu-config', CpuConfig>
  | PutRequest<'/drives/{drive_id}', `/drives/${string}`, Drive>
  | PutRequest<'/network-interfaces/{iface_id}', `/network-interfaces/${string}`, NetworkInterface>
  | PutRequest<'/mmds/config', '/mmds/config', MmdsConfig>
  | PutRequest<'/mmds', '/mmds', MmdsContents>
  | PutRequest<'/vsock', '/vsock', Vsock>
  | PutRequest<'/balloon', '/balloon', Balloon>
  | PutRequest<'/entropy', '/entropy', EntropyDevice>
  | PutRequest<'/pmem/{id}', `/pmem/${string}`, Pmem>
  | PutRequest<'/hotplug/memory', '/hotplug/memory', MemoryHotplugConfig>;

export type WireEndpoint = WireRequest['endpoint'];

/** Leaves out keys whose value is undefined, so they never reach JSON.stringify. */
function definedOnly<T extends object>(body: T): T {
  return Object.fromEntries(Object.entries(body).filter(([, value]) => value !== undefined)) as T;
}

function optional<Input, Output>(
  value: Input | undefined,
  map: (input: Input) => Output,
): Output | undefined {
  return value === undefined ? undefined : map(value);
}

export function tokenBucketToWire(spec: TokenBucketSpec): TokenBucket {
  return definedOnly({ size: spec.size, refill_time: spec.refillTimeMs, one_time_burst: spec.oneTimeBurst });
}

export function rateLimiterToWire(spec: RateLimiterSpec): RateLimiter {
  return definedOnly({
    bandwidth: optional(spec.bandwidth, tokenBucketToWire),
    ops: optional(spec.ops, tokenBucketToWire),
  });
}

export function bootSourceToWire(spec: BootSourceSpec): BootSource {
  return definedOnly({
    kernel_image_path: spec.kernelImagePath,
    boot_args: spec.bootArgs,
    initrd_path: spec.initrdPath,
  });
}

export function machineToWire(spec: MachineSpec): MachineConfiguration {
  return definedOnly({
    vcpu_count: spec.vcpuCount,
    mem_size_mib: spec.memSizeMib,
    smt: spec.smt,
    track_dirty_pages: spec.trackDirtyPages,
    huge_pages: spec.hugePages,
    cpu_template: spec.cpuTemplate,
  });
}

export function cpuConfigToWire(spec: CpuConfigSpec): CpuConfig {
  return definedOnly({
    kvm_capabilities: optional(spec.kvmCapabilities, (capabilities) => [...capabilities]),
    cpuid_modifiers: optional(spec.cpuidModifiers, (leaves) =>
      leaves.map((leaf) => ({
        leaf: leaf.leaf,
        subleaf: leaf.subleaf,
        flags: leaf.flags,
        modifiers: leaf.modifiers.map((modifier) => ({
          register: modifier.register,
          bitmap: modifier.bitmap,
        })),
      })),
    ),
    msr_modifiers: optional(spec.msrModifiers, (modifiers) =>
      modifiers.map((modifier) => ({ addr: modifier.addr, bitmap: modifier.bitmap })),
    ),
    reg_modifiers: optional(spec.regModifiers, (modifiers) =>
      modifiers.map((modifier) => ({ addr: modifier.addr, bitmap: modifier.bitmap })),
    ),
    vcpu_features: optional(spec.vcpuFeatures, (features) =>
      features.map((feature) => ({ index: feature.index, bitmap: feature.bitmap })),
    ),
  });
}

/**
 * A virtio-block drive always carries `is_read_only` (default false): the swagger file calls it required
 * for virtio-block, and Firecracker before 1.5 rejects a body without it. A vhost-user drive never does.
 */
export function driveToWire(spec: DriveSpec): Drive {
  const common = {
    drive_id: spec.driveId,
    is_root_device: spec.isRootDevice,
    partuuid: spec.partuuid,
    cache_type: spec.cacheType,
  };
  if (spec.socket !== undefined) return definedOnly({ ...common, socket: spec.socket });
  return definedOnly({
    ...common,
    path_on_host: spec.pathOnHost,
    is_read_only: spec.isReadOnly ?? false,
    io_engine: spec.ioEngine,
    rate_limiter: optional(spec.rateLimiter, rateLimiterToWire),
  });
}

export function networkInterfaceToWire(spec: NetworkInterfaceSpec): NetworkInterface {
  return definedOnly({
    iface_id: spec.ifaceId,
    host_dev_name: spec.hostDevName,
    guest_mac: spec.guestMac,
    mtu: spec.mtu,
    rx_rate_limiter: optional(spec.rxRateLimiter, rateLimiterToWire),
    tx_rate_limiter: optional(spec.txRateLimiter, rateLimiterToWire),
  });
}

/** `version` defaults to V2: Firecracker's own default (V1) is deprecated and flags every response. */
export function mmdsConfigToWire(spec: MmdsConfigSpec): MmdsConfig {
  return definedOnly({
    network_interfaces: [...spec.networkInterfaces],
    version: spec.version ?? 'V2',
    ipv4_address: spec.ipv4Address,
    imds_compat: spec.imdsCompat,
  });
}

export function vsockToWire(spec: VsockSpec): Vsock {
  return { guest_cid: spec.guestCid, uds_path: spec.udsPath };
}

export function balloonToWire(spec: BalloonSpec): Balloon {
  return definedOnly({
    amount_mib: spec.amountMib,
    deflate_on_oom: spec.deflateOnOom,
    stats_polling_interval_s: spec.statsPollingIntervalS,
    free_page_hinting: spec.freePageHinting,
    free_page_reporting: spec.freePageReporting,
  });
}

export function entropyToWire(spec: EntropySpec): EntropyDevice {
  return definedOnly({ rate_limiter: optional(spec.rateLimiter, rateLimiterToWire) });
}

export function pmemToWire(spec: PmemSpec): Pmem {
  return definedOnly({
    id: spec.id,
    path_on_host: spec.pathOnHost,
    root_device: spec.rootDevice,
    read_only: spec.readOnly,
    rate_limiter: optional(spec.rateLimiter, rateLimiterToWire),
  });
}

export function loggerToWire(spec: LoggerSpec): Logger {
  return definedOnly({
    log_path: spec.logPath,
    level: spec.level,
    show_level: spec.showLevel,
    show_log_origin: spec.showLogOrigin,
    module: spec.module,
  });
}

export function metricsToWire(spec: MetricsSpec): Metrics {
  return { metrics_path: spec.metricsPath };
}

export function serialToWire(spec: SerialSpec): SerialDevice {
  return definedOnly({
    serial_out_path: spec.serialOutPath,
    rate_limiter: optional(spec.rateLimiter, tokenBucketToWire),
  });
}

export function memoryHotplugToWire(spec: MemoryHotplugSpec): MemoryHotplugConfig {
  return definedOnly({
    total_size_mib: spec.totalSizeMib,
    slot_size_mib: spec.slotSizeMib,
    block_size_mib: spec.blockSizeMib,
  });
}

/**
 * The ordered API calls that configure a VM for a cold boot (everything before `InstanceStart`).
 * Validates `spec` first and throws its first `ValidationError`. The order is Firecracker's safe one:
 * logger, metrics and serial first; machine-config before a balloon (which must fit in memory);
 * `mmds/config` after the interfaces it names, then the MMDS data.
 */
export function vmSpecToRequests(spec: VmSpec): WireRequest[] {
  const valid = validateVmSpec(spec);
  const requests: WireRequest[] = [];
  if (valid.logger) {
    requests.push({ method: 'PUT', endpoint: '/logger', path: '/logger', body: loggerToWire(valid.logger) });
  }
  if (valid.metrics) {
    requests.push({
      method: 'PUT',
      endpoint: '/metrics',
      path: '/metrics',
      body: metricsToWire(valid.metrics),
    });
  }
  if (valid.serial) {
    requests.push({ method: 'PUT', endpoint: '/serial', path: '/serial', body: serialToWire(valid.serial) });
  }
  requests.push({
    method: 'PUT',
    endpoint: '/boot-source',
    path: '/boot-source',
    body: bootSourceToWire(valid.bootSource),
  });
  requests.push({
    method: 'PUT',
    endpoint: '/machine-config',
    path: '/machine-config',
    body: machineToWire(valid.machine),
  });
  if (valid.cpuConfig) {
    requests.push({
      method: 'PUT',
      endpoint: '/cpu-config',
      path: '/cpu-config',
      body: cpuConfigToWire(valid.cpuConfig),
    });
  }
  // Resource ids are validated as [A-Za-z0-9_]+, so they need no escaping in the path.
  for (const drive of valid.drives ?? []) {
    requests.push({
      method: 'PUT',
      endpoint: '/drives/{drive_id}',
      path: `/drives/${drive.driveId}`,
      body: driveToWire(drive),
    });
  }
  for (const networkInterface of valid.networkInterfaces ?? []) {
    requests.push({
      method: 'PUT',
      endpoint: '/network-interfaces/{iface_id}',
      path: `/network-interfaces/${networkInterface.ifaceId}`,
      body: networkInterfaceToWire(networkInterface),
    });
  }
  if (valid.mmds) {
    requests.push({
      method: 'PUT',
      endpoint: '/mmds/config',
      path: '/mmds/config',
      body: mmdsConfigToWire(valid.mmds.config),
    });
    if (valid.mmds.data !== undefined) {
      // validateVmSpec already made a JSON-safe deep copy.
      requests.push({ method: 'PUT', endpoint: '/mmds', path: '/mmds', body: valid.mmds.data });
    }
  }
  if (valid.vsock) {
    requests.push({ method: 'PUT', endpoint: '/vsock', path: '/vsock', body: vsockToWire(valid.vsock) });
  }
  if (valid.balloon) {
    requests.push({
      method: 'PUT',
      endpoint: '/balloon',
      path: '/balloon',
      body: balloonToWire(valid.balloon),
    });
  }
  if (valid.entropy) {
    requests.push({
      method: 'PUT',
      endpoint: '/entropy',
      path: '/entropy',
      body: entropyToWire(valid.entropy),
    });
  }
  for (const device of valid.pmem ?? []) {
    requests.push({
      method: 'PUT',
      endpoint: '/pmem/{id}',
      path: `/pmem/${device.id}`,
      body: pmemToWire(device),
    });
  }
  if (valid.memoryHotplug) {
    requests.push({
      method: 'PUT',
      endpoint: '/hotplug/memory',
      path: '/hotplug/memory',
      body: memoryHotplugToWire(valid.memoryHotplug),
    });
  }
  return requests;
}

/** The body of `PUT /snapshot/create`. Validates `spec` first. */
export function snapshotCreateToWire(spec: SnapshotCreateSpec): SnapshotCreateParams {
  const valid = validateSnapshotCreateSpec(spec);
  return definedOnly({
    snapshot_path: valid.snapshotPath,
    mem_file_path: valid.memFilePath,
    snapshot_type: valid.snapshotType,
  });
}

/**
 * The body of `PUT /snapshot/load`. Validates `spec` first. Memory always goes through `mem_backend`
 * (never the deprecated `mem_file_path`): a `memFilePath` becomes a `File` backend. Newer fields (`network_overrides` ≥ 1.12, `vsock_override` and
 * `clock_realtime` ≥ 1.16) appear only when set, so a caller can gate them on the running version.
 */
export function snapshotLoadToWire(spec: SnapshotLoadSpec): SnapshotLoadParams {
  const valid = validateSnapshotLoadSpec(spec);
  const memBackend = valid.memBackend ?? { backendType: 'File', backendPath: valid.memFilePath };
  return definedOnly({
    snapshot_path: valid.snapshotPath,
    mem_backend: { backend_type: memBackend.backendType, backend_path: memBackend.backendPath },
    track_dirty_pages: valid.trackDirtyPages,
    resume_vm: valid.resumeVm,
    network_overrides: optional(valid.networkOverrides, (overrides) =>
      overrides.map((override) => ({ iface_id: override.ifaceId, host_dev_name: override.hostDevName })),
    ),
    vsock_override: optional(valid.vsockOverride, (override) => ({ uds_path: override.udsPath })),
    clock_realtime: valid.clockRealtime,
  });
}
