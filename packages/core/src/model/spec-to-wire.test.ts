import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { firecrackerSpecFile, missingSpecMessage } from '../client/firecracker-spec-file.js';
import { ValidationError } from '../errors/index.js';
import { exampleMaximalVmSpec, exampleMinimalVmSpec } from './examples.js';
import {
  driveToWire,
  rateLimiterToWire,
  snapshotCreateToWire,
  snapshotLoadToWire,
  tokenBucketToWire,
  vmSpecToRequests,
  type WireRequest,
} from './spec-to-wire.js';
import type { VmSpec } from './vm-spec.js';

/** JSON drops `undefined` keys, so a body equal to its round trip carries none (and no functions or NaN). */
function expectJsonSafe(value: unknown): void {
  expect(JSON.parse(JSON.stringify(value))).toStrictEqual(value);
  expect(JSON.stringify(value)).not.toContain('null');
}

describe('vmSpecToRequests', () => {
  it('should map the minimal spec to boot-source and machine-config only', () => {
    expect(vmSpecToRequests(exampleMinimalVmSpec())).toStrictEqual([
      {
        method: 'PUT',
        endpoint: '/boot-source',
        path: '/boot-source',
        body: { kernel_image_path: '/srv/images/vmlinux' },
      },
      {
        method: 'PUT',
        endpoint: '/machine-config',
        path: '/machine-config',
        body: { vcpu_count: 1, mem_size_mib: 128 },
      },
    ]);
  });

  it('should map the maximal spec to the exact bodies in Firecracker order', () => {
    const requests = vmSpecToRequests(exampleMaximalVmSpec());
    expect(requests.map((request) => `${request.method} ${request.path}`)).toEqual([
      'PUT /logger',
      'PUT /metrics',
      'PUT /serial',
      'PUT /boot-source',
      'PUT /machine-config',
      'PUT /cpu-config',
      'PUT /drives/rootfs',
      'PUT /drives/scratch',
      'PUT /network-interfaces/eth0',
      'PUT /mmds/config',
      'PUT /mmds',
      'PUT /vsock',
      'PUT /balloon',
      'PUT /entropy',
      'PUT /pmem/data',
      'PUT /hotplug/memory',
    ]);
    const bodies = Object.fromEntries(requests.map((request) => [request.path, request.body]));
    expect(bodies).toStrictEqual({
      '/logger': {
        log_path: '/var/log/microvm/firecracker.log',
        level: 'Debug',
        show_level: true,
        show_log_origin: true,
        module: 'api_server::request',
      },
      '/metrics': { metrics_path: '/var/log/microvm/metrics.fifo' },
      '/serial': {
        serial_out_path: '/var/log/microvm/serial.log',
        rate_limiter: { size: 65536, refill_time: 1000, one_time_burst: 1048576 },
      },
      '/boot-source': {
        kernel_image_path: '/srv/images/vmlinux',
        boot_args: 'console=ttyS0 reboot=k panic=1',
        initrd_path: '/srv/images/initrd.img',
      },
      '/machine-config': {
        vcpu_count: 2,
        mem_size_mib: 1024,
        smt: true,
        track_dirty_pages: true,
        huge_pages: '2M',
        cpu_template: 'T2',
      },
      '/cpu-config': {
        kvm_capabilities: ['121', '!122'],
        cpuid_modifiers: [
          {
            leaf: '0x1',
            subleaf: '0x0',
            flags: 0,
            modifiers: [{ register: 'ecx', bitmap: `0b${'x'.repeat(31)}1` }],
          },
        ],
        msr_modifiers: [{ addr: '0x10a', bitmap: `0b${'x'.repeat(63)}0` }],
        reg_modifiers: [{ addr: '0x603000000013c020', bitmap: `0b${'x'.repeat(60)}0001` }],
        vcpu_features: [{ index: 0, bitmap: `0b${'x'.repeat(25)}1${'x'.repeat(6)}` }],
      },
      '/drives/rootfs': {
        drive_id: 'rootfs',
        is_root_device: true,
        partuuid: '0eaa91a0-01',
        cache_type: 'Writeback',
        path_on_host: '/srv/images/rootfs.ext4',
        is_read_only: false,
        io_engine: 'Async',
        rate_limiter: {
          bandwidth: { size: 104857600, refill_time: 1000, one_time_burst: 10485760 },
          ops: { size: 1000, refill_time: 1000, one_time_burst: 100 },
        },
      },
      '/drives/scratch': {
        drive_id: 'scratch',
        is_root_device: false,
        cache_type: 'Unsafe',
        socket: '/run/vhost-user/scratch.sock',
      },
      '/network-interfaces/eth0': {
        iface_id: 'eth0',
        host_dev_name: 'tap0',
        guest_mac: '06:00:AC:10:00:02',
        mtu: 1500,
        rx_rate_limiter: { bandwidth: { size: 12500000, refill_time: 100 } },
        tx_rate_limiter: { ops: { size: 10000, refill_time: 1000, one_time_burst: 0 } },
      },
      '/mmds/config': {
        network_interfaces: ['eth0'],
        version: 'V2',
        ipv4_address: '169.254.169.250',
        imds_compat: true,
      },
      '/mmds': {
        latest: { 'meta-data': { 'instance-id': 'sandbox-42', tags: ['a', 'b'], ready: true, cores: 2 } },
      },
      '/vsock': { guest_cid: 3, uds_path: '/run/microvm/v.sock' },
      '/balloon': {
        amount_mib: 256,
        deflate_on_oom: true,
        stats_polling_interval_s: 5,
        free_page_hinting: true,
        free_page_reporting: true,
      },
      '/entropy': { rate_limiter: { bandwidth: { size: 1024, refill_time: 100 } } },
      '/pmem/data': {
        id: 'data',
        path_on_host: '/srv/images/data.img',
        root_device: false,
        read_only: true,
        rate_limiter: { ops: { size: 500, refill_time: 1000 } },
      },
      '/hotplug/memory': { total_size_mib: 2048, slot_size_mib: 256, block_size_mib: 4 },
    });
    for (const request of requests) expectJsonSafe(request.body);
  });

  it('should never put undefined in a body when optional fields are explicitly undefined', () => {
    const spec: VmSpec = {
      bootSource: { kernelImagePath: '/k', bootArgs: undefined, initrdPath: undefined },
      machine: { vcpuCount: 1, memSizeMib: 128, smt: undefined, hugePages: undefined },
      drives: [{ driveId: 'rootfs', isRootDevice: true, pathOnHost: '/r', rateLimiter: undefined }],
      networkInterfaces: [{ ifaceId: 'eth0', hostDevName: 'tap0', guestMac: undefined, mtu: undefined }],
      mmds: { config: { networkInterfaces: ['eth0'] }, data: { kept: 1, dropped: undefined } },
      logger: { level: undefined },
      serial: { rateLimiter: undefined },
      entropy: {},
    };
    const requests = vmSpecToRequests(spec);
    for (const request of requests) {
      expectJsonSafe(request.body);
      expect(Object.values(request.body)).not.toContain(undefined);
    }
    const bodies = Object.fromEntries(requests.map((request) => [request.path, request.body]));
    expect(bodies['/boot-source']).toStrictEqual({ kernel_image_path: '/k' });
    // is_read_only is always sent for virtio-block; MMDS defaults to V2.
    expect(bodies['/drives/rootfs']).toStrictEqual({
      drive_id: 'rootfs',
      is_root_device: true,
      path_on_host: '/r',
      is_read_only: false,
    });
    expect(bodies['/mmds/config']).toStrictEqual({ network_interfaces: ['eth0'], version: 'V2' });
    expect(bodies['/mmds']).toStrictEqual({ kept: 1 });
    expect(bodies['/logger']).toStrictEqual({});
    expect(bodies['/serial']).toStrictEqual({});
    expect(bodies['/entropy']).toStrictEqual({});
  });

  it('should keep an explicit V1 for MMDS and a read-only drive', () => {
    const spec: VmSpec = {
      ...exampleMinimalVmSpec(),
      drives: [{ driveId: 'ro', isRootDevice: false, pathOnHost: '/ro', isReadOnly: true }],
      networkInterfaces: [{ ifaceId: 'eth0', hostDevName: 'tap0' }],
      mmds: { config: { networkInterfaces: ['eth0'], version: 'V1' } },
    };
    const bodies = Object.fromEntries(vmSpecToRequests(spec).map((request) => [request.path, request.body]));
    expect(bodies['/mmds/config']).toStrictEqual({ network_interfaces: ['eth0'], version: 'V1' });
    expect(bodies['/drives/ro']).toMatchObject({ is_read_only: true });
  });

  it('should validate before mapping', () => {
    const spec = exampleMinimalVmSpec();
    spec.machine.vcpuCount = 0;
    expect(() => vmSpecToRequests(spec)).toThrow(ValidationError);
  });

  it('should type the body by endpoint', () => {
    const drives = vmSpecToRequests(exampleMaximalVmSpec()).flatMap((request: WireRequest) =>
      request.endpoint === '/drives/{drive_id}' ? [request.body.drive_id] : [],
    );
    expect(drives).toEqual(['rootfs', 'scratch']);
  });
});

