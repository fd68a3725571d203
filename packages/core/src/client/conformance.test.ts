/**
 * Checks the client against Firecracker's own API description (`firecracker.yaml`, v1.16.1):
 * every path + method has a client method, and every body the client sends, smallest and largest,
 * is valid against the spec's schema for that operation.
 *
 * How the Swagger 2.0 definitions become JSON Schema for ajv:
 * - `$ref: '#/definitions/X'` points into one schema registered as `firecracker.json`; keywords next
 *   to a `$ref` (only descriptions here) are dropped, as JSON Schema ignores them anyway.
 * - `format: int32|int64` is dropped (a width JSON cannot express); `MmdsConfig.ipv4_address` misuses
 *   `format` for a regex, which becomes an anchored `pattern`. `example` is dropped (ajv does not know it).
 * - Every object definition gets `additionalProperties: false`, stricter than Firecracker on purpose:
 *   Firecracker denies unknown fields in every top-level body, but silently ignores them in `Metrics`,
 *   `TokenBucket`, `NetworkOverride` and `VsockOverride` (FACTS §1). A misspelt field there would be
 *   dropped without an error, so the client must never send one either. Only `MmdsContentsObject`
 *   (free-form MMDS data) stays open.
 * - `PATCH /machine-config`: the spec reuses `MachineConfiguration` with its `required` list, but
 *   Firecracker takes any subset since 1.11.0 (CHANGELOG #4991), so `required` is lifted there.
 */
import { readFileSync } from 'node:fs';
import type { ValidateFunction } from 'ajv';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
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
  MmdsContents,
  NetworkInterface,
  PartialDrive,
  PartialMachineConfiguration,
  PartialNetworkInterface,
  PartialPmem,
  Pmem,
  RateLimiter,
  SerialDevice,
  SnapshotCreateParams,
  SnapshotLoadParams,
  TokenBucket,
  Vm,
  Vsock,
} from '../wire.js';
import type { FirecrackerEndpointName } from './endpoints.js';
import { firecrackerEndpoints } from './endpoints.js';
import { FirecrackerClient } from './firecracker-client.js';
import { firecrackerSpecFile, missingSpecMessage } from './firecracker-spec-file.js';
import type { RecordedRequest, TestApiServer } from './test-server.js';
import { startTestApiServer } from './test-server.js';

// The spec lives beside the checkout, not in it: a clone without it skips, except under CI where it must be there.
const specFile = firecrackerSpecFile();
const specPath = specFile.path;

// --- Fixtures: the smallest body Firecracker accepts, and one with every property the spec defines.

const bandwidth: TokenBucket = { size: 10_485_760, one_time_burst: 104_857_600, refill_time: 1000 };
const operations: TokenBucket = { size: 1000, one_time_burst: 5000, refill_time: 100 };
const rateLimiter: RateLimiter = { bandwidth, ops: operations };

type EndpointCase =
  | { kind: 'no-body'; send: (client: FirecrackerClient) => Promise<unknown> }
  | {
      kind: 'body';
      send: (client: FirecrackerClient, body: unknown) => Promise<unknown>;
      minimal: unknown;
      maximal: unknown;
    };

function noBody(send: (client: FirecrackerClient) => Promise<unknown>): EndpointCase {
  return { kind: 'no-body', send };
}

function withBody<Body>(
  send: (client: FirecrackerClient, body: Body) => Promise<unknown>,
  fixtures: { minimal: Body; maximal: Body },
): EndpointCase {
  return {
    kind: 'body',
    send: send as (client: FirecrackerClient, body: unknown) => Promise<unknown>,
    ...fixtures,
  };
}

