import { setTimeout as sleep } from 'node:timers/promises';
import { FirecrackerApiError, type InstanceInfo, type ProcessExitInfo } from '@microvm/core';
import { raceExit } from '../process-by-pid.js';
import type { ShutdownClient, ShutdownProcess } from '../shutdown-vm.js';

export interface FakeProcess extends ShutdownProcess {
  /** Signals that reached the process, in order. */
  readonly signals: NodeJS.Signals[];
  /** Ends the process as the kernel would, e.g. `{ exitCode: 0, signal: null }`. */
  end(exit: ProcessExitInfo): void;
}

/**
 * A VMM process that dies from the signals in `diesFrom` (default SIGTERM and SIGKILL, as Firecracker does;
 * `['SIGKILL']` imitates PID 1 of a pid namespace, `[]` a process stuck in the kernel).
 */
export function fakeProcess(
  options: { diesFrom?: NodeJS.Signals[]; exited?: ProcessExitInfo } = {},
): FakeProcess {
  const diesFrom = new Set(options.diesFrom ?? ['SIGTERM', 'SIGKILL']);
  const signals: NodeJS.Signals[] = [];
  let exit = options.exited;
  const waiters = new Set<() => void>();
  const end = (info: ProcessExitInfo) => {
    if (exit) return;
    exit = info;
    for (const waiter of waiters) waiter();
  };
  return {
    pid: 4242,
    signals,
    end,
    get hasExited() {
      return exit !== undefined;
    },
    get exit() {
      return exit;
    },
    kill(signal) {
      if (exit) return false;
      signals.push(signal);
      // The kernel ends the process a moment later, not inside kill().
      if (diesFrom.has(signal)) setImmediate(() => end({ exitCode: null, signal }));
      return true;
    },
    async waitForExit(waitOptions = {}) {
      if (exit) return exit;
      return raceExit(
        (signal) =>
          new Promise<ProcessExitInfo | undefined>((resolve) => {
            const waiter = () => resolve(exit);
            waiters.add(waiter);
            signal.addEventListener('abort', () => waiters.delete(waiter), { once: true });
          }),
        waitOptions,
      );
    },
  };
}

export interface FakeClient extends ShutdownClient {
  /** API calls in order: `describeInstance`, `resumeVm`, `sendCtrlAltDel`. */
  readonly calls: string[];
}

/**
 * A Firecracker API in the given state. A guest that `honoursCtrlAltDel` makes the process exit 0 once it is
 * running and gets Ctrl-Alt-Del; `failing` names calls that answer 400.
 */
export function fakeClient(
  process: FakeProcess,
  options: {
    state?: InstanceInfo['state'];
    honoursCtrlAltDel?: boolean;
    failing?: string[];
    onCall?: (name: string) => void;
  } = {},
): FakeClient {
  let state = options.state ?? 'Running';
  const calls: string[] = [];
  const call = async (name: string, method: string, path: string) => {
    calls.push(name);
    options.onCall?.(name);
    await sleep(1);
    if (process.hasExited) throw new Error(`connect ENOENT (the VMM is gone) for ${method} ${path}`);
    if (options.failing?.includes(name)) {
      throw new FirecrackerApiError({ method, path, statusCode: 400, faultMessage: `${name} refused` });
    }
  };
  return {
    calls,
    async describeInstance() {
      await call('describeInstance', 'GET', '/');
      return { id: 'anonymous-instance', state, vmm_version: '1.16.1', app_name: 'Firecracker' };
    },
    async resumeVm() {
      await call('resumeVm', 'PATCH', '/vm');
      state = 'Running';
    },
    async sendCtrlAltDel() {
      await call('sendCtrlAltDel', 'PUT', '/actions');
      if (state === 'Running' && options.honoursCtrlAltDel) {
        setTimeout(() => process.end({ exitCode: 0, signal: null }), 5);
      }
    },
  };
}
