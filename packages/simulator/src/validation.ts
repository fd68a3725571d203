/**
 * Request bodies as Firecracker v1.16.1 deserializes and checks them. Written from Firecracker's own rules
 * (serde structs, `deny_unknown_fields`, integer widths, validators), independently of `@microvm/core`, so the
 * simulator catches a driver that sends what the real Firecracker would reject.
 */
import type {
  Balloon,
  BalloonStartCmd,
  BalloonStatsUpdate,
  BalloonUpdate,
  BootSource,
  CpuConfig,
  Drive,
  EntropyDevice,
  InstanceActionInfo,
  Logger,
  MachineConfiguration,
  MemoryHotplugConfig,
  MemoryHotplugSizeUpdate,
  Metrics,
  MmdsConfig,
  NetworkInterface,
  PartialDrive,
  PartialMachineConfiguration,
  PartialNetworkInterface,
  PartialPmem,
  Pmem,
  SerialDevice,
  SnapshotCreateParams,
  SnapshotLoadParams,
  Vm,
  Vsock,
} from '@microvm/core';
import { MAX_SUPPORTED_VCPUS, SIMULATED_FIRECRACKER_VERSION } from './constants.js';
import { deserializeStruct, type FieldSpec, type FieldType, type StructSchema } from './serde-json.js';

const string: FieldType = { kind: 'string' };
const boolean: FieldType = { kind: 'boolean' };
const u8: FieldType = { kind: 'unsigned', name: 'u8' };
const u16: FieldType = { kind: 'unsigned', name: 'u16' };
const u32: FieldType = { kind: 'unsigned', name: 'u32' };
const u64: FieldType = { kind: 'unsigned', name: 'u64' };
const usize: FieldType = { kind: 'unsigned', name: 'usize' };
const i32: FieldType = { kind: 'signed', name: 'i32' };

function required(name: string, type: FieldType): FieldSpec {
  return { name, type };
}
function optional(name: string, type: FieldType): FieldSpec {
  return { name, type, optional: true };
}
function withDefault(name: string, type: FieldType): FieldSpec {
  return { name, type, hasDefault: true };
}
function struct(name: string, fields: FieldSpec[], denyUnknownFields = true): FieldType {
  return { kind: 'struct', schema: { name, fields, denyUnknownFields } };
}
function schemaOf(type: FieldType): StructSchema {
  if (type.kind !== 'struct') throw new TypeError('not a struct type');
  return type.schema;
}

// --- Custom value types -------------------------------------------------------------------------------

const MAC_PATTERN = /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/;

/** `MacAddr`: six colon-separated hex pairs; Firecracker prints it back in lower case. */
const macAddress: FieldType = {
  kind: 'custom',
  base: string,
  convert: (value) =>
    typeof value === 'string' && MAC_PATTERN.test(value)
      ? { value: value.toLowerCase() }
      : { error: 'The provided MAC address is invalid.' },
};

const IPV4_PATTERN =
  /^(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}$/;

/** `std::net::Ipv4Addr` from a string. */
const ipv4Address: FieldType = {
  kind: 'custom',
  base: string,
  convert: (value) =>
    typeof value === 'string' && IPV4_PATTERN.test(value)
      ? { value }
      : { error: 'invalid IPv4 address syntax' },
};

const LOG_LEVELS: Record<string, string> = {
  off: 'Off',
  trace: 'Trace',
  debug: 'Debug',
  info: 'Info',
  warn: 'Warn',
  warning: 'Warn',
  error: 'Error',
};

/** Logger levels are matched case-insensitively; `Warning` is an alias of `Warn`. */
export function parseLogLevel(value: string): string | undefined {
  return LOG_LEVELS[value.toLowerCase()];
}

const logLevel: FieldType = {
  kind: 'custom',
  base: string,
  convert: (value) => {
    const level = typeof value === 'string' ? parseLogLevel(value) : undefined;
    return level === undefined
      ? {
          error: `unknown variant \`${String(value)}\`, expected one of \`Off\`, \`Trace\`, \`Debug\`, \`Info\`, \`Warn\`, \`Error\``,
        }
      : { value: level };
  },
};

