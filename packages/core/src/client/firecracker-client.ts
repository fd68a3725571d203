import { Buffer } from 'node:buffer';
import { Client } from 'undici';
import { FirecrackerApiError } from '../errors/api-error.js';
import { MicrovmError } from '../errors/microvm-error.js';
import { TimeoutError } from '../errors/timeout-error.js';
import { ValidationError } from '../errors/validation-error.js';
import type {
  Balloon,
  BalloonHintingStatus,
  BalloonStartCmd,
  BalloonStats,
  BalloonStatsUpdate,
  BalloonUpdate,
  BootSource,
  CpuConfig,
  Drive,
  EntropyDevice,
  FirecrackerVersion,
  FullVmConfiguration,
  InstanceActionInfo,
  InstanceInfo,
  Logger,
  MachineConfiguration,
  MemoryHotplugConfig,
  MemoryHotplugSizeUpdate,
  MemoryHotplugStatus,
  Metrics,
  MmdsConfig,
  MmdsContents,
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
} from '../wire.js';
import { ApiSocketError } from './client-errors.js';
import type { FirecrackerEndpoint, FirecrackerEndpointName, FirecrackerHttpMethod } from './endpoints.js';
import { endpointNamed, findEndpoint } from './endpoints.js';
import { RequestQueue } from './request-queue.js';
import type { FirecrackerVersionNumber } from './version.js';
import { assertSupported, parseFirecrackerVersion, versionRequirements } from './version.js';

export interface FirecrackerClientOptions {
  /** The API socket (`--api-sock`); at most 107 bytes. */
  socketPath: string;
  /** Deadline of a call that passes no `timeoutMs`, queueing included. Default 10 000 ms. */
  defaultTimeoutMs?: number;
  /** How long to wait for the socket to accept the connection. Default 10 000 ms. */
  connectTimeoutMs?: number;
  /**
   * Called, synchronously before the call resolves, when Firecracker answers with `Deprecation: true`
   * (a deprecated field or endpoint was used, e.g. `mem_file_path`, `vsock_id`, MMDS V1).
   */
  onDeprecation?: (event: DeprecationEvent) => void;
}

export interface DeprecationEvent {
  method: string;
  path: string;
}

export interface FirecrackerRequestOptions {
  /** Deadline for this call, time spent waiting behind earlier calls included. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

const defaultTimeoutMs = 10_000;
const maximumTimerMs = 2_147_483_647;
const maximumSocketPathBytes = 107;
const resourceIdPattern = /^[A-Za-z0-9_]+$/;
const resourceIdRule = 'must be one or more ASCII letters, digits or underscores ([A-Za-z0-9_]+)';
/** Transport failures that mean "the VMM is not there (any more)". */
const socketErrorCodes = new Set([
  'ENOENT',
  'ECONNREFUSED',
  'ENOTSOCK',
  'EACCES',
  'EPERM',
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_CLOSED',
  'UND_ERR_DESTROYED',
]);

interface RawResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * A typed client for Firecracker's HTTP API on its Unix socket.
 *
 * Exactly one keep-alive connection and one request in flight: calls queue in FIFO order, because
 * Firecracker serves one request at a time and a 2xx means the operation has completed.
 * Bodies use the wire's snake_case names, exactly as Firecracker's docs write them.
 */
export class FirecrackerClient implements AsyncDisposable {
  readonly socketPath: string;
  readonly defaultTimeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #onDeprecation: ((event: DeprecationEvent) => void) | undefined;
  readonly #queue = new RequestQueue();
  #connection: Client | undefined;
  #version: FirecrackerVersionNumber | undefined;
  #closing: Promise<void> | undefined;
  #lastResponseDeprecated = false;

  constructor(options: FirecrackerClientOptions) {
    if (typeof options.socketPath !== 'string' || options.socketPath === '') {
      throw new ValidationError({
        field: 'socketPath',
        rule: 'must be a non-empty path',
        value: options.socketPath,
      });
    }
    if (Buffer.byteLength(options.socketPath) > maximumSocketPathBytes) {
      throw new ValidationError({
        field: 'socketPath',
        rule: `must be at most ${maximumSocketPathBytes} bytes (sun_path)`,
        value: options.socketPath,
      });
    }
    this.socketPath = options.socketPath;
    this.defaultTimeoutMs = checkTimeout('defaultTimeoutMs', options.defaultTimeoutMs ?? defaultTimeoutMs);
    this.#connectTimeoutMs = checkTimeout('connectTimeoutMs', options.connectTimeoutMs ?? defaultTimeoutMs);
    this.#onDeprecation = options.onDeprecation;
  }

