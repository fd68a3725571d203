import { type ChildProcess, spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { MicrovmError } from '../errors/index.js';
import type { LaunchCommand, ProcessExitInfo, VmProcessHandle } from './hooks.js';

const stderrTailLimitBytes = 16 * 1024;
// A process that is not our child (adopted after a restart, or forked by the jailer) gives no exit event:
// /proc is the only way to notice it is gone, so it is polled.
const foreignProcessPollMs = 50;
/**
 * How long a forking launcher may take to write the pid file after it exits, and how often we look. Generous: the
 * jailer's forked child may not be scheduled for seconds on a loaded host, and only a broken launcher waits it out.
 */
const pidFileAppearTimeoutMs = 20_000;
const pidFilePollMs = 20;

/** Reads field 22 of /proc/<pid>/stat (start time in clock ticks): tells a pid apart from a reused one. */
export async function readProcessStartTime(pid: number): Promise<number | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const state = fields[0];
    if (state === 'Z' || state === 'X') return undefined;
    const startTime = Number(fields[19]);
    return Number.isFinite(startTime) ? startTime : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The VMM process: spawned detached from our terminal (Firecracker dies on SIGHUP), its output always drained,
 * its exit always observed. When a jailer forks, the process to supervise is the one named in the pid file.
 */
export class VmmProcess implements VmProcessHandle {
  readonly stdout: Readable | undefined;
  readonly stderr: Readable | undefined;
  #pid: number;
  #startTime: number | undefined;
  #child: ChildProcess | undefined;
  #exit: ProcessExitInfo | undefined;
  #exited: Promise<ProcessExitInfo>;
  #resolveExit!: (exit: ProcessExitInfo) => void;
  #stderrTail = '';
  #pollTimer: NodeJS.Timeout | undefined;
  #eventLoopHolders = 0;
  /** The launcher exited 0 and the VMM's pid is not read yet. */
  #awaitingPidFile = false;
  #killRequested = false;
  #spawnError: Error | undefined;

  private constructor(options: { pid: number; child?: ChildProcess; startTime?: number }) {
    this.#pid = options.pid;
    this.#child = options.child;
    this.#startTime = options.startTime;
    this.stdout = options.child?.stdout ?? undefined;
    this.stderr = options.child?.stderr ?? undefined;
    this.#exited = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
  }

  /** Spawns the launch command. Throws `ProcessExitError`-free: a spawn failure shows as an exited process. */
  static spawn(launch: LaunchCommand): VmmProcess {
    // nsenter joins the namespace and execs the VMM, so the pid stays the VMM's.
    const [executable, args] = launch.networkNamespacePath
      ? ['nsenter', [`--net=${launch.networkNamespacePath}`, '--', launch.executable, ...launch.args]]
      : [launch.executable, launch.args];
    const child = spawn(executable, args, {
      cwd: launch.cwd,
      env: launch.env ? { ...process.env, ...launch.env } : process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      // Its own session: no SIGHUP from our terminal, no SIGINT from a Ctrl-C aimed at the host program.
      detached: true,
    });
    const vmm = new VmmProcess({ pid: child.pid ?? -1, child });
    // Always drain: the guest controls the console's volume and must never block on a full pipe.
    child.stdout?.resume();
    child.stderr?.on('data', (chunk: Buffer) => vmm.#appendStderr(chunk));
    child.once('error', (error) => {
      vmm.#spawnError = error;
      vmm.#appendStderr(Buffer.from(`${error.message}\n`));
      vmm.#markExited({ exitCode: null, signal: null });
    });
    child.once('exit', (exitCode, signal) => {
      // Under --daemonize / --new-pid-ns the launcher exits and the VMM lives on: keep watching the VMM.
      if (vmm.#pid !== child.pid) return;
      // A launcher that forks (jailer --daemonize / --new-pid-ns) exits 0 once it has written the pid file:
      // that is not the VMM's exit, so switch to the pid it names right away.
      if (launch.pidFilePath && exitCode === 0) {
        vmm.#awaitingPidFile = true;
        // Still watching the launcher afterwards (it exec'd into Firecracker, or the file never named another
        // process): this exit was the VMM's. Decided by pid, since the provider's own followPidFile may switch first.
        const settle = () => {
          vmm.#awaitingPidFile = false;
          if (vmm.#pid === child.pid) vmm.#markExited({ exitCode, signal });
        };
        // The real jailer writes the pid file from its forked child, which may run after the launcher has exited.
        void vmm.#followPidFileWhenWritten(launch.pidFilePath).then(settle, settle);
        return;
      }
      vmm.#markExited({ exitCode, signal });
    });
    return vmm;
  }

  /** Watches a process that is not our child (after a provider restart). Undefined when it is not alive. */
  static async adopt(pid: number, expectedStartTime?: number): Promise<VmmProcess | undefined> {
    const startTime = await readProcessStartTime(pid);
    if (startTime === undefined) return undefined;
    if (expectedStartTime !== undefined && startTime !== expectedStartTime) return undefined;
    const vmm = new VmmProcess({ pid, startTime });
    vmm.#watchForeign();
    return vmm;
  }

  get pid(): number {
    return this.#pid;
  }

  get startTime(): number | undefined {
    return this.#startTime;
  }

  get hasExited(): boolean {
    return this.#exit !== undefined;
  }

  get exit(): ProcessExitInfo | undefined {
    return this.#exit;
  }

  get spawnError(): Error | undefined {
    return this.#spawnError;
  }

  /** Resolves once the process is gone, with how it ended. */
  get exited(): Promise<ProcessExitInfo> {
    return this.#exited;
  }

  stderrTail(): string {
    return this.#stderrTail;
  }

  /**
   * Switches supervision to the pid in the jailer's pid file. Called once the API answers, so the file exists.
   * A file naming the process already watched (a jailer that exec'd into Firecracker keeps its pid) changes nothing.
   */
  async followPidFile(pidFilePath: string): Promise<void> {
    const text = await readFile(pidFilePath, 'utf8');
    const pid = Number.parseInt(text.trim(), 10);
    if (!Number.isInteger(pid) || pid <= 0) {
      throw new MicrovmError({
        code: 'ERR_MICROVM_PROTOCOL',
        message: `The pid file ${pidFilePath} does not hold a pid: ${JSON.stringify(text.slice(0, 40))}`,
      });
    }
    this.#startTime = await readProcessStartTime(pid);
    if (pid === this.#pid) return;
    this.#pid = pid;
    this.#awaitingPidFile = false;
    if (this.#startTime === undefined) {
      this.#markExited({ exitCode: null, signal: null });
      return;
    }
    // A kill asked for while the VMM's pid was not known yet reaches it now.
    if (this.#killRequested) this.kill('SIGKILL');
    this.#watchForeign();
  }

  async #followPidFileWhenWritten(pidFilePath: string): Promise<void> {
    const deadline = Date.now() + pidFileAppearTimeoutMs;
    for (;;) {
      try {
        await this.followPidFile(pidFilePath);
        return;
      } catch (error) {
        // The jailer creates the file (O_EXCL), then writes it: an empty file is "not written yet", like none.
        const notWrittenYet =
          (error as NodeJS.ErrnoException).code === 'ENOENT' ||
          (MicrovmError.isInstance(error) && error.code === 'ERR_MICROVM_PROTOCOL');
        if (!notWrittenYet || Date.now() >= deadline) throw error;
        await sleep(pidFilePollMs);
      }
    }
  }

  kill(signal: NodeJS.Signals): boolean {
    // Between the launcher's exit and the pid file, #pid names a reaped process (maybe reused): signal nothing.
    if (this.#exit || this.#awaitingPidFile) return false;
    try {
      process.kill(this.#pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  async waitForExit(
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<ProcessExitInfo | undefined> {
    if (this.#exit) return this.#exit;
    const waits: Promise<ProcessExitInfo | undefined>[] = [this.#exited];
    const release = this.#holdEventLoop();
    const controller = new AbortController();
    const signals = [controller.signal, ...(options.signal ? [options.signal] : [])];
    const combined = AbortSignal.any(signals);
    if (options.timeoutMs !== undefined) {
      waits.push(sleep(options.timeoutMs, undefined, { signal: combined }).catch(() => undefined));
    }
    if (options.signal) {
      const aborted = options.signal;
      waits.push(
        new Promise((_, reject) => {
          if (aborted.aborted) reject(aborted.reason);
          aborted.addEventListener('abort', () => reject(aborted.reason), {
            once: true,
            signal: controller.signal,
          });
        }),
      );
    }
    try {
      return await Promise.race(waits);
    } finally {
      controller.abort();
      release();
    }
  }

  /** Kills the VMM and the launcher (if still there) with SIGKILL and waits until both are gone. */
  async killAndWait(): Promise<ProcessExitInfo> {
    this.#killRequested = true;
    this.kill('SIGKILL');
    if (this.#child && this.#child.pid !== this.#pid && this.#child.exitCode === null) {
      try {
        this.#child.kill('SIGKILL');
      } catch {
        // Already gone.
      }
    }
    const release = this.#holdEventLoop();
    try {
      return await this.#exited;
    } finally {
      release();
    }
  }

  /**
   * The poll timer of a foreign process is unref'd so supervision alone never keeps the host program alive; a
   * caller awaiting the exit must, or Node would quit with the promise pending.
   */
  #holdEventLoop(): () => void {
    this.#eventLoopHolders += 1;
    this.#pollTimer?.ref();
    return () => {
      this.#eventLoopHolders -= 1;
      if (this.#eventLoopHolders === 0) this.#pollTimer?.unref();
    };
  }

  /** Releases the pipes so the host program's event loop is not held by a VM that is gone. */
  dispose(): void {
    if (this.#pollTimer) clearInterval(this.#pollTimer);
    this.#pollTimer = undefined;
  }

  #appendStderr(chunk: Buffer): void {
    this.#stderrTail += chunk.toString('utf8');
    if (this.#stderrTail.length > stderrTailLimitBytes) {
      this.#stderrTail = this.#stderrTail.slice(-stderrTailLimitBytes);
    }
  }

  #markExited(exit: ProcessExitInfo): void {
    if (this.#exit) return;
    this.#exit = exit;
    this.dispose();
    this.#resolveExit(exit);
  }

  #watchForeign(): void {
    if (this.#pollTimer) clearInterval(this.#pollTimer);
    const pid = this.#pid;
    const expected = this.#startTime;
    this.#pollTimer = setInterval(() => {
      void readProcessStartTime(pid).then((startTime) => {
        if (this.#pid !== pid) return;
        if (startTime === undefined || (expected !== undefined && startTime !== expected)) {
          this.#markExited({ exitCode: null, signal: null });
        }
      });
    }, foreignProcessPollMs);
    // Supervision must not keep the host program alive by itself.
    if (this.#eventLoopHolders === 0) this.#pollTimer.unref();
  }
}
