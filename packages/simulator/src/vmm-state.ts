/**
 * The simulated VMM thread: Firecracker's `PrebootApiController` and `RuntimeApiController` with the resources
 * they configure, the boot and snapshot paths, and the error texts they answer with.
 */
import { closeSync, constants, openSync, readFileSync } from 'node:fs';
import { createConnection, type Socket } from 'node:net';
import type {
  Balloon,
  CpuConfig,
  Drive,
  EntropyDevice,
  MmdsConfig,
  NetworkInterface,
  Pmem,
  RateLimiter,
  Vsock,
} from '@microvm/core';
import { DEFAULT_KERNEL_CMDLINE, DEFAULT_MEM_SIZE_MIB, MAX_TAP_NAME_BYTES } from './constants.js';
import { reportedVersionOf, type SimulatorBehaviour } from './fault-injection.js';
import { PausableScheduler, SerialConsole, SimulatedGuest, serialConsoleEnabled } from './guest.js';
import { type LogThread, origins, type VmmLogger } from './logger.js';
import { MetricsAlreadyInitializedError, type SimulatorMetrics } from './metrics.js';
import { describeOsError, type PathResolver } from './paths.js';
import type { LoadSnapshotRequest, VmmAction } from './request-parser.js';
import {
  checkMemoryFile,
  guestMemoryBytes,
  readVmStateFile,
  type SimulatedVmState,
  type SnapshotFileError,
  writeMemoryFile,
  writeVmStateFile,
} from './snapshot-files.js';
import {
  checkMemoryHotplugConfig,
  isLinkLocalIpv4,
  type MachineState,
  parseLogLevel,
  updateMachineConfig,
} from './validation.js';
import { SimulatedVsockDevice } from './vsock-device.js';

export type InstanceState = 'Not started' | 'Running' | 'Paused';

/** What the VMM answers: 200 with a body, 204, or an error (400, or 413 for MMDS). */
export type VmmOutcome =
  | { status: 200; body: unknown }
  | { status: 204 }
  | { status: 400 | 413; faultMessage: string; fatal?: boolean };

export interface VmmContext {
  instanceId: string;
  logger: VmmLogger;
  metrics: SimulatorMetrics;
  paths: PathResolver;
  behaviour: SimulatorBehaviour;
  enablePci: boolean;
  bootTimer: boolean;
  mmdsSizeLimitBytes: number;
  /** Stops the VMM: the process exits with `code` (after the current response is sent). */
  requestExit: (code: number, reason: string) => void;
  writeStdout?: (text: string) => void;
}

const OPERATION_NOT_SUPPORTED_POST_BOOT =
  'The requested operation is not supported after starting the microVM.';
const OPERATION_NOT_SUPPORTED_PRE_BOOT =
  'The requested operation is not supported before starting the microVM.';
const PCI_NOT_ENABLED = 'The requested operation is not supported: PCI is not enabled';
const MMDS_NOT_INITIALIZED = 'MMDS error: The MMDS data store is not initialized.';
const MAX_KERNEL_CMDLINE_BYTES = 2048;
const DEFAULT_MMDS_IPV4 = '169.254.169.254';
const MIB = 1024 * 1024;

const PREBOOT_ONLY = new Set<VmmAction['kind']>([
  'ConfigureBootSource',
  'ConfigureLogger',
  'ConfigureMetrics',
  'ConfigureSerial',
  'LoadSnapshot',
  'PutCpuConfiguration',
  'SetBalloonDevice',
  'SetVsockDevice',
  'SetMmdsConfiguration',
  'SetEntropyDevice',
  'SetMemoryHotplugDevice',
  'StartMicroVm',
  'UpdateMachineConfiguration',
]);

const RUNTIME_ONLY = new Set<VmmAction['kind']>([
  'CreateSnapshot',
  'FlushMetrics',
  'Pause',
  'Resume',
  'GetBalloonStats',
  'GetMemoryHotplugStatus',
  'UpdateBalloon',
  'UpdateBalloonStatistics',
  'UpdateBlockDevice',
  'UpdateMemoryHotplugSize',
  'UpdateNetworkInterface',
  'UpdatePmemDevice',
  'StartFreePageHinting',
  'GetFreePageHintingStatus',
  'StopFreePageHinting',
  'SendCtrlAltDel',
  'RemoveBlockDevice',
  'RemoveNetworkDevice',
  'RemovePmemDevice',
]);

/** A VMM error answered with 400 (or 413) and `fault_message`. */
class VmmError extends Error {
  constructor(
    message: string,
    readonly status: 400 | 413 = 400,
  ) {
    super(message);
  }
}

interface MemoryHotplugState {
  total_size_mib: number;
  slot_size_mib: number;
  block_size_mib: number;
  plugged_size_mib: number;
  requested_size_mib: number;
}

interface BalloonState {
  config: Required<Balloon>;
  hostCommand: number;
  guestCommand: number | undefined;
}

const HINTING_STOP_COMMAND = 0;

function defaultMachineConfig(): MachineState {
  return {
    vcpu_count: 1,
    mem_size_mib: DEFAULT_MEM_SIZE_MIB,
    smt: false,
    track_dirty_pages: false,
    huge_pages: 'None',
  };
}

/** RFC 7396 JSON merge patch, as `PATCH /mmds` applies it. */
export function jsonMergePatch(target: unknown, patch: unknown): unknown {
  const isObject = (value: unknown): value is Record<string, unknown> =>
    typeof value === 'object' && value !== null && !Array.isArray(value);
  if (!isObject(patch)) return patch;
  const result: Record<string, unknown> = isObject(target) ? { ...target } : {};
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete result[key];
    else result[key] = jsonMergePatch(result[key], value);
  }
  return result;
}

function rateLimiterJson(limiter: RateLimiter | undefined): unknown {
  if (limiter === undefined) return null;
  const bucket = (value: RateLimiter['bandwidth']) =>
    value === undefined
      ? null
      : { size: value.size, one_time_burst: value.one_time_burst ?? null, refill_time: value.refill_time };
  return { bandwidth: bucket(limiter.bandwidth), ops: bucket(limiter.ops) };
}

function mergeRateLimiter(
  current: RateLimiter | undefined,
  update: RateLimiter | undefined,
): RateLimiter | undefined {
  if (update === undefined) return current;
  // An omitted bucket stays as it is.
  const merged: RateLimiter = { ...(current ?? {}) };
  if (update.bandwidth !== undefined) merged.bandwidth = update.bandwidth;
  if (update.ops !== undefined) merged.ops = update.ops;
  return merged;
}

/** Opens and closes a file as Firecracker would open it, turning a failure into the OS error text. */
function probeFile(hostPath: string, writable: boolean): string | undefined {
  try {
    closeSync(openSync(hostPath, writable ? constants.O_RDWR : constants.O_RDONLY));
    return undefined;
  } catch (error) {
    return describeOsError(error);
  }
}

/** Connects to a Unix socket (UFFD handler, vhost-user backend); resolves with the socket or an error text. */
function connectUnixSocket(path: string, timeoutMs: number): Promise<{ socket: Socket } | { error: string }> {
  return new Promise((resolve) => {
    const socket = createConnection(path);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ error: 'Connection timed out (os error 110)' });
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve({ socket });
    });
    socket.once('error', (error) => {
      clearTimeout(timer);
      resolve({ error: describeOsError(error) });
    });
  });
}

/** Network interfaces of the current network namespace (`/proc/net/dev` follows the reader's netns). */
function networkInterfacesInNamespace(): Set<string> {
  const names = new Set<string>();
  try {
    const lines = readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2);
    for (const line of lines) {
      const name = line.split(':')[0]?.trim();
      if (name) names.add(name);
    }
  } catch {
    // No procfs: nothing can be verified.
  }
  return names;
}

