/**
 * Runtime validation of the VM model. Specs arrive as plain objects (often parsed JSON), so every type,
 * range and cross-field rule is checked here, before anything on the host changes. Each problem becomes a
 * `ValidationError` naming the field as a dotted path (`drives[1].driveId`) and the rule in words.
 * Nothing here touches the filesystem: whether a path exists is for the provider and Firecracker to say.
 */
import { ValidationError } from '../errors/validation-error.js';
import type { LoggerLevel } from '../wire.js';
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
  MmdsSpec,
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

/** `sun_path` holds 108 bytes including the terminating NUL. */
export const UNIX_SOCKET_PATH_MAX_BYTES = 107;
/** `IFNAMSIZ` is 16 including the terminating NUL. */
export const INTERFACE_NAME_MAX_BYTES = 15;
/** Firecracker's `MAX_SUPPORTED_VCPUS`. */
export const MAX_VCPU_COUNT = 32;
/** CIDs 0, 1 and 2 (the host) are reserved. */
export const GUEST_CID_MIN = 3;
/** `VMADDR_CID_ANY` (2^32−1) is reserved. */
export const GUEST_CID_MAX = 2 ** 32 - 2;

const UINT16_MAX = 2 ** 16 - 1;
const UINT32_MAX = 2 ** 32 - 1;
const INT32_MAX = 2 ** 31 - 1;

// ─── Primitive checks: each returns the broken rule in words, or undefined when the value is fine ───

type Check = (value: unknown) => string | undefined;

const VM_ID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;
const RESOURCE_ID_PATTERN = /^[A-Za-z0-9_]+$/;
const MAC_ADDRESS_PATTERN = /^[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}$/;
// The `format` of MmdsConfig.ipv4_address in Firecracker's swagger file, anchored.
const MMDS_IPV4_PATTERN =
  /^169\.254\.([1-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-4])\.([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])$/;
const CPU_NUMBER_PATTERN = /^(?:0x[0-9A-Fa-f]+|0b[01]+|[0-9]+)$/;
const KVM_CAPABILITY_PATTERN = /^!?[0-9]+$/;
// Linux `dev_valid_name` refuses '/', ':' and whitespace anywhere in an interface name.
const INTERFACE_NAME_FORBIDDEN = /[/:\s\0]/;

const checkString: Check = (value) => (typeof value === 'string' ? undefined : 'must be a string');

const checkNonEmptyString: Check = (value) =>
  typeof value !== 'string' ? 'must be a string' : value === '' ? 'must not be empty' : undefined;

const checkBoolean: Check = (value) => (typeof value === 'boolean' ? undefined : 'must be a boolean');

function checkInteger(min: number, max: number = Number.MAX_SAFE_INTEGER): Check {
  const rule =
    max === Number.MAX_SAFE_INTEGER
      ? `must be an integer ≥ ${min}`
      : `must be an integer from ${min} to ${max}`;
  return (value) =>
    typeof value === 'number' && Number.isSafeInteger(value) && value >= min && value <= max
      ? undefined
      : rule;
}

function checkOneOf(values: readonly string[]): Check {
  const rule = `must be one of ${values.map((value) => `'${value}'`).join(', ')}`;
  return (value) => (typeof value === 'string' && values.includes(value) ? undefined : rule);
}

const checkHostPath: Check = (value) => {
  if (typeof value !== 'string') return 'must be a string (a path)';
  if (value === '') return 'must be a non-empty path';
  if (value.includes('\0')) return 'must not contain a NUL byte';
  return undefined;
};

const checkUnixSocketPath: Check = (value) => {
  const pathRule = checkHostPath(value);
  if (pathRule !== undefined) return pathRule;
  const bytes = Buffer.byteLength(value as string);
  return bytes > UNIX_SOCKET_PATH_MAX_BYTES
    ? `must be at most ${UNIX_SOCKET_PATH_MAX_BYTES} bytes (the Unix socket path limit), not ${bytes}`
    : undefined;
};

const checkVmId: Check = (value) =>
  typeof value === 'string' && VM_ID_PATTERN.test(value)
    ? undefined
    : 'must be 1 to 64 ASCII letters, digits or hyphens ([A-Za-z0-9-]{1,64})';

const checkResourceId: Check = (value) =>
  typeof value === 'string' && RESOURCE_ID_PATTERN.test(value)
    ? undefined
    : 'must be one or more ASCII letters, digits or underscores ([A-Za-z0-9_]+); Firecracker rejects hyphens';

const checkInterfaceName: Check = (value) => {
  if (typeof value !== 'string') return 'must be a string (an interface name)';
  const bytes = Buffer.byteLength(value);
  if (bytes < 1 || bytes > INTERFACE_NAME_MAX_BYTES) {
    return `must be 1 to ${INTERFACE_NAME_MAX_BYTES} bytes long (IFNAMSIZ), not ${bytes}`;
  }
  if (INTERFACE_NAME_FORBIDDEN.test(value)) return "must not contain '/', ':', whitespace or NUL";
  if (value === '.' || value === '..') return "must not be '.' or '..'";
  return undefined;
};

const checkMacAddress: Check = (value) =>
  typeof value === 'string' && MAC_ADDRESS_PATTERN.test(value)
    ? undefined
    : 'must be a MAC address: six pairs of hex digits separated by colons (xx:xx:xx:xx:xx:xx)';

