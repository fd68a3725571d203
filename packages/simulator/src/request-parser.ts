/**
 * Firecracker's `parsed_request.rs`: turns an HTTP request into a VMM action, or into the 400 that Firecracker
 * answers before the VMM sees anything (bad path, bad id, bad JSON, empty body).
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
  Logger,
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
  Vsock,
} from '@microvm/core';
import { deserializeValue, SerdeJsonError } from './serde-json.js';
import { type BodyTypes, checkResourceId, deserializeBody } from './validation.js';

export type HttpMethod = 'GET' | 'PUT' | 'PATCH' | 'DELETE';

/** Memory source of a snapshot load, after the `mem_backend`/`mem_file_path` check. */
export interface LoadSnapshotRequest {
  snapshotPath: string;
  memBackend: { backendType: 'File' | 'Uffd'; backendPath: string };
  trackDirtyPages: boolean;
  resumeVm: boolean;
  networkOverrides: { iface_id: string; host_dev_name: string }[];
  vsockOverride: { uds_path: string } | undefined;
  clockRealtime: boolean;
}

export type VmmAction =
  | { kind: 'ConfigureBootSource'; config: BootSource }
  | { kind: 'ConfigureLogger'; config: Logger }
  | { kind: 'ConfigureMetrics'; config: Metrics }
  | { kind: 'ConfigureSerial'; config: SerialDevice }
  | { kind: 'CreateSnapshot'; config: SnapshotCreateParams }
  | { kind: 'GetBalloonConfig' }
  | { kind: 'GetBalloonStats' }
  | { kind: 'GetFullVmConfig' }
  | { kind: 'GetMmds' }
  | { kind: 'GetMachineConfig' }
  | { kind: 'GetInstanceInfo' }
  | { kind: 'GetVersion' }
  | { kind: 'FlushMetrics' }
  | { kind: 'InsertBlockDevice'; config: Drive }
  | { kind: 'InsertPmemDevice'; config: Pmem }
  | { kind: 'InsertNetworkDevice'; config: NetworkInterface }
  | { kind: 'LoadSnapshot'; config: LoadSnapshotRequest }
  | { kind: 'PatchMmds'; value: unknown }
  | { kind: 'PutMmds'; value: unknown }
  | { kind: 'Pause' }
  | { kind: 'Resume' }
  | { kind: 'PutCpuConfiguration'; config: CpuConfig }
  | { kind: 'SetBalloonDevice'; config: Balloon }
  | { kind: 'SetMmdsConfiguration'; config: MmdsConfig }
  | { kind: 'SetVsockDevice'; config: Vsock }
  | { kind: 'SetEntropyDevice'; config: EntropyDevice }
  | { kind: 'GetMemoryHotplugStatus' }
  | { kind: 'SetMemoryHotplugDevice'; config: MemoryHotplugConfig }
  | { kind: 'UpdateMemoryHotplugSize'; config: MemoryHotplugSizeUpdate }
  | { kind: 'StartMicroVm' }
  | { kind: 'SendCtrlAltDel' }
  | { kind: 'UpdateBalloon'; config: BalloonUpdate }
  | { kind: 'UpdateBalloonStatistics'; config: BalloonStatsUpdate }
  | { kind: 'StartFreePageHinting'; config: BalloonStartCmd }
  | { kind: 'GetFreePageHintingStatus' }
  | { kind: 'StopFreePageHinting' }
  | { kind: 'UpdateBlockDevice'; config: PartialDrive }
  | { kind: 'UpdateNetworkInterface'; config: PartialNetworkInterface }
  | { kind: 'UpdatePmemDevice'; config: PartialPmem }
  | { kind: 'UpdateMachineConfiguration'; config: PartialMachineConfiguration }
  | { kind: 'RemoveBlockDevice'; id: string }
  | { kind: 'RemoveNetworkDevice'; id: string }
  | { kind: 'RemovePmemDevice'; id: string };