/** Typed as a record over every endpoint name: a new endpoint without a case does not compile. */
const endpointCases: Record<FirecrackerEndpointName, EndpointCase> = {
  describeInstance: noBody((client) => client.describeInstance()),
  getVersion: noBody((client) => client.getVersion()),
  getVmConfig: noBody((client) => client.getVmConfig()),
  getMachineConfig: noBody((client) => client.getMachineConfig()),
  putMachineConfig: withBody<MachineConfiguration>((client, body) => client.putMachineConfig(body), {
    minimal: { vcpu_count: 1, mem_size_mib: 128 },
    maximal: {
      vcpu_count: 2,
      mem_size_mib: 1024,
      smt: false,
      track_dirty_pages: true,
      huge_pages: '2M',
      cpu_template: 'None',
    },
  }),
  patchMachineConfig: withBody<PartialMachineConfiguration>(
    (client, body) => client.patchMachineConfig(body),
    {
      minimal: { mem_size_mib: 256 },
      maximal: {
        vcpu_count: 4,
        mem_size_mib: 2048,
        smt: true,
        track_dirty_pages: false,
        huge_pages: 'None',
        cpu_template: 'T2S',
      },
    },
  ),
  putBootSource: withBody<BootSource>((client, body) => client.putBootSource(body), {
    minimal: { kernel_image_path: '/srv/images/vmlinux' },
    maximal: {
      kernel_image_path: '/srv/images/vmlinux',
      boot_args: 'console=ttyS0 reboot=k panic=1',
      initrd_path: '/srv/images/initrd.img',
    },
  }),
  putCpuConfig: withBody<CpuConfig>((client, body) => client.putCpuConfig(body), {
    minimal: {},
    maximal: {
      kvm_capabilities: ['171', '!172'],
      cpuid_modifiers: [
        {
          leaf: '0x1',
          subleaf: '0x0',
          flags: 0,
          modifiers: [{ register: 'ecx', bitmap: '0bxxxxxxxxxxxxxxxxxxxxxxxxxxxx0001' }],
        },
      ],
      msr_modifiers: [{ addr: '0x10a', bitmap: `0b${'x'.repeat(63)}1` }],
      reg_modifiers: [{ addr: '0x603000000013c020', bitmap: `0b${'x'.repeat(63)}0` }],
      vcpu_features: [{ index: 0, bitmap: '0b00000000000000000000000001100000' }],
    },
  }),
  putDrive: withBody<Drive>((client, body) => client.putDrive(body), {
    minimal: { drive_id: 'rootfs', is_root_device: true, path_on_host: '/srv/images/rootfs.ext4' },
    maximal: {
      drive_id: 'scratch_1',
      partuuid: '0eaa91a0-01',
      is_root_device: false,
      cache_type: 'Writeback',
      is_read_only: false,
      path_on_host: '/srv/images/scratch.ext4',
      rate_limiter: rateLimiter,
      io_engine: 'Async',
      socket: '/run/vhost-user-blk.sock',
    },
  }),
  patchDrive: withBody<PartialDrive>((client, body) => client.patchDrive(body), {
    minimal: { drive_id: 'rootfs' },
    maximal: { drive_id: 'rootfs', path_on_host: '/srv/images/rootfs-2.ext4', rate_limiter: rateLimiter },
  }),
  deleteDrive: noBody((client) => client.deleteDrive('scratch_1')),
  putNetworkInterface: withBody<NetworkInterface>((client, body) => client.putNetworkInterface(body), {
    minimal: { iface_id: 'eth0', host_dev_name: 'tap0' },
    maximal: {
      iface_id: 'eth0',
      host_dev_name: 'mvm-sandbox42',
      guest_mac: '06:00:ac:10:00:02',
      mtu: 1400,
      rx_rate_limiter: rateLimiter,
      tx_rate_limiter: rateLimiter,
    },
  }),
  patchNetworkInterface: withBody<PartialNetworkInterface>(
    (client, body) => client.patchNetworkInterface(body),
    {
      minimal: { iface_id: 'eth0' },
      maximal: { iface_id: 'eth0', rx_rate_limiter: rateLimiter, tx_rate_limiter: rateLimiter },
    },
  ),
  deleteNetworkInterface: noBody((client) => client.deleteNetworkInterface('eth1')),
  putPmem: withBody<Pmem>((client, body) => client.putPmem(body), {
    minimal: { id: 'pmem0', path_on_host: '/srv/images/pmem.img' },
    maximal: {
      id: 'pmem0',
      path_on_host: '/srv/images/pmem.img',
      root_device: true,
      read_only: true,
      rate_limiter: rateLimiter,
    },
  }),
  patchPmem: withBody<PartialPmem>((client, body) => client.patchPmem(body), {
    minimal: { id: 'pmem0' },
    maximal: { id: 'pmem0', rate_limiter: rateLimiter },
  }),
  deletePmem: noBody((client) => client.deletePmem('pmem0')),
  putVsock: withBody<Vsock>((client, body) => client.putVsock(body), {
    minimal: { guest_cid: 3, uds_path: '/run/microvm/v.sock' },
    maximal: { guest_cid: 42, uds_path: '/run/microvm/v.sock', vsock_id: 'vsock0' },
  }),
  putBalloon: withBody<Balloon>((client, body) => client.putBalloon(body), {
    minimal: { amount_mib: 0, deflate_on_oom: true },
    maximal: {
      amount_mib: 64,
      deflate_on_oom: false,
      stats_polling_interval_s: 5,
      free_page_hinting: true,
      free_page_reporting: true,
    },
  }),
  patchBalloon: withBody<BalloonUpdate>((client, body) => client.patchBalloon(body), {
    minimal: { amount_mib: 128 },
    maximal: { amount_mib: 128 },
  }),
  getBalloon: noBody((client) => client.getBalloon()),
  getBalloonStatistics: noBody((client) => client.getBalloonStatistics()),
  patchBalloonStatistics: withBody<BalloonStatsUpdate>(
    (client, body) => client.patchBalloonStatistics(body),
    {
      minimal: { stats_polling_interval_s: 1 },
      maximal: { stats_polling_interval_s: 10 },
    },
  ),
  startBalloonHinting: withBody<BalloonStartCmd | undefined>(
    (client, body) => client.startBalloonHinting(body),
    {
      minimal: undefined,
      maximal: { acknowledge_on_stop: true },
    },
  ),
  getBalloonHintingStatus: noBody((client) => client.getBalloonHintingStatus()),
  stopBalloonHinting: noBody((client) => client.stopBalloonHinting()),
  putEntropy: withBody<EntropyDevice>((client, body) => client.putEntropy(body), {
    minimal: {},
    maximal: { rate_limiter: rateLimiter },
  }),
  putSerial: withBody<SerialDevice>((client, body) => client.putSerial(body), {
    minimal: {},
    maximal: { serial_out_path: '/run/microvm/serial.log', rate_limiter: bandwidth },
  }),
  putLogger: withBody<Logger>((client, body) => client.putLogger(body), {
    minimal: {},
    maximal: {
      log_path: '/run/microvm/fc.log',
      level: 'Debug',
      show_level: true,
      show_log_origin: true,
      module: 'api_server::request',
    },
  }),
  putMetrics: withBody<Metrics>((client, body) => client.putMetrics(body), {
    minimal: { metrics_path: '/run/microvm/metrics.fifo' },
    maximal: { metrics_path: '/run/microvm/metrics.fifo' },
  }),
  putMmdsConfig: withBody<MmdsConfig>((client, body) => client.putMmdsConfig(body), {
    minimal: { network_interfaces: ['eth0'] },
    maximal: {
      network_interfaces: ['eth0', 'eth1'],
      version: 'V2',
      ipv4_address: '169.254.170.2',
      imds_compat: true,
    },
  }),
  putMmds: withBody<MmdsContents>((client, body) => client.putMmds(body), {
    minimal: {},
    maximal: {
      latest: { 'meta-data': { 'instance-id': 'sandbox-42', tags: ['a', 'ü'], count: 3, ok: true } },
    },
  }),
  patchMmds: withBody<MmdsContents>((client, body) => client.patchMmds(body), {
    minimal: {},
    maximal: { latest: { 'meta-data': { 'instance-id': null } } },
  }),
  getMmds: noBody((client) => client.getMmds()),
  putMemoryHotplug: withBody<MemoryHotplugConfig>((client, body) => client.putMemoryHotplug(body), {
    minimal: { total_size_mib: 1024 },
    maximal: { total_size_mib: 2048, slot_size_mib: 256, block_size_mib: 4 },
  }),
  patchMemoryHotplug: withBody<MemoryHotplugSizeUpdate>((client, body) => client.patchMemoryHotplug(body), {
    minimal: { requested_size_mib: 512 },
    maximal: { requested_size_mib: 512 },
  }),
  getMemoryHotplug: noBody((client) => client.getMemoryHotplug()),
  createAction: withBody<InstanceActionInfo>((client, body) => client.createAction(body), {
    minimal: { action_type: 'InstanceStart' },
    maximal: { action_type: 'SendCtrlAltDel' },
  }),
  patchVm: withBody<Vm>((client, body) => client.patchVm(body), {
    minimal: { state: 'Paused' },
    maximal: { state: 'Resumed' },
  }),
  createSnapshot: withBody<SnapshotCreateParams>((client, body) => client.createSnapshot(body), {
    minimal: { snapshot_path: '/snap/vmstate', mem_file_path: '/snap/memory' },
    maximal: { snapshot_path: '/snap/vmstate', mem_file_path: '/snap/memory', snapshot_type: 'Diff' },
  }),
  loadSnapshot: withBody<SnapshotLoadParams>((client, body) => client.loadSnapshot(body), {
    minimal: {
      snapshot_path: '/snap/vmstate',
      mem_backend: { backend_type: 'File', backend_path: '/snap/memory' },
    },
    // Every property the spec defines, even those Firecracker takes only one of (mem_backend or mem_file_path).
    maximal: {
      snapshot_path: '/snap/vmstate',
      mem_backend: { backend_type: 'Uffd', backend_path: '/run/uffd.sock' },
      mem_file_path: '/snap/memory',
      track_dirty_pages: true,
      enable_diff_snapshots: true,
      resume_vm: true,
      network_overrides: [{ iface_id: 'eth0', host_dev_name: 'tap7' }],
      vsock_override: { uds_path: '/run/microvm/v2.sock' },
      clock_realtime: true,
    },
  }),
};