describe('snapshot mappers', () => {
  it('should map a create spec', () => {
    expect(snapshotCreateToWire({ snapshotPath: '/s/vm.state', memFilePath: '/s/vm.mem' })).toStrictEqual({
      snapshot_path: '/s/vm.state',
      mem_file_path: '/s/vm.mem',
    });
    expect(
      snapshotCreateToWire({ snapshotPath: 's', memFilePath: 'm', snapshotType: 'Diff' }).snapshot_type,
    ).toBe('Diff');
  });

  it('should map a full load spec', () => {
    const body = snapshotLoadToWire({
      snapshotPath: './snap',
      memBackend: { backendType: 'Uffd', backendPath: './uffd.sock' },
      trackDirtyPages: false,
      resumeVm: true,
      networkOverrides: [{ ifaceId: 'eth0', hostDevName: 'vmtap01' }],
      vsockOverride: { udsPath: './v2.sock' },
      clockRealtime: false,
    });
    expect(body).toStrictEqual({
      snapshot_path: './snap',
      mem_backend: { backend_type: 'Uffd', backend_path: './uffd.sock' },
      track_dirty_pages: false,
      resume_vm: true,
      network_overrides: [{ iface_id: 'eth0', host_dev_name: 'vmtap01' }],
      vsock_override: { uds_path: './v2.sock' },
      clock_realtime: false,
    });
    expectJsonSafe(body);
  });

  it('should send memFilePath as a File backend and leave unset fields out', () => {
    expect(snapshotLoadToWire({ snapshotPath: 's', memFilePath: 'm', resumeVm: undefined })).toStrictEqual({
      snapshot_path: 's',
      mem_backend: { backend_type: 'File', backend_path: 'm' },
    });
  });

  it('should validate before mapping', () => {
    expect(() => snapshotCreateToWire({ snapshotPath: '', memFilePath: 'm' })).toThrow(ValidationError);
    expect(() =>
      snapshotLoadToWire({ snapshotPath: 's', memBackend: { backendType: 'File', backendPath: '' } }),
    ).toThrow(ValidationError);
  });
});