/** The API metrics a request counts under (`put_api_requests.drive_count` / `drive_fails`). */
export interface RequestMetric {
  group: 'get_api_requests' | 'put_api_requests' | 'patch_api_requests';
  name: string;
}

export interface ParsedRequest {
  action: VmmAction;
  /** Deprecation warnings: the response then carries `Deprecation: true`. */
  deprecations: string[];
  metric: RequestMetric | undefined;
}

/** An error answered by the API server itself: always 400 with `fault_message`. */
export class RequestError extends Error {
  readonly metric: RequestMetric | undefined;
  constructor(message: string, metric?: RequestMetric) {
    super(message);
    this.name = 'RequestError';
    this.metric = metric;
  }
}

export interface IncomingRequest {
  method: HttpMethod;
  /** The request target as sent (`/drives/rootfs`). */
  path: string;
  /** `undefined` when the request had no body (no or zero `Content-Length`). */
  body: Buffer | undefined;
}

function invalidPathMethod(method: HttpMethod, path: string, metric?: RequestMetric): RequestError {
  return new RequestError(`Invalid request method and/or path: ${method} ${path}.`, metric);
}

function methodToError(method: HttpMethod): RequestError {
  switch (method) {
    case 'GET':
      return new RequestError('GET request cannot have a body.');
    case 'PUT':
      return new RequestError('Empty PUT request.');
    case 'PATCH':
      return new RequestError('Empty PATCH request.');
    case 'DELETE':
      return new RequestError('Empty Delete request.');
  }
}

/** serde errors become `An error occurred when deserializing the json body of a request: … .` */
function parse<K extends keyof BodyTypes>(
  kind: K,
  body: Buffer,
  metric?: RequestMetric,
  firecrackerVersion?: string,
): BodyTypes[K] {
  try {
    return deserializeBody(kind, body.toString('utf8'), firecrackerVersion);
  } catch (error) {
    if (error instanceof SerdeJsonError) {
      throw new RequestError(
        `An error occurred when deserializing the json body of a request: ${error.message}.`,
        metric,
      );
    }
    throw error;
  }
}

function parseAnyJson(body: Buffer, metric?: RequestMetric): unknown {
  try {
    return deserializeValue(body.toString('utf8'), { kind: 'any' });
  } catch (error) {
    if (error instanceof SerdeJsonError) {
      throw new RequestError(
        `An error occurred when deserializing the json body of a request: ${error.message}.`,
        metric,
      );
    }
    throw error;
  }
}

function checkedId(id: string | undefined, metric?: RequestMetric): string {
  const problem = checkResourceId(id);
  if (problem !== undefined) throw new RequestError(problem, metric);
  return id as string;
}

/** The path as micro_http gives it: absolute-form targets lose their scheme and authority. */
export function requestPath(target: string): string {
  const withoutAuthority = target.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/]*/i, '');
  const path = withoutAuthority.split('?')[0] ?? '';
  return path === '' ? '/' : path;
}

function ok(action: VmmAction, metric?: RequestMetric, deprecations: string[] = []): ParsedRequest {
  return { action, deprecations, metric };
}

const metricOf = (group: RequestMetric['group'], name: string): RequestMetric => ({ group, name });

export interface ParseRequestOptions {
  /** The release whose body fields apply (`MICROVM_SIMULATOR_VERSION`); default v1.16.1. */
  firecrackerVersion?: string;
}

