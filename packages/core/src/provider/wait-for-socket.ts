import { type FSWatcher, watch } from 'node:fs';
import { connect } from 'node:net';
import { basename, dirname } from 'node:path';
import { MicrovmError, ProcessExitError, TimeoutError } from '../errors/index.js';
import type { VmmProcess } from './vmm-process.js';

export interface WaitForSocketOptions {
  socketPath: string;
  timeoutMs: number;
  /** Raced against the wait: a VMM that exits (bad argument, socket in use) fails the wait at once. */
  process?: VmmProcess;
  signal?: AbortSignal;
}

function tryConnect(socketPath: string): Promise<'ready' | 'missing' | 'refused'> {
  return new Promise((resolve) => {
    const socket = connect({ path: socketPath });
    socket.once('connect', () => {
      socket.destroy();
      resolve('ready');
    });
    socket.once('error', (error: NodeJS.ErrnoException) => {
      socket.destroy();
      resolve(error.code === 'ENOENT' ? 'missing' : 'refused');
    });
  });
}

/**
 * Waits until the API socket accepts a connection. A socket file that exists is not enough: bind() comes before
 * listen(), so the first connects may be refused. Waits on the folder for the file to appear, then retries
 * connect with a short backoff; every wait has a deadline and races the process exit.
 */
export async function waitForSocket(options: WaitForSocketOptions): Promise<void> {
  const { socketPath, timeoutMs, process: vmm } = options;
  const deadline = AbortSignal.timeout(timeoutMs);
  const stop = options.signal ? AbortSignal.any([deadline, options.signal]) : deadline;
  let watcher: FSWatcher | undefined;
  let wake: (() => void) | undefined;
  const wakeUp = () => wake?.();
  try {
    try {
      watcher = watch(dirname(socketPath), (_event, name) => {
        if (name === null || name === basename(socketPath)) wakeUp();
      });
      watcher.unref();
    } catch {
      // The folder may not exist yet (a jail being built): the backoff timer still wakes us.
    }
    vmm?.exited.then(wakeUp, wakeUp);
    stop.addEventListener('abort', wakeUp, { once: true });
    let backoffMs = 2;
    for (;;) {
      if (vmm?.hasExited) {
        throw new ProcessExitError({
          pid: vmm.pid,
          exitCode: vmm.exit?.exitCode ?? null,
          signal: vmm.exit?.signal ?? null,
          stderrTail: vmm.stderrTail(),
          context: `The VMM exited before its API socket ${socketPath} was ready; it`,
        });
      }
      if (options.signal?.aborted) {
        throw new MicrovmError({
          code: 'ERR_MICROVM_ABORTED',
          message: `Waiting for the API socket ${socketPath} was aborted`,
          cause: options.signal.reason,
        });
      }
      if (deadline.aborted) {
        throw new TimeoutError({ operation: `Waiting for the API socket ${socketPath}`, timeoutMs });
      }
      const result = await tryConnect(socketPath);
      if (result === 'ready') return;
      // 'missing' waits for the folder to change; 'refused' means bound but not listening yet: retry soon.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, result === 'missing' ? Math.max(backoffMs, 25) : backoffMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      wake = undefined;
      backoffMs = Math.min(backoffMs * 2, 50);
    }
  } finally {
    watcher?.close();
    stop.removeEventListener('abort', wakeUp);
  }
}