describe('device mappers', () => {
  it('should rename the token bucket fields and leave out unset ones', () => {
    expect(tokenBucketToWire({ size: 1, refillTimeMs: 2 })).toStrictEqual({ size: 1, refill_time: 2 });
    expect(rateLimiterToWire({})).toStrictEqual({});
    expect(rateLimiterToWire({ ops: { size: 0, refillTimeMs: 0, oneTimeBurst: 0 } })).toStrictEqual({
      ops: { size: 0, refill_time: 0, one_time_burst: 0 },
    });
  });

  it('should never send virtio-block fields for a vhost-user drive', () => {
    expect(driveToWire({ driveId: 'v', isRootDevice: true, socket: '/v.sock' })).toStrictEqual({
      drive_id: 'v',
      is_root_device: true,
      socket: '/v.sock',
    });
  });
});

/**
 * A light cross-check against Firecracker's own schema (the client's conformance suite does the full one):
 * every maximal and minimal body must match its swagger definition, with unknown fields forbidden as
 * Firecracker's `deny_unknown_fields` does. The yaml is reference data kept outside the project.
 */
const specFile = firecrackerSpecFile();
const swaggerPath = specFile.path;
const swaggerFound = specFile.found;
const swaggerTitle = swaggerFound
  ? 'bodies against firecracker.yaml'
  : `bodies against firecracker.yaml — SKIPPED: ${missingSpecMessage(specFile)}`;

if (!swaggerFound && specFile.required) {
  it('should find the Firecracker spec for the schema cross-check', () => {
    throw new Error(missingSpecMessage(specFile));
  });
}

describe.skipIf(!swaggerFound)(swaggerTitle, () => {
  // Vitest collects a skipped block too: read the file only when it exists.
  const swagger = (
    swaggerFound ? parse(readFileSync(swaggerPath, 'utf8')) : { paths: {}, definitions: {} }
  ) as {
    paths: Record<string, Record<string, { parameters?: Array<{ in: string; schema?: unknown }> }>>;
    definitions: Record<string, Record<string, unknown>>;
  };
  const definitions = Object.fromEntries(
    Object.entries(swagger.definitions).map(([name, definition]) => [
      name,
      definition.type === 'object' && definition.additionalProperties === undefined
        ? { ...definition, additionalProperties: false }
        : definition,
    ]),
  );
  const ajv = new Ajv({ strict: false, validateFormats: false, allErrors: true });
  ajv.addSchema({ $id: 'firecracker', definitions });

  it('should catch an unknown or mistyped field (the check can fail)', () => {
    const validate = ajv.compile({ $ref: 'firecracker#/definitions/Drive' });
    expect(validate({ drive_id: 'a', is_root_device: true, read_only: true })).toBe(false);
    expect(validate({ drive_id: 'a', is_root_device: 'yes' })).toBe(false);
    expect(validate({ drive_id: 'a', is_root_device: true })).toBe(true);
  });

  it.each([
    ['minimal', exampleMinimalVmSpec],
    ['maximal', exampleMaximalVmSpec],
  ])('should match the schema for every %s body', (_name, example) => {
    for (const request of vmSpecToRequests(example())) {
      const operation = swagger.paths[request.endpoint]?.[request.method.toLowerCase()];
      const schema = operation?.parameters?.find((parameter) => parameter.in === 'body')?.schema as
        | { $ref?: string }
        | undefined;
      expect(schema, `${request.method} ${request.endpoint} has a body schema`).toBeDefined();
      const reference = schema?.$ref?.replace('#/definitions/', 'firecracker#/definitions/');
      const validate = ajv.compile(reference ? { $ref: reference } : (schema as object));
      const valid = validate(request.body);
      expect(validate.errors ?? [], `${request.method} ${request.path}`).toEqual([]);
      expect(valid).toBe(true);
    }
  });
});
