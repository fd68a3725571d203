import { describe, expect, it } from 'vitest';
import { MicrovmError, ValidationError } from '../errors/index.js';
import { exampleMaximalVmSpec, exampleMinimalVmSpec } from './examples.js';
import {
  collectVmSpecIssues,
  validateDriveSpec,
  validateGuestCid,
  validateHostPath,
  validateInterfaceName,
  validateMacAddress,
  validateNetworkInterfaceSpec,
  validatePmemSpec,
  validateRateLimiterSpec,
  validateResourceId,
  validateSnapshotCreateSpec,
  validateSnapshotLoadSpec,
  validateTokenBucketSpec,
  validateUnixSocketPath,
  validateVmId,
  validateVmSpec,
} from './validate.js';

/** Removes the key instead of setting it. */
const REMOVE = Symbol('remove');

/** Sets (or removes) the value at a dotted path such as `drives[1].driveId` inside `target`. */
function setAt(target: unknown, path: string, value: unknown): void {
  const keys = path
    .replace(/\[(\d+)\]/g, '.$1')
    .split('.')
    .filter((key) => key !== '');
  let node = target as Record<string, unknown>;
  for (const key of keys.slice(0, -1)) {
    if (node[key] === undefined) throw new Error(`test setup: nothing at ${key} of ${path}`);
    node = node[key] as Record<string, unknown>;
  }
  const last = keys.at(-1)!;
  if (value === REMOVE) delete node[last];
  else node[last] = value;
}

function thrownBy(action: () => unknown): ValidationError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(ValidationError);
    expect(MicrovmError.isInstance(error)).toBe(true);
    return error as ValidationError;
  }
  throw new Error('expected a ValidationError, but nothing was thrown');
}

const socketPathOf = (bytes: number) => `/${'s'.repeat(bytes - 1)}`;

