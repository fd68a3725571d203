import { closeSync, writeSync } from 'node:fs';
import { METRICS_PERIOD_MS } from './constants.js';
import { openLogTarget } from './logger.js';

const BLOCK_COUNTERS = [
  'activate_fails',
  'cfg_fails',
  'no_avail_buffer',
  'event_fails',
  'execute_fails',
  'invalid_reqs_count',
  'flush_count',
  'queue_event_count',
  'rate_limiter_event_count',
  'update_count',
  'update_fails',
  'read_bytes',
  'write_bytes',
  'read_count',
  'write_count',
  'rate_limiter_throttled_events',
  'io_engine_throttled_events',
  'remaining_reqs_count',
];

const NET_COUNTERS = [
  'activate_fails',
  'cfg_fails',
  'mac_address_updates',
  'no_rx_avail_buffer',
  'no_tx_avail_buffer',
  'event_fails',
  'rx_queue_event_count',
  'rx_event_rate_limiter_count',
  'rx_partial_writes',
  'rx_rate_limiter_throttled',
  'rx_tap_event_count',
  'rx_bytes_count',
  'rx_packets_count',
  'rx_fails',
  'rx_count',
  'tap_read_fails',
  'tap_write_fails',
  'tx_bytes_count',
  'tx_malformed_frames',
  'tx_fails',
  'tx_count',
  'tx_packets_count',
  'tx_partial_reads',
  'tx_queue_event_count',
  'tx_rate_limiter_event_count',
  'tx_rate_limiter_throttled',
  'tx_spoofed_mac_count',
  'tx_remaining_reqs_count',
];

/** Counter groups (`SharedIncMetric`): written as deltas since the previous flush. */
const COUNTER_GROUPS: Record<string, readonly string[]> = {
  api_server: ['sync_response_fails', 'sync_vmm_send_timeout_count'],
  balloon: [
    'activate_fails',
    'inflate_count',
    'stats_updates_count',
    'stats_update_fails',
    'deflate_count',
    'event_fails',
  ],
  block: BLOCK_COUNTERS,
  deprecated_api: ['deprecated_http_api_calls', 'deprecated_cmd_line_api_calls'],
  entropy: [
    'activate_fails',
    'entropy_event_fails',
    'entropy_event_count',
    'entropy_bytes',
    'host_rng_fails',
    'entropy_rate_limiter_throttled',
    'rate_limiter_event_count',
  ],
  get_api_requests: [
    'instance_info_count',
    'machine_cfg_count',
    'mmds_count',
    'vmm_version_count',
    'hotplug_memory_count',
  ],
  i8042: [
    'error_count',
    'missed_read_count',
    'missed_write_count',
    'read_count',
    'reset_count',
    'write_count',
  ],
  interrupts: ['triggers', 'config_updates'],
  logger: [
    'missed_metrics_count',
    'metrics_fails',
    'missed_log_count',
    'log_fails',
    'rate_limited_log_count',
  ],
  memory_hotplug: ['activate_fails', 'queue_event_fails', 'queue_event_count', 'plug_count', 'unplug_count'],
  mmds: [
    'rx_accepted',
    'rx_accepted_err',
    'rx_accepted_unusual',
    'rx_bad_eth',
    'rx_invalid_token',
    'rx_no_token',
    'rx_count',
    'tx_bytes',
    'tx_count',
    'tx_errors',
    'tx_frames',
    'connections_created',
    'connections_destroyed',
  ],
  net: NET_COUNTERS,
  patch_api_requests: [
    'drive_count',
    'drive_fails',
    'network_count',
    'network_fails',
    'machine_cfg_count',
    'machine_cfg_fails',
    'mmds_count',
    'mmds_fails',
    'pmem_count',
    'pmem_fails',
    'hotplug_memory_count',
    'hotplug_memory_fails',
  ],
  pmem: ['activate_fails', 'cfg_fails', 'event_fails', 'queue_event_count'],
  put_api_requests: [
    'actions_count',
    'actions_fails',
    'boot_source_count',
    'boot_source_fails',
    'drive_count',
    'drive_fails',
    'logger_count',
    'logger_fails',
    'machine_cfg_count',
    'machine_cfg_fails',
    'cpu_cfg_count',
    'cpu_cfg_fails',
    'metrics_count',
    'metrics_fails',
    'network_count',
    'network_fails',
    'mmds_count',
    'mmds_fails',
    'vsock_count',
    'vsock_fails',
    'pmem_count',
    'pmem_fails',
    'serial_count',
    'serial_fails',
    'hotplug_memory_count',
    'hotplug_memory_fails',
  ],
  seccomp: ['num_faults'],
  vcpu: ['exit_io_in', 'exit_io_out', 'exit_mmio_read', 'exit_mmio_write', 'failures'],
  vmm: ['device_events', 'panic_count'],
  uart: [
    'error_count',
    'flush_count',
    'missed_read_count',
    'missed_write_count',
    'read_count',
    'write_count',
    'rate_limiter_dropped_bytes',
  ],
  vsock: [
    'activate_fails',
    'cfg_fails',
    'rx_queue_event_fails',
    'tx_queue_event_fails',
    'ev_queue_event_fails',
    'muxer_event_fails',
    'conn_event_fails',
    'rx_queue_event_count',
    'tx_queue_event_count',
    'rx_bytes_count',
    'tx_bytes_count',
    'rx_packets_count',
    'tx_packets_count',
    'conns_added',
    'conns_killed',
    'conns_removed',
    'killq_resync',
    'tx_flush_fails',
    'tx_write_fails',
    'rx_read_fails',
  ],
};