const checkGuestCid: Check = (value) =>
  typeof value === 'number' && Number.isInteger(value) && value >= GUEST_CID_MIN && value <= GUEST_CID_MAX
    ? undefined
    : `must be an integer from ${GUEST_CID_MIN} to ${GUEST_CID_MAX} (2^32−2); CIDs 0–2 and 2^32−1 are reserved`;

const checkMmdsIpv4Address: Check = (value) =>
  typeof value === 'string' && MMDS_IPV4_PATTERN.test(value)
    ? undefined
    : 'must be a link-local IPv4 address 169.254.x.y with x from 1 to 254 and y from 0 to 255';

function checkCpuNumber(bits: number): Check {
  const rule = `must be a ${bits}-bit number written in hex (0x…), binary (0b…) or decimal`;
  return (value) =>
    typeof value === 'string' && CPU_NUMBER_PATTERN.test(value) && BigInt(value) < 2n ** BigInt(bits)
      ? undefined
      : rule;
}

/** Firecracker's bitmap strings: optional `0b`, then `0` (clear), `1` (set) or `x` (keep) per bit, `_` ignored. */
function checkBitmap(bits: number): Check {
  const rule = `must be a bitmap: "0b" then 1 to ${bits} of '0', '1' or 'x' (underscores allowed)`;
  return (value) => {
    if (typeof value !== 'string') return rule;
    const digits = value.startsWith('0b') ? value.slice(2) : value;
    if (!/^[01x_]*$/.test(digits)) return rule;
    const count = digits.replaceAll('_', '').length;
    return count >= 1 && count <= bits ? undefined : rule;
  };
}

const checkKvmCapability: Check = (value) =>
  typeof value === 'string' &&
  KVM_CAPABILITY_PATTERN.test(value) &&
  Number(value.replace('!', '')) <= UINT32_MAX
    ? undefined
    : 'must be a KVM capability number as a string, prefixed with "!" to remove it (e.g. "121" or "!121")';

function assertValid<T>(value: unknown, field: string, check: Check): T {
  const rule = check(value);
  if (rule !== undefined) throw new ValidationError({ field, rule, value });
  return value as T;
}

// ─── Standalone validators other packages reuse: return the value, or throw a ValidationError ───

/** A process/jailer id (`--id`): `[A-Za-z0-9-]{1,64}`, ASCII only. */
export function validateVmId(id: unknown, field = 'vmId'): string {
  return assertValid(id, field, checkVmId);
}

/** A Firecracker API resource id (drive, interface, pmem): `[A-Za-z0-9_]+`, ASCII only, no hyphens. */
export function validateResourceId(id: unknown, field: string): string {
  return assertValid(id, field, checkResourceId);
}

/** A Unix socket path, absolute or relative: non-empty, no NUL, at most 107 bytes. */
export function validateUnixSocketPath(path: unknown, field: string): string {
  return assertValid(path, field, checkUnixSocketPath);
}

/** A file path handed to Firecracker: a non-empty string without NUL bytes. Existence is not checked. */
export function validateHostPath(path: unknown, field: string): string {
  return assertValid(path, field, checkHostPath);
}

/** A Linux network interface name (e.g. a TAP): 1..15 bytes, no '/', ':' or whitespace, not '.' or '..'. */
export function validateInterfaceName(name: unknown, field: string): string {
  return assertValid(name, field, checkInterfaceName);
}

/** A MAC address as Firecracker parses it: `xx:xx:xx:xx:xx:xx` in hex. */
export function validateMacAddress(mac: unknown, field: string): string {
  return assertValid(mac, field, checkMacAddress);
}

/** A guest vsock CID: an integer from 3 to 2^32−2. */
export function validateGuestCid(cid: unknown, field = 'guestCid'): number {
  return assertValid(cid, field, checkGuestCid);
}

// ─── Collecting issues while walking a plain object ───

type PlainObject = Record<string, unknown>;

function isPlainObject(value: unknown): value is PlainObject {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const prototype: unknown = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

function childField(parent: string, key: string): string {
  return parent === '' ? key : `${parent}.${key}`;
}

/** Drops the keys whose value is undefined, so a normalised copy never carries them. */
function compact<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as T;
}

class IssueCollector {
  readonly issues: ValidationError[] = [];

  fail(field: string, rule: string, value: unknown): undefined {
    this.issues.push(new ValidationError({ field, rule, value }));
    return undefined;
  }

  /** Checks that `value` is a plain object holding only `knownKeys`, and returns a reader over it. */
  object(value: unknown, field: string, knownKeys: readonly string[]): ObjectReader | undefined {
    if (!isPlainObject(value)) return this.fail(field === '' ? 'spec' : field, 'must be an object', value);
    for (const key of Object.keys(value)) {
      if (!knownKeys.includes(key)) this.fail(childField(field, key), 'is not a known field', value[key]);
    }
    return new ObjectReader(this, value, field);
  }

  /** Validates each element of an array with `validateItem`, naming them `field[i]`. */
  array<T>(
    value: unknown,
    field: string,
    validateItem: (item: unknown, itemField: string) => T | undefined,
  ): T[] | undefined {
    if (!Array.isArray(value)) return this.fail(field, 'must be an array', value);
    return value.map((item, index) => validateItem(item, `${field}[${index}]`)) as T[];
  }
}