  /** True when the last answer carried `Deprecation: true`. */
  get lastResponseDeprecated(): boolean {
    return this.#lastResponseDeprecated;
  }

  /** The running Firecracker's version once `getVersion()` or a version-gated call has fetched it. */
  get firecrackerVersion(): string | undefined {
    return this.#version?.text;
  }

  // --- Instance and configuration -----------------------------------------------------------

  /** `GET /`: id, state (`Not started` | `Running` | `Paused`) and VMM version. */
  describeInstance(options?: FirecrackerRequestOptions): Promise<InstanceInfo> {
    return this.#call('describeInstance', {}, undefined, options) as Promise<InstanceInfo>;
  }

  /** `GET /version`; also fills the cache the version gate uses. */
  async getVersion(options?: FirecrackerRequestOptions): Promise<FirecrackerVersion> {
    return (await this.#call('getVersion', {}, undefined, options)) as FirecrackerVersion;
  }

  /** `GET /vm/config`: the whole configuration, in the config file's kebab-case shape. */
  getVmConfig(options?: FirecrackerRequestOptions): Promise<FullVmConfiguration> {
    return this.#call('getVmConfig', {}, undefined, options) as Promise<FullVmConfiguration>;
  }

  getMachineConfig(options?: FirecrackerRequestOptions): Promise<MachineConfiguration> {
    return this.#call('getMachineConfig', {}, undefined, options) as Promise<MachineConfiguration>;
  }

  /** `PUT /machine-config`. Pre-boot only; omitted optional fields are reset to their defaults. */
  async putMachineConfig(body: MachineConfiguration, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putMachineConfig', {}, body, options);
  }

  async patchMachineConfig(
    body: PartialMachineConfiguration,
    options?: FirecrackerRequestOptions,
  ): Promise<void> {
    await this.#call('patchMachineConfig', {}, body, options);
  }

  /** `PUT /boot-source`. Firecracker opens the kernel and initrd now, so path errors surface here. */
  async putBootSource(body: BootSource, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putBootSource', {}, body, options);
  }

  /** `PUT /cpu-config`: a custom CPU template. */
  async putCpuConfig(body: CpuConfig, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putCpuConfig', {}, body, options);
  }

  // --- Devices ------------------------------------------------------------------------------

  /** `PUT /drives/{drive_id}`, the id taken from `body.drive_id`. After boot this hot-plugs (needs `--enable-pci`). */
  async putDrive(body: Drive, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putDrive', { drive_id: body?.drive_id }, body, options);
  }

  /** `PATCH /drives/{drive_id}`: a new backing file and/or rate limiter. Post-boot only. */
  async patchDrive(body: PartialDrive, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('patchDrive', { drive_id: body?.drive_id }, body, options);
  }

  /** `DELETE /drives/{drive_id}`: hot-unplug (Firecracker >= 1.16, `--enable-pci`). */
  async deleteDrive(driveId: string, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('deleteDrive', { drive_id: driveId }, undefined, options);
  }

  /** `PUT /network-interfaces/{iface_id}`. Firecracker opens the TAP now. */
  async putNetworkInterface(body: NetworkInterface, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putNetworkInterface', { iface_id: body?.iface_id }, body, options);
  }

  /** `PATCH /network-interfaces/{iface_id}`: rate limiters only. Post-boot only. */
  async patchNetworkInterface(
    body: PartialNetworkInterface,
    options?: FirecrackerRequestOptions,
  ): Promise<void> {
    await this.#call('patchNetworkInterface', { iface_id: body?.iface_id }, body, options);
  }

  /** `DELETE /network-interfaces/{iface_id}`: hot-unplug (Firecracker >= 1.16, `--enable-pci`). */
  async deleteNetworkInterface(ifaceId: string, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('deleteNetworkInterface', { iface_id: ifaceId }, undefined, options);
  }

  /** `PUT /pmem/{id}` (Firecracker >= 1.14). */
  async putPmem(body: Pmem, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putPmem', { id: body?.id }, body, options);
  }

  async patchPmem(body: PartialPmem, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('patchPmem', { id: body?.id }, body, options);
  }

  /** `DELETE /pmem/{id}`: hot-unplug (Firecracker >= 1.16). */
  async deletePmem(id: string, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('deletePmem', { id }, undefined, options);
  }

  /** `PUT /vsock`. Firecracker binds `uds_path` now: remove a stale file first. */
  async putVsock(body: Vsock, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putVsock', {}, body, options);
  }

  async putEntropy(body: EntropyDevice, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putEntropy', {}, body, options);
  }

  /** `PUT /serial` (Firecracker >= 1.14; `rate_limiter` >= 1.16). */
  async putSerial(body: SerialDevice, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putSerial', {}, body, options);
  }

  // --- Balloon ------------------------------------------------------------------------------

  async putBalloon(body: Balloon, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putBalloon', {}, body, options);
  }

  /** `PATCH /balloon`: a new target size. Post-boot only. */
  async patchBalloon(body: BalloonUpdate, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('patchBalloon', {}, body, options);
  }

  getBalloon(options?: FirecrackerRequestOptions): Promise<Balloon> {
    return this.#call('getBalloon', {}, undefined, options) as Promise<Balloon>;
  }

  getBalloonStatistics(options?: FirecrackerRequestOptions): Promise<BalloonStats> {
    return this.#call('getBalloonStatistics', {}, undefined, options) as Promise<BalloonStats>;
  }

  async patchBalloonStatistics(body: BalloonStatsUpdate, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('patchBalloonStatistics', {}, body, options);
  }

  /** `PATCH /balloon/hinting/start`; without a body Firecracker uses its defaults. */
  async startBalloonHinting(body?: BalloonStartCmd, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('startBalloonHinting', {}, body, options);
  }

  getBalloonHintingStatus(options?: FirecrackerRequestOptions): Promise<BalloonHintingStatus> {
    return this.#call('getBalloonHintingStatus', {}, undefined, options) as Promise<BalloonHintingStatus>;
  }

  async stopBalloonHinting(options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('stopBalloonHinting', {}, undefined, options);
  }

  // --- Logging, metrics, MMDS ---------------------------------------------------------------

  async putLogger(body: Logger, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putLogger', {}, body, options);
  }

  /** `PUT /metrics`. Firecracker accepts it only once per process. */
  async putMetrics(body: Metrics, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putMetrics', {}, body, options);
  }

  /** `PUT /mmds/config`. The interfaces it names must exist already. */
  async putMmdsConfig(body: MmdsConfig, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putMmdsConfig', {}, body, options);
  }

  /** `PUT /mmds`: replaces the whole data store. */
  async putMmds(data: MmdsContents, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putMmds', {}, data, options);
  }

  /** `PATCH /mmds`: a JSON merge patch (RFC 7396) of the data store. */
  async patchMmds(data: MmdsContents, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('patchMmds', {}, data, options);
  }

  getMmds(options?: FirecrackerRequestOptions): Promise<MmdsContents> {
    return this.#call('getMmds', {}, undefined, options) as Promise<MmdsContents>;
  }

  // --- Memory hotplug (virtio-mem, Firecracker >= 1.14) -------------------------------------

  async putMemoryHotplug(body: MemoryHotplugConfig, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('putMemoryHotplug', {}, body, options);
  }

  async patchMemoryHotplug(
    body: MemoryHotplugSizeUpdate,
    options?: FirecrackerRequestOptions,
  ): Promise<void> {
    await this.#call('patchMemoryHotplug', {}, body, options);
  }

  getMemoryHotplug(options?: FirecrackerRequestOptions): Promise<MemoryHotplugStatus> {
    return this.#call('getMemoryHotplug', {}, undefined, options) as Promise<MemoryHotplugStatus>;
  }

  // --- Actions, VM state, snapshots ---------------------------------------------------------

  /** `PUT /actions`. */
  async createAction(body: InstanceActionInfo, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('createAction', {}, body, options);
  }

  /** `InstanceStart`. A 204 means the vCPUs run, not that the guest is ready. */
  startInstance(options?: FirecrackerRequestOptions): Promise<void> {
    return this.createAction({ action_type: 'InstanceStart' }, options);
  }

  /** `FlushMetrics`. Post-boot only. */
  flushMetrics(options?: FirecrackerRequestOptions): Promise<void> {
    return this.createAction({ action_type: 'FlushMetrics' }, options);
  }

  /** `SendCtrlAltDel`: asks an x86_64 guest to reboot (with `reboot=k`, the VMM then exits). */
  sendCtrlAltDel(options?: FirecrackerRequestOptions): Promise<void> {
    return this.createAction({ action_type: 'SendCtrlAltDel' }, options);
  }

  /** `PATCH /vm`. */
  async patchVm(body: Vm, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('patchVm', {}, body, options);
  }

  pauseVm(options?: FirecrackerRequestOptions): Promise<void> {
    return this.patchVm({ state: 'Paused' }, options);
  }

  resumeVm(options?: FirecrackerRequestOptions): Promise<void> {
    return this.patchVm({ state: 'Resumed' }, options);
  }

  /** `PUT /snapshot/create`. The VM must be paused; a large VM needs a long `timeoutMs`. */
  async createSnapshot(body: SnapshotCreateParams, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('createSnapshot', {}, body, options);
  }

  /** `PUT /snapshot/load`. Only on a fresh process; if it fails, Firecracker exits. */
  async loadSnapshot(body: SnapshotLoadParams, options?: FirecrackerRequestOptions): Promise<void> {
    await this.#call('loadSnapshot', {}, body, options);
  }

  /**
   * Any request, for what the typed methods do not cover. A known endpoint gets the same version
   * gate; a non-empty 2xx body is parsed as JSON.
   */
  request(
    method: FirecrackerHttpMethod,
    path: string,
    body?: unknown,
    options?: FirecrackerRequestOptions,
  ): Promise<unknown> {
    if (!['GET', 'PUT', 'PATCH', 'DELETE'].includes(method)) {
      return Promise.reject(
        new ValidationError({ field: 'method', rule: 'must be GET, PUT, PATCH or DELETE', value: method }),
      );
    }
    // Printable ASCII without space: the path lands verbatim in the request line.
    if (typeof path !== 'string' || !/^\/[\x21-\x7e]*$/.test(path)) {
      return Promise.reject(
        new ValidationError({
          field: 'path',
          rule: 'must start with "/" and be printable ASCII',
          value: path,
        }),
      );
    }
    return this.#exchange(method, path, findEndpoint(method, path), body, options);
  }

  // --- Lifecycle ----------------------------------------------------------------------------

  /**
   * Closes the connection. Calls still waiting their turn reject with `ERR_MICROVM_DISPOSED`; the one
   * on the wire finishes first. Idempotent; later calls reject with `ERR_MICROVM_DISPOSED`.
   */
  close(): Promise<void> {
    this.#closing ??= this.#shutDown();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  async #shutDown(): Promise<void> {
    this.#queue.rejectWaiting(this.#disposedError());
    await this.#queue.whenIdle();
    const connection = this.#connection;
    this.#connection = undefined;
    await connection?.close();
  }

  // --- Internals ----------------------------------------------------------------------------

  #call(
    name: FirecrackerEndpointName,
    ids: Record<string, string | undefined>,
    body: unknown,
    options: FirecrackerRequestOptions | undefined,
  ): Promise<unknown> {
    const endpoint = endpointNamed(name);
    let path = endpoint.path;
    for (const [field, value] of Object.entries(ids)) {
      if (typeof value !== 'string' || !resourceIdPattern.test(value)) {
        return Promise.reject(new ValidationError({ field, rule: resourceIdRule, value }));
      }
      path = path.replace(`{${field}}`, value);
    }
    return this.#exchange(endpoint.method, path, endpoint, body, options);
  }