/** Shorthands are not endpoints of their own, but their bodies must be valid too. */
const shorthandCases: [string, FirecrackerEndpointName, (client: FirecrackerClient) => Promise<unknown>][] = [
  ['startInstance', 'createAction', (client) => client.startInstance()],
  ['flushMetrics', 'createAction', (client) => client.flushMetrics()],
  ['sendCtrlAltDel', 'createAction', (client) => client.sendCtrlAltDel()],
  ['pauseVm', 'patchVm', (client) => client.pauseVm()],
  ['resumeVm', 'patchVm', (client) => client.resumeVm()],
];

// --- The spec, turned into JSON Schema -------------------------------------------------------

interface SwaggerParameter {
  in: string;
  name: string;
  required?: boolean;
  schema?: Record<string, unknown>;
}

interface SwaggerOperation {
  parameters?: SwaggerParameter[];
  responses?: Record<string, { schema?: unknown }>;
}

interface SwaggerSpec {
  info: { version: string };
  paths: Record<string, Record<string, SwaggerOperation>>;
  definitions: Record<string, Record<string, unknown>>;
}

interface SpecOperation {
  method: string;
  path: string;
  operation: SwaggerOperation;
  bodyParameter: SwaggerParameter | undefined;
}

const openDefinitions = new Set(['MmdsContentsObject']);
const swaggerFormats = new Set(['int32', 'int64']);