interface ReadOptions {
  required?: boolean;
  /** The rule reported when a required field is missing; defaults to "is required". */
  requiredRule?: string;
}

class ObjectReader {
  constructor(
    private readonly collector: IssueCollector,
    readonly source: PlainObject,
    readonly field: string,
  ) {}

  fieldOf(key: string): string {
    return childField(this.field, key);
  }

  has(key: string): boolean {
    return this.source[key] !== undefined;
  }

  /** Reads `key` and checks it; a missing optional field reads as undefined. */
  value<T>(key: string, check: Check, options: ReadOptions = {}): T | undefined {
    const value = this.source[key];
    if (value === undefined) {
      if (options.required)
        this.collector.fail(this.fieldOf(key), options.requiredRule ?? 'is required', value);
      return undefined;
    }
    const rule = check(value);
    if (rule !== undefined) return this.collector.fail(this.fieldOf(key), rule, value);
    return value as T;
  }

  /** Reads a nested section with its own validator. */
  section<T>(
    key: string,
    validateSection: (collector: IssueCollector, value: unknown, field: string) => T | undefined,
    options: ReadOptions = {},
  ): T | undefined {
    const value = this.source[key];
    if (value === undefined) {
      if (options.required)
        this.collector.fail(this.fieldOf(key), options.requiredRule ?? 'is required', value);
      return undefined;
    }
    return validateSection(this.collector, value, this.fieldOf(key));
  }

  /** Reads an array and validates each element. */
  array<T>(
    key: string,
    validateItem: (item: unknown, itemField: string) => T | undefined,
    options: ReadOptions = {},
  ): T[] | undefined {
    const value = this.source[key];
    if (value === undefined) {
      if (options.required)
        this.collector.fail(this.fieldOf(key), options.requiredRule ?? 'is required', value);
      return undefined;
    }
    return this.collector.array(value, this.fieldOf(key), validateItem);
  }
}

/** Reports every later occurrence of a key already seen, naming where it was first used. */
function reportDuplicates(
  collector: IssueCollector,
  entries: ReadonlyArray<{ key: string | undefined; field: string; value: unknown }>,
  rule: (firstField: string) => string,
): void {
  const seen = new Map<string, string>();
  for (const entry of entries) {
    if (entry.key === undefined) continue;
    const firstField = seen.get(entry.key);
    if (firstField === undefined) seen.set(entry.key, entry.field);
    else collector.fail(entry.field, rule(firstField), entry.value);
  }
}

// ─── Sections of the spec ───

function tokenBucket(collector: IssueCollector, value: unknown, field: string): TokenBucketSpec | undefined {
  const reader = collector.object(value, field, ['size', 'refillTimeMs', 'oneTimeBurst']);
  if (!reader) return undefined;
  const nonNegative = checkInteger(0);
  return compact({
    size: reader.value<number>('size', nonNegative, { required: true }),
    refillTimeMs: reader.value<number>('refillTimeMs', nonNegative, { required: true }),
    oneTimeBurst: reader.value<number>('oneTimeBurst', nonNegative),
  }) as TokenBucketSpec;
}

function rateLimiter(collector: IssueCollector, value: unknown, field: string): RateLimiterSpec | undefined {
  const reader = collector.object(value, field, ['bandwidth', 'ops']);
  if (!reader) return undefined;
  return compact({
    bandwidth: reader.section('bandwidth', tokenBucket),
    ops: reader.section('ops', tokenBucket),
  });
}

function bootSource(collector: IssueCollector, value: unknown, field: string): BootSourceSpec | undefined {
  const reader = collector.object(value, field, ['kernelImagePath', 'bootArgs', 'initrdPath']);
  if (!reader) return undefined;
  return compact({
    kernelImagePath: reader.value<string>('kernelImagePath', checkHostPath, { required: true }),
    bootArgs: reader.value<string>('bootArgs', checkString),
    initrdPath: reader.value<string>('initrdPath', checkHostPath),
  }) as BootSourceSpec;
}

const HUGE_PAGES = ['None', '2M'] as const;
const CPU_TEMPLATES = ['C3', 'T2', 'T2S', 'T2CL', 'T2A', 'V1N1', 'None'] as const;

function machine(collector: IssueCollector, value: unknown, field: string): MachineSpec | undefined {
  const reader = collector.object(value, field, [
    'vcpuCount',
    'memSizeMib',
    'smt',
    'trackDirtyPages',
    'hugePages',
    'cpuTemplate',
  ]);
  if (!reader) return undefined;
  const vcpuCount = reader.value<number>('vcpuCount', checkInteger(1, MAX_VCPU_COUNT), { required: true });
  const memSizeMib = reader.value<number>('memSizeMib', checkInteger(1), { required: true });
  const smt = reader.value<boolean>('smt', checkBoolean);
  const hugePages = reader.value<MachineSpec['hugePages']>('hugePages', checkOneOf(HUGE_PAGES));
  if (smt === true && vcpuCount !== undefined && vcpuCount !== 1 && vcpuCount % 2 !== 0) {
    collector.fail(reader.fieldOf('vcpuCount'), 'must be 1 or an even number when smt is true', vcpuCount);
  }
  if (hugePages === '2M' && memSizeMib !== undefined && memSizeMib % 2 !== 0) {
    collector.fail(
      reader.fieldOf('memSizeMib'),
      "must be even (a multiple of the 2 MiB page) when hugePages is '2M'",
      memSizeMib,
    );
  }
  return compact({
    vcpuCount,
    memSizeMib,
    smt,
    trackDirtyPages: reader.value<boolean>('trackDirtyPages', checkBoolean),
    hugePages,
    cpuTemplate: reader.value<MachineSpec['cpuTemplate']>('cpuTemplate', checkOneOf(CPU_TEMPLATES)),
  }) as MachineSpec;
}