function bitmap(bits: number): FieldType {
  return {
    kind: 'custom',
    base: string,
    convert: (value) => {
      const text = String(value);
      const digits = text.startsWith('0b') ? text.slice(2).replaceAll('_', '') : undefined;
      if (digits === undefined || digits.length !== bits || !/^[01x]+$/.test(digits)) {
        return { error: `Failed to parse string [${text}] as a bitmap` };
      }
      return { value: text };
    },
  };
}

/** CPUID leaves, MSR addresses: hex (`0x`), binary (`0b`) or decimal strings. */
const numericString: FieldType = {
  kind: 'custom',
  base: string,
  convert: (value) => {
    const text = String(value);
    const valid = /^0x[0-9a-fA-F]+$/.test(text) || /^0b[01]+$/.test(text) || /^[0-9]+$/.test(text);
    return valid ? { value: text } : { error: `Failed to parse string [${text}] as a number` };
  },
};

const kvmCapability: FieldType = {
  kind: 'custom',
  base: string,
  convert: (value) => {
    const text = String(value);
    return /^!?[0-9]+$/.test(text)
      ? { value: text }
      : { error: `Failed to parse string [${text}] as a number` };
  },
};

// --- Shared pieces ------------------------------------------------------------------------------------

/** `TokenBucketConfig` does not deny unknown fields. */
const tokenBucket = struct(
  'TokenBucketConfig',
  [required('size', u64), optional('one_time_burst', u64), required('refill_time', u64)],
  false,
);

const rateLimiter = struct('RateLimiterConfig', [
  optional('bandwidth', tokenBucket),
  optional('ops', tokenBucket),
]);

// --- Bodies -------------------------------------------------------------------------------------------

export const bootSourceSchema = schemaOf(
  struct('BootSourceConfig', [
    required('kernel_image_path', string),
    optional('initrd_path', string),
    optional('boot_args', string),
  ]),
);

const staticCpuTemplate: FieldType = {
  kind: 'enum',
  name: 'StaticCpuTemplate',
  variants: ['C3', 'T2', 'T2S', 'None', 'T2CL', 'T2A'],
};
const hugePages: FieldType = { kind: 'enum', name: 'HugePageConfig', variants: ['None', '2M'] };

export const machineConfigSchema = schemaOf(
  struct('MachineConfig', [
    required('vcpu_count', u8),
    required('mem_size_mib', usize),
    withDefault('smt', boolean),
    optional('cpu_template', staticCpuTemplate),
    withDefault('track_dirty_pages', boolean),
    withDefault('huge_pages', hugePages),
  ]),
);

export const machineConfigUpdateSchema = schemaOf(
  struct('MachineConfigUpdate', [
    optional('vcpu_count', u8),
    optional('mem_size_mib', usize),
    optional('smt', boolean),
    optional('cpu_template', staticCpuTemplate),
    optional('track_dirty_pages', boolean),
    optional('huge_pages', hugePages),
  ]),
);

export const driveSchema = schemaOf(
  struct('BlockDeviceConfig', [
    required('drive_id', string),
    optional('partuuid', string),
    required('is_root_device', boolean),
    withDefault('cache_type', { kind: 'enum', name: 'CacheType', variants: ['Unsafe', 'Writeback'] }),
    optional('is_read_only', boolean),
    optional('path_on_host', string),
    optional('rate_limiter', rateLimiter),
    optional('io_engine', { kind: 'enum', name: 'FileEngineType', variants: ['Async', 'Sync'] }),
    optional('socket', string),
  ]),
);

export const partialDriveSchema = schemaOf(
  struct('BlockDeviceUpdateConfig', [
    required('drive_id', string),
    optional('path_on_host', string),
    optional('rate_limiter', rateLimiter),
  ]),
);

export const networkInterfaceSchema = schemaOf(
  struct('NetworkInterfaceConfig', [
    required('iface_id', string),
    required('host_dev_name', string),
    optional('guest_mac', macAddress),
    optional('rx_rate_limiter', rateLimiter),
    optional('tx_rate_limiter', rateLimiter),
    optional('mtu', u16),
  ]),
);