function convertSchema(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(convertSchema);
  if (typeof node !== 'object' || node === null) return node;
  const record = node as Record<string, unknown>;
  if (typeof record.$ref === 'string') {
    return { $ref: record.$ref.replace(/^#\/definitions\//, 'firecracker.json#/definitions/') };
  }
  const converted: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (key === 'example') continue;
    if (key === 'format' && typeof value === 'string') {
      if (!swaggerFormats.has(value)) converted.pattern = `^${value}$`;
      continue;
    }
    converted[key] = key === 'properties' ? mapValues(value, convertSchema) : convertSchema(value);
  }
  return converted;
}

function mapValues(value: unknown, convert: (item: unknown) => unknown): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([key, item]) => [key, convert(item)]),
  );
}

function convertDefinitions(definitions: SwaggerSpec['definitions']): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(definitions).map(([name, definition]) => {
      const converted = convertSchema(definition) as Record<string, unknown>;
      if (converted.type === 'object' && converted.properties !== undefined && !openDefinitions.has(name)) {
        converted.additionalProperties = false;
      }
      return [name, converted];
    }),
  );
}

function specOperations(spec: SwaggerSpec): SpecOperation[] {
  return Object.entries(spec.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({
      method: method.toUpperCase(),
      path,
      operation,
      bodyParameter: operation.parameters?.find((parameter) => parameter.in === 'body'),
    })),
  );
}