function cpuConfig(collector: IssueCollector, value: unknown, field: string): CpuConfigSpec | undefined {
  const reader = collector.object(value, field, [
    'kvmCapabilities',
    'cpuidModifiers',
    'msrModifiers',
    'regModifiers',
    'vcpuFeatures',
  ]);
  if (!reader) return undefined;
  const stringItem = (check: Check) => (item: unknown, itemField: string) => {
    const rule = check(item);
    return rule === undefined ? (item as string) : collector.fail(itemField, rule, item);
  };
  return compact({
    kvmCapabilities: reader.array('kvmCapabilities', stringItem(checkKvmCapability)),
    cpuidModifiers: reader.array('cpuidModifiers', (item, itemField) => {
      const leaf = collector.object(item, itemField, ['leaf', 'subleaf', 'flags', 'modifiers']);
      if (!leaf) return undefined;
      return compact({
        leaf: leaf.value<string>('leaf', checkCpuNumber(32), { required: true }),
        subleaf: leaf.value<string>('subleaf', checkCpuNumber(32), { required: true }),
        flags: leaf.value<number>('flags', checkInteger(0, UINT32_MAX), { required: true }),
        modifiers: leaf.array(
          'modifiers',
          (modifierItem, modifierField) => {
            const modifier = collector.object(modifierItem, modifierField, ['register', 'bitmap']);
            if (!modifier) return undefined;
            return compact({
              register: modifier.value<'eax'>('register', checkOneOf(['eax', 'ebx', 'ecx', 'edx']), {
                required: true,
              }),
              bitmap: modifier.value<string>('bitmap', checkBitmap(32), { required: true }),
            });
          },
          { required: true },
        ),
      });
    }),
    msrModifiers: reader.array('msrModifiers', (item, itemField) =>
      addressBitmap(collector, item, itemField, 32, 64),
    ),
    regModifiers: reader.array('regModifiers', (item, itemField) =>
      addressBitmap(collector, item, itemField, 64, 128),
    ),
    vcpuFeatures: reader.array('vcpuFeatures', (item, itemField) => {
      const feature = collector.object(item, itemField, ['index', 'bitmap']);
      if (!feature) return undefined;
      return compact({
        index: feature.value<number>('index', checkInteger(0, INT32_MAX), { required: true }),
        bitmap: feature.value<string>('bitmap', checkBitmap(32), { required: true }),
      });
    }),
  }) as CpuConfigSpec;
}

function addressBitmap(
  collector: IssueCollector,
  value: unknown,
  field: string,
  addressBits: number,
  bitmapBits: number,
): { addr: string; bitmap: string } | undefined {
  const reader = collector.object(value, field, ['addr', 'bitmap']);
  if (!reader) return undefined;
  return compact({
    addr: reader.value<string>('addr', checkCpuNumber(addressBits), { required: true }),
    bitmap: reader.value<string>('bitmap', checkBitmap(bitmapBits), { required: true }),
  }) as { addr: string; bitmap: string };
}

const VIRTIO_BLOCK_ONLY_KEYS = ['pathOnHost', 'isReadOnly', 'ioEngine', 'rateLimiter'] as const;

function drive(collector: IssueCollector, value: unknown, field: string): DriveSpec | undefined {
  const reader = collector.object(value, field, [
    'driveId',
    'isRootDevice',
    'partuuid',
    'cacheType',
    'socket',
    ...VIRTIO_BLOCK_ONLY_KEYS,
  ]);
  if (!reader) return undefined;
  const common = {
    driveId: reader.value<string>('driveId', checkResourceId, { required: true }),
    isRootDevice: reader.value<boolean>('isRootDevice', checkBoolean, { required: true }),
    partuuid: reader.value<string>('partuuid', checkNonEmptyString),
    cacheType: reader.value<DriveSpec['cacheType']>('cacheType', checkOneOf(['Unsafe', 'Writeback'])),
  };
  // A drive is vhost-user-block when it names a socket and no path; anything else is virtio-block.
  if (reader.has('socket') && !reader.has('pathOnHost')) {
    for (const key of VIRTIO_BLOCK_ONLY_KEYS) {
      if (reader.has(key)) {
        collector.fail(
          reader.fieldOf(key),
          'must not be set on a vhost-user-block drive (one with socket); it belongs to virtio-block drives',
          reader.source[key],
        );
      }
    }
    return compact({ ...common, socket: reader.value<string>('socket', checkUnixSocketPath) }) as DriveSpec;
  }
  if (reader.has('socket')) {
    collector.fail(
      reader.fieldOf('socket'),
      'must not be set together with pathOnHost: a drive is either virtio-block (pathOnHost) or vhost-user-block (socket)',
      reader.source.socket,
    );
  }
  return compact({
    ...common,
    pathOnHost: reader.value<string>('pathOnHost', checkHostPath, {
      required: true,
      requiredRule: 'is required for a virtio-block drive (or give socket for a vhost-user-block drive)',
    }),
    isReadOnly: reader.value<boolean>('isReadOnly', checkBoolean),
    ioEngine: reader.value<'Sync'>('ioEngine', checkOneOf(['Sync', 'Async'])),
    rateLimiter: reader.section('rateLimiter', rateLimiter),
  }) as DriveSpec;
}

