import { closeSync, writeSync } from 'node:fs';

interface ScheduledTask {
  run: () => void;
  remainingMs: number;
  startedAt: number;
  timer: NodeJS.Timeout | undefined;
}

/** Timers that stop while the vCPUs are paused: a paused guest does nothing. */
export class PausableScheduler {
  readonly #tasks = new Set<ScheduledTask>();
  #paused = false;
  #disposed = false;

  get paused(): boolean {
    return this.#paused;
  }

  schedule(delayMs: number, run: () => void): void {
    if (this.#disposed) return;
    const task: ScheduledTask = { run, remainingMs: delayMs, startedAt: Date.now(), timer: undefined };
    this.#tasks.add(task);
    if (!this.#paused) this.#arm(task);
  }

  #arm(task: ScheduledTask): void {
    task.startedAt = Date.now();
    task.timer = setTimeout(() => {
      this.#tasks.delete(task);
      task.run();
    }, task.remainingMs);
  }

  pause(): void {
    if (this.#paused) return;
    this.#paused = true;
    const now = Date.now();
    for (const task of this.#tasks) {
      if (task.timer !== undefined) clearTimeout(task.timer);
      task.timer = undefined;
      task.remainingMs = Math.max(0, task.remainingMs - (now - task.startedAt));
    }
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    for (const task of this.#tasks) this.#arm(task);
  }

  dispose(): void {
    this.#disposed = true;
    for (const task of this.#tasks) if (task.timer !== undefined) clearTimeout(task.timer);
    this.#tasks.clear();
  }
}

/** Where the guest's serial console (ttyS0) goes: Firecracker's stdout, or `serial_out_path`. */
export class SerialConsole {
  readonly #fileDescriptor: number | undefined;
  readonly #writeStdout: (text: string) => void;
  readonly #onBytes: (bytes: number, dropped: boolean) => void;

  constructor(options: {
    fileDescriptor?: number | undefined;
    writeStdout?: (text: string) => void;
    onBytes?: (bytes: number, dropped: boolean) => void;
  }) {
    this.#fileDescriptor = options.fileDescriptor;
    this.#writeStdout = options.writeStdout ?? ((text) => process.stdout.write(text));
    this.#onBytes = options.onBytes ?? (() => {});
  }

  write(text: string): void {
    const bytes = Buffer.byteLength(text);
    if (this.#fileDescriptor === undefined) {
      this.#writeStdout(text);
      this.#onBytes(bytes, false);
      return;
    }
    try {
      writeSync(this.#fileDescriptor, text);
      this.#onBytes(bytes, false);
    } catch {
      // A full FIFO: the UART drops the output rather than stalling the vCPU.
      this.#onBytes(bytes, true);
    }
  }

  close(): void {
    if (this.#fileDescriptor !== undefined) closeSync(this.#fileDescriptor);
  }
}

/** Whether a kernel command line sends the kernel console to the serial port. */
export function serialConsoleEnabled(commandLine: string): boolean {
  const words = commandLine.split(/\s+/);
  if (words.includes('8250.nr_uarts=0')) return false;
  return words.some((word) => /^console=ttyS0(,.*)?$/.test(word));
}

/** The value of `name=` on a kernel command line. */
export function commandLineValue(commandLine: string, name: string): string | undefined {
  for (const word of commandLine.split(/\s+/))
    if (word.startsWith(`${name}=`)) return word.slice(name.length + 1);
  return undefined;
}

export interface GuestBootInfo {
  commandLine: string;
  vcpuCount: number;
  memSizeMib: number;
  rootDevice: string | undefined;
  networkInterfaceCount: number;
  vsockEnabled: boolean;
}

export interface GuestOptions {
  console: SerialConsole | undefined;
  scheduler: PausableScheduler;
  readyLine: string;
  guestReadyMs: number;
  shutdownDelayMs: number;
  consoleFloodBytes: number;
  kernelPanic: boolean;
  ignoreCtrlAltDel: boolean;
  /** The guest reset the machine (i8042 reset with `reboot=k`, or a triple fault): the VMM exits 0. */
  onReset: (reason: string) => void;
  /** The guest reached user space (used for the boot-timer log). */
  onReady?: () => void;
}

const KERNEL_VERSION = '6.1.141';
const FLOOD_CHUNK_BYTES = 16 * 1024;

/**
 * The simulated guest: a Linux-like boot log on the serial console, a readiness line, Ctrl-Alt-Del handling
 * (reboot, which ends Firecracker), an optional kernel panic and console chatter. All of it stops while the
 * VM is paused.
 */
export class SimulatedGuest {
  readonly #options: GuestOptions;
  #uptimeOffsetMs = 0;
  #bootedAt: number | undefined;
  #pausedAt: number | undefined;
  #pausedTotalMs = 0;
  #resetRequested = false;

  constructor(options: GuestOptions) {
    this.#options = options;
  }

  /** Milliseconds the guest has run (not counting pauses), continuing across snapshots. */
  uptimeMs(): number {
    if (this.#bootedAt === undefined) return this.#uptimeOffsetMs;
    const pausedNow = this.#pausedAt === undefined ? 0 : Date.now() - this.#pausedAt;
    return this.#uptimeOffsetMs + Date.now() - this.#bootedAt - this.#pausedTotalMs - pausedNow;
  }

  /** Prints console lines: kernel messages get the `[ seconds]` stamp, user-space lines (`user`) do not. */
  #print(lines: Array<string | { user: string }>): void {
    if (this.#options.console === undefined) return;
    const seconds = this.uptimeMs() / 1000;
    const stamp = `[${seconds.toFixed(6).padStart(12)}]`;
    const text = lines.map((line) => (typeof line === 'string' ? `${stamp} ${line}` : line.user)).join('\n');
    this.#options.console.write(`${text}\n`);
  }

  boot(info: GuestBootInfo): void {
    this.#bootedAt = Date.now();
    const options = this.#options;
    const rootDevice = info.rootDevice ?? 'unknown-block(0,0)';
    this.#print([
      `Linux version ${KERNEL_VERSION} (microvm-simulator@firecracker) (gcc (Debian 12.2.0-14) 12.2.0, GNU ld 2.40) #1 SMP PREEMPT_DYNAMIC`,
      `Command line: ${info.commandLine}`,
      'BIOS-provided physical RAM map:',
      `BIOS-e820: [mem 0x0000000000000000-0x${(info.memSizeMib * 1024 * 1024 - 1).toString(16).padStart(16, '0')}] usable`,
      `Kernel command line: ${info.commandLine}`,
      `Memory: ${info.memSizeMib * 1024}K available`,
      `smp: Brought up 1 node, ${info.vcpuCount} CPU${info.vcpuCount === 1 ? '' : 's'}`,
      'serial8250: ttyS0 at I/O 0x3f8 (irq = 4, base_baud = 115200) is a U6_16550A',
      ...(info.networkInterfaceCount > 0 ? ['virtio_net virtio1 eth0: renamed from eth0'] : []),
      ...(info.vsockEnabled ? ['NET: Registered PF_VSOCK protocol family'] : []),
    ]);
    options.scheduler.schedule(Math.floor(options.guestReadyMs / 2), () => {
      if (options.kernelPanic) {
        this.#panic(rootDevice, info.commandLine);
        return;
      }
      this.#print([
        info.rootDevice === undefined
          ? 'Freeing unused kernel image memory'
          : `EXT4-fs (${info.rootDevice}): mounted filesystem with ordered data mode`,
        'Run /sbin/init as init process',
      ]);
    });
    if (options.kernelPanic) return;
    options.scheduler.schedule(options.guestReadyMs, () => {
      this.#print([{ user: options.readyLine }]);
      options.onReady?.();
      if (options.consoleFloodBytes > 0) this.#flood(options.consoleFloodBytes, 0);
    });
  }

  #panic(rootDevice: string, commandLine: string): void {
    this.#print([
      `VFS: Cannot open root device "${rootDevice}" or unknown-block(0,0): error -6`,
      `Kernel panic - not syncing: VFS: Unable to mount root fs on ${rootDevice === 'unknown-block(0,0)' ? rootDevice : 'unknown-block(0,0)'}`,
      `CPU: 0 PID: 1 Comm: swapper/0 Not tainted ${KERNEL_VERSION} #1`,
      'Call Trace:',
      ' <TASK>',
      ' dump_stack_lvl+0x34/0x48',
      ' panic+0x10a/0x2c6',
      ' mount_block_root+0x1d3/0x1ec',
      ' </TASK>',
    ]);
    // panic=N reboots after N seconds; panic=0 (the kernel default) waits forever.
    const seconds = Number(commandLineValue(commandLine, 'panic') ?? '0');
    if (!Number.isFinite(seconds) || seconds === 0) {
      this.#print([
        `---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0) ]---`,
      ]);
      return;
    }
    this.#print([`Rebooting in ${seconds} seconds..`]);
    this.#options.scheduler.schedule(this.#options.shutdownDelayMs, () => this.#reset('guest kernel panic'));
  }

  #flood(totalBytes: number, written: number): void {
    if (written >= totalBytes) return;
    let chunk = '';
    let lineNumber = Math.floor(written / 80);
    while (chunk.length < FLOOD_CHUNK_BYTES && written + chunk.length < totalBytes) {
      const line = `microvm-simulator chatter ${String(lineNumber).padStart(8, '0')} ${'x'.repeat(44)}\n`;
      chunk += line;
      lineNumber += 1;
    }
    chunk = chunk.slice(0, totalBytes - written);
    this.#options.console?.write(chunk);
    this.#options.scheduler.schedule(0, () => this.#flood(totalBytes, written + chunk.length));
  }

  /** Ctrl-Alt-Del through the i8042: init reboots the machine, unless the guest has no keyboard driver. */
  ctrlAltDel(): void {
    if (this.#options.ignoreCtrlAltDel || this.#resetRequested) return;
    this.#options.scheduler.schedule(0, () => {
      this.#print([
        { user: 'The system is going down NOW!' },
        { user: 'Sent SIGTERM to all processes' },
        { user: 'Sent SIGKILL to all processes' },
        { user: 'Requesting system reboot' },
        'reboot: Restarting system',
      ]);
      this.#options.scheduler.schedule(this.#options.shutdownDelayMs, () => this.#reset('guest reboot'));
    });
    this.#resetRequested = true;
  }

  #reset(reason: string): void {
    this.#options.onReset(reason);
  }

  /** A guest brought back from a snapshot prints one line once it runs again. */
  restore(uptimeMs: number): void {
    this.#uptimeOffsetMs = uptimeMs;
    this.#bootedAt = Date.now();
  }

  announceRestore(): void {
    this.#print([{ user: 'microvm-simulator: restored' }]);
  }

  pause(): void {
    this.#options.scheduler.pause();
    if (this.#pausedAt === undefined) this.#pausedAt = Date.now();
  }

  resume(): void {
    if (this.#pausedAt !== undefined) this.#pausedTotalMs += Date.now() - this.#pausedAt;
    this.#pausedAt = undefined;
    this.#options.scheduler.resume();
  }

  dispose(): void {
    this.#options.scheduler.dispose();
    this.#options.console?.close();
  }
}