/** Properties the schema defines that `value` leaves out, recursively (`rate_limiter.ops.one_time_burst`). */
function missingProperties(
  schema: unknown,
  value: unknown,
  definitions: Record<string, unknown>,
  where: string,
): string[] {
  const resolved = resolveReference(schema, definitions);
  if (resolved.type === 'array' && resolved.items !== undefined) {
    if (!Array.isArray(value) || value.length === 0) return [`${where}[]`];
    return value.flatMap((item, index) =>
      missingProperties(resolved.items, item, definitions, `${where}[${index}]`),
    );
  }
  if (resolved.properties === undefined || typeof value !== 'object' || value === null) return [];
  const record = value as Record<string, unknown>;
  return Object.entries(resolved.properties as Record<string, unknown>).flatMap(([key, propertySchema]) => {
    const path = where === '' ? key : `${where}.${key}`;
    return key in record ? missingProperties(propertySchema, record[key], definitions, path) : [path];
  });
}

function resolveReference(schema: unknown, definitions: Record<string, unknown>): Record<string, unknown> {
  const record = (schema ?? {}) as Record<string, unknown>;
  if (typeof record.$ref !== 'string') return record;
  const name = record.$ref.split('/').at(-1) ?? '';
  return resolveReference(definitions[name], definitions);
}

function pathPattern(template: string): RegExp {
  return new RegExp(`^${template.replace(/\{[a-z_]+\}/g, '[A-Za-z0-9_]+')}$`);
}

// --- The tests ---------------------------------------------------------------------------------