function networkInterface(
  collector: IssueCollector,
  value: unknown,
  field: string,
): NetworkInterfaceSpec | undefined {
  const reader = collector.object(value, field, [
    'ifaceId',
    'hostDevName',
    'guestMac',
    'mtu',
    'rxRateLimiter',
    'txRateLimiter',
  ]);
  if (!reader) return undefined;
  return compact({
    ifaceId: reader.value<string>('ifaceId', checkResourceId, { required: true }),
    hostDevName: reader.value<string>('hostDevName', checkInterfaceName, { required: true }),
    guestMac: reader.value<string>('guestMac', checkMacAddress),
    mtu: reader.value<number>('mtu', checkInteger(68, 65535)),
    rxRateLimiter: reader.section('rxRateLimiter', rateLimiter),
    txRateLimiter: reader.section('txRateLimiter', rateLimiter),
  }) as NetworkInterfaceSpec;
}

function vsock(collector: IssueCollector, value: unknown, field: string): VsockSpec | undefined {
  const reader = collector.object(value, field, ['guestCid', 'udsPath']);
  if (!reader) return undefined;
  return compact({
    guestCid: reader.value<number>('guestCid', checkGuestCid, { required: true }),
    udsPath: reader.value<string>('udsPath', checkUnixSocketPath, { required: true }),
  }) as VsockSpec;
}

function balloon(
  collector: IssueCollector,
  value: unknown,
  field: string,
  memSizeMib: number | undefined,
): BalloonSpec | undefined {
  const reader = collector.object(value, field, [
    'amountMib',
    'deflateOnOom',
    'statsPollingIntervalS',
    'freePageHinting',
    'freePageReporting',
  ]);
  if (!reader) return undefined;
  const amountMib = reader.value<number>('amountMib', checkInteger(0, UINT32_MAX), { required: true });
  if (amountMib !== undefined && memSizeMib !== undefined && amountMib > memSizeMib) {
    collector.fail(
      reader.fieldOf('amountMib'),
      `must be at most machine.memSizeMib (${memSizeMib}): the balloon cannot exceed guest memory`,
      amountMib,
    );
  }
  return compact({
    amountMib,
    deflateOnOom: reader.value<boolean>('deflateOnOom', checkBoolean, { required: true }),
    statsPollingIntervalS: reader.value<number>('statsPollingIntervalS', checkInteger(0, UINT16_MAX)),
    freePageHinting: reader.value<boolean>('freePageHinting', checkBoolean),
    freePageReporting: reader.value<boolean>('freePageReporting', checkBoolean),
  }) as BalloonSpec;
}

function entropy(collector: IssueCollector, value: unknown, field: string): EntropySpec | undefined {
  const reader = collector.object(value, field, ['rateLimiter']);
  if (!reader) return undefined;
  return compact({ rateLimiter: reader.section('rateLimiter', rateLimiter) });
}

function pmem(collector: IssueCollector, value: unknown, field: string): PmemSpec | undefined {
  const reader = collector.object(value, field, [
    'id',
    'pathOnHost',
    'rootDevice',
    'readOnly',
    'rateLimiter',
  ]);
  if (!reader) return undefined;
  return compact({
    id: reader.value<string>('id', checkResourceId, { required: true }),
    pathOnHost: reader.value<string>('pathOnHost', checkHostPath, { required: true }),
    rootDevice: reader.value<boolean>('rootDevice', checkBoolean),
    readOnly: reader.value<boolean>('readOnly', checkBoolean),
    rateLimiter: reader.section('rateLimiter', rateLimiter),
  }) as PmemSpec;
}

function mmds(
  collector: IssueCollector,
  value: unknown,
  field: string,
  ifaceIds: ReadonlySet<string>,
): MmdsSpec | undefined {
  const reader = collector.object(value, field, ['config', 'data']);
  if (!reader) return undefined;
  const config = reader.section(
    'config',
    (_collector, configValue, configField) => {
      const configReader = collector.object(configValue, configField, [
        'networkInterfaces',
        'version',
        'ipv4Address',
        'imdsCompat',
      ]);
      if (!configReader) return undefined;
      const networkInterfaces = configReader.array(
        'networkInterfaces',
        (item, itemField) => {
          if (typeof item !== 'string')
            return collector.fail(itemField, 'must be a string (an ifaceId)', item);
          if (!ifaceIds.has(item)) {
            const known = ifaceIds.size === 0 ? 'none are configured' : `known: ${[...ifaceIds].join(', ')}`;
            return collector.fail(itemField, `must name an ifaceId of networkInterfaces (${known})`, item);
          }
          return item;
        },
        { required: true },
      );
      if (networkInterfaces !== undefined && networkInterfaces.length === 0) {
        collector.fail(
          configReader.fieldOf('networkInterfaces'),
          'must name at least one network interface',
          networkInterfaces,
        );
      }
      return compact({
        networkInterfaces,
        version: configReader.value<'V2'>('version', checkOneOf(['V1', 'V2'])),
        ipv4Address: configReader.value<string>('ipv4Address', checkMmdsIpv4Address),
        imdsCompat: configReader.value<boolean>('imdsCompat', checkBoolean),
      });
    },
    { required: true },
  );
  const data = reader.section('data', mmdsData);
  return compact({ config, data }) as MmdsSpec;
}