  async #exchange(
    method: FirecrackerHttpMethod,
    path: string,
    endpoint: FirecrackerEndpoint | undefined,
    body: unknown,
    options: FirecrackerRequestOptions | undefined,
  ): Promise<unknown> {
    const operation = `${method} ${path}`;
    if (this.#closing !== undefined) throw this.#disposedError();
    const timeoutMs = checkTimeout('timeoutMs', options?.timeoutMs ?? this.defaultTimeoutMs);
    const userSignal = options?.signal;
    if (userSignal?.aborted) throw abortedError(operation, userSignal.reason);
    const payload = serializeBody(body);
    const requirements = endpoint === undefined ? [] : versionRequirements(endpoint, body);

    // One signal for everything this call waits on: its turn, the version fetch and the exchange.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new TimeoutError({ operation, timeoutMs })), timeoutMs);
    const onUserAbort = () => controller.abort(abortedError(operation, userSignal?.reason));
    userSignal?.addEventListener('abort', onUserAbort, { once: true });
    let release: (() => void) | undefined;
    try {
      release = await this.#queue.acquire(controller.signal);
      if (requirements.length > 0) {
        assertSupported(requirements, await this.#runningVersion(controller.signal));
      }
      const response = await this.#send(method, path, payload, controller.signal);
      const result = this.#interpret(method, path, endpoint, response);
      if (endpoint?.clientMethod === 'getVersion') this.#version = versionFrom(result);
      return result;
    } finally {
      clearTimeout(timer);
      userSignal?.removeEventListener('abort', onUserAbort);
      release?.();
    }
  }

  async #runningVersion(signal: AbortSignal): Promise<FirecrackerVersionNumber> {
    if (this.#version !== undefined) return this.#version;
    const response = await this.#send('GET', '/version', undefined, signal);
    if (response.statusCode === 400) {
      // Only Firecracker < 1.0.0 lacks the endpoint; no gated feature exists there.
      this.#version = { major: 0, minor: 0, patch: 0, text: 'a version older than 1.0.0 (no GET /version)' };
      return this.#version;
    }
    this.#version = versionFrom(this.#interpret('GET', '/version', endpointNamed('getVersion'), response));
    return this.#version;
  }

  async #send(
    method: FirecrackerHttpMethod,
    path: string,
    payload: string | undefined,
    signal: AbortSignal,
  ): Promise<RawResponse> {
    const headers: Record<string, string> = { accept: 'application/json' };
    if (payload !== undefined) {
      // Firecracker reads a body only by Content-Length; a chunked one arrives empty.
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(payload));
    }
    const connection = this.#openConnection();
    try {
      const response = await connection.request({ method, path, headers, body: payload ?? null, signal });
      const text = await response.body.text();
      return { statusCode: response.statusCode, headers: response.headers, text };
    } catch (error) {
      // Whatever was on the wire may still answer; a fresh connection keeps that answer from
      // being read as the reply to the next call.
      this.#dropConnection();
      if (signal.aborted) throw signal.reason;
      throw this.#transportError(error, `${method} ${path}`);
    }
  }