export const partialNetworkInterfaceSchema = schemaOf(
  struct('NetworkInterfaceUpdateConfig', [
    required('iface_id', string),
    optional('rx_rate_limiter', rateLimiter),
    optional('tx_rate_limiter', rateLimiter),
  ]),
);

export const pmemSchema = schemaOf(
  struct('PmemConfig', [
    required('id', string),
    required('path_on_host', string),
    withDefault('root_device', boolean),
    withDefault('read_only', boolean),
    optional('rate_limiter', rateLimiter),
  ]),
);

export const partialPmemSchema = schemaOf(
  struct('PmemUpdateConfig', [required('id', string), optional('rate_limiter', rateLimiter)]),
);

export const vsockSchema = schemaOf(
  struct('VsockDeviceConfig', [
    optional('vsock_id', string),
    required('guest_cid', u32),
    required('uds_path', string),
  ]),
);

export const balloonSchema = schemaOf(
  struct('BalloonDeviceConfig', [
    required('amount_mib', u32),
    required('deflate_on_oom', boolean),
    withDefault('stats_polling_interval_s', u16),
    withDefault('free_page_hinting', boolean),
    withDefault('free_page_reporting', boolean),
  ]),
);

export const balloonUpdateSchema = schemaOf(struct('BalloonUpdateConfig', [required('amount_mib', u32)]));

export const balloonStatsUpdateSchema = schemaOf(
  struct('BalloonUpdateStatsConfig', [required('stats_polling_interval_s', u16)]),
);

export const balloonStartHintingSchema = schemaOf(
  struct('StartHintingCmd', [withDefault('acknowledge_on_stop', boolean)]),
);

export const entropySchema = schemaOf(struct('EntropyDeviceConfig', [optional('rate_limiter', rateLimiter)]));

export const serialSchema = schemaOf(
  struct('SerialConfig', [optional('serial_out_path', string), optional('rate_limiter', tokenBucket)]),
);

export const loggerSchema = schemaOf(
  struct('LoggerConfig', [
    optional('log_path', string),
    optional('level', logLevel),
    optional('show_level', boolean),
    optional('show_log_origin', boolean),
    optional('module', string),
  ]),
);

/** `MetricsConfig` is the one top-level body without `deny_unknown_fields`. */
export const metricsSchema = schemaOf(struct('MetricsConfig', [required('metrics_path', string)], false));

export const mmdsConfigSchema = schemaOf(
  struct('MmdsConfig', [
    optional('version', { kind: 'enum', name: 'MmdsVersion', variants: ['V1', 'V2'] }),
    required('network_interfaces', { kind: 'sequence', item: string }),
    optional('ipv4_address', ipv4Address),
    withDefault('imds_compat', boolean),
  ]),
);

export const memoryHotplugSchema = schemaOf(
  struct('MemoryHotplugConfig', [
    required('total_size_mib', usize),
    withDefault('block_size_mib', usize),
    withDefault('slot_size_mib', usize),
  ]),
);

export const memoryHotplugUpdateSchema = schemaOf(
  struct('MemoryHotplugSizeUpdate', [required('requested_size_mib', usize)]),
);

export const actionSchema = schemaOf(
  struct('ActionBody', [
    required('action_type', {
      kind: 'enum',
      name: 'ActionType',
      variants: ['FlushMetrics', 'InstanceStart', 'SendCtrlAltDel'],
    }),
  ]),
);

export const vmStateSchema = schemaOf(
  struct('Vm', [required('state', { kind: 'enum', name: 'VmState', variants: ['Paused', 'Resumed'] })]),
);

export const snapshotCreateSchema = schemaOf(
  struct('CreateSnapshotParams', [
    optional('snapshot_type', { kind: 'enum', name: 'SnapshotType', variants: ['Diff', 'Full'] }),
    required('snapshot_path', string),
    required('mem_file_path', string),
  ]),
);