/** The MMDS store takes any JSON object; reject what JSON cannot carry instead of letting it vanish. */
function mmdsData(
  collector: IssueCollector,
  value: unknown,
  field: string,
): Record<string, unknown> | undefined {
  if (!isPlainObject(value)) return collector.fail(field, 'must be a JSON object', value);
  const ancestors = new Set<object>();
  const copy = (item: unknown, itemField: string): unknown => {
    if (item === null || typeof item === 'string' || typeof item === 'boolean') return item;
    if (typeof item === 'number') {
      return Number.isFinite(item) ? item : collector.fail(itemField, 'must be a finite number (JSON)', item);
    }
    if (Array.isArray(item) || isPlainObject(item)) {
      if (ancestors.has(item))
        return collector.fail(itemField, 'must not be a circular reference', '[circular]');
      ancestors.add(item);
      const result = Array.isArray(item)
        ? item.map((element, index) => copy(element, `${itemField}[${index}]`))
        : compact(
            Object.fromEntries(
              Object.entries(item).map(([key, entry]) => [
                key,
                entry === undefined ? undefined : copy(entry, childField(itemField, key)),
              ]),
            ),
          );
      ancestors.delete(item);
      return result;
    }
    return collector.fail(
      itemField,
      'must be JSON: a string, finite number, boolean, null, array or plain object',
      item,
    );
  };
  return copy(value, field) as Record<string, unknown>;
}

const LOGGER_LEVELS: Readonly<Record<string, LoggerLevel>> = {
  error: 'Error',
  warning: 'Warning',
  warn: 'Warning',
  info: 'Info',
  debug: 'Debug',
  trace: 'Trace',
  off: 'Off',
};

function logger(collector: IssueCollector, value: unknown, field: string): LoggerSpec | undefined {
  const reader = collector.object(value, field, ['logPath', 'level', 'showLevel', 'showLogOrigin', 'module']);
  if (!reader) return undefined;
  // Firecracker reads levels case-insensitively and accepts `Warn`; normalise to the spec's names.
  const level = reader.value<LoggerLevel>('level', (item) =>
    typeof item === 'string' && Object.hasOwn(LOGGER_LEVELS, item.toLowerCase())
      ? undefined
      : "must be one of 'Error', 'Warning', 'Info', 'Debug', 'Trace', 'Off' (case-insensitive)",
  );
  return compact({
    logPath: reader.value<string>('logPath', checkHostPath),
    level: level === undefined ? undefined : LOGGER_LEVELS[level.toLowerCase()],
    showLevel: reader.value<boolean>('showLevel', checkBoolean),
    showLogOrigin: reader.value<boolean>('showLogOrigin', checkBoolean),
    module: reader.value<string>('module', checkNonEmptyString),
  });
}

function metrics(collector: IssueCollector, value: unknown, field: string): MetricsSpec | undefined {
  const reader = collector.object(value, field, ['metricsPath']);
  if (!reader) return undefined;
  return compact({
    metricsPath: reader.value<string>('metricsPath', checkHostPath, { required: true }),
  }) as MetricsSpec;
}

function serial(collector: IssueCollector, value: unknown, field: string): SerialSpec | undefined {
  const reader = collector.object(value, field, ['serialOutPath', 'rateLimiter']);
  if (!reader) return undefined;
  return compact({
    serialOutPath: reader.value<string>('serialOutPath', checkHostPath),
    rateLimiter: reader.section('rateLimiter', tokenBucket),
  });
}

const DEFAULT_HOTPLUG_BLOCK_SIZE_MIB = 2;
const DEFAULT_HOTPLUG_SLOT_SIZE_MIB = 128;

function memoryHotplug(
  collector: IssueCollector,
  value: unknown,
  field: string,
): MemoryHotplugSpec | undefined {
  const reader = collector.object(value, field, ['totalSizeMib', 'slotSizeMib', 'blockSizeMib']);
  if (!reader) return undefined;
  const blockSizeMib = reader.value<number>('blockSizeMib', (item) =>
    typeof item === 'number' && Number.isSafeInteger(item) && item >= 2 && Number.isInteger(Math.log2(item))
      ? undefined
      : 'must be a power of two ≥ 2',
  );
  const effectiveBlock = blockSizeMib ?? DEFAULT_HOTPLUG_BLOCK_SIZE_MIB;
  const slotSizeMib = reader.value<number>('slotSizeMib', (item) =>
    typeof item === 'number' && Number.isSafeInteger(item) && item >= 128 && item % effectiveBlock === 0
      ? undefined
      : `must be an integer ≥ 128 and a multiple of blockSizeMib (${effectiveBlock})`,
  );
  const effectiveSlot = slotSizeMib ?? DEFAULT_HOTPLUG_SLOT_SIZE_MIB;
  const totalSizeMib = reader.value<number>(
    'totalSizeMib',
    (item) =>
      typeof item === 'number' &&
      Number.isSafeInteger(item) &&
      item >= effectiveSlot &&
      item % effectiveSlot === 0
        ? undefined
        : `must be a positive multiple of slotSizeMib (${effectiveSlot})`,
    { required: true },
  );
  return compact({ totalSizeMib, slotSizeMib, blockSizeMib }) as MemoryHotplugSpec;
}