function tapError(hostDevName: string, reason: string): string {
  return `Network config error: Could not create the network device: Open tap device failed: Error while creating ifreq structure: ${reason}. Invalid TUN/TAP Backend provided by ${hostDevName}. Check our documentation on setting up the network devices.`;
}

export class SimulatedVmm {
  readonly #context: VmmContext;
  #mode: 'preboot' | 'runtime' = 'preboot';
  #bootPath = false;
  #state: InstanceState = 'Not started';
  #machine: MachineState = defaultMachineConfig();
  #bootSource: { kernel_image_path: string; initrd_path?: string; boot_args?: string } | undefined;
  #drives: Drive[] = [];
  #networkInterfaces: NetworkInterface[] = [];
  #pmem: Pmem[] = [];
  #vsock: { config: Vsock; device: SimulatedVsockDevice } | undefined;
  #vsockActivated = false;
  #balloon: BalloonState | undefined;
  #entropy: EntropyDevice | undefined;
  #mmdsConfig: Required<MmdsConfig> | undefined;
  /** `undefined` until data is PUT (serde's `Value::Null`, "not initialized"). */
  #mmdsData: unknown;
  #memoryHotplug: MemoryHotplugState | undefined;
  #cpuConfig: CpuConfig | undefined;
  #serialOutPath: string | undefined;
  #restored = false;
  #restoreAnnounced = true;
  #kernelCommandLine = '';
  #guest: SimulatedGuest | undefined;
  #uffdSockets: Socket[] = [];
  #bootStartedAt: bigint | undefined;
  #exitTimer: NodeJS.Timeout | undefined;

  constructor(context: VmmContext) {
    this.#context = context;
  }

  get state(): InstanceState {
    return this.#state;
  }

  get started(): boolean {
    return this.#mode === 'runtime';
  }