/** `ParsedRequest::try_from(&Request)`. Throws {@link RequestError}. */
export function parseRequest(request: IncomingRequest, options: ParseRequestOptions = {}): ParsedRequest {
  const path = requestPath(request.path);
  // Split like Firecracker: trim leading '/', split on '/', ignore a trailing empty segment.
  const tokens = path.replace(/^\/+/, '').split('/');
  if (tokens.length > 1 && tokens[tokens.length - 1] === '') tokens.pop();
  const first = tokens[0] ?? '';
  const second = tokens[1];
  const third = tokens[2];
  const { method, body } = request;

  if (method === 'GET' && body === undefined) {
    switch (first) {
      case '':
        return ok({ kind: 'GetInstanceInfo' }, metricOf('get_api_requests', 'instance_info'));
      case 'balloon':
        if (second === undefined) return ok({ kind: 'GetBalloonConfig' });
        if (second === 'statistics') return ok({ kind: 'GetBalloonStats' });
        if (second === 'hinting' && third === 'status') return ok({ kind: 'GetFreePageHintingStatus' });
        throw invalidPathMethod(method, `/balloon/${tokens.slice(1).join('/')}`);
      case 'version':
        return ok({ kind: 'GetVersion' }, metricOf('get_api_requests', 'vmm_version'));
      case 'vm':
        if (second === 'config') return ok({ kind: 'GetFullVmConfig' });
        break;
      case 'machine-config':
        return ok({ kind: 'GetMachineConfig' }, metricOf('get_api_requests', 'machine_cfg'));
      case 'mmds':
        return ok({ kind: 'GetMmds' }, metricOf('get_api_requests', 'mmds'));
      case 'hotplug':
        if (second === 'memory')
          return ok({ kind: 'GetMemoryHotplugStatus' }, metricOf('get_api_requests', 'hotplug_memory'));
        break;
    }
  }
  if (method === 'GET' && body !== undefined) throw methodToError('GET');

  if (method === 'PUT' && body !== undefined) {
    const put = (name: string) => metricOf('put_api_requests', name);
    switch (first) {
      case 'actions': {
        const metric = put('actions');
        const { action_type: actionType } = parse('action', body, metric);
        return ok({ kind: actionType === 'InstanceStart' ? 'StartMicroVm' : actionType }, metric);
      }
      case 'balloon':
        return ok({ kind: 'SetBalloonDevice', config: parse('balloon', body) });
      case 'boot-source': {
        const metric = put('boot_source');
        return ok({ kind: 'ConfigureBootSource', config: parse('bootSource', body, metric) }, metric);
      }
      case 'cpu-config': {
        const metric = put('cpu_cfg');
        return ok({ kind: 'PutCpuConfiguration', config: parse('cpuConfig', body, metric) }, metric);
      }
      case 'drives': {
        const metric = put('drive');
        const id = checkedId(second, metric);
        const config = parse('drive', body, metric);
        if (id !== config.drive_id) {
          throw new RequestError('The id from the path does not match the id from the body!', metric);
        }
        return ok({ kind: 'InsertBlockDevice', config }, metric);
      }
      case 'pmem': {
        const metric = put('pmem');
        const id = checkedId(second, metric);
        const config = parse('pmem', body, metric);
        if (id !== config.id)
          throw new RequestError('The id from the path does not match the id from the body!', metric);
        return ok({ kind: 'InsertPmemDevice', config }, metric);
      }
      case 'logger': {
        const metric = put('logger');
        return ok({ kind: 'ConfigureLogger', config: parse('logger', body, metric) }, metric);
      }
      case 'serial': {
        const metric = put('serial');
        return ok({ kind: 'ConfigureSerial', config: parse('serial', body, metric) }, metric);
      }
      case 'machine-config': {
        const metric = put('machine_cfg');
        const config = parse('machineConfig', body, metric);
        const deprecations =
          config.cpu_template !== undefined ? ['PUT /machine-config: cpu_template field is deprecated.'] : [];
        // PUT replaces the configuration: omitted optional fields go back to their defaults.
        const update: PartialMachineConfiguration = {
          vcpu_count: config.vcpu_count,
          mem_size_mib: config.mem_size_mib,
          smt: config.smt ?? false,
          track_dirty_pages: config.track_dirty_pages ?? false,
          huge_pages: config.huge_pages ?? 'None',
        };
        if (config.cpu_template !== undefined) update.cpu_template = config.cpu_template;
        return ok({ kind: 'UpdateMachineConfiguration', config: update }, metric, deprecations);
      }
      case 'metrics': {
        const metric = put('metrics');
        return ok({ kind: 'ConfigureMetrics', config: parse('metrics', body, metric) }, metric);
      }
      case 'mmds': {
        const metric = put('mmds');
        if (second === undefined) return ok({ kind: 'PutMmds', value: parseAnyJson(body, metric) }, metric);
        if (second === 'config') {
          const config = parse('mmdsConfig', body, metric);
          const deprecations =
            config.version === 'V2' ? [] : ['PUT /mmds/config: V1 is deprecated. Use V2 instead.'];
          return ok({ kind: 'SetMmdsConfiguration', config }, metric, deprecations);
        }
        throw invalidPathMethod(method, `/mmds/${second}`, metric);
      }
      case 'network-interfaces': {
        const metric = put('network');
        const id = checkedId(second, metric);
        const config = parse('networkInterface', body, metric);
        if (id !== config.iface_id) {
          throw new RequestError(
            `The id from the path [${id}] does not match the id from the body [${config.iface_id}]!`,
            metric,
          );
        }
        return ok({ kind: 'InsertNetworkDevice', config }, metric);
      }
      case 'snapshot':
        return parseSnapshot(second, body, options.firecrackerVersion);
      case 'vsock': {
        const metric = put('vsock');
        const config = parse('vsock', body, metric);
        const deprecations =
          config.vsock_id !== undefined ? ['PUT /vsock: vsock_id field is deprecated.'] : [];
        return ok({ kind: 'SetVsockDevice', config }, metric, deprecations);
      }
      case 'entropy':
        return ok({ kind: 'SetEntropyDevice', config: parse('entropy', body) });
      case 'hotplug':
        if (second === 'memory') {
          const metric = put('hotplug_memory');
          return ok({ kind: 'SetMemoryHotplugDevice', config: parse('memoryHotplug', body, metric) }, metric);
        }
        break;
    }
  }
  if (method === 'PUT' && body === undefined) throw methodToError('PUT');

  if (method === 'PATCH') {
    const patch = (name: string) => metricOf('patch_api_requests', name);
    if (first === 'balloon') return parsePatchBalloon(second, third, body);
    if (body !== undefined) {
      switch (first) {
        case 'drives': {
          const metric = patch('drive');
          const id = checkedId(second, metric);
          const config = parse('partialDrive', body, metric);
          if (id !== config.drive_id) {
            throw new RequestError('The id from the path does not match the id from the body!', metric);
          }
          return ok({ kind: 'UpdateBlockDevice', config }, metric);
        }
        case 'pmem': {
          const metric = patch('pmem');
          const id = checkedId(second, metric);
          const config = parse('partialPmem', body, metric);
          if (id !== config.id)
            throw new RequestError('The id from the path does not match the id from the body!', metric);
          return ok({ kind: 'UpdatePmemDevice', config }, metric);
        }
        case 'machine-config': {
          const metric = patch('machine_cfg');
          const config = parse('machineConfigUpdate', body, metric);
          if (Object.values(config).every((value) => value === undefined)) {
            throw new RequestError('Empty PATCH request.', metric);
          }
          const deprecations =
            config.cpu_template !== undefined
              ? ['PATCH /machine-config: cpu_template field is deprecated.']
              : [];
          return ok({ kind: 'UpdateMachineConfiguration', config }, metric, deprecations);
        }
        case 'mmds': {
          const metric = patch('mmds');
          return ok({ kind: 'PatchMmds', value: parseAnyJson(body, metric) }, metric);
        }
        case 'network-interfaces': {
          const metric = patch('network');
          const id = checkedId(second, metric);
          const config = parse('partialNetworkInterface', body, metric);
          if (id !== config.iface_id) {
            throw new RequestError(
              `The id from the path [${id}] does not match the id from the body [${config.iface_id}]!`,
              metric,
            );
          }
          return ok({ kind: 'UpdateNetworkInterface', config }, metric);
        }
        case 'vm': {
          const { state } = parse('vmState', body);
          return ok({ kind: state === 'Paused' ? 'Pause' : 'Resume' });
        }
        case 'hotplug':
          if (second === 'memory') {
            const metric = patch('hotplug_memory');
            return ok(
              { kind: 'UpdateMemoryHotplugSize', config: parse('memoryHotplugUpdate', body, metric) },
              metric,
            );
          }
          break;
      }
    } else {
      throw methodToError('PATCH');
    }
  }

  if (method === 'DELETE') {
    if (body !== undefined) throw methodToError('DELETE');
    switch (first) {
      case 'drives':
        return ok({ kind: 'RemoveBlockDevice', id: checkedId(second) });
      case 'network-interfaces':
        return ok({ kind: 'RemoveNetworkDevice', id: checkedId(second) });
      case 'pmem':
        return ok({ kind: 'RemovePmemDevice', id: checkedId(second) });
    }
  }

  throw invalidPathMethod(method, first);
}