// Each row changes one thing in the maximal spec: [path to set, value, expected field, rule pattern].
// The maximal spec has smt on, hugePages '2M', 1024 MiB, drives rootfs (virtio, root) and scratch
// (vhost-user), interface eth0/tap0 named by MMDS, pmem `data`.
const badSpecRows: Array<[path: string, value: unknown, field: string, rule: RegExp]> = [
  // ids
  ['drives[0].driveId', 'root-fs', 'drives[0].driveId', /\[A-Za-z0-9_\]\+.*hyphens/],
  ['drives[0].driveId', '', 'drives[0].driveId', /\[A-Za-z0-9_\]\+/],
  ['drives[0].driveId', 'wurzelü', 'drives[0].driveId', /ASCII/],
  [
    'networkInterfaces[1]',
    { ifaceId: 'eth-1', hostDevName: 'tap1' },
    'networkInterfaces[1].ifaceId',
    /hyphens/,
  ],
  ['pmem[0].id', 'data-1', 'pmem[0].id', /\[A-Za-z0-9_\]\+/],
  // sizes
  ['machine.vcpuCount', 0, 'machine.vcpuCount', /integer from 1 to 32/],
  ['machine.vcpuCount', 33, 'machine.vcpuCount', /integer from 1 to 32/],
  ['machine.vcpuCount', 1.5, 'machine.vcpuCount', /integer/],
  ['machine.vcpuCount', 3, 'machine.vcpuCount', /1 or an even number when smt/],
  ['machine.vcpuCount', '2', 'machine.vcpuCount', /integer/],
  ['machine.memSizeMib', 0, 'machine.memSizeMib', /integer ≥ 1/],
  ['machine.memSizeMib', -1, 'machine.memSizeMib', /integer ≥ 1/],
  ['machine.memSizeMib', 1023, 'machine.memSizeMib', /even.*2M/],
  ['machine.memSizeMib', Number.NaN, 'machine.memSizeMib', /integer/],
  ['machine.hugePages', '1G', 'machine.hugePages', /one of 'None', '2M'/],
  ['machine.cpuTemplate', 'M5', 'machine.cpuTemplate', /one of 'C3'/],
  ['machine.smt', 'yes', 'machine.smt', /boolean/],
  ['balloon.amountMib', 1025, 'balloon.amountMib', /at most machine\.memSizeMib \(1024\)/],
  ['balloon.statsPollingIntervalS', 65536, 'balloon.statsPollingIntervalS', /0 to 65535/],
  ['networkInterfaces[0].mtu', 67, 'networkInterfaces[0].mtu', /68 to 65535/],
  ['networkInterfaces[0].mtu', 65536, 'networkInterfaces[0].mtu', /68 to 65535/],
  ['drives[0].rateLimiter.bandwidth.size', -1, 'drives[0].rateLimiter.bandwidth.size', /integer ≥ 0/],
  ['serial.rateLimiter.refillTimeMs', 0.5, 'serial.rateLimiter.refillTimeMs', /integer ≥ 0/],
  [
    'entropy.rateLimiter.bandwidth.refillTimeMs',
    REMOVE,
    'entropy.rateLimiter.bandwidth.refillTimeMs',
    /required/,
  ],
  ['memoryHotplug.blockSizeMib', 3, 'memoryHotplug.blockSizeMib', /power of two/],
  ['memoryHotplug.blockSizeMib', 1, 'memoryHotplug.blockSizeMib', /power of two ≥ 2/],
  ['memoryHotplug.slotSizeMib', 64, 'memoryHotplug.slotSizeMib', /≥ 128/],
  ['memoryHotplug.slotSizeMib', 130, 'memoryHotplug.slotSizeMib', /multiple of blockSizeMib \(4\)/],
  ['memoryHotplug.totalSizeMib', 2000, 'memoryHotplug.totalSizeMib', /multiple of slotSizeMib \(256\)/],
  ['memoryHotplug.totalSizeMib', 0, 'memoryHotplug.totalSizeMib', /positive multiple/],
  // paths
  ['bootSource.kernelImagePath', '', 'bootSource.kernelImagePath', /non-empty path/],
  ['bootSource.kernelImagePath', REMOVE, 'bootSource.kernelImagePath', /required/],
  ['bootSource.initrdPath', 'a\0b', 'bootSource.initrdPath', /NUL/],
  ['drives[0].pathOnHost', '', 'drives[0].pathOnHost', /non-empty path/],
  ['drives[0].pathOnHost', REMOVE, 'drives[0].pathOnHost', /required for a virtio-block drive/],
  ['pmem[0].pathOnHost', 42, 'pmem[0].pathOnHost', /string/],
  ['metrics.metricsPath', '', 'metrics.metricsPath', /non-empty path/],
  ['vsock.udsPath', socketPathOf(108), 'vsock.udsPath', /at most 107 bytes.*not 108/],
  ['vsock.udsPath', `/${'ü'.repeat(54)}`, 'vsock.udsPath', /at most 107 bytes/],
  ['drives[1].socket', socketPathOf(108), 'drives[1].socket', /107 bytes/],
  ['logger.logPath', '', 'logger.logPath', /non-empty path/],
  // vsock
  ['vsock.guestCid', 2, 'vsock.guestCid', /from 3 to 4294967294/],
  ['vsock.guestCid', 2 ** 32 - 1, 'vsock.guestCid', /from 3 to 4294967294/],
  ['vsock.guestCid', 3.5, 'vsock.guestCid', /integer/],
  // network
  [
    'networkInterfaces[0].hostDevName',
    'tap-name-too-long',
    'networkInterfaces[0].hostDevName',
    /1 to 15 bytes/,
  ],
  ['networkInterfaces[0].hostDevName', '', 'networkInterfaces[0].hostDevName', /1 to 15 bytes/],
  ['networkInterfaces[0].hostDevName', 'tap/0', 'networkInterfaces[0].hostDevName', /'\/'/],
  ['networkInterfaces[0].hostDevName', 'tap 0', 'networkInterfaces[0].hostDevName', /whitespace/],
  ['networkInterfaces[0].hostDevName', '..', 'networkInterfaces[0].hostDevName', /'\.\.'/],
  ['networkInterfaces[0].guestMac', '06:00:AC:10:00', 'networkInterfaces[0].guestMac', /xx:xx:xx:xx:xx:xx/],
  ['networkInterfaces[0].guestMac', '06-00-AC-10-00-02', 'networkInterfaces[0].guestMac', /MAC address/],
  ['networkInterfaces[0].guestMac', '06:00:AC:10:00:0G', 'networkInterfaces[0].guestMac', /hex digits/],
  // mmds
  [
    'mmds.config.networkInterfaces[0]',
    'eth1',
    'mmds.config.networkInterfaces[0]',
    /ifaceId of networkInterfaces/,
  ],
  ['mmds.config.networkInterfaces', [], 'mmds.config.networkInterfaces', /at least one/],
  ['mmds.config.networkInterfaces', REMOVE, 'mmds.config.networkInterfaces', /required/],
  ['mmds.config.ipv4Address', '169.254.0.1', 'mmds.config.ipv4Address', /link-local.*169\.254/],
  ['mmds.config.ipv4Address', '10.0.0.1', 'mmds.config.ipv4Address', /link-local/],
  ['mmds.config.ipv4Address', '169.254.255.1', 'mmds.config.ipv4Address', /1 to 254/],
  ['mmds.config.version', 'V3', 'mmds.config.version', /one of 'V1', 'V2'/],
  ['mmds.config', REMOVE, 'mmds.config', /required/],
  ['mmds.data', [1, 2], 'mmds.data', /JSON object/],
  ['mmds.data.latest.when', new Date(0), 'mmds.data.latest.when', /must be JSON/],
  ['mmds.data.latest.count', Number.POSITIVE_INFINITY, 'mmds.data.latest.count', /finite number/],
  // logger
  ['logger.level', 'Verbose', 'logger.level', /one of 'Error', 'Warning'/],
  ['logger.showLevel', 1, 'logger.showLevel', /boolean/],
  // drive kinds
  [
    'drives[1].pathOnHost',
    '/srv/scratch.img',
    'drives[1].socket',
    /either virtio-block.*or vhost-user-block/,
  ],
  ['drives[1].isReadOnly', true, 'drives[1].isReadOnly', /vhost-user-block/],
  ['drives[1].rateLimiter', {}, 'drives[1].rateLimiter', /vhost-user-block/],
  ['drives[1].ioEngine', 'Sync', 'drives[1].ioEngine', /vhost-user-block/],
  ['drives[0].socket', '/run/x.sock', 'drives[0].socket', /not be set together with pathOnHost/],
  ['drives[1].isRootDevice', 'no', 'drives[1].isRootDevice', /boolean/],
  ['drives[0].cacheType', 'WriteThrough', 'drives[0].cacheType', /'Unsafe', 'Writeback'/],
  ['drives[0].ioEngine', 'Uring', 'drives[0].ioEngine', /'Sync', 'Async'/],
  ['drives[0].isRootDevice', REMOVE, 'drives[0].isRootDevice', /required/],
  // duplicates and root devices
  ['drives[1].driveId', 'rootfs', 'drives[1].driveId', /unique among drives \(drives\[0\]\.driveId/],
  ['drives[1].isRootDevice', true, 'drives[1].isRootDevice', /only one root device/],
  ['pmem[0].rootDevice', true, 'pmem[0].rootDevice', /only one root device.*drives\[0\]\.isRootDevice/],
  [
    'networkInterfaces[1]',
    { ifaceId: 'eth0', hostDevName: 'tap1' },
    'networkInterfaces[1].ifaceId',
    /unique/,
  ],
  [
    'networkInterfaces[1]',
    { ifaceId: 'eth1', hostDevName: 'tap0' },
    'networkInterfaces[1].hostDevName',
    /unique/,
  ],
  [
    'networkInterfaces[1]',
    { ifaceId: 'eth1', hostDevName: 'tap1', guestMac: '06:00:ac:10:00:02' },
    'networkInterfaces[1].guestMac',
    /unique.*same MAC/,
  ],
  ['pmem[1]', { id: 'data', pathOnHost: '/srv/other.img' }, 'pmem[1].id', /unique among pmem/],
  // unknown fields, at every depth
  ['kernel', '/srv/vmlinux', 'kernel', /is not a known field/],
  ['machine.memSizeMiB', 512, 'machine.memSizeMiB', /is not a known field/],
  ['drives[0].readOnly', true, 'drives[0].readOnly', /is not a known field/],
  [
    'drives[0].rateLimiter.bandwidth.refill_time',
    5,
    'drives[0].rateLimiter.bandwidth.refill_time',
    /not a known/,
  ],
  ['networkInterfaces[0].rxRateLimiter.iops', {}, 'networkInterfaces[0].rxRateLimiter.iops', /not a known/],
  ['mmds.config.network_interfaces', ['eth0'], 'mmds.config.network_interfaces', /not a known/],
  [
    'cpuConfig.cpuidModifiers[0].modifiers[0].mask',
    'x',
    'cpuConfig.cpuidModifiers[0].modifiers[0].mask',
    /known/,
  ],
  ['vsock.vsockId', 'v', 'vsock.vsockId', /is not a known field/],
  // wrong types
  ['machine', 'big', 'machine', /must be an object/],
  ['drives', { rootfs: {} }, 'drives', /must be an array/],
  ['drives[0]', null, 'drives[0]', /must be an object/],
  ['bootSource.bootArgs', 7, 'bootSource.bootArgs', /must be a string/],
  ['balloon.deflateOnOom', 'true', 'balloon.deflateOnOom', /boolean/],
  ['balloon.deflateOnOom', REMOVE, 'balloon.deflateOnOom', /required/],
  ['machine', REMOVE, 'machine', /required/],
  // cpu config
  ['cpuConfig.kvmCapabilities[0]', 'x121', 'cpuConfig.kvmCapabilities[0]', /KVM capability/],
  ['cpuConfig.cpuidModifiers[0].leaf', '0xZ', 'cpuConfig.cpuidModifiers[0].leaf', /32-bit number/],
  ['cpuConfig.cpuidModifiers[0].leaf', '0x100000000', 'cpuConfig.cpuidModifiers[0].leaf', /32-bit/],
  [
    'cpuConfig.cpuidModifiers[0].modifiers[0].register',
    'rax',
    'cpuConfig.cpuidModifiers[0].modifiers[0].register',
    /eax/,
  ],
  [
    'cpuConfig.cpuidModifiers[0].modifiers[0].bitmap',
    `0b${'1'.repeat(33)}`,
    'cpuConfig.cpuidModifiers[0].modifiers[0].bitmap',
    /1 to 32/,
  ],
  ['cpuConfig.msrModifiers[0].bitmap', '0b012', 'cpuConfig.msrModifiers[0].bitmap', /'0', '1' or 'x'/],
  ['cpuConfig.regModifiers[0].addr', '0x1'.padEnd(20, 'f'), 'cpuConfig.regModifiers[0].addr', /64-bit/],
  ['cpuConfig.vcpuFeatures[0].index', -1, 'cpuConfig.vcpuFeatures[0].index', /integer from 0/],
];

describe('validateVmSpec', () => {
  it('should accept the minimal spec and return an equal copy', () => {
    const spec = exampleMinimalVmSpec();
    const valid = validateVmSpec(spec);
    expect(valid).toEqual(spec);
    expect(valid).not.toBe(spec);
    expect(collectVmSpecIssues(spec)).toEqual([]);
  });

  it('should accept the maximal spec and return an equal deep copy', () => {
    const spec = exampleMaximalVmSpec();
    const valid = validateVmSpec(spec);
    expect(valid).toEqual(spec);
    expect(valid.drives?.[0]).not.toBe(spec.drives?.[0]);
    expect(valid.mmds?.data).not.toBe(spec.mmds?.data);
  });

  it('should accept a spec parsed from JSON', () => {
    expect(() => validateVmSpec(JSON.parse(JSON.stringify(exampleMaximalVmSpec())))).not.toThrow();
  });

  it.each(badSpecRows)('should reject %s = %j as %s', (path, value, field, rule) => {
    const spec = exampleMaximalVmSpec();
    setAt(spec, path, value);
    const error = thrownBy(() => validateVmSpec(spec));
    expect(error.code).toBe('ERR_MICROVM_INVALID_INPUT');
    expect(error.isUserError).toBe(true);
    expect(error.field).toBe(field);
    expect(error.rule).toMatch(rule);
    expect(error.message).toContain(field);
    // One change breaks exactly one rule: no cascade of follow-up errors.
    expect(collectVmSpecIssues(spec).map((issue) => issue.field)).toEqual([field]);
  });

  it.each([
    ['a string', 'spec'],
    ['an array', []],
    ['null', null],
  ])('should reject %s as the whole spec', (_name, value) => {
    const error = thrownBy(() => validateVmSpec(value));
    expect(error.field).toBe('spec');
    expect(error.rule).toMatch(/must be an object/);
  });

  it('should reject a class instance where a plain object is expected', () => {
    const spec = exampleMinimalVmSpec();
    setAt(spec, 'bootSource', new (class Boot {})());
    expect(thrownBy(() => validateVmSpec(spec)).field).toBe('bootSource');
  });

  it('should report every issue in document order and throw the first', () => {
    const spec = exampleMaximalVmSpec();
    setAt(spec, 'machine.vcpuCount', 0);
    setAt(spec, 'drives[0].driveId', 'a-b');
    setAt(spec, 'vsock.guestCid', 1);
    setAt(spec, 'extra', true);
    const fields = collectVmSpecIssues(spec).map((issue) => issue.field);
    expect(fields).toEqual(['extra', 'machine.vcpuCount', 'drives[0].driveId', 'vsock.guestCid']);
    expect(thrownBy(() => validateVmSpec(spec)).field).toBe('extra');
  });

  it('should reject a root drive next to a root pmem device in the minimal spec too', () => {
    const spec = {
      ...exampleMinimalVmSpec(),
      drives: [{ driveId: 'a', isRootDevice: true, pathOnHost: '/a' }],
      pmem: [{ id: 'p', pathOnHost: '/p', rootDevice: true }],
    };
    expect(thrownBy(() => validateVmSpec(spec)).field).toBe('pmem[0].rootDevice');
  });

  it('should report a malformed ifaceId once, not again where MMDS names it', () => {
    const spec = exampleMaximalVmSpec();
    setAt(spec, 'networkInterfaces[0].ifaceId', 'eth-0');
    setAt(spec, 'mmds.config.networkInterfaces[0]', 'eth-0');
    expect(collectVmSpecIssues(spec).map((issue) => issue.field)).toEqual(['networkInterfaces[0].ifaceId']);
  });

  it('should name the known ifaces when MMDS refers to another one', () => {
    const spec = { ...exampleMinimalVmSpec(), mmds: { config: { networkInterfaces: ['eth0'] } } };
    expect(thrownBy(() => validateVmSpec(spec)).rule).toMatch(/none are configured/);
  });

  it('should reject a circular reference in MMDS data instead of looping', () => {
    const data: Record<string, unknown> = { a: 1 };
    data.self = data;
    const spec = { ...exampleMinimalVmSpec(), mmds: { config: { networkInterfaces: [] }, data } };
    const fields = collectVmSpecIssues(spec).map((issue) => issue.field);
    expect(fields).toEqual(['mmds.config.networkInterfaces', 'mmds.data.self']);
  });

  it('should normalise logger levels case-insensitively, Warn included', () => {
    const spec = { ...exampleMinimalVmSpec(), logger: { level: 'warn' } };
    expect(validateVmSpec(spec).logger).toEqual({ level: 'Warning' });
    expect(validateVmSpec({ ...spec, logger: { level: 'TRACE' } }).logger).toEqual({ level: 'Trace' });
  });

  it('should drop undefined fields from the copy and accept the vCPU edge values', () => {
    const spec = {
      bootSource: { kernelImagePath: '/k', bootArgs: undefined },
      machine: { vcpuCount: 32, memSizeMib: 1, smt: undefined },
    };
    const valid = validateVmSpec(spec);
    expect(Object.keys(valid.bootSource)).toEqual(['kernelImagePath']);
    expect(Object.keys(valid.machine)).toEqual(['vcpuCount', 'memSizeMib']);
    expect(validateVmSpec({ ...spec, machine: { vcpuCount: 1, memSizeMib: 2, smt: true } }).machine.smt).toBe(
      true,
    );
  });

  it('should accept hotplug defaults (slot 128, block 2) when only the total is given', () => {
    const spec = { ...exampleMinimalVmSpec(), memoryHotplug: { totalSizeMib: 384 } };
    expect(validateVmSpec(spec).memoryHotplug).toEqual({ totalSizeMib: 384 });
    const bad = { ...exampleMinimalVmSpec(), memoryHotplug: { totalSizeMib: 200 } };
    expect(thrownBy(() => validateVmSpec(bad)).rule).toMatch(/multiple of slotSizeMib \(128\)/);
  });

  it('should accept a socket path of exactly 107 bytes', () => {
    const spec = { ...exampleMinimalVmSpec(), vsock: { guestCid: 4294967294, udsPath: socketPathOf(107) } };
    expect(validateVmSpec(spec).vsock?.udsPath).toHaveLength(107);
  });
});

describe('standalone validators', () => {
  it.each([
    ['sandbox-42', true],
    ['a', true],
    ['A'.repeat(64), true],
    ['sandbox_42', false],
    ['A'.repeat(65), false],
    ['', false],
    ['grüße', false],
    ['٣', false],
    ['a b', false],
    [42, false],
  ])('validateVmId(%j) accepts: %s', (id, accepted) => {
    if (accepted) expect(validateVmId(id)).toBe(id);
    else {
      const error = thrownBy(() => validateVmId(id));
      expect(error.field).toBe('vmId');
      expect(error.rule).toMatch(/\[A-Za-z0-9-\]\{1,64\}/);
    }
  });

  it('should use the field name it is given', () => {
    expect(thrownBy(() => validateVmId('a_b', 'snapshotId')).field).toBe('snapshotId');
  });

  it.each([
    ['rootfs', true],
    ['root_fs_2', true],
    ['root-fs', false],
    ['', false],
    ['wurzelü', false],
    ['a.b', false],
  ])('validateResourceId(%j) accepts: %s', (id, accepted) => {
    if (accepted) expect(validateResourceId(id, 'driveId')).toBe(id);
    else expect(thrownBy(() => validateResourceId(id, 'driveId')).rule).toMatch(/\[A-Za-z0-9_\]\+/);
  });

  it.each([
    ['relative.sock', true],
    [socketPathOf(107), true],
    [socketPathOf(108), false],
    [`/${'é'.repeat(53)}`, true],
    [`/${'é'.repeat(54)}`, false],
    ['', false],
    ['/a\0b', false],
  ])('validateUnixSocketPath(%j) accepts: %s', (path, accepted) => {
    if (accepted) expect(validateUnixSocketPath(path, 'udsPath')).toBe(path);
    else expect(thrownBy(() => validateUnixSocketPath(path, 'udsPath')).field).toBe('udsPath');
  });

  it.each([
    ['tap0', true],
    ['a'.repeat(15), true],
    ['a'.repeat(16), false],
    ['ü'.repeat(8), false],
    ['', false],
    ['.', false],
    ['..', false],
    ['tap/0', false],
    ['tap:0', false],
    ['tap\t0', false],
  ])('validateInterfaceName(%j) accepts: %s', (name, accepted) => {
    if (accepted) expect(validateInterfaceName(name, 'hostDevName')).toBe(name);
    else expect(thrownBy(() => validateInterfaceName(name, 'hostDevName')).field).toBe('hostDevName');
  });

  it.each([
    ['06:00:ac:10:00:02', true],
    ['AA:FC:00:00:00:01', true],
    ['06:00:ac:10:00', false],
    ['06:00:ac:10:00:02:03', false],
    ['0600ac100002', false],
    ['6:0:ac:10:0:2', false],
  ])('validateMacAddress(%j) accepts: %s', (mac, accepted) => {
    if (accepted) expect(validateMacAddress(mac, 'guestMac')).toBe(mac);
    else expect(thrownBy(() => validateMacAddress(mac, 'guestMac')).rule).toMatch(/MAC address/);
  });

  it.each([
    [3, true],
    [2 ** 32 - 2, true],
    [2, false],
    [0, false],
    [2 ** 32 - 1, false],
    [3.5, false],
    ['3', false],
  ])('validateGuestCid(%j) accepts: %s', (cid, accepted) => {
    if (accepted) expect(validateGuestCid(cid)).toBe(cid);
    else expect(thrownBy(() => validateGuestCid(cid)).field).toBe('guestCid');
  });

  it('should reject an empty host path', () => {
    expect(thrownBy(() => validateHostPath('', 'kernel')).rule).toMatch(/non-empty/);
  });

  it('should validate single devices with their own field prefix', () => {
    expect(thrownBy(() => validateDriveSpec({ driveId: 'a', isRootDevice: false }, 'hotplug')).field).toBe(
      'hotplug.pathOnHost',
    );
    expect(validateDriveSpec({ driveId: 'a', isRootDevice: false, socket: 's.sock' })).toEqual({
      driveId: 'a',
      isRootDevice: false,
      socket: 's.sock',
    });
    expect(thrownBy(() => validateNetworkInterfaceSpec({ ifaceId: 'a' })).field).toBe(
      'networkInterface.hostDevName',
    );
    expect(thrownBy(() => validatePmemSpec({ id: 'p', pathOnHost: '/p', root: true })).field).toBe(
      'pmem.root',
    );
    expect(thrownBy(() => validateRateLimiterSpec({ ops: { size: 1 } })).field).toBe(
      'rateLimiter.ops.refillTimeMs',
    );
    expect(validateTokenBucketSpec({ size: 0, refillTimeMs: 0 })).toEqual({ size: 0, refillTimeMs: 0 });
  });
});

describe('snapshot specs', () => {
  it('should accept a create spec and reject a bad type', () => {
    expect(validateSnapshotCreateSpec({ snapshotPath: 's', memFilePath: 'm', snapshotType: 'Diff' })).toEqual(
      {
        snapshotPath: 's',
        memFilePath: 'm',
        snapshotType: 'Diff',
      },
    );
    const error = thrownBy(() =>
      validateSnapshotCreateSpec({ snapshotPath: 's', memFilePath: 'm', snapshotType: 'Inc' }),
    );
    expect(error.field).toBe('snapshotType');
  });

  it.each<[unknown, string, RegExp]>([
    [{ memFilePath: 'm' }, 'snapshotPath', /required/],
    [{ snapshotPath: 's' }, 'memBackend', /required \(or memFilePath\)/],
    [
      { snapshotPath: 's', memFilePath: 'm', memBackend: { backendType: 'File', backendPath: 'm' } },
      'memFilePath',
      /exactly one memory source/,
    ],
    [
      { snapshotPath: 's', memBackend: { backendType: 'Disk', backendPath: 'm' } },
      'memBackend.backendType',
      /'File'/,
    ],
    [
      { snapshotPath: 's', memBackend: { backendType: 'Uffd', backendPath: socketPathOf(108) } },
      'memBackend.backendPath',
      /107 bytes/,
    ],
    [
      { snapshotPath: 's', memFilePath: 'm', networkOverrides: [{ ifaceId: 'eth-0', hostDevName: 'tap1' }] },
      'networkOverrides[0].ifaceId',
      /\[A-Za-z0-9_\]\+/,
    ],
    [
      {
        snapshotPath: 's',
        memFilePath: 'm',
        networkOverrides: [
          { ifaceId: 'eth0', hostDevName: 'tap1' },
          { ifaceId: 'eth0', hostDevName: 'tap2' },
        ],
      },
      'networkOverrides[1].ifaceId',
      /unique/,
    ],
    [
      {
        snapshotPath: 's',
        memFilePath: 'm',
        networkOverrides: [{ ifaceId: 'eth0', hostDevName: 'x'.repeat(16) }],
      },
      'networkOverrides[0].hostDevName',
      /15 bytes/,
    ],
    [
      { snapshotPath: 's', memFilePath: 'm', vsockOverride: { udsPath: '' } },
      'vsockOverride.udsPath',
      /non-empty/,
    ],
    [{ snapshotPath: 's', memFilePath: 'm', clockRealtime: 'yes' }, 'clockRealtime', /boolean/],
    [
      { snapshotPath: 's', memFilePath: 'm', enableDiffSnapshots: true },
      'enableDiffSnapshots',
      /not a known field/,
    ],
  ])('should reject load spec %j at %s', (spec, field, rule) => {
    const error = thrownBy(() => validateSnapshotLoadSpec(spec));
    expect(error.code).toBe('ERR_MICROVM_INVALID_INPUT');
    expect(error.field).toBe(field);
    expect(error.rule).toMatch(rule);
  });
});