  #log(level: 'info' | 'warn' | 'error' | 'debug', message: string, thread: LogThread = 'main') {
    this.#context.logger[level](thread, message, origins.rpcInterface);
  }

  /** Handles one action on the VMM thread. Never throws: every failure becomes an outcome. */
  async handle(action: VmmAction): Promise<VmmOutcome> {
    if (this.#mode === 'preboot' && RUNTIME_ONLY.has(action.kind)) {
      return { status: 400, faultMessage: OPERATION_NOT_SUPPORTED_PRE_BOOT };
    }
    if (this.#mode === 'runtime' && PREBOOT_ONLY.has(action.kind)) {
      return { status: 400, faultMessage: OPERATION_NOT_SUPPORTED_POST_BOOT };
    }
    try {
      const body = await this.#dispatch(action);
      return body === undefined ? { status: 204 } : { status: 200, body };
    } catch (error) {
      if (error instanceof FatalLoadError) return { status: 400, faultMessage: error.message, fatal: true };
      if (error instanceof VmmError) return { status: error.status, faultMessage: error.message };
      throw error;
    }
  }

  async #dispatch(action: VmmAction): Promise<unknown> {
    switch (action.kind) {
      case 'GetInstanceInfo':
        return {
          id: this.#context.instanceId,
          state: this.#state,
          vmm_version: reportedVersionOf(this.#context.behaviour),
          app_name: 'Firecracker',
        };
      case 'GetVersion':
        return { firecracker_version: reportedVersionOf(this.#context.behaviour) };
      case 'GetMachineConfig':
        return this.#machineConfigJson();
      case 'GetFullVmConfig':
        this.#log(
          'warn',
          'If the VM was restored from snapshot, boot-source, machine-config.smt, and machine-config.cpu_template will all be empty.',
        );
        return this.#fullConfigJson();
      case 'ConfigureBootSource':
        return this.#setBootSource(action.config);
      case 'ConfigureLogger':
        return this.#configureLogger(action.config);
      case 'ConfigureMetrics':
        return this.#configureMetrics(action.config.metrics_path);
      case 'ConfigureSerial':
        this.#serialOutPath = action.config.serial_out_path;
        return undefined;
      case 'UpdateMachineConfiguration':
        return this.#updateMachineConfig(action.config);
      case 'PutCpuConfiguration':
        this.#cpuConfig = action.config;
        return undefined;
      case 'InsertBlockDevice':
        return this.#mode === 'preboot'
          ? this.#insertDrive(action.config)
          : this.#hotplugDrive(action.config);
      case 'InsertNetworkDevice':
        return this.#mode === 'preboot'
          ? this.#insertNetworkInterface(action.config)
          : this.#hotplugNetworkInterface(action.config);
      case 'InsertPmemDevice':
        return this.#mode === 'preboot' ? this.#insertPmem(action.config) : this.#hotplugPmem(action.config);
      case 'RemoveBlockDevice':
        return this.#removeDrive(action.id);
      case 'RemoveNetworkDevice':
        return this.#removeNetworkInterface(action.id);
      case 'RemovePmemDevice':
        return this.#removePmem(action.id);
      case 'SetVsockDevice':
        return this.#setVsock(action.config);
      case 'SetBalloonDevice':
        return this.#setBalloon(action.config);
      case 'SetEntropyDevice':
        this.#bootPath = true;
        this.#entropy = action.config;
        return undefined;
      case 'SetMmdsConfiguration':
        return this.#setMmdsConfig(action.config);
      case 'PutMmds':
        return this.#putMmds(action.value);
      case 'PatchMmds':
        return this.#patchMmds(action.value);
      case 'GetMmds':
        this.#mmdsAvailable();
        return this.#mmdsData === undefined ? {} : this.#mmdsData;
      case 'SetMemoryHotplugDevice':
        return this.#setMemoryHotplug(action.config);
      case 'GetBalloonConfig':
        return this.#balloonConfigJson();
      case 'StartMicroVm':
        return this.#startMicroVm();
      case 'LoadSnapshot':
        return this.#loadSnapshot(action.config);
      case 'Pause':
        return this.#pause();
      case 'Resume':
        return this.#resume();
      case 'FlushMetrics':
        this.#context.metrics.write();
        return undefined;
      case 'SendCtrlAltDel':
        this.#context.metrics.increment('i8042', 'write_count', 2);
        this.#guest?.ctrlAltDel();
        return undefined;
      case 'CreateSnapshot':
        return this.#createSnapshot(
          action.config.snapshot_path,
          action.config.mem_file_path,
          action.config.snapshot_type ?? 'Full',
        );
      case 'GetBalloonStats':
        return this.#balloonStats();
      case 'UpdateBalloon':
        return this.#updateBalloon(action.config.amount_mib);
      case 'UpdateBalloonStatistics':
        return this.#updateBalloonStatistics(action.config.stats_polling_interval_s);
      case 'StartFreePageHinting':
        return this.#startHinting(action.config.acknowledge_on_stop ?? true);
      case 'GetFreePageHintingStatus': {
        const balloon = this.#hintingBalloon();
        return balloon.guestCommand === undefined
          ? { host_cmd: balloon.hostCommand }
          : { host_cmd: balloon.hostCommand, guest_cmd: balloon.guestCommand };
      }
      case 'StopFreePageHinting': {
        const balloon = this.#hintingBalloon();
        balloon.hostCommand = HINTING_STOP_COMMAND;
        return undefined;
      }
      case 'UpdateBlockDevice':
        return this.#updateDrive(
          action.config.drive_id,
          action.config.path_on_host,
          action.config.rate_limiter,
        );
      case 'UpdateNetworkInterface':
        return this.#updateNetworkInterface(
          action.config.iface_id,
          action.config.rx_rate_limiter,
          action.config.tx_rate_limiter,
        );
      case 'UpdatePmemDevice':
        return this.#updatePmem(action.config.id, action.config.rate_limiter);
      case 'GetMemoryHotplugStatus':
        if (this.#memoryHotplug === undefined) {
          throw new VmmError('Internal VMM error: Memory hotplug device not found.');
        }
        return { ...this.#memoryHotplug };
      case 'UpdateMemoryHotplugSize':
        return this.#updateMemoryHotplug(action.config.requested_size_mib ?? 0);
    }
  }

  // --- Configuration ---------------------------------------------------------------------------------------

  #machineConfigJson(): Record<string, unknown> {
    const json: Record<string, unknown> = {
      vcpu_count: this.#machine.vcpu_count,
      mem_size_mib: this.#machine.mem_size_mib,
      smt: this.#machine.smt,
      track_dirty_pages: this.#machine.track_dirty_pages,
      huge_pages: this.#machine.huge_pages,
    };
    if (this.#machine.cpu_template !== undefined) json.cpu_template = this.#machine.cpu_template;
    return json;
  }

  #driveJson(drive: Drive): Record<string, unknown> {
    const vhostUser = drive.socket !== undefined;
    return {
      drive_id: drive.drive_id,
      partuuid: drive.partuuid ?? null,
      is_root_device: drive.is_root_device,
      cache_type: drive.cache_type ?? 'Unsafe',
      is_read_only: vhostUser ? null : (drive.is_read_only ?? false),
      path_on_host: drive.path_on_host ?? null,
      rate_limiter: rateLimiterJson(drive.rate_limiter),
      io_engine: vhostUser ? null : (drive.io_engine ?? 'Sync'),
      socket: drive.socket ?? null,
    };
  }

  #networkInterfaceJson(networkInterface: NetworkInterface): Record<string, unknown> {
    const json: Record<string, unknown> = {
      iface_id: networkInterface.iface_id,
      host_dev_name: networkInterface.host_dev_name,
      guest_mac: networkInterface.guest_mac ?? null,
      rx_rate_limiter: rateLimiterJson(networkInterface.rx_rate_limiter),
      tx_rate_limiter: rateLimiterJson(networkInterface.tx_rate_limiter),
    };
    if (networkInterface.mtu !== undefined) json.mtu = networkInterface.mtu;
    return json;
  }

  #fullConfigJson(): Record<string, unknown> {
    const bootSource = this.#bootSource;
    return {
      balloon: this.#balloon === undefined ? null : { ...this.#balloon.config },
      drives: this.#drives.map((drive) => this.#driveJson(drive)),
      'boot-source': {
        kernel_image_path: bootSource?.kernel_image_path ?? '',
        initrd_path: bootSource?.initrd_path ?? null,
        boot_args: bootSource?.boot_args ?? null,
      },
      'cpu-config': this.#cpuConfig ?? null,
      logger: null,
      'machine-config': this.#machineConfigJson(),
      metrics: null,
      'mmds-config': this.#mmdsConfig === undefined ? null : { ...this.#mmdsConfig },
      'network-interfaces': this.#networkInterfaces.map((networkInterface) =>
        this.#networkInterfaceJson(networkInterface),
      ),
      vsock:
        this.#vsock === undefined
          ? null
          : { guest_cid: this.#vsock.config.guest_cid, uds_path: this.#vsock.config.uds_path },
      entropy:
        this.#entropy === undefined ? null : { rate_limiter: rateLimiterJson(this.#entropy.rate_limiter) },
      pmem: this.#pmem.map((device) => ({
        id: device.id,
        path_on_host: device.path_on_host,
        root_device: device.root_device ?? false,
        read_only: device.read_only ?? false,
        rate_limiter: rateLimiterJson(device.rate_limiter),
      })),
      'memory-hotplug':
        this.#memoryHotplug === undefined
          ? null
          : {
              total_size_mib: this.#memoryHotplug.total_size_mib,
              slot_size_mib: this.#memoryHotplug.slot_size_mib,
              block_size_mib: this.#memoryHotplug.block_size_mib,
            },
    };
  }

  #setBootSource(config: { kernel_image_path: string; initrd_path?: string; boot_args?: string }): undefined {
    this.#bootPath = true;
    const { paths } = this.#context;
    const kernelProblem = probeFile(paths.resolve(config.kernel_image_path), false);
    if (kernelProblem !== undefined)
      throw new VmmError(`Boot source error: The kernel file cannot be opened: ${kernelProblem}`);
    if (config.initrd_path !== undefined) {
      const initrdProblem = probeFile(paths.resolve(config.initrd_path), false);
      if (initrdProblem !== undefined) {
        throw new VmmError(
          `Boot source error: The initrd file cannot be opened due to invalid path or invalid permissions. ${initrdProblem}`,
        );
      }
    }
    if (config.boot_args !== undefined && Buffer.byteLength(config.boot_args) >= MAX_KERNEL_CMDLINE_BYTES) {
      throw new VmmError(
        'Boot source error: The kernel command line is invalid: Command line string is too large',
      );
    }
    this.#bootSource = { ...config };
    return undefined;
  }

  #configureLogger(config: {
    log_path?: string;
    level?: string;
    show_level?: boolean;
    show_log_origin?: boolean;
    module?: string;
  }): undefined {
    const level = config.level === undefined ? undefined : parseLogLevel(config.level);
    try {
      this.#context.logger.configure({
        hostLogPath: config.log_path === undefined ? undefined : this.#context.paths.resolve(config.log_path),
        level: level as 'Off' | 'Error' | 'Warn' | 'Info' | 'Debug' | 'Trace' | undefined,
        showLevel: config.show_level,
        showLogOrigin: config.show_log_origin,
        module: config.module,
      });
    } catch (error) {
      throw new VmmError(`Logger error: Failed to open target file: ${describeOsError(error)}`);
    }
    return undefined;
  }

  #configureMetrics(metricsPath: string): undefined {
    try {
      this.#context.metrics.initialize(this.#context.paths.resolve(metricsPath));
    } catch (error) {
      if (error instanceof MetricsAlreadyInitializedError)
        throw new VmmError(`Metrics error: ${error.message}`);
      throw new VmmError(`Metrics error: Failed to open the metrics file: ${describeOsError(error)}`);
    }
    return undefined;
  }

  #updateMachineConfig(update: Parameters<typeof updateMachineConfig>[1]): undefined {
    this.#bootPath = true;
    const result = updateMachineConfig(this.#machine, update);
    if ('error' in result) throw new VmmError(`Machine config error: ${result.error}`);
    const next = result.config;
    if (this.#balloon !== undefined && this.#balloon.config.amount_mib > next.mem_size_mib) {
      throw new VmmError(
        'Machine config error: The memory size (MiB) is smaller than the previously set balloon device target size.',
      );
    }
    if (next.huge_pages !== 'None' && this.#balloon !== undefined) {
      throw new VmmError(
        "Machine config error: Firecracker's huge pages support is incompatible with memory ballooning.",
      );
    }
    if (next.huge_pages !== 'None' && this.#bootSource?.initrd_path !== undefined) {
      throw new VmmError(
        "Machine config error: Firecracker's huge pages support is incompatible with initrds.",
      );
    }
    this.#machine = next;
    return undefined;
  }

  #rootDrive(): Drive | undefined {
    return this.#drives.find((drive) => drive.is_root_device);
  }

  #rootPmem(): Pmem | undefined {
    return this.#pmem.find((device) => device.root_device === true);
  }

  /** Validates a block device the way `BlockBuilder` creates it: the backing file is opened now. */
  async #checkDrive(drive: Drive): Promise<void> {
    const { paths } = this.#context;
    if (drive.socket !== undefined) {
      if (
        drive.path_on_host !== undefined ||
        drive.is_read_only !== undefined ||
        drive.rate_limiter !== undefined
      ) {
        throw new VmmError(
          'Drive config error: Unable to create the block device: Invalid block config: vhost-user-block takes `socket` without `path_on_host`, `is_read_only` and `rate_limiter`',
        );
      }
      const connection = await connectUnixSocket(paths.socketPath(drive.socket), 1000);
      if ('error' in connection) {
        throw new VmmError(
          `Drive config error: Unable to create the vhost-user block device: Vhost-user error: Error connecting to the backend: ${connection.error}`,
        );
      }
      connection.socket.destroy();
      return;
    }
    if (drive.path_on_host === undefined) {
      throw new VmmError(
        'Drive config error: Unable to create the virtio block device: Virtio backend error: Invalid block config: missing `path_on_host`',
      );
    }
    const problem = probeFile(paths.resolve(drive.path_on_host), drive.is_read_only !== true);
    if (problem !== undefined) {
      throw new VmmError(
        `Drive config error: Unable to create the virtio block device: Virtio backend error: Error manipulating the backing file: ${problem} ${drive.path_on_host}`,
      );
    }
  }

  async #insertDrive(drive: Drive): Promise<undefined> {
    this.#bootPath = true;
    const existingIndex = this.#drives.findIndex((candidate) => candidate.drive_id === drive.drive_id);
    const root = this.#rootDrive();
    if (drive.is_root_device && root !== undefined && root.drive_id !== drive.drive_id) {
      throw new VmmError('Drive config error: A root block device already exists!');
    }
    if (drive.is_root_device && this.#rootPmem() !== undefined) {
      throw new VmmError('Drive config error: A root block device already exists!');
    }
    await this.#checkDrive(drive);
    if (existingIndex >= 0) this.#drives.splice(existingIndex, 1);
    // Firecracker keeps the root device first, whatever the order of the calls.
    if (drive.is_root_device) this.#drives.unshift(drive);
    else this.#drives.splice(existingIndex >= 0 ? existingIndex : this.#drives.length, 0, drive);
    this.#context.metrics.addDevice('block', drive.drive_id);
    return undefined;
  }

  #requirePci(): void {
    if (!this.#context.enablePci) throw new VmmError(PCI_NOT_ENABLED);
  }

  async #hotplugDrive(drive: Drive): Promise<undefined> {
    this.#requirePci();
    if (this.#drives.some((candidate) => candidate.drive_id === drive.drive_id)) {
      throw new VmmError(
        `Drive config error: Unable to hotplug the block device: a device with ID ${drive.drive_id} already exists`,
      );
    }
    if (drive.is_root_device) throw new VmmError('Drive config error: Cannot hotplug a root device');
    await this.#checkDrive(drive);
    this.#drives.push(drive);
    this.#context.metrics.addDevice('block', drive.drive_id);
    return undefined;
  }

  #removeDrive(id: string): undefined {
    this.#requirePci();
    const index = this.#drives.findIndex((drive) => drive.drive_id === id);
    if (index < 0)
      throw new VmmError(`Drive config error: Unable to unplug the block device: device ${id} not found`);
    if (this.#drives[index]?.is_root_device)
      throw new VmmError('Drive config error: Cannot unplug root device');
    this.#drives.splice(index, 1);
    this.#context.metrics.removeDevice('block', id);
    return undefined;
  }

  async #updateDrive(
    id: string,
    pathOnHost: string | undefined,
    rateLimiter: RateLimiter | undefined,
  ): Promise<undefined> {
    const drive = this.#drives.find((candidate) => candidate.drive_id === id);
    const fail = (reason: string) =>
      new VmmError(
        `Drive config error: Unable to patch the block device: ${reason} Please verify the request arguments.`,
      );
    if (drive === undefined) throw fail(`Device manager error: Device ${id} not found.`);
    if (pathOnHost === undefined && rateLimiter === undefined) {
      if (drive.socket === undefined) throw fail(`Block device ${id} is not a vhost-user-block device.`);
      return undefined;
    }
    if (pathOnHost !== undefined) {
      if (drive.socket !== undefined) throw fail(`Block device ${id} is a vhost-user-block device.`);
      const problem = probeFile(this.#context.paths.resolve(pathOnHost), drive.is_read_only !== true);
      if (problem !== undefined)
        throw fail(`Virtio backend error: Error manipulating the backing file: ${problem} ${pathOnHost}`);
      drive.path_on_host = pathOnHost;
      this.#context.metrics.increment('block', 'update_count', 1, { kind: 'block', id });
    }
    const limiter = mergeRateLimiter(drive.rate_limiter, rateLimiter);
    if (limiter !== undefined) drive.rate_limiter = limiter;
    return undefined;
  }

  #checkTap(networkInterface: NetworkInterface, otherInterfaces: NetworkInterface[]): void {
    const name = networkInterface.host_dev_name;
    if (Buffer.byteLength(name) > MAX_TAP_NAME_BYTES) {
      throw new VmmError(
        'Network config error: Could not create the network device: Open tap device failed: Invalid interface name',
      );
    }
    if (otherInterfaces.some((other) => other.host_dev_name === name)) {
      throw new VmmError(tapError(name, 'Device or resource busy (os error 16)'));
    }
    if (this.#context.behaviour.requireTap && !networkInterfacesInNamespace().has(name)) {
      throw new VmmError(tapError(name, 'Operation not permitted (os error 1)'));
    }
  }

  #checkNetworkInterface(networkInterface: NetworkInterface): NetworkInterface[] {
    const others = this.#networkInterfaces.filter((other) => other.iface_id !== networkInterface.iface_id);
    const mac = networkInterface.guest_mac;
    if (mac !== undefined && others.some((other) => other.guest_mac === mac)) {
      throw new VmmError(`Network config error: The MAC address is already in use: ${mac}`);
    }
    if (networkInterface.mtu !== undefined && networkInterface.mtu < 68) {
      throw new VmmError(
        `Network config error: Could not create the network device: Invalid MTU ${networkInterface.mtu}: it must be between 68 and 65535`,
      );
    }
    this.#checkTap(networkInterface, others);
    return others;
  }

  #insertNetworkInterface(networkInterface: NetworkInterface): undefined {
    this.#bootPath = true;
    this.#checkNetworkInterface(networkInterface);
    const index = this.#networkInterfaces.findIndex((other) => other.iface_id === networkInterface.iface_id);
    if (index >= 0) this.#networkInterfaces[index] = networkInterface;
    else this.#networkInterfaces.push(networkInterface);
    this.#context.metrics.addDevice('net', networkInterface.iface_id);
    return undefined;
  }

  #hotplugNetworkInterface(networkInterface: NetworkInterface): undefined {
    this.#requirePci();
    if (this.#networkInterfaces.some((other) => other.iface_id === networkInterface.iface_id)) {
      throw new VmmError(
        `Network config error: Unable to hotplug the network device: a device with ID ${networkInterface.iface_id} already exists`,
      );
    }
    this.#checkNetworkInterface(networkInterface);
    this.#networkInterfaces.push(networkInterface);
    this.#context.metrics.addDevice('net', networkInterface.iface_id);
    return undefined;
  }

  #removeNetworkInterface(id: string): undefined {
    this.#requirePci();
    const index = this.#networkInterfaces.findIndex((networkInterface) => networkInterface.iface_id === id);
    if (index < 0)
      throw new VmmError(`Network config error: Unable to unplug the network device: device ${id} not found`);
    this.#networkInterfaces.splice(index, 1);
    this.#context.metrics.removeDevice('net', id);
    return undefined;
  }

  #updateNetworkInterface(id: string, rx: RateLimiter | undefined, tx: RateLimiter | undefined): undefined {
    const networkInterface = this.#networkInterfaces.find((candidate) => candidate.iface_id === id);
    if (networkInterface === undefined) {
      throw new VmmError(
        `Network config error: Unable to update the net device: Device manager error: Device ${id} not found.`,
      );
    }
    const nextRx = mergeRateLimiter(networkInterface.rx_rate_limiter, rx);
    const nextTx = mergeRateLimiter(networkInterface.tx_rate_limiter, tx);
    if (nextRx !== undefined) networkInterface.rx_rate_limiter = nextRx;
    if (nextTx !== undefined) networkInterface.tx_rate_limiter = nextTx;
    return undefined;
  }

  #checkPmem(device: Pmem): void {
    const problem = probeFile(this.#context.paths.resolve(device.path_on_host), device.read_only !== true);
    if (problem !== undefined) {
      throw new VmmError(
        `Pmem device error: Unable to create the virtio-pmem device: Error opening the backing file: ${problem}`,
      );
    }
  }

  #insertPmem(device: Pmem): undefined {
    this.#bootPath = true;
    if (device.root_device === true) {
      if (this.#rootDrive() !== undefined) {
        throw new VmmError(
          'Pmem device error: Attempt to add pmem as a root device while the root device defined as a block device',
        );
      }
      const root = this.#rootPmem();
      if (root !== undefined && root.id !== device.id)
        throw new VmmError('Pmem device error: A root pmem device already exists!');
    }
    this.#checkPmem(device);
    const index = this.#pmem.findIndex((other) => other.id === device.id);
    if (index >= 0) this.#pmem[index] = device;
    else this.#pmem.push(device);
    return undefined;
  }

  #hotplugPmem(device: Pmem): undefined {
    this.#requirePci();
    if (this.#pmem.some((other) => other.id === device.id)) {
      throw new VmmError(
        `Pmem device error: Unable to hotplug the pmem device: a device with ID ${device.id} already exists`,
      );
    }
    if (device.root_device === true) throw new VmmError('Pmem device error: Cannot hotplug a root device');
    this.#checkPmem(device);
    this.#pmem.push(device);
    return undefined;
  }

  #removePmem(id: string): undefined {
    this.#requirePci();
    const index = this.#pmem.findIndex((device) => device.id === id);
    if (index < 0)
      throw new VmmError(`Pmem device error: Unable to unplug the pmem device: device ${id} not found`);
    if (this.#pmem[index]?.root_device === true)
      throw new VmmError('Pmem device error: Cannot unplug root device');
    this.#pmem.splice(index, 1);
    return undefined;
  }

  #updatePmem(id: string, rateLimiter: RateLimiter | undefined): undefined {
    const device = this.#pmem.find((candidate) => candidate.id === id);
    if (device === undefined)
      throw new VmmError(`Pmem device error: Unable to update the pmem device: device ${id} not found`);
    const limiter = mergeRateLimiter(device.rate_limiter, rateLimiter);
    if (limiter !== undefined) device.rate_limiter = limiter;
    return undefined;
  }

  async #bindVsock(config: Vsock, udsPath: string): Promise<SimulatedVsockDevice> {
    const { behaviour, paths } = this.#context;
    return SimulatedVsockDevice.bind({
      udsPath: paths.socketPath(udsPath),
      guestCid: config.guest_cid,
      echoPort: behaviour.vsockEchoPort,
      guestReadyDelayMs: behaviour.guestReadyMs,
    });
  }

  async #setVsock(config: Vsock): Promise<undefined> {
    this.#bootPath = true;
    // Re-PUTting the device removes the previous socket first.
    if (this.#vsock !== undefined) {
      const previous = this.#vsock;
      this.#vsock = undefined;
      await previous.device.close();
    }
    try {
      const device = await this.#bindVsock(config, config.uds_path);
      this.#vsock = { config: { ...config }, device };
    } catch (error) {
      throw new VmmError(`Vsock config error: ${(error as Error).message}`);
    }
    return undefined;
  }

  #setBalloon(config: Balloon): undefined {
    this.#bootPath = true;
    if (config.amount_mib > this.#machine.mem_size_mib) {
      throw new VmmError('Balloon config error: Amount of pages requested is too large.');
    }
    if (this.#machine.huge_pages !== 'None') {
      throw new VmmError(
        "Balloon config error: Firecracker's huge pages support is incompatible with memory ballooning.",
      );
    }
    this.#balloon = {
      config: {
        amount_mib: config.amount_mib,
        deflate_on_oom: config.deflate_on_oom,
        stats_polling_interval_s: config.stats_polling_interval_s ?? 0,
        free_page_hinting: config.free_page_hinting ?? false,
        free_page_reporting: config.free_page_reporting ?? false,
      },
      hostCommand: HINTING_STOP_COMMAND,
      guestCommand: undefined,
    };
    return undefined;
  }

  #balloonConfigJson(): unknown {
    if (this.#balloon === undefined) throw new VmmError('Balloon config error: No balloon device found.');
    return { ...this.#balloon.config };
  }

  #runtimeBalloon(): BalloonState {
    if (this.#balloon === undefined)
      throw new VmmError('Balloon update error: Balloon: No balloon device found.');
    return this.#balloon;
  }

  #balloonStats(): unknown {
    const balloon = this.#runtimeBalloon();
    if (balloon.config.stats_polling_interval_s === 0) {
      throw new VmmError('Balloon update error: Balloon: Statistics for the balloon device are not enabled');
    }
    const pages = balloon.config.amount_mib * 256;
    const totalBytes = this.#machine.mem_size_mib * MIB;
    const balloonBytes = balloon.config.amount_mib * MIB;
    return {
      target_pages: pages,
      actual_pages: pages,
      target_mib: balloon.config.amount_mib,
      actual_mib: balloon.config.amount_mib,
      swap_in: 0,
      swap_out: 0,
      major_faults: 12,
      minor_faults: 4096,
      free_memory: Math.max(0, totalBytes - balloonBytes - 32 * MIB),
      total_memory: totalBytes,
      available_memory: Math.max(0, totalBytes - balloonBytes - 24 * MIB),
      disk_caches: 8 * MIB,
      hugetlb_allocations: 0,
      hugetlb_failures: 0,
    };
  }

  #updateBalloon(amountMib: number): undefined {
    const balloon = this.#runtimeBalloon();
    if (amountMib > this.#machine.mem_size_mib)
      throw new VmmError('Balloon update error: Amount of pages requested is too large.');
    balloon.config.amount_mib = amountMib;
    this.#context.metrics.increment('balloon', 'inflate_count');
    return undefined;
  }

  #updateBalloonStatistics(intervalSeconds: number): undefined {
    const balloon = this.#runtimeBalloon();
    if ((balloon.config.stats_polling_interval_s === 0) !== (intervalSeconds === 0)) {
      throw new VmmError(
        'Balloon update error: Balloon: Cannot enable or disable the statistics after boot.',
      );
    }
    balloon.config.stats_polling_interval_s = intervalSeconds;
    return undefined;
  }

  #hintingBalloon(): BalloonState {
    const balloon = this.#runtimeBalloon();
    if (!balloon.config.free_page_hinting) {
      throw new VmmError(
        'Balloon update error: Balloon: Free page hinting is not enabled on the balloon device.',
      );
    }
    return balloon;
  }

  #startHinting(acknowledgeOnStop: boolean): undefined {
    const balloon = this.#hintingBalloon();
    balloon.hostCommand = Math.max(2, balloon.hostCommand + 1);
    // The simulated guest reports every free page at once and, when asked to, the host acknowledges.
    balloon.guestCommand = acknowledgeOnStop ? HINTING_STOP_COMMAND : balloon.hostCommand;
    return undefined;
  }

  #setMmdsConfig(config: MmdsConfig): undefined {
    this.#bootPath = true;
    const prefix = 'MMMDS config error: ';
    if (config.network_interfaces.length === 0) {
      throw new VmmError(
        `${prefix}The list of network interface IDs that allow forwarding MMDS requests is empty.`,
      );
    }
    const known = new Set(this.#networkInterfaces.map((networkInterface) => networkInterface.iface_id));
    if (config.network_interfaces.some((id) => !known.has(id))) {
      throw new VmmError(
        `${prefix}The list of network interface IDs provided contains at least one ID that does not correspond to any existing network interface.`,
      );
    }
    const address = config.ipv4_address ?? DEFAULT_MMDS_IPV4;
    if (!isLinkLocalIpv4(address)) throw new VmmError(`${prefix}The MMDS IPv4 address is not link local.`);
    this.#mmdsConfig = {
      version: config.version ?? 'V1',
      network_interfaces: [...config.network_interfaces],
      ipv4_address: address,
      imds_compat: config.imds_compat ?? false,
    };
    return undefined;
  }

  /** Post-boot, the data store is reached through an MMDS-enabled network device. */
  #mmdsAvailable(): void {
    if (this.#mode === 'runtime' && this.#mmdsConfig === undefined) throw new VmmError(MMDS_NOT_INITIALIZED);
  }

  #checkMmdsSize(value: unknown): void {
    if (Buffer.byteLength(JSON.stringify(value)) > this.#context.mmdsSizeLimitBytes) {
      throw new VmmError("MMDS limit exceeded error: The MMDS patch request doesn't fit.", 413);
    }
  }

  #putMmds(value: unknown): undefined {
    this.#mmdsAvailable();
    this.#checkMmdsSize(value);
    this.#mmdsData = value;
    return undefined;
  }

  #patchMmds(value: unknown): undefined {
    this.#mmdsAvailable();
    if (this.#mmdsData === undefined) throw new VmmError(MMDS_NOT_INITIALIZED);
    const patched = jsonMergePatch(this.#mmdsData, value);
    this.#checkMmdsSize(patched);
    this.#mmdsData = patched;
    return undefined;
  }

  #setMemoryHotplug(config: {
    total_size_mib?: number;
    block_size_mib?: number;
    slot_size_mib?: number;
  }): undefined {
    this.#bootPath = true;
    const state = {
      total_size_mib: config.total_size_mib ?? 0,
      block_size_mib: config.block_size_mib ?? 2,
      slot_size_mib: config.slot_size_mib ?? 128,
    };
    const problem = checkMemoryHotplugConfig(state);
    if (problem !== undefined) throw new VmmError(`Memory hotplug config error: ${problem}`);
    this.#memoryHotplug = { ...state, plugged_size_mib: 0, requested_size_mib: 0 };
    return undefined;
  }

  #updateMemoryHotplug(requestedMib: number): undefined {
    const hotplug = this.#memoryHotplug;
    if (hotplug === undefined)
      throw new VmmError('Memory hotplug update error: Memory hotplug device not found.');
    if (requestedMib > hotplug.total_size_mib) {
      throw new VmmError(
        `Memory hotplug update error: The requested size (${requestedMib} MiB) is larger than the hotpluggable memory (${hotplug.total_size_mib} MiB).`,
      );
    }
    if (requestedMib % hotplug.block_size_mib !== 0) {
      throw new VmmError(
        `Memory hotplug update error: The requested size must be a multiple of the block size (${hotplug.block_size_mib} MiB).`,
      );
    }
    this.#context.metrics.increment(
      'memory_hotplug',
      requestedMib > hotplug.plugged_size_mib ? 'plug_count' : 'unplug_count',
    );
    hotplug.requested_size_mib = requestedMib;
    // The simulated guest plugs or unplugs at once.
    hotplug.plugged_size_mib = requestedMib;
    return undefined;
  }

  // --- Boot -------------------------------------------------------------------------------------------------

  /** The command line the guest sees: the user's (or the default), plus what Firecracker appends. */
  #composeKernelCommandLine(): string {
    const parts = [this.#bootSource?.boot_args ?? DEFAULT_KERNEL_CMDLINE];
    const rootDrive = this.#rootDrive();
    const rootPmem = this.#rootPmem();
    if (rootDrive !== undefined) {
      parts.push(rootDrive.partuuid !== undefined ? `root=PARTUUID=${rootDrive.partuuid}` : 'root=/dev/vda');
      parts.push(rootDrive.is_read_only === true ? 'ro' : 'rw');
    } else if (rootPmem !== undefined) {
      parts.push(`root=/dev/pmem${this.#pmem.indexOf(rootPmem)}`, rootPmem.read_only === true ? 'ro' : 'rw');
    }
    if (!this.#context.enablePci) {
      parts.push('pci=off');
      const deviceCount =
        this.#drives.length +
        this.#networkInterfaces.length +
        this.#pmem.length +
        (this.#vsock === undefined ? 0 : 1) +
        (this.#balloon === undefined ? 0 : 1) +
        (this.#entropy === undefined ? 0 : 1);
      for (let index = 0; index < deviceCount; index += 1) {
        parts.push(`virtio_mmio.device=4K@0x${(0xc0001000 + index * 0x1000).toString(16)}:${5 + index}`);
      }
    }
    return parts.join(' ');
  }

  #openSerialConsole(commandLine: string): SerialConsole | undefined {
    if (!serialConsoleEnabled(commandLine)) return undefined;
    const { metrics } = this.#context;
    const onBytes = (bytes: number, dropped: boolean) => {
      if (dropped) metrics.increment('uart', 'missed_write_count', bytes);
      else metrics.increment('uart', 'write_count', bytes);
    };
    if (this.#serialOutPath === undefined) {
      return new SerialConsole({ writeStdout: this.#context.writeStdout, onBytes });
    }
    const hostPath = this.#context.paths.resolve(this.#serialOutPath);
    let fileDescriptor: number;
    try {
      fileDescriptor = openSync(
        hostPath,
        constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NONBLOCK,
        0o644,
      );
    } catch (error) {
      throw new VmmError(
        `Start microvm error: Unable to open the serial output file: ${describeOsError(error)}`,
      );
    }
    return new SerialConsole({ fileDescriptor, onBytes });
  }

  #createGuest(commandLine: string): SimulatedGuest {
    const { behaviour, logger } = this.#context;
    return new SimulatedGuest({
      console: this.#openSerialConsole(commandLine),
      scheduler: new PausableScheduler(),
      readyLine: behaviour.readyLine,
      guestReadyMs: behaviour.guestReadyMs,
      shutdownDelayMs: behaviour.shutdownDelayMs,
      consoleFloodBytes: behaviour.consoleFloodBytes,
      kernelPanic: behaviour.kernelPanic,
      ignoreCtrlAltDel: behaviour.ignoreCtrlAltDel,
      onReset: (reason) => {
        this.#context.metrics.increment('i8042', 'reset_count');
        logger.info('fc_vcpu 0', `Received KVM_EXIT_SHUTDOWN signal (${reason})`, origins.vcpu);
        logger.info('main', 'Vmm is stopping.', origins.vmm);
        this.#context.requestExit(0, reason);
      },
      onReady: () => {
        if (!this.#context.bootTimer || this.#bootStartedAt === undefined) return;
        const elapsedUs = Number((process.hrtime.bigint() - this.#bootStartedAt) / 1000n);
        const cpuUs = Math.round(process.cpuUsage().user / 10);
        logger.info(
          'fc_vcpu 0',
          `Guest-boot-time = ${String(elapsedUs).padStart(8)} us ${String(Math.floor(elapsedUs / 1000)).padStart(4)} ms, ${String(cpuUs).padStart(8)} CPU us ${String(Math.floor(cpuUs / 1000)).padStart(4)} CPU ms`,
          origins.bootTimer,
        );
      },
    });
  }

  #startMicroVm(): undefined {
    if (this.#bootSource === undefined) {
      throw new VmmError('Start microvm error: Cannot start microvm without kernel configuration.');
    }
    const commandLine = this.#composeKernelCommandLine();
    const guest = this.#createGuest(commandLine);
    this.#kernelCommandLine = commandLine;
    this.#guest = guest;
    this.#mode = 'runtime';
    this.#state = 'Running';
    this.#bootStartedAt = process.hrtime.bigint();
    const { logger, metrics, behaviour } = this.#context;
    logger.info(
      'main',
      'Successfully started microvm that was configured from one single json',
      origins.builder,
    );
    metrics.startPeriodic();
    const rootDrive = this.#rootDrive();
    const rootPmem = this.#rootPmem();
    // The guest boots once the response is on its way, as vCPUs run concurrently with the API.
    setImmediate(() => {
      guest.boot({
        commandLine,
        vcpuCount: this.#machine.vcpu_count,
        memSizeMib: this.#machine.mem_size_mib,
        rootDevice:
          rootDrive !== undefined
            ? 'vda'
            : rootPmem !== undefined
              ? `pmem${this.#pmem.indexOf(rootPmem)}`
              : undefined,
        networkInterfaceCount: this.#networkInterfaces.length,
        vsockEnabled: this.#vsock !== undefined,
      });
      this.#activateVsock();
    });
    if (behaviour.exitAfterBootMs !== undefined) this.#scheduleVcpuFailure(behaviour.exitAfterBootMs);
    return undefined;
  }

  #activateVsock(): void {
    if (this.#vsock === undefined || this.#vsockActivated) return;
    this.#vsockActivated = true;
    this.#vsock.device.activate();
  }

  #scheduleVcpuFailure(delayMs: number): void {
    this.#exitTimer = setTimeout(() => {
      const message =
        'Unexpected exit reason on vcpu run: injected vCPU failure (MICROVM_SIMULATOR_EXIT_AFTER_BOOT_MS)';
      this.#context.logger.error('fc_vcpu 0', message, origins.vcpu);
      process.stderr.write(`microvm-simulator: ${message}\n`);
      this.#context.metrics.increment('vcpu', 'failures');
      this.#context.requestExit(1, 'vCPU failure');
    }, delayMs);
  }

  // --- Runtime ----------------------------------------------------------------------------------------------

  #pause(): undefined {
    const started = process.hrtime.bigint();
    if (this.#state === 'Running') {
      this.#state = 'Paused';
      this.#guest?.pause();
      if (this.#vsockActivated) this.#vsock?.device.pause();
      this.#context.metrics.pausePeriodic();
    }
    const elapsedUs = Number((process.hrtime.bigint() - started) / 1000n);
    this.#context.metrics.store('latencies_us', 'vmm_pause_vm', elapsedUs);
    this.#context.metrics.store('latencies_us', 'pause_vm', elapsedUs);
    this.#log('info', `'pause vm' VMM action took ${elapsedUs} us.`);
    return undefined;
  }

  #resume(): undefined {
    const started = process.hrtime.bigint();
    if (this.#state === 'Paused') {
      this.#state = 'Running';
      this.#guest?.resume();
      if (this.#vsockActivated) this.#vsock?.device.resume();
      else this.#activateVsock();
      if (!this.#restoreAnnounced) {
        this.#restoreAnnounced = true;
        this.#guest?.announceRestore();
      }
      this.#context.metrics.resumePeriodic();
    }
    const elapsedUs = Number((process.hrtime.bigint() - started) / 1000n);
    this.#context.metrics.store('latencies_us', 'vmm_resume_vm', elapsedUs);
    this.#context.metrics.store('latencies_us', 'resume_vm', elapsedUs);
    this.#log('info', `'resume vm' VMM action took ${elapsedUs} us.`);
    return undefined;
  }

  #snapshotState(snapshotType: 'Full' | 'Diff'): SimulatedVmState {
    const hotplugTotal = this.#memoryHotplug?.total_size_mib ?? 0;
    return {
      instanceId: this.#context.instanceId,
      snapshotType,
      createdAtUnixMs: Date.now(),
      machineConfig: { ...this.#machine },
      kernelCommandLine: this.#kernelCommandLine,
      drives: this.#drives.map((drive) => ({ ...drive })),
      networkInterfaces: this.#networkInterfaces.map((networkInterface) => ({ ...networkInterface })),
      pmem: this.#pmem.map((device) => ({ ...device })),
      vsock: this.#vsock === undefined ? undefined : { ...this.#vsock.config },
      balloon: this.#balloon === undefined ? undefined : { ...this.#balloon.config },
      entropy: this.#entropy,
      mmdsConfig: this.#mmdsConfig,
      memoryHotplug:
        this.#memoryHotplug === undefined
          ? undefined
          : {
              total_size_mib: this.#memoryHotplug.total_size_mib,
              slot_size_mib: this.#memoryHotplug.slot_size_mib,
              block_size_mib: this.#memoryHotplug.block_size_mib,
            },
      memorySizeBytes: guestMemoryBytes(this.#machine.mem_size_mib, hotplugTotal),
      guestUptimeMs: this.#guest?.uptimeMs() ?? 0,
    };
  }

  #createSnapshot(snapshotPath: string, memFilePath: string, snapshotType: 'Full' | 'Diff'): undefined {
    const started = process.hrtime.bigint();
    if (this.#state !== 'Paused') {
      throw new VmmError(
        'Create snapshot error: Cannot save the microVM state: the microVM must be paused (save/restore unavailable while running)',
      );
    }
    if (snapshotType === 'Diff') {
      this.#context.logger.warn(
        'main',
        'Virtual machine diff snapshots is in development preview.',
        origins.rpcInterface,
      );
      if (!this.#machine.track_dirty_pages) {
        throw new VmmError(
          'Create snapshot error: Diff snapshots are not allowed on uVMs with dirty page tracking disabled.',
        );
      }
    }
    const { paths, metrics } = this.#context;
    const state = this.#snapshotState(snapshotType);
    try {
      writeVmStateFile(paths.resolve(snapshotPath), state);
    } catch (error) {
      throw new VmmError(`Create snapshot error: Cannot save the microVM state: ${describeOsError(error)}`);
    }
    try {
      writeMemoryFile(paths.resolve(memFilePath), state.memorySizeBytes);
    } catch (error) {
      throw new VmmError(`Create snapshot error: Cannot save the guest memory: ${describeOsError(error)}`);
    }
    // Creating a snapshot resets the vsock transport: every connection is dropped.
    if (this.#vsockActivated) this.#vsock?.device.resetTransport();
    const elapsedUs = Number((process.hrtime.bigint() - started) / 1000n);
    const kind = snapshotType === 'Full' ? 'full' : 'diff';
    metrics.store('latencies_us', `vmm_${kind}_create_snapshot`, elapsedUs);
    metrics.store('latencies_us', `${kind}_create_snapshot`, elapsedUs);
    this.#log('info', `'create ${kind} snapshot' VMM action took ${elapsedUs} us.`);
    return undefined;
  }

  // --- Snapshot load ----------------------------------------------------------------------------------------

  async #loadSnapshot(request: LoadSnapshotRequest): Promise<undefined> {
    const started = process.hrtime.bigint();
    if (this.#bootPath) {
      const message =
        'Load snapshot error: Loading a microVM snapshot not allowed after configuring boot-specific resources.';
      this.#log('info', message.replace('Load snapshot error: ', ''));
      throw new VmmError(message);
    }
    const fail = (reason: string): never => {
      throw new FatalLoadError(`Load snapshot error: Failed to restore from snapshot: ${reason}`);
    };
    const { paths } = this.#context;

    let state: SimulatedVmState;
    try {
      state = readVmStateFile(paths.resolve(request.snapshotPath));
    } catch (error) {
      return fail(`Failed to get snapshot state from file: ${(error as Error).message}`);
    }

    const networkInterfaces = state.networkInterfaces.map((networkInterface) => ({ ...networkInterface }));
    for (const override of request.networkOverrides) {
      const target = networkInterfaces.find(
        (networkInterface) => networkInterface.iface_id === override.iface_id,
      );
      if (target === undefined) fail('Failed to get snapshot state from file: Unknown Network Device');
      else target.host_dev_name = override.host_dev_name;
    }
    if (request.vsockOverride !== undefined && state.vsock === undefined) {
      fail('Failed to get snapshot state from file: Unknown Vsock Device');
    }

    if (request.memBackend.backendType === 'File') {
      try {
        checkMemoryFile(paths.resolve(request.memBackend.backendPath), state.memorySizeBytes);
      } catch (error) {
        fail((error as SnapshotFileError).message);
      }
    } else {
      await this.#connectUffdHandler(request.memBackend.backendPath, state, fail);
    }

    for (const drive of state.drives) {
      try {
        await this.#checkDrive(drive);
      } catch (error) {
        fail(`Failed to build microVM from snapshot: ${(error as Error).message}`);
      }
    }
    for (const [index, networkInterface] of networkInterfaces.entries()) {
      try {
        this.#checkTap(networkInterface, networkInterfaces.slice(0, index));
      } catch (error) {
        fail(`Failed to build microVM from snapshot: ${(error as Error).message}`);
      }
    }
    for (const device of state.pmem) {
      try {
        this.#checkPmem(device);
      } catch (error) {
        fail(`Failed to build microVM from snapshot: ${(error as Error).message}`);
      }
    }

    let vsock: { config: Vsock; device: SimulatedVsockDevice } | undefined;
    if (state.vsock !== undefined) {
      const udsPath = request.vsockOverride?.uds_path ?? state.vsock.uds_path;
      try {
        const device = await this.#bindVsock(state.vsock, udsPath);
        vsock = { config: { ...state.vsock, uds_path: udsPath }, device };
      } catch (error) {
        fail(`Failed to build microVM from snapshot: Vsock config error: ${(error as Error).message}`);
      }
    }

    // The restored machine: configuration from the snapshot, boot source and CPU template gone.
    this.#machine = { ...state.machineConfig, smt: false, track_dirty_pages: request.trackDirtyPages };
    delete this.#machine.cpu_template;
    this.#bootSource = undefined;
    this.#cpuConfig = undefined;
    this.#drives = state.drives;
    this.#networkInterfaces = networkInterfaces;
    this.#pmem = state.pmem;
    this.#vsock = vsock;
    this.#balloon =
      state.balloon === undefined
        ? undefined
        : {
            config: {
              amount_mib: state.balloon.amount_mib,
              deflate_on_oom: state.balloon.deflate_on_oom,
              stats_polling_interval_s: state.balloon.stats_polling_interval_s ?? 0,
              free_page_hinting: state.balloon.free_page_hinting ?? false,
              free_page_reporting: state.balloon.free_page_reporting ?? false,
            },
            hostCommand: HINTING_STOP_COMMAND,
            guestCommand: undefined,
          };
    this.#entropy = state.entropy;
    this.#mmdsConfig =
      state.mmdsConfig === undefined
        ? undefined
        : {
            ...state.mmdsConfig,
            version: state.mmdsConfig.version ?? 'V1',
            ipv4_address: state.mmdsConfig.ipv4_address ?? DEFAULT_MMDS_IPV4,
            imds_compat: state.mmdsConfig.imds_compat ?? false,
          };
    // The MMDS data store is not part of a snapshot.
    this.#mmdsData = undefined;
    this.#memoryHotplug =
      state.memoryHotplug === undefined
        ? undefined
        : { ...state.memoryHotplug, plugged_size_mib: 0, requested_size_mib: 0 };
    for (const drive of this.#drives) this.#context.metrics.addDevice('block', drive.drive_id);
    for (const networkInterface of this.#networkInterfaces)
      this.#context.metrics.addDevice('net', networkInterface.iface_id);
    this.#kernelCommandLine = state.kernelCommandLine;
    this.#restored = true;

    let guest: SimulatedGuest;
    try {
      guest = this.#createGuest(state.kernelCommandLine);
    } catch (error) {
      return fail((error as Error).message);
    }
    guest.restore(state.guestUptimeMs);
    this.#guest = guest;
    this.#mode = 'runtime';
    this.#state = 'Paused';
    guest.pause();
    this.#restoreAnnounced = false;
    const { metrics } = this.#context;
    metrics.startPeriodic();
    metrics.pausePeriodic();
    if (request.resumeVm) this.#resume();

    const elapsedUs = Number((process.hrtime.bigint() - started) / 1000n);
    metrics.store('latencies_us', 'vmm_load_snapshot', elapsedUs);
    metrics.store('latencies_us', 'load_snapshot', elapsedUs);
    this.#log('debug', `'load snapshot' VMM action took ${elapsedUs} us.`);
    if (this.#context.behaviour.exitAfterBootMs !== undefined)
      this.#scheduleVcpuFailure(this.#context.behaviour.exitAfterBootMs);
    return undefined;
  }

  /** The UFFD handshake: connect to the handler and send the guest memory regions (one message). */
  async #connectUffdHandler(
    backendPath: string,
    state: SimulatedVmState,
    fail: (reason: string) => never,
  ): Promise<void> {
    const connection = await connectUnixSocket(this.#context.paths.socketPath(backendPath), 2000);
    if ('error' in connection) {
      fail(
        `Failed to load guest memory: Error creating guest memory from uffd: Failed to connect to UDS Unix stream: ${connection.error}`,
      );
      return;
    }
    const pageSize = state.machineConfig.huge_pages === '2M' ? 2 * MIB : 4096;
    const regions = [
      {
        base_host_virt_addr: 0x7f00_0000_0000,
        size: state.memorySizeBytes,
        offset: 0,
        page_size: pageSize,
        page_size_kib: pageSize,
      },
    ];
    connection.socket.write(JSON.stringify(regions));
    // Firecracker never closes this socket; neither do we, but it must not keep the process alive.
    connection.socket.on('error', () => {});
    connection.socket.unref();
    this.#uffdSockets.push(connection.socket);
  }

  /** Stops timers and the guest; the sockets stay (a real Firecracker leaves them behind when it exits). */
  shutdown(): void {
    if (this.#exitTimer !== undefined) clearTimeout(this.#exitTimer);
    this.#guest?.dispose();
    if (this.#mode === 'runtime') this.#context.metrics.write();
  }

  get restored(): boolean {
    return this.#restored;
  }
}

/** A snapshot load failure: answered with 400, then the process exits. */
class FatalLoadError extends Error {}