export const snapshotLoadSchema = schemaOf(
  struct('LoadSnapshotConfig', [
    required('snapshot_path', string),
    optional('mem_file_path', string),
    optional(
      'mem_backend',
      struct('MemBackendConfig', [
        required('backend_path', string),
        required('backend_type', { kind: 'enum', name: 'MemBackendType', variants: ['File', 'Uffd'] }),
      ]),
    ),
    withDefault('enable_diff_snapshots', boolean),
    optional('track_dirty_pages', boolean),
    withDefault('resume_vm', boolean),
    withDefault('network_overrides', {
      kind: 'sequence',
      item: struct(
        'NetworkOverride',
        [required('iface_id', string), required('host_dev_name', string)],
        false,
      ),
    }),
    optional('vsock_override', struct('VsockOverride', [required('uds_path', string)], false)),
    withDefault('clock_realtime', boolean),
  ]),
);

export const cpuConfigSchema = schemaOf(
  struct('CustomCpuTemplate', [
    withDefault('kvm_capabilities', { kind: 'sequence', item: kvmCapability }),
    withDefault('cpuid_modifiers', {
      kind: 'sequence',
      item: struct('CpuidLeafModifier', [
        required('leaf', numericString),
        required('subleaf', numericString),
        required('flags', i32),
        required('modifiers', {
          kind: 'sequence',
          item: struct('CpuidRegisterModifier', [
            required('register', {
              kind: 'enum',
              name: 'CpuidRegister',
              variants: ['eax', 'ebx', 'ecx', 'edx'],
            }),
            required('bitmap', bitmap(32)),
          ]),
        }),
      ]),
    }),
    withDefault('msr_modifiers', {
      kind: 'sequence',
      item: struct('RegisterModifier', [required('addr', numericString), required('bitmap', bitmap(64))]),
    }),
  ]),
);

/** `VmmConfig`, the `--config-file` document. */
export const vmmConfigFileSchema = schemaOf(
  struct('VmmConfig', [
    optional('balloon', { kind: 'struct', schema: balloonSchema }),
    required('drives', { kind: 'sequence', item: { kind: 'struct', schema: driveSchema } }),
    required('boot-source', { kind: 'struct', schema: bootSourceSchema }),
    optional('cpu-config', { kind: 'any' }),
    optional('logger', { kind: 'struct', schema: loggerSchema }),
    optional('machine-config', { kind: 'struct', schema: machineConfigSchema }),
    optional('metrics', { kind: 'struct', schema: metricsSchema }),
    optional('mmds-config', { kind: 'struct', schema: mmdsConfigSchema }),
    withDefault('network-interfaces', {
      kind: 'sequence',
      item: { kind: 'struct', schema: networkInterfaceSchema },
    }),
    optional('vsock', { kind: 'struct', schema: vsockSchema }),
    optional('entropy', { kind: 'struct', schema: entropySchema }),
    withDefault('pmem', { kind: 'sequence', item: { kind: 'struct', schema: pmemSchema } }),
    optional('memory-hotplug', { kind: 'struct', schema: memoryHotplugSchema }),
  ]),
);

/** The `--config-file` document, typed. */
export interface VmmConfigFile {
  balloon?: Balloon;
  drives: Drive[];
  'boot-source': BootSource;
  'cpu-config'?: unknown;
  logger?: Logger;
  'machine-config'?: MachineConfiguration;
  metrics?: Metrics;
  'mmds-config'?: MmdsConfig;
  'network-interfaces'?: NetworkInterface[];
  vsock?: Vsock;
  entropy?: EntropyDevice;
  pmem?: Pmem[];
  'memory-hotplug'?: MemoryHotplugConfig;
}