describe('conformance with firecracker.yaml', () => {
  if (!specFile.found) {
    if (specFile.required) {
      it('should find the Firecracker spec', () => {
        throw new Error(missingSpecMessage(specFile));
      });
    } else {
      it.skip(`skipped: ${missingSpecMessage(specFile)}`, () => {});
    }
    return;
  }

  const spec = parse(readFileSync(specPath, 'utf8')) as SwaggerSpec;
  const operations = specOperations(spec);
  const definitions = convertDefinitions(spec.definitions);
  const ajv = new Ajv({ strict: true, allErrors: true });
  ajv.addSchema({ $id: 'firecracker.json', definitions });
  const validators = new Map<string, ValidateFunction>();

  function bodyValidator(operation: SpecOperation): ValidateFunction {
    const key = `${operation.method} ${operation.path}`;
    let validate = validators.get(key);
    if (validate === undefined) {
      const schema = { ...(convertSchema(operation.bodyParameter?.schema) as Record<string, unknown>) };
      if (key === 'PATCH /machine-config') {
        // Firecracker takes any subset of the machine configuration (see the file comment).
        const machine = resolveReference(schema, definitions);
        Object.assign(schema, { ...machine, required: [] });
        delete schema.$ref;
      }
      validate = ajv.compile(schema);
      validators.set(key, validate);
    }
    return validate;
  }

  function specOperationFor(name: FirecrackerEndpointName): SpecOperation | undefined {
    const endpoint = firecrackerEndpoints.find((candidate) => candidate.clientMethod === name);
    return operations.find(
      (operation) => operation.method === endpoint?.method && operation.path === endpoint?.path,
    );
  }

  let server: TestApiServer;
  let client: FirecrackerClient;

  beforeAll(async () => {
    server = await startTestApiServer({ firecrackerVersion: spec.info.version });
    client = new FirecrackerClient({ socketPath: server.socketPath });
  });

  afterAll(async () => {
    await client?.close();
    await server?.close();
  });

  async function capture(send: (client: FirecrackerClient) => Promise<unknown>): Promise<RecordedRequest> {
    const before = server.requests.length;
    await send(client);
    // A version-gated call asks for GET /version first; the call itself is always the last request.
    const last = server.requests.slice(before).at(-1);
    if (last === undefined) throw new Error('the client sent nothing');
    return last;
  }

  it('should be the spec this client targets', () => {
    expect(spec.info.version).toBe('1.16.1');
  });

  it.each(operations.map((operation) => [`${operation.method} ${operation.path}`, operation] as const))(
    'should have a client method for %s',
    (_label, operation) => {
      const endpoint = firecrackerEndpoints.find(
        (candidate) => candidate.method === operation.method && candidate.path === operation.path,
      );
      expect(
        endpoint,
        `${operation.method} ${operation.path} has no row in firecrackerEndpoints`,
      ).toBeDefined();
      expect(endpoint?.inSpec).toBe(true);
      expect(typeof (client as unknown as Record<string, unknown>)[endpoint?.clientMethod ?? '']).toBe(
        'function',
      );
      expect(endpoint?.requestBody !== 'none').toBe(operation.bodyParameter !== undefined);
      const fixtureKind = endpointCases[endpoint?.clientMethod as FirecrackerEndpointName]?.kind;
      expect(fixtureKind, 'fixtures for a body the spec defines').toBe(
        operation.bodyParameter ? 'body' : 'no-body',
      );
      const answersJson = operation.operation.responses?.['200']?.schema !== undefined;
      expect(endpoint?.responseBody === 'json').toBe(answersJson);
    },
  );

  it('should list code-only endpoints as not in the spec', () => {
    for (const endpoint of firecrackerEndpoints) {
      const inSpec = operations.some(
        (operation) => operation.method === endpoint.method && operation.path === endpoint.path,
      );
      expect(inSpec, `${endpoint.method} ${endpoint.path}`).toBe(endpoint.inSpec);
    }
  });

  it('should have a validator that rejects unknown, missing and misspelt fields', () => {
    const validate = bodyValidator(specOperationFor('putDrive')!);
    expect(validate({ drive_id: 'a', is_root_device: true })).toBe(true);
    expect(validate({ drive_id: 'a' })).toBe(false);
    expect(validate({ drive_id: 'a', is_root_device: true, cache_type: 'Sometimes' })).toBe(false);
    expect(validate({ drive_id: 'a', is_root_device: true, read_only: true })).toBe(false);
    expect(
      validate({ drive_id: 'a', is_root_device: true, rate_limiter: { bandwidth: { size: 1, refill: 1 } } }),
    ).toBe(false);
    expect(bodyValidator(specOperationFor('putMmds')!)({ anything: { goes: [1, 'two'] } })).toBe(true);
    expect(
      bodyValidator(specOperationFor('putMmdsConfig')!)({ network_interfaces: [], ipv4_address: '10.0.0.1' }),
    ).toBe(false);
  });

  const bodyCases = Object.entries(endpointCases).flatMap(([name, endpointCase]) =>
    endpointCase.kind === 'body'
      ? (['minimal', 'maximal'] as const).map(
          (size) => [`${name} (${size})`, name, endpointCase, size] as const,
        )
      : [],
  );

  it.each(bodyCases)('should send a body the spec accepts: %s', async (_label, name, endpointCase, size) => {
    const operation = specOperationFor(name as FirecrackerEndpointName);
    expect(operation, `${name} is not in the spec`).toBeDefined();
    if (operation === undefined || endpointCase.kind !== 'body') return;
    const body = endpointCase[size];

    const request = await capture((target) => endpointCase.send(target, body));

    expect(request.method).toBe(operation.method);
    expect(request.path).toMatch(pathPattern(operation.path));
    const pathParameter = operation.path.match(/\{([a-z_]+)\}/)?.[1];
    if (pathParameter !== undefined) {
      expect(request.path.split('/').at(-1)).toBe((body as Record<string, unknown>)[pathParameter]);
    }
    if (body === undefined) {
      expect(operation.bodyParameter?.required, 'the spec requires a body').not.toBe(true);
      expect(request.body.length).toBe(0);
      return;
    }
    const sent = JSON.parse(request.body.toString('utf8')) as unknown;
    expect(sent).toEqual(body);
    const validate = bodyValidator(operation);
    expect(validate(sent), ajv.errorsText(validate.errors)).toBe(true);
    if (size === 'maximal') {
      expect(missingProperties(operation.bodyParameter?.schema, sent, definitions, '')).toEqual([]);
    }
  });

  it.each(shorthandCases)('should send a body the spec accepts from %s()', async (_label, name, send) => {
    const operation = specOperationFor(name)!;

    const request = await capture(send);

    expect(`${request.method} ${request.path}`).toBe(`${operation.method} ${operation.path}`);
    const validate = bodyValidator(operation);
    expect(validate(JSON.parse(request.body.toString('utf8'))), ajv.errorsText(validate.errors)).toBe(true);
  });

  const bodilessCases = Object.entries(endpointCases).flatMap(([name, endpointCase]) =>
    endpointCase.kind === 'no-body' ? [[name, endpointCase] as const] : [],
  );

  it.each(bodilessCases)(
    'should call %s with the right method and path and no body',
    async (name, endpointCase) => {
      const endpoint = firecrackerEndpoints.find((candidate) => candidate.clientMethod === name)!;

      const request = await capture(endpointCase.send);

      expect(request.method).toBe(endpoint.method);
      expect(request.path).toMatch(pathPattern(endpoint.path));
      expect(request.body.length).toBe(0);
    },
  );
});