const VM_SPEC_KEYS = [
  'bootSource',
  'machine',
  'cpuConfig',
  'drives',
  'networkInterfaces',
  'vsock',
  'balloon',
  'entropy',
  'pmem',
  'mmds',
  'logger',
  'metrics',
  'serial',
  'memoryHotplug',
] as const;

function vmSpec(collector: IssueCollector, value: unknown): VmSpec | undefined {
  const reader = collector.object(value, '', VM_SPEC_KEYS);
  if (!reader) return undefined;
  const bootSourceSpec = reader.section('bootSource', bootSource, { required: true });
  const machineSpec = reader.section('machine', machine, { required: true });
  const cpuConfigSpec = reader.section('cpuConfig', cpuConfig);

  const drives = reader.array('drives', (item, field) => drive(collector, item, field));
  reportDuplicates(
    collector,
    (drives ?? []).map((item, index) => ({
      key: item?.driveId,
      field: `drives[${index}].driveId`,
      value: item?.driveId,
    })),
    (first) => `must be unique among drives (${first} has the same id)`,
  );

  const networkInterfaces = reader.array('networkInterfaces', (item, field) =>
    networkInterface(collector, item, field),
  );
  const interfaces = networkInterfaces ?? [];
  reportDuplicates(
    collector,
    interfaces.map((item, index) => ({
      key: item?.ifaceId,
      field: `networkInterfaces[${index}].ifaceId`,
      value: item?.ifaceId,
    })),
    (first) => `must be unique among network interfaces (${first} has the same id)`,
  );
  reportDuplicates(
    collector,
    interfaces.map((item, index) => ({
      key: item?.hostDevName,
      field: `networkInterfaces[${index}].hostDevName`,
      value: item?.hostDevName,
    })),
    (first) => `must be unique among network interfaces: a TAP can be opened once (${first} uses it)`,
  );
  reportDuplicates(
    collector,
    interfaces.map((item, index) => ({
      key: item?.guestMac?.toLowerCase(),
      field: `networkInterfaces[${index}].guestMac`,
      value: item?.guestMac,
    })),
    (first) => `must be unique among network interfaces (${first} has the same MAC)`,
  );

  const vsockSpec = reader.section('vsock', vsock);
  const balloonSpec = reader.section('balloon', (itemCollector, item, field) =>
    balloon(itemCollector, item, field, machineSpec?.memSizeMib),
  );
  const entropySpec = reader.section('entropy', entropy);

  const pmemSpecs = reader.array('pmem', (item, field) => pmem(collector, item, field));
  reportDuplicates(
    collector,
    (pmemSpecs ?? []).map((item, index) => ({ key: item?.id, field: `pmem[${index}].id`, value: item?.id })),
    (first) => `must be unique among pmem devices (${first} has the same id)`,
  );
  // One root device in total: Firecracker refuses a second root drive, and a root drive plus a root pmem.
  const rootDevices = [
    ...(drives ?? []).flatMap((item, index) =>
      item?.isRootDevice === true ? [`drives[${index}].isRootDevice`] : [],
    ),
    ...(pmemSpecs ?? []).flatMap((item, index) =>
      item?.rootDevice === true ? [`pmem[${index}].rootDevice`] : [],
    ),
  ];
  for (const extra of rootDevices.slice(1)) {
    collector.fail(
      extra,
      `must not be true: only one root device is allowed across drives and pmem (${rootDevices[0]} is one)`,
      true,
    );
  }

  // Names taken from the raw input, so an iface with a malformed id is reported once, not again by MMDS.
  const rawInterfaces = reader.source.networkInterfaces;
  const ifaceIds = new Set(
    (Array.isArray(rawInterfaces) ? rawInterfaces : []).flatMap((item: unknown) =>
      isPlainObject(item) && typeof item.ifaceId === 'string' ? [item.ifaceId] : [],
    ),
  );
  const mmdsSpec = reader.section('mmds', (itemCollector, item, field) =>
    mmds(itemCollector, item, field, ifaceIds),
  );

  return compact({
    bootSource: bootSourceSpec,
    machine: machineSpec,
    cpuConfig: cpuConfigSpec,
    drives,
    networkInterfaces,
    vsock: vsockSpec,
    balloon: balloonSpec,
    entropy: entropySpec,
    pmem: pmemSpecs,
    mmds: mmdsSpec,
    logger: reader.section('logger', logger),
    metrics: reader.section('metrics', metrics),
    serial: reader.section('serial', serial),
    memoryHotplug: reader.section('memoryHotplug', memoryHotplug),
  }) as VmSpec;
}

function firstIssueOr<T>(collector: IssueCollector, result: T | undefined): T {
  const [first] = collector.issues;
  if (first !== undefined) throw first;
  return result as T;
}

// ─── Whole-spec validators ───

/** Every rule `spec` breaks, in document order; empty when it is valid. */
export function collectVmSpecIssues(spec: unknown): ValidationError[] {
  const collector = new IssueCollector();
  vmSpec(collector, spec);
  return collector.issues;
}

/**
 * Checks `spec` against every rule and returns a normalised deep copy (undefined keys dropped, logger
 * level in canonical case). Throws the first `ValidationError` in document order.
 */