/** Typed results of the body schemas above. */
export interface BodyTypes {
  bootSource: BootSource;
  machineConfig: MachineConfiguration;
  machineConfigUpdate: PartialMachineConfiguration;
  drive: Drive;
  partialDrive: PartialDrive;
  networkInterface: NetworkInterface;
  partialNetworkInterface: PartialNetworkInterface;
  pmem: Pmem;
  partialPmem: PartialPmem;
  vsock: Vsock;
  balloon: Balloon;
  balloonUpdate: BalloonUpdate;
  balloonStatsUpdate: BalloonStatsUpdate;
  balloonStartHinting: BalloonStartCmd;
  entropy: EntropyDevice;
  serial: SerialDevice;
  logger: Logger;
  metrics: Metrics;
  mmdsConfig: MmdsConfig;
  memoryHotplug: MemoryHotplugConfig;
  memoryHotplugUpdate: MemoryHotplugSizeUpdate;
  action: InstanceActionInfo;
  vmState: Vm;
  snapshotCreate: SnapshotCreateParams;
  snapshotLoad: SnapshotLoadParams;
  cpuConfig: CpuConfig;
}

export const bodySchemas: { [K in keyof BodyTypes]: StructSchema } = {
  bootSource: bootSourceSchema,
  machineConfig: machineConfigSchema,
  machineConfigUpdate: machineConfigUpdateSchema,
  drive: driveSchema,
  partialDrive: partialDriveSchema,
  networkInterface: networkInterfaceSchema,
  partialNetworkInterface: partialNetworkInterfaceSchema,
  pmem: pmemSchema,
  partialPmem: partialPmemSchema,
  vsock: vsockSchema,
  balloon: balloonSchema,
  balloonUpdate: balloonUpdateSchema,
  balloonStatsUpdate: balloonStatsUpdateSchema,
  balloonStartHinting: balloonStartHintingSchema,
  entropy: entropySchema,
  serial: serialSchema,
  logger: loggerSchema,
  metrics: metricsSchema,
  mmdsConfig: mmdsConfigSchema,
  memoryHotplug: memoryHotplugSchema,
  memoryHotplugUpdate: memoryHotplugUpdateSchema,
  action: actionSchema,
  vmState: vmStateSchema,
  snapshotCreate: snapshotCreateSchema,
  snapshotLoad: snapshotLoadSchema,
  cpuConfig: cpuConfigSchema,
};

/**
 * Body fields that releases before the given version do not know (FACTS.md, `PUT /snapshot/load`). Their serde
 * structs deny unknown fields, so an older Firecracker refuses such a field with `unknown field`. Only the fields
 * listed here follow `MICROVM_SIMULATOR_VERSION`; every other rule stays v1.16.1's.
 */
export const BODY_FIELDS_SINCE_VERSION: {
  readonly [K in keyof BodyTypes]?: Readonly<Record<string, string>>;
} = {
  snapshotLoad: { vsock_override: '1.16.0' },
};

/** Whether `version` is an earlier release than `minimum` (both plain `X.Y.Z`). */
export function isVersionBelow(version: string, minimum: string): boolean {
  const left = version.split('.').map(Number);
  const right = minimum.split('.').map(Number);
  for (let index = 0; index < 3; index += 1) {
    const difference = (left[index] ?? 0) - (right[index] ?? 0);
    if (difference !== 0) return difference < 0;
  }
  return false;
}

/** The schema of a body kind as the given release deserializes it: without the fields it does not know yet. */
function bodySchemaFor(kind: keyof BodyTypes, firecrackerVersion: string): StructSchema {
  const schema = bodySchemas[kind];
  const sinceVersion = BODY_FIELDS_SINCE_VERSION[kind];
  if (sinceVersion === undefined) return schema;
  const fields = schema.fields.filter((field) => {
    const minimum = sinceVersion[field.name];
    return minimum === undefined || !isVersionBelow(firecrackerVersion, minimum);
  });
  return fields.length === schema.fields.length ? schema : { ...schema, fields };
}

/**
 * Deserializes a request body of the given kind; throws `SerdeJsonError` like serde_json. `firecrackerVersion`
 * (default v1.16.1) drops the fields of {@link BODY_FIELDS_SINCE_VERSION} that release does not know.
 */
export function deserializeBody<K extends keyof BodyTypes>(
  kind: K,
  text: string,
  firecrackerVersion: string = SIMULATED_FIRECRACKER_VERSION,
): BodyTypes[K] {
  return deserializeStruct<BodyTypes[K]>(text, bodySchemaFor(kind, firecrackerVersion));
}

