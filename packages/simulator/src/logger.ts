import { closeSync, constants, openSync, writeSync } from 'node:fs';

// Wall clock with nanosecond steps that never go backwards: Date.now() once, then the monotonic clock.
const WALL_CLOCK_ORIGIN_NS = BigInt(Date.now()) * 1_000_000n;
const MONOTONIC_ORIGIN_NS = process.hrtime.bigint();

function nowUnixNanoseconds(): bigint {
  return WALL_CLOCK_ORIGIN_NS + (process.hrtime.bigint() - MONOTONIC_ORIGIN_NS);
}

export type LogLevel = 'Error' | 'Warn' | 'Info' | 'Debug' | 'Trace';
export type LogLevelFilter = LogLevel | 'Off';

/** Firecracker's threads: logs name the one that wrote them. */
export type LogThread = 'main' | 'fc_api' | `fc_vcpu ${number}`;

const SEVERITY: Record<LogLevelFilter, number> = { Off: 0, Error: 1, Warn: 2, Info: 3, Debug: 4, Trace: 5 };
const LEVEL_LABEL: Record<LogLevel, string> = {
  Error: 'ERROR',
  Warn: 'WARN',
  Info: 'INFO',
  Debug: 'DEBUG',
  Trace: 'TRACE',
};

export interface LogOrigin {
  /** Rust module path, matched by the `module` filter, e.g. `vmm::rpc_interface`. */
  module: string;
  /** Source file and line shown with `show_log_origin`. */
  file: string;
  line: number;
}

export interface LoggerSettings {
  level?: LogLevelFilter;
  showLevel?: boolean;
  showLogOrigin?: boolean;
  module?: string;
}

/** Opens a log or metrics target the way Firecracker does: O_RDWR|O_CREAT|O_NONBLOCK, no truncation, no append. */
export function openLogTarget(hostPath: string): number {
  return openSync(hostPath, constants.O_RDWR | constants.O_CREAT | constants.O_NONBLOCK, 0o644);
}

/** Local time as Firecracker prints it: `2024-05-01T12:34:56.123456789`. */
export function formatLocalTimestamp(unixNanoseconds: bigint): string {
  const pad = (value: number, width = 2) => String(value).padStart(width, '0');
  const date = new Date(Number(unixNanoseconds / 1_000_000n));
  const nanoseconds = Number(unixNanoseconds % 1_000_000_000n);
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(
    date.getMinutes(),
  )}:${pad(date.getSeconds())}.${pad(nanoseconds, 9)}`;
}

/**
 * The VMM's logger: `<timestamp> [<instance-id>:<thread>[:<LEVEL>][:<file>:<line>]] <message>`, to stdout until
 * a log path is configured. Writes that fail (a full FIFO) are dropped and counted, never blocking the VMM.
 */
export class VmmLogger {
  instanceId: string;
  #level: LogLevelFilter = 'Info';
  #showLevel = false;
  #showLogOrigin = false;
  #module: string | undefined;
  #fileDescriptor: number | undefined;
  #missedLogCount = 0;
  readonly #writeStdout: (text: string) => void;

  constructor(options: { instanceId: string; writeStdout?: (text: string) => void }) {
    this.instanceId = options.instanceId;
    this.#writeStdout = options.writeStdout ?? ((text) => process.stdout.write(text));
  }

  /** Log lines that could not be written since the last call (the `logger.missed_log_count` metric). */
  takeMissedLogCount(): number {
    const count = this.#missedLogCount;
    this.#missedLogCount = 0;
    return count;
  }

  /** Applies `PUT /logger` or the `--log-*` flags. Opening the path first, so a failure changes nothing. */
  configure(settings: LoggerSettings & { hostLogPath?: string | undefined }): void {
    if (settings.hostLogPath !== undefined) {
      const fileDescriptor = openLogTarget(settings.hostLogPath);
      if (this.#fileDescriptor !== undefined) closeSync(this.#fileDescriptor);
      this.#fileDescriptor = fileDescriptor;
    }
    if (settings.level !== undefined) this.#level = settings.level;
    if (settings.showLevel !== undefined) this.#showLevel = settings.showLevel;
    if (settings.showLogOrigin !== undefined) this.#showLogOrigin = settings.showLogOrigin;
    if (settings.module !== undefined) this.#module = settings.module;
  }

  enabled(level: LogLevel, origin?: LogOrigin): boolean {
    if (SEVERITY[level] > SEVERITY[this.#level]) return false;
    if (this.#module !== undefined && origin !== undefined && !origin.module.startsWith(this.#module))
      return false;
    return true;
  }

  log(level: LogLevel, thread: LogThread, message: string, origin: LogOrigin = DEFAULT_ORIGIN): void {
    if (!this.enabled(level, origin)) return;
    let prefix = `${this.instanceId}:${thread}`;
    if (this.#showLevel) prefix += `:${LEVEL_LABEL[level]}`;
    if (this.#showLogOrigin) prefix += `:${origin.file}:${origin.line}`;
    const line = `${formatLocalTimestamp(nowUnixNanoseconds())} [${prefix}] ${message}\n`;
    this.#write(line);
  }

  error(thread: LogThread, message: string, origin?: LogOrigin): void {
    this.log('Error', thread, message, origin);
  }
  warn(thread: LogThread, message: string, origin?: LogOrigin): void {
    this.log('Warn', thread, message, origin);
  }
  info(thread: LogThread, message: string, origin?: LogOrigin): void {
    this.log('Info', thread, message, origin);
  }
  debug(thread: LogThread, message: string, origin?: LogOrigin): void {
    this.log('Debug', thread, message, origin);
  }

  #write(line: string): void {
    if (this.#fileDescriptor === undefined) {
      this.#writeStdout(line);
      return;
    }
    try {
      writeSync(this.#fileDescriptor, line);
    } catch {
      this.#missedLogCount += 1;
    }
  }

  close(): void {
    if (this.#fileDescriptor !== undefined) closeSync(this.#fileDescriptor);
    this.#fileDescriptor = undefined;
  }
}

const DEFAULT_ORIGIN: LogOrigin = { module: 'firecracker', file: 'src/firecracker/src/main.rs', line: 1 };

/** Log origins used by the simulator, named after the Firecracker code that writes those lines. */
export const origins = {
  main: { module: 'firecracker', file: 'src/firecracker/src/main.rs', line: 262 },
  apiServer: { module: 'firecracker::api_server', file: 'src/firecracker/src/api_server/mod.rs', line: 162 },
  parsedRequest: {
    module: 'firecracker::api_server::parsed_request',
    file: 'src/firecracker/src/api_server/parsed_request.rs',
    line: 70,
  },
  rpcInterface: { module: 'vmm::rpc_interface', file: 'src/vmm/src/rpc_interface.rs', line: 642 },
  builder: { module: 'vmm::builder', file: 'src/vmm/src/builder.rs', line: 302 },
  vmm: { module: 'vmm', file: 'src/vmm/src/lib.rs', line: 796 },
  vcpu: { module: 'vmm::vstate::vcpu', file: 'src/vmm/src/vstate/vcpu.rs', line: 505 },
  persist: { module: 'vmm::persist', file: 'src/vmm/src/persist.rs', line: 411 },
  bootTimer: {
    module: 'vmm::devices::pseudo::boot_timer',
    file: 'src/vmm/src/devices/pseudo/boot_timer.rs',
    line: 37,
  },
} satisfies Record<string, LogOrigin>;
