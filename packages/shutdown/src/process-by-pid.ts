import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { type ProcessExitInfo, ValidationError, type VmProcessHandle } from '@microvm/core';

export interface ProcessByPidOptions {
  /**
   * Field 22 of `/proc/<pid>/stat` (start time in clock ticks) recorded when the process was started. When the
   * pid now belongs to a process with another start time, the original is gone and the pid was reused: the handle
   * reports it exited and never signals the stranger. Default: the start time read now.
   */
  startTime?: number;
  /**
   * The VM's id: the process must carry `--id <vmId>` on its command line (Firecracker and the jailer do), or it
   * counts as gone and is never signalled. Guards a pid read from a pid file after a restart, when it may
   * already belong to someone else and no start time was recorded.
   */
  vmId?: string;
  /** How often `waitForExit` looks at `/proc`. Default 20. */
  pollIntervalMs?: number;
}

const defaultPollIntervalMs = 20;
const unknownExit: ProcessExitInfo = { exitCode: null, signal: null };

/**
 * Reads the start time of a live process from `/proc/<pid>/stat`; undefined when there is no such process or it
 * is a zombie (a zombie has closed its files, the TAP included, and only waits for its parent to reap it).
 */
export function readProcessStartTime(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may hold spaces and parentheses: parse after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
  const startTime = Number(fields[19]);
  return Number.isFinite(startTime) ? startTime : undefined;
}

function commandLineHasId(pid: number, vmId: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return argv.some((argument, index) => argument === '--id' && argv[index + 1] === vmId);
  } catch {
    return false;
  }
}

/**
 * A process handle for a VMM that is not this program's child: one found by pid after a restart, or the
 * Firecracker a jailer forked (`--daemonize`, `--new-pid-ns`; its pid is in `<exec_file_name>.pid`). Nothing
 * notifies us when such a process ends, so `waitForExit` polls `/proc`; it holds no timer while nobody waits.
 * Its exit code is unknown (`exitCode` and `signal` are null): only the parent learns it.
 */
export function processHandleForPid(pid: number, options: ProcessByPidOptions = {}): VmProcessHandle {
  if (!Number.isInteger(pid) || pid <= 0) {
    throw new ValidationError({ field: 'pid', rule: 'must be a positive integer', value: pid });
  }
  const pollIntervalMs = options.pollIntervalMs ?? defaultPollIntervalMs;
  if (!Number.isInteger(pollIntervalMs) || pollIntervalMs < 1 || pollIntervalMs > 60_000) {
    throw new ValidationError({
      field: 'pollIntervalMs',
      rule: 'must be an integer from 1 to 60000',
      value: options.pollIntervalMs,
    });
  }
  if (options.startTime !== undefined && (!Number.isInteger(options.startTime) || options.startTime < 0)) {
    throw new ValidationError({
      field: 'startTime',
      rule: 'must be a non-negative integer (clock ticks since boot)',
      value: options.startTime,
    });
  }
  const isTheVmm = options.vmId === undefined || commandLineHasId(pid, options.vmId);
  const startTime = isTheVmm ? (options.startTime ?? readProcessStartTime(pid)) : undefined;
  let exit: ProcessExitInfo | undefined = startTime === undefined ? unknownExit : undefined;

  const isGone = (): boolean => {
    if (exit) return true;
    if (readProcessStartTime(pid) !== startTime) exit = unknownExit;
    return exit !== undefined;
  };

  return {
    pid,
    stdout: undefined,
    stderr: undefined,
    get hasExited() {
      return isGone();
    },
    get exit() {
      isGone();
      return exit;
    },
    kill(signal: NodeJS.Signals): boolean {
      // Checked right before the signal, so a reused pid is never signalled.
      if (isGone()) return false;
      try {
        process.kill(pid, signal);
        return true;
      } catch {
        return false;
      }
    },
    async waitForExit(waitOptions = {}) {
      const deadline =
        waitOptions.timeoutMs === undefined
          ? Number.POSITIVE_INFINITY
          : performance.now() + waitOptions.timeoutMs;
      for (;;) {
        waitOptions.signal?.throwIfAborted();
        if (isGone()) return exit;
        const remainingMs = deadline - performance.now();
        if (remainingMs <= 0) return undefined;
        await sleep(Math.min(pollIntervalMs, remainingMs), undefined, {
          ...(waitOptions.signal && { signal: waitOptions.signal }),
        }).catch(() => undefined);
      }
    },
    stderrTail: () => '',
  };
}

/**
 * Waits for `exited` (given a signal that ends the wait), up to `timeoutMs` (then undefined) or until `signal`
 * aborts (then rejects with its reason); every listener and timer is gone when it settles.
 */
export async function raceExit(
  exited: (signal: AbortSignal) => Promise<ProcessExitInfo | undefined>,
  options: { timeoutMs?: number; signal?: AbortSignal } = {},
): Promise<ProcessExitInfo | undefined> {
  options.signal?.throwIfAborted();
  const controller = new AbortController();
  const signal = options.signal ? AbortSignal.any([controller.signal, options.signal]) : controller.signal;
  const waits = [exited(signal)];
  if (options.timeoutMs !== undefined) {
    waits.push(sleep(options.timeoutMs, undefined, { signal }).catch(() => undefined));
  }
  if (options.signal) {
    const aborted = options.signal;
    waits.push(
      new Promise((_, reject) =>
        aborted.addEventListener('abort', () => reject(aborted.reason), { once: true, signal }),
      ),
    );
  }
  try {
    return await Promise.race(waits);
  } finally {
    controller.abort();
  }
}

/**
 * A process handle for a VMM this program spawned itself with `node:child_process`: the exit code and signal come
 * from the child's `exit` event, and Node reaps the child. Prefer it to `processHandleForPid` for your own child.
 */
export function processHandleForChild(child: ChildProcess): VmProcessHandle {
  if (
    typeof child !== 'object' ||
    child === null ||
    typeof child.once !== 'function' ||
    !Number.isInteger(child.pid)
  ) {
    throw new ValidationError({
      field: 'child',
      rule: 'must be a spawned ChildProcess with a pid',
      value: child === null || typeof child !== 'object' ? child : `pid ${String(child.pid)}`,
    });
  }
  const pid = child.pid as number;
  const exitOf = (): ProcessExitInfo | undefined =>
    child.exitCode !== null || child.signalCode !== null
      ? { exitCode: child.exitCode, signal: child.signalCode }
      : undefined;
  let stderrTail = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderrTail = `${stderrTail}${chunk.toString('utf8')}`.slice(-16 * 1024);
  });
  return {
    pid,
    stdout: child.stdout ?? undefined,
    stderr: child.stderr ?? undefined,
    get hasExited() {
      return exitOf() !== undefined;
    },
    get exit() {
      return exitOf();
    },
    kill(signal: NodeJS.Signals): boolean {
      if (exitOf()) return false;
      return child.kill(signal);
    },
    async waitForExit(waitOptions = {}) {
      const exit = exitOf();
      if (exit) return exit;
      return raceExit((signal) => once(child, 'exit', { signal }).then(exitOf, () => undefined), waitOptions);
    },
    stderrTail: () => stderrTail,
  };
}