// --- Semantic checks (the VMM's own validators) ----------------------------------------------------------

/** `checked_id` of the API server: non-empty, `_` or Unicode alphanumerics. */
export function checkResourceId(id: string | undefined): string | undefined {
  if (id === undefined || id.length === 0) return 'The ID cannot be empty.';
  if (!/^[\p{Alphabetic}\p{Nd}\p{Nl}\p{No}_]+$/u.test(id)) {
    return 'API Resource IDs can only contain alphanumeric characters and underscores.';
  }
  return undefined;
}

/** Firecracker's and the jailer's `validate_instance_id`: 1–64 bytes of alphanumerics or `-`. */
export function checkInstanceId(id: string): string | undefined {
  const length = Buffer.byteLength(id, 'utf8');
  if (length < 1 || length > 64) return `InvalidLen(${length}, 1, 64)`;
  let position = 0;
  for (const character of id) {
    if (character !== '-' && !/^[\p{Alphabetic}\p{Nd}\p{Nl}\p{No}]$/u.test(character)) {
      return `InvalidChar('${character}', ${position})`;
    }
    position += 1;
  }
  return undefined;
}

export interface MachineState {
  vcpu_count: number;
  mem_size_mib: number;
  smt: boolean;
  track_dirty_pages: boolean;
  huge_pages: 'None' | '2M';
  cpu_template?: string;
}

/** `VmConfig::update`: the vCPU and memory rules. Returns the new config or an error text. */
export function updateMachineConfig(
  current: MachineState,
  update: PartialMachineConfiguration,
): { config: MachineState } | { error: string } {
  const vcpuCount = update.vcpu_count ?? current.vcpu_count;
  const smt = update.smt ?? current.smt;
  const vcpuError = `The number of vCPUs must be greater than 0, less than ${MAX_SUPPORTED_VCPUS} and must be 1 or an even number if SMT is enabled.`;
  if (vcpuCount === 0 || vcpuCount > MAX_SUPPORTED_VCPUS) return { error: vcpuError };
  if (smt && vcpuCount > 1 && vcpuCount % 2 === 1) return { error: vcpuError };
  const memSizeMib = update.mem_size_mib ?? current.mem_size_mib;
  const hugePagesSetting = update.huge_pages ?? current.huge_pages;
  if (memSizeMib === 0 || (hugePagesSetting === '2M' && memSizeMib % 2 !== 0)) {
    return { error: 'The memory size (MiB) is either 0, or not a multiple of the configured page size.' };
  }
  let cpuTemplate = current.cpu_template;
  if (update.cpu_template === 'None') cpuTemplate = undefined;
  else if (update.cpu_template !== undefined) cpuTemplate = update.cpu_template;
  const config: MachineState = {
    vcpu_count: vcpuCount,
    mem_size_mib: memSizeMib,
    smt,
    track_dirty_pages: update.track_dirty_pages ?? current.track_dirty_pages,
    huge_pages: hugePagesSetting,
  };
  if (cpuTemplate !== undefined) config.cpu_template = cpuTemplate;
  return { config };
}

/** Whether an address is in 169.254.0.0/16 (MMDS requires a link-local address). */
export function isLinkLocalIpv4(address: string): boolean {
  return address.startsWith('169.254.');
}

/** `MemoryHotplugConfig::validate`. */
export function checkMemoryHotplugConfig(config: {
  total_size_mib: number;
  block_size_mib: number;
  slot_size_mib: number;
}): string | undefined {
  const { total_size_mib: total, block_size_mib: block, slot_size_mib: slot } = config;
  if (block < 2) return 'Block size must not be lower than 2 MiB';
  if ((block & (block - 1)) !== 0) return 'Block size must be a power of 2';
  if (slot < 128) return 'Slot size must not be lower than 128 MiB';
  if (slot % block !== 0) return `Slot size must be a multiple of block size (${block} MiB)`;
  if (total < slot) return `Total size must not be lower than slot size (${slot} MiB)`;
  if (total % slot !== 0) return `Total size must be a multiple of slot size (${slot} MiB)`;
  return undefined;
}
