import { describe, expect, it } from 'vitest';
import { SerdeJsonError } from './serde-json.js';
import {
  checkInstanceId,
  checkMemoryHotplugConfig,
  checkResourceId,
  deserializeBody,
  type MachineState,
  updateMachineConfig,
} from './validation.js';

const defaults: MachineState = {
  vcpu_count: 1,
  mem_size_mib: 128,
  smt: false,
  track_dirty_pages: false,
  huge_pages: 'None',
};

describe('updateMachineConfig', () => {
  it.each([
    [{ vcpu_count: 0 }, 'The number of vCPUs'],
    [{ vcpu_count: 33 }, 'The number of vCPUs'],
    [{ vcpu_count: 3, smt: true }, 'must be 1 or an even number if SMT is enabled'],
    [{ mem_size_mib: 0 }, 'The memory size (MiB) is either 0'],
    [{ mem_size_mib: 101, huge_pages: '2M' as const }, 'not a multiple of the configured page size'],
  ])('should refuse %j', (update, message) => {
    const result = updateMachineConfig(defaults, update);
    expect('error' in result && result.error).toContain(message);
  });

  it('should keep unspecified fields and map cpu_template None to no template', () => {
    const withTemplate = updateMachineConfig(defaults, { vcpu_count: 2, smt: true, cpu_template: 'T2' });
    expect(withTemplate).toEqual({ config: { ...defaults, vcpu_count: 2, smt: true, cpu_template: 'T2' } });
    if (!('config' in withTemplate)) return;
    const cleared = updateMachineConfig(withTemplate.config, { cpu_template: 'None' });
    expect(cleared).toEqual({ config: { ...defaults, vcpu_count: 2, smt: true } });
  });
});

describe('ids', () => {
  it.each([
    [undefined, 'The ID cannot be empty.'],
    ['', 'The ID cannot be empty.'],
    ['root-fs', 'API Resource IDs can only contain alphanumeric characters and underscores.'],
    ['root fs', 'API Resource IDs can only contain alphanumeric characters and underscores.'],
    ['root_fs1', undefined],
    ['disque_é', undefined],
  ])('checkResourceId(%j) → %j', (id, expected) => {
    expect(checkResourceId(id)).toBe(expected);
  });

  it.each([
    ['vm-1', undefined],
    ['a_b', "InvalidChar('_', 1)"],
    ['', 'InvalidLen(0, 1, 64)'],
    ['x'.repeat(65), 'InvalidLen(65, 1, 64)'],
  ])('checkInstanceId(%j) → %j', (id, expected) => {
    expect(checkInstanceId(id)).toBe(expected);
  });
});

describe('checkMemoryHotplugConfig', () => {
  it.each([
    [{ total_size_mib: 1024, block_size_mib: 2, slot_size_mib: 128 }, undefined],
    [
      { total_size_mib: 1024, block_size_mib: 1, slot_size_mib: 128 },
      'Block size must not be lower than 2 MiB',
    ],
    [{ total_size_mib: 1024, block_size_mib: 6, slot_size_mib: 128 }, 'Block size must be a power of 2'],
    [
      { total_size_mib: 1024, block_size_mib: 2, slot_size_mib: 64 },
      'Slot size must not be lower than 128 MiB',
    ],
    [
      { total_size_mib: 1024, block_size_mib: 256, slot_size_mib: 384 },
      'Slot size must be a multiple of block size (256 MiB)',
    ],
    [
      { total_size_mib: 64, block_size_mib: 2, slot_size_mib: 128 },
      'Total size must not be lower than slot size (128 MiB)',
    ],
  ])('%j → %j', (config, expected) => {
    expect(checkMemoryHotplugConfig(config)).toBe(expected);
  });
});

describe('deserializeBody', () => {
  it('should read a snapshot load with overrides, ignoring unknown override fields', () => {
    expect(
      deserializeBody(
        'snapshotLoad',
        '{"snapshot_path":"s","mem_backend":{"backend_type":"Uffd","backend_path":"u"},"network_overrides":[{"iface_id":"eth0","host_dev_name":"tap1","x":1}],"vsock_override":{"uds_path":"v","y":2}}',
      ),
    ).toEqual({
      snapshot_path: 's',
      mem_backend: { backend_type: 'Uffd', backend_path: 'u' },
      network_overrides: [{ iface_id: 'eth0', host_dev_name: 'tap1' }],
      vsock_override: { uds_path: 'v' },
    });
  });

  it.each([
    ['cpuConfig', '{"reg_modifiers":[]}', 'unknown field `reg_modifiers`'],
    [
      'cpuConfig',
      '{"cpuid_modifiers":[{"leaf":"0x1","subleaf":"0","flags":0,"modifiers":[{"register":"eax","bitmap":"0b1"}]}]}',
      'as a bitmap',
    ],
    ['mmdsConfig', '{"network_interfaces":"eth0"}', 'invalid type: string "eth0", expected a sequence'],
    ['vsock', '{"guest_cid":-3,"uds_path":"v"}', 'invalid value: integer `-3`, expected u32'],
    ['memoryHotplug', '{"slot_size_mib":128}', 'missing field `total_size_mib`'],
  ] as const)('should refuse a %s body %s', (kind, text, message) => {
    expect(() => deserializeBody(kind, text)).toThrow(SerdeJsonError);
    expect(() => deserializeBody(kind, text)).toThrow(message);
  });
});