function parsePatchBalloon(
  second: string | undefined,
  third: string | undefined,
  body: Buffer | undefined,
): ParsedRequest {
  if (second === undefined) {
    if (body === undefined) throw methodToError('PATCH');
    return ok({ kind: 'UpdateBalloon', config: parse('balloonUpdate', body) });
  }
  if (second === 'statistics') {
    if (body === undefined) throw methodToError('PATCH');
    return ok({ kind: 'UpdateBalloonStatistics', config: parse('balloonStatsUpdate', body) });
  }
  if (second === 'hinting' && third === 'start') {
    const config = body === undefined ? {} : parse('balloonStartHinting', body);
    return ok({ kind: 'StartFreePageHinting', config });
  }
  if (second === 'hinting' && third === 'stop') return ok({ kind: 'StopFreePageHinting' });
  throw invalidPathMethod('PATCH', `/balloon/${[second, third].filter(Boolean).join('/')}`);
}

const MISSING_MEMORY_SOURCE = 'missing field: either `mem_backend` or `mem_file_path` is required';
const TOO_MANY_MEMORY_SOURCES =
  'too many fields: either `mem_backend` or `mem_file_path` exclusively is required';

function parseSnapshot(
  operation: string | undefined,
  body: Buffer,
  firecrackerVersion: string | undefined,
): ParsedRequest {
  if (operation === undefined) throw new RequestError('Missing snapshot operation type.');
  if (operation === 'create') {
    return ok({ kind: 'CreateSnapshot', config: parse('snapshotCreate', body) });
  }
  if (operation !== 'load') throw invalidPathMethod('PUT', `/snapshot/${operation}`);
  const config: SnapshotLoadParams = parse('snapshotLoad', body, undefined, firecrackerVersion);
  const deprecations: string[] = [];
  if (config.enable_diff_snapshots === true) {
    deprecations.push('PUT /snapshot/load: enable_diff_snapshots field is deprecated.');
  }
  let memBackend: LoadSnapshotRequest['memBackend'];
  if (config.mem_backend !== undefined && config.mem_file_path !== undefined) {
    throw new RequestError(TOO_MANY_MEMORY_SOURCES);
  } else if (config.mem_backend !== undefined) {
    memBackend = {
      backendType: config.mem_backend.backend_type,
      backendPath: config.mem_backend.backend_path,
    };
  } else if (config.mem_file_path !== undefined) {
    deprecations.push('PUT /snapshot/load: mem_file_path field is deprecated.');
    memBackend = { backendType: 'File', backendPath: config.mem_file_path };
  } else {
    throw new RequestError(MISSING_MEMORY_SOURCE);
  }
  return ok(
    {
      kind: 'LoadSnapshot',
      config: {
        snapshotPath: config.snapshot_path,
        memBackend,
        trackDirtyPages: (config.track_dirty_pages ?? false) || (config.enable_diff_snapshots ?? false),
        resumeVm: config.resume_vm ?? false,
        networkOverrides: config.network_overrides ?? [],
        vsockOverride: config.vsock_override,
        clockRealtime: config.clock_realtime ?? false,
      },
    },
    undefined,
    deprecations,
  );
}