/** Store groups: absolute values, not reset by a flush. */
const STORE_GROUPS: Record<string, readonly string[]> = {
  api_server: ['process_startup_time_us', 'process_startup_time_cpu_us'],
  latencies_us: [
    'full_create_snapshot',
    'diff_create_snapshot',
    'load_snapshot',
    'pause_vm',
    'resume_vm',
    'vmm_full_create_snapshot',
    'vmm_diff_create_snapshot',
    'vmm_load_snapshot',
    'vmm_pause_vm',
    'vmm_resume_vm',
  ],
  signals: ['sigbus', 'sigsegv', 'sigxfsz', 'sigxcpu', 'sigpipe', 'sighup', 'sigill'],
};

/** Latency aggregates (`*_agg`), written as `{min_us, max_us, sum_us}`. */
const AGGREGATES: Record<string, readonly string[]> = {
  block: ['read_agg', 'write_agg'],
  net: ['tap_write_agg'],
  vcpu: ['exit_io_in_agg', 'exit_io_out_agg', 'exit_mmio_read_agg', 'exit_mmio_write_agg'],
};

type DeviceKind = 'block' | 'net';

export class MetricsAlreadyInitializedError extends Error {
  constructor() {
    super('Reinitialization of metrics not allowed.');
  }
}

/**
 * Firecracker's metrics: one JSON object per line, counters as deltas since the previous line, written at
 * boot or restore, every 60 s while the VM runs, on `FlushMetrics`, and when the VMM stops.
 */
export class SimulatorMetrics {
  readonly #counters = new Map<string, number>();
  readonly #stores = new Map<string, number>();
  readonly #devices: Record<DeviceKind, Set<string>> = { block: new Set(), net: new Set() };
  readonly #periodMs: number;
  #fileDescriptor: number | undefined;
  #timer: NodeJS.Timeout | undefined;
  #periodicRunning = false;
  /** Called before each line is written, to collect counters kept elsewhere (the logger's misses). */
  beforeWrite: (() => void) | undefined;

  constructor(options: { periodMs?: number } = {}) {
    this.#periodMs = options.periodMs ?? METRICS_PERIOD_MS;
  }

  get initialized(): boolean {
    return this.#fileDescriptor !== undefined;
  }

  /** `PUT /metrics` or `--metrics-path`; only once per process. */
  initialize(hostPath: string): void {
    if (this.#fileDescriptor !== undefined) throw new MetricsAlreadyInitializedError();
    this.#fileDescriptor = openLogTarget(hostPath);
  }

  increment(group: string, field: string, amount = 1, device?: { kind: DeviceKind; id: string }): void {
    const key = `${group}.${field}`;
    this.#counters.set(key, (this.#counters.get(key) ?? 0) + amount);
    if (device !== undefined) {
      const deviceKey = `${device.kind}_${device.id}.${field}`;
      this.#counters.set(deviceKey, (this.#counters.get(deviceKey) ?? 0) + amount);
    }
  }

  store(group: string, field: string, value: number): void {
    this.#stores.set(`${group}.${field}`, value);
  }

  addDevice(kind: DeviceKind, id: string): void {
    this.#devices[kind].add(id);
  }

  removeDevice(kind: DeviceKind, id: string): void {
    this.#devices[kind].delete(id);
  }

  /** One metrics line, resetting the counters it reports. */
  snapshotLine(now = Date.now()): string {
    this.beforeWrite?.();
    const document: Record<string, unknown> = { utc_timestamp_ms: now };
    const groupNames = new Set([...Object.keys(COUNTER_GROUPS), ...Object.keys(STORE_GROUPS)]);
    for (const group of [...groupNames].sort()) {
      document[group] = this.#group(group, group);
      if (group === 'block' || group === 'net') {
        for (const id of this.#devices[group])
          document[`${group}_${id}`] = this.#group(group, `${group}_${id}`);
      }
    }
    for (const key of [...this.#counters.keys()]) this.#counters.set(key, 0);
    return `${JSON.stringify(document)}\n`;
  }

  #group(template: string, prefix: string): Record<string, unknown> {
    const values: Record<string, unknown> = {};
    for (const field of COUNTER_GROUPS[template] ?? [])
      values[field] = this.#counters.get(`${prefix}.${field}`) ?? 0;
    for (const field of STORE_GROUPS[template] ?? [])
      values[field] = this.#stores.get(`${prefix}.${field}`) ?? 0;
    for (const field of AGGREGATES[template] ?? []) values[field] = { min_us: 0, max_us: 0, sum_us: 0 };
    return values;
  }

  /** Writes one line; false when metrics are not configured. A failed write is dropped and counted. */
  write(): boolean {
    if (this.#fileDescriptor === undefined) return false;
    const line = this.snapshotLine();
    try {
      writeSync(this.#fileDescriptor, line);
    } catch {
      this.increment('logger', 'missed_metrics_count');
    }
    return true;
  }

  /** Starts the 60 s timer after boot or restore, writing the first line right away. */
  startPeriodic(): void {
    this.write();
    this.#periodicRunning = true;
    this.#arm();
  }

  /** The periodic flush is frozen while the VM is paused. */
  pausePeriodic(): void {
    if (this.#timer !== undefined) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  resumePeriodic(): void {
    if (this.#periodicRunning && this.#timer === undefined) this.#arm();
  }

  #arm(): void {
    this.#timer = setInterval(() => this.write(), this.#periodMs);
    this.#timer.unref();
  }

  close(): void {
    this.pausePeriodic();
    this.#periodicRunning = false;
    if (this.#fileDescriptor !== undefined) closeSync(this.#fileDescriptor);
    this.#fileDescriptor = undefined;
  }
}