  #interpret(
    method: string,
    path: string,
    endpoint: FirecrackerEndpoint | undefined,
    response: RawResponse,
  ): unknown {
    const operation = `${method} ${path}`;
    this.#lastResponseDeprecated = headerValue(response.headers, 'deprecation')?.toLowerCase() === 'true';
    if (this.#lastResponseDeprecated) this.#onDeprecation?.({ method, path });

    if (response.statusCode < 200 || response.statusCode > 299) {
      const fault = parseFault(response.text);
      // micro_http's own errors (the `error` shape) mean it may have stopped reading our request
      // mid-body; the rest would be parsed as a new request. Start over on a new connection.
      if (!fault.fromFirecracker) this.#dropConnection();
      throw new FirecrackerApiError({
        method,
        path,
        statusCode: response.statusCode,
        faultMessage: fault.message,
      });
    }
    if (endpoint?.responseBody === 'none') return undefined;
    if (endpoint === undefined && response.text.trim() === '') return undefined;
    try {
      return JSON.parse(response.text) as unknown;
    } catch (error) {
      throw new MicrovmError({
        code: 'ERR_MICROVM_PROTOCOL',
        message: `${operation} answered ${response.statusCode} with a body that is not JSON: ${truncate(response.text)}`,
        cause: error,
      });
    }
  }

  #openConnection(): Client {
    this.#connection ??= new Client('http://localhost', {
      socketPath: this.socketPath,
      pipelining: 1,
      connectTimeout: this.#connectTimeoutMs,
      // Each call has its own deadline; undici's 300 s defaults would cut a long snapshot short.
      headersTimeout: 0,
      bodyTimeout: 0,
    });
    return this.#connection;
  }

  #dropConnection(): void {
    const connection = this.#connection;
    this.#connection = undefined;
    connection?.destroy().catch(() => {
      // Destroying an already broken connection has nothing left to report.
    });
  }

  #transportError(error: unknown, operation: string): MicrovmError<string> {
    if (MicrovmError.isInstance(error)) return error;
    const systemCode = findErrorCode(error);
    if (systemCode !== undefined && socketErrorCodes.has(systemCode)) {
      return new ApiSocketError({ socketPath: this.socketPath, operation, systemCode, cause: error });
    }
    return new MicrovmError({
      code: 'ERR_MICROVM_PROTOCOL',
      message: `${operation}: the Firecracker API answered in a way the client does not understand: ${
        error instanceof Error ? error.message : String(error)
      }`,
      cause: error,
    });
  }

  #disposedError(): MicrovmError {
    return new MicrovmError({
      code: 'ERR_MICROVM_DISPOSED',
      message: `The Firecracker API client for ${this.socketPath} is closed`,
    });
  }
}

