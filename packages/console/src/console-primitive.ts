import { mkdir, rm } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import {
  type ConsoleFacts,
  hostPathOf,
  type PrepareContext,
  type SpawnedContext,
  type TeardownContext,
  ValidationError,
  type VmPrimitive,
} from '@microvm/core';
import { ConsoleCapture, type ConsoleCaptureOptions } from './console-capture.js';
import { createFifo, FifoReader, fileKind } from './fifo.js';
import {
  type BufferOptions,
  defaultLogFileMaxBytes,
  defaultLogFileMaxFiles,
  integerOption,
  optionsObject,
  resolveBufferOptions,
} from './options.js';

/**
 * Where the guest console is read from:
 * - `stdout`: Firecracker's stdout (the default serial destination);
 * - `serial-file`: a FIFO named by `spec.serial.serialOutPath` (created when the spec names none), needed when the
 *   jailer runs with `--daemonize` and Firecracker has no stdout;
 * - `auto`: `serial-file` when the spec already names a serial output, the VM is jailed or the launch daemonizes;
 *   else `stdout`.
 */
export type ConsoleSource = 'auto' | 'stdout' | 'serial-file';

export interface ConsoleLogFilesOptions {
  /** Folder for `<vmId>.console.log` and `<vmId>.vmm.log`. Default: the VM's folder (`console.log`, `vmm.log`). */
  dir?: string;
  /** Bytes per file before rotation. Default 10 MiB. */
  maxBytes?: number;
  /** Files kept per stream, the current one included. Default 3. */
  maxFiles?: number;
}

export interface ConsolePrimitiveOptions {
  /** Bounds of the guest console buffer. */
  console?: BufferOptions;
  /** Bounds of the VMM log buffer. */
  vmmLog?: BufferOptions;
  /** Default `auto`. */
  source?: ConsoleSource;
  /** Keep capped, rotated log files of both streams (`true`: in the VM's folder, default sizes). */
  logFiles?: boolean | ConsoleLogFilesOptions;
  /**
   * Called in the `spawned` phase, before the VMM has printed anything: subscribe to events here to miss none
   * (`get(vmId)` only works once `create()` has returned).
   */
  onSpawned?: (vmId: string, vmConsole: VmConsole) => void;
}

/** The two captures of one VM. */
export interface VmConsole {
  /** The guest's serial console. */
  console: ConsoleCapture;
  /** Firecracker's own log: its stderr, and its stdout when the console comes from a serial file. */
  vmmLog: ConsoleCapture;
}

export interface ConsolePrimitive extends VmPrimitive {
  readonly name: 'console';
  /** The captures of a VM spawned by this provider, until its teardown. */
  get(vmId: string): VmConsole | undefined;
}

/**
 * Firecracker's log line: `<timestamp> [<instance id>:<thread>…] message`. Without a log path Firecracker writes these
 * to stdout, among the guest's console; they are moved to the VMM log.
 */
export const firecrackerLogLinePattern: RegExp =
  /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)? \[[^\]\s:]+:[^\]]+\] /;

/** Name of the FIFO the primitive creates when it redirects the serial console. */
export const consoleFifoName = 'console.fifo';

interface PreparedVm {
  source: 'stdout' | 'serial-file' | 'none';
  /** Host path of a FIFO this primitive created (removed on teardown). */
  createdFifo?: string;
  consoleLogPath?: string;
  vmmLogPath?: string;
}

interface LiveVm extends VmConsole {
  fifo?: FifoReader;
}

const sources: readonly ConsoleSource[] = ['auto', 'stdout', 'serial-file'];

function resolveOptions(options: unknown) {
  const source = optionsObject(options, 'options');
  const consoleBounds = resolveBufferOptions(optionsObject(source.console, 'console'), 'console.');
  const vmmLogBounds = resolveBufferOptions(optionsObject(source.vmmLog, 'vmmLog'), 'vmmLog.');
  const consoleSource = source.source ?? 'auto';
  if (!sources.includes(consoleSource as ConsoleSource)) {
    throw new ValidationError({
      field: 'source',
      rule: `must be one of ${sources.join(', ')}`,
      value: source.source,
    });
  }
  let logFiles: (Required<Omit<ConsoleLogFilesOptions, 'dir'>> & { dir?: string }) | undefined;
  if (source.logFiles !== undefined && source.logFiles !== false) {
    const files = source.logFiles === true ? {} : optionsObject(source.logFiles, 'logFiles');
    if (files.dir !== undefined && (typeof files.dir !== 'string' || !isAbsolute(files.dir))) {
      throw new ValidationError({
        field: 'logFiles.dir',
        rule: 'must be an absolute path',
        value: files.dir,
      });
    }
    logFiles = {
      ...(typeof files.dir === 'string' && { dir: files.dir }),
      maxBytes: integerOption(files.maxBytes, 'logFiles.maxBytes', defaultLogFileMaxBytes, 1024),
      maxFiles: integerOption(files.maxFiles, 'logFiles.maxFiles', defaultLogFileMaxFiles, 1, 100),
    };
  }
  if (source.onSpawned !== undefined && typeof source.onSpawned !== 'function') {
    throw new ValidationError({ field: 'onSpawned', rule: 'must be a function', value: source.onSpawned });
  }
  const onSpawned = source.onSpawned as ConsolePrimitiveOptions['onSpawned'];
  return { consoleBounds, vmmLogBounds, source: consoleSource as ConsoleSource, logFiles, onSpawned };
}

/**
 * Captures each VM's guest console and VMM log (see {@link VmConsole}). Options are checked here, before any VM
 * exists. Put it before the jailer in the primitive list when a FIFO must be staged into the jail (the jailer
 * hard-links it), or after it to have the FIFO created in the jail directly.
 */