export function validateVmSpec(spec: unknown): VmSpec {
  const collector = new IssueCollector();
  return firstIssueOr(collector, vmSpec(collector, spec));
}

/** Validates one drive, e.g. for hotplug after boot. */
export function validateDriveSpec(value: unknown, field = 'drive'): DriveSpec {
  const collector = new IssueCollector();
  return firstIssueOr(collector, drive(collector, value, field));
}

/** Validates one network interface, e.g. for hotplug after boot. */
export function validateNetworkInterfaceSpec(
  value: unknown,
  field = 'networkInterface',
): NetworkInterfaceSpec {
  const collector = new IssueCollector();
  return firstIssueOr(collector, networkInterface(collector, value, field));
}

/** Validates one pmem device, e.g. for hotplug after boot. */
export function validatePmemSpec(value: unknown, field = 'pmem'): PmemSpec {
  const collector = new IssueCollector();
  return firstIssueOr(collector, pmem(collector, value, field));
}

/** Validates a rate limiter, e.g. for a `PATCH` of a drive or interface after boot. */
export function validateRateLimiterSpec(value: unknown, field = 'rateLimiter'): RateLimiterSpec {
  const collector = new IssueCollector();
  return firstIssueOr(collector, rateLimiter(collector, value, field));
}

export function validateTokenBucketSpec(value: unknown, field = 'tokenBucket'): TokenBucketSpec {
  const collector = new IssueCollector();
  return firstIssueOr(collector, tokenBucket(collector, value, field));
}

export function validateSnapshotCreateSpec(spec: unknown): SnapshotCreateSpec {
  const collector = new IssueCollector();
  const reader = collector.object(spec, '', ['snapshotPath', 'memFilePath', 'snapshotType']);
  const result =
    reader &&
    (compact({
      snapshotPath: reader.value<string>('snapshotPath', checkHostPath, { required: true }),
      memFilePath: reader.value<string>('memFilePath', checkHostPath, { required: true }),
      snapshotType: reader.value<'Full'>('snapshotType', checkOneOf(['Full', 'Diff'])),
    }) as SnapshotCreateSpec);
  return firstIssueOr(collector, result);
}

export function validateSnapshotLoadSpec(spec: unknown): SnapshotLoadSpec {
  const collector = new IssueCollector();
  const reader = collector.object(spec, '', [
    'snapshotPath',
    'memBackend',
    'memFilePath',
    'trackDirtyPages',
    'resumeVm',
    'networkOverrides',
    'vsockOverride',
    'clockRealtime',
  ]);
  if (!reader) return firstIssueOr<SnapshotLoadSpec>(collector, undefined);
  const snapshotPath = reader.value<string>('snapshotPath', checkHostPath, { required: true });
  // Exactly one memory source, as Firecracker demands of mem_backend and mem_file_path.
  if (reader.has('memBackend') && reader.has('memFilePath')) {
    collector.fail(
      reader.fieldOf('memFilePath'),
      'must not be set together with memBackend: give exactly one memory source',
      reader.source.memFilePath,
    );
  }
  const memBackend = reader.section(
    'memBackend',
    (_collector, value, field) => {
      const backend = collector.object(value, field, ['backendType', 'backendPath']);
      if (!backend) return undefined;
      const backendType = backend.value<'File' | 'Uffd'>('backendType', checkOneOf(['File', 'Uffd']), {
        required: true,
      });
      // A UFFD backend path is the handler's Unix socket, so the sun_path limit applies.
      const backendPath = backend.value<string>(
        'backendPath',
        backendType === 'Uffd' ? checkUnixSocketPath : checkHostPath,
        { required: true },
      );
      return compact({ backendType, backendPath });
    },
    {
      required: !reader.has('memFilePath'),
      requiredRule: 'is required (or memFilePath): the snapshot needs a memory source',
    },
  );
  const memFilePath = reader.value<string>('memFilePath', checkHostPath);
  const trackDirtyPages = reader.value<boolean>('trackDirtyPages', checkBoolean);
  const resumeVm = reader.value<boolean>('resumeVm', checkBoolean);
  const networkOverrides = reader.array('networkOverrides', (item, field) => {
    const override = collector.object(item, field, ['ifaceId', 'hostDevName']);
    if (!override) return undefined;
    return compact({
      ifaceId: override.value<string>('ifaceId', checkResourceId, { required: true }),
      hostDevName: override.value<string>('hostDevName', checkInterfaceName, { required: true }),
    });
  });
  reportDuplicates(
    collector,
    (networkOverrides ?? []).map((item, index) => ({
      key: item?.ifaceId,
      field: `networkOverrides[${index}].ifaceId`,
      value: item?.ifaceId,
    })),
    (first) => `must be unique among network overrides (${first} overrides the same interface)`,
  );
  const vsockOverride = reader.section('vsockOverride', (_collector, value, field) => {
    const override = collector.object(value, field, ['udsPath']);
    if (!override) return undefined;
    return compact({ udsPath: override.value<string>('udsPath', checkUnixSocketPath, { required: true }) });
  });
  return firstIssueOr(
    collector,
    compact({
      snapshotPath,
      memBackend,
      memFilePath,
      trackDirtyPages,
      resumeVm,
      networkOverrides,
      vsockOverride,
      clockRealtime: reader.value<boolean>('clockRealtime', checkBoolean),
    }) as SnapshotLoadSpec,
  );
}