// Compile-time proof that every endpoint row names a method of the client.
type MissingClientMethods = Exclude<FirecrackerEndpointName, keyof FirecrackerClient>;
const everyEndpointHasAMethod: [MissingClientMethods] extends [never] ? true : MissingClientMethods = true;
void everyEndpointHasAMethod;

function checkTimeout(field: string, value: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0 || value > maximumTimerMs) {
    throw new ValidationError({
      field,
      rule: `must be a number of milliseconds in (0, ${maximumTimerMs}]`,
      value,
    });
  }
  return value;
}

function serializeBody(body: unknown): string | undefined {
  if (body === undefined) return undefined;
  let text: string | undefined;
  try {
    text = JSON.stringify(body);
  } catch (error) {
    throw new ValidationError({
      field: 'body',
      rule: 'must be serialisable as JSON',
      value: body,
      cause: error,
    });
  }
  if (text === undefined) {
    throw new ValidationError({ field: 'body', rule: 'must be serialisable as JSON', value: body });
  }
  return text;
}

function abortedError(operation: string, reason: unknown): MicrovmError {
  return new MicrovmError({
    code: 'ERR_MICROVM_ABORTED',
    message: `${operation} was aborted`,
    cause: reason,
  });
}

function versionFrom(body: unknown): FirecrackerVersionNumber {
  const text = (body as Partial<FirecrackerVersion> | null)?.firecracker_version;
  const version = typeof text === 'string' ? parseFirecrackerVersion(text) : undefined;
  if (version === undefined) {
    throw new MicrovmError({
      code: 'ERR_MICROVM_PROTOCOL',
      message: `GET /version answered without a usable firecracker_version: ${truncate(JSON.stringify(body))}`,
    });
  }
  return version;
}

/** Firecracker's `{"fault_message"}`, micro_http's `{"error"}`, or the raw text. */
function parseFault(text: string): { message: string; fromFirecracker: boolean } {
  try {
    const parsed = JSON.parse(text) as unknown;
    if (typeof parsed === 'object' && parsed !== null) {
      const record = parsed as Record<string, unknown>;
      if (typeof record.fault_message === 'string')
        return { message: record.fault_message, fromFirecracker: true };
      if (typeof record.error === 'string') return { message: record.error, fromFirecracker: false };
    }
  } catch {
    // Not JSON: fall through to the raw text.
  }
  const trimmed = text.trim();
  return { message: trimmed === '' ? '(empty body)' : truncate(trimmed), fromFirecracker: false };
}

function headerValue(
  headers: Record<string, string | string[] | undefined>,
  name: string,
): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

function findErrorCode(error: unknown): string | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 5 && typeof current === 'object' && current !== null; depth++) {
    const code = (current as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function truncate(text: string): string {
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}