export function consolePrimitive(options: ConsolePrimitiveOptions = {}): ConsolePrimitive {
  const resolved = resolveOptions(options);
  const prepared = new Map<string, PreparedVm>();
  const live = new Map<string, LiveVm>();

  async function prepare(context: PrepareContext): Promise<void> {
    const state: PreparedVm = { source: 'stdout' };
    prepared.set(context.vmId, state);
    const serialOutPath = context.spec.serial?.serialOutPath;
    const jail = context.facts.jail;
    const daemonizes = context.launch.args.includes('--daemonize');
    let source = resolved.source;
    if (source === 'auto')
      source = serialOutPath !== undefined || jail || daemonizes ? 'serial-file' : 'stdout';

    if (source === 'serial-file') {
      if (serialOutPath === undefined) {
        // Inside the jail when it exists already; else in the VM's folder, and a jailer after us links it in.
        const fifoPath = jail ? `/${consoleFifoName}` : join(context.vmDir, consoleFifoName);
        const hostPath = hostPathOf(context.facts, fifoPath);
        await rm(hostPath, { force: true });
        state.createdFifo = hostPath;
        await createFifo(hostPath, jail && { uid: jail.uid, gid: jail.gid });
        context.spec.serial = { ...context.spec.serial, serialOutPath: fifoPath };
        state.source = 'serial-file';
      } else {
        const hostPath = hostPathOf(context.facts, serialOutPath);
        const kind = await fileKind(hostPath);
        if (kind === 'missing') {
          state.createdFifo = hostPath;
          await createFifo(hostPath, jail && { uid: jail.uid, gid: jail.gid });
          state.source = 'serial-file';
        } else if (kind === 'fifo') {
          state.source = 'serial-file';
        } else if (resolved.source === 'serial-file') {
          throw new ValidationError({
            field: 'spec.serial.serialOutPath',
            rule: "must be a FIFO or not exist yet for source 'serial-file' (a regular file is not read)",
            value: serialOutPath,
          });
        } else {
          // The user sends the console to a file of their own: it is theirs to read.
          state.source = 'none';
        }
      }
    }

    if (resolved.logFiles) {
      const dir = resolved.logFiles.dir;
      if (dir) await mkdir(dir, { recursive: true });
      state.consoleLogPath = dir
        ? join(dir, `${context.vmId}.console.log`)
        : join(context.vmDir, 'console.log');
      state.vmmLogPath = dir ? join(dir, `${context.vmId}.vmm.log`) : join(context.vmDir, 'vmm.log');
      const facts: ConsoleFacts = { consoleLogPath: state.consoleLogPath, vmmLogPath: state.vmmLogPath };
      context.facts.console = facts;
    }
  }

  function spawned(context: SpawnedContext): void {
    const state = prepared.get(context.vmId) ?? { source: 'stdout' };
    const startTimeMs = performance.now();
    const captureOptions = (bounds: BufferOptions, logPath: string | undefined): ConsoleCaptureOptions => ({
      ...bounds,
      startTimeMs,
      ...(logPath &&
        resolved.logFiles && {
          logFile: {
            path: logPath,
            maxBytes: resolved.logFiles.maxBytes,
            maxFiles: resolved.logFiles.maxFiles,
          },
        }),
    });
    const vmmLog = new ConsoleCapture({
      ...captureOptions(resolved.vmmLogBounds, state.vmmLogPath),
      detectGuestEvents: false,
    });
    const vmmLinesOnStdout = state.source === 'stdout' ? vmmLog.source() : undefined;
    const vm: LiveVm = {
      console: new ConsoleCapture({
        ...captureOptions(resolved.consoleBounds, state.consoleLogPath),
        ...(vmmLinesOnStdout && {
          divert: {
            test: (line: string) => firecrackerLogLinePattern.test(line),
            to: (line: string) => vmmLinesOnStdout.write(`${line}\n`),
          },
        }),
      }),
      vmmLog,
    };
    if (vmmLinesOnStdout) vm.console.once('end', () => vmmLinesOnStdout.end());
    live.set(context.vmId, vm);
    try {
      resolved.onSpawned?.(context.vmId, { console: vm.console, vmmLog: vm.vmmLog });
    } catch {
      // The user's callback must not leave the VMM's output undrained.
    }
    const { stdout, stderr } = context.process;
    if (stderr) vm.vmmLog.attach(stderr);
    if (state.source === 'stdout') {
      if (stdout) vm.console.attach(stdout);
      else vm.console.end();
      return;
    }
    // Without a log path Firecracker logs to stdout: with the console elsewhere, stdout is the VMM's log.
    if (stdout) vm.vmmLog.attach(stdout);
    if (state.source === 'none') return;
    const serialOutPath = context.spec.serial?.serialOutPath;
    if (serialOutPath === undefined) return;
    vm.fifo = FifoReader.open(hostPathOf(context.facts, serialOutPath), vm.console.source());
    // The FIFO never reports an end (we hold a write end): the VMM's exit is its end.
    void context.process.waitForExit().then(() => vm.fifo?.close());
  }

  async function teardown(context: TeardownContext): Promise<void> {
    const state = prepared.get(context.vmId);
    prepared.delete(context.vmId);
    const vm = live.get(context.vmId);
    live.delete(context.vmId);
    if (vm) {
      vm.fifo?.close();
      await Promise.all([vm.console.close(), vm.vmmLog.close()]);
    }
    if (state?.createdFifo) await rm(state.createdFifo, { force: true });
  }

  return {
    name: 'console',
    prepare,
    spawned,
    teardown,
    get: (vmId) => {
      const vm = live.get(vmId);
      return vm && { console: vm.console, vmmLog: vm.vmmLog };
    },
  };
}
