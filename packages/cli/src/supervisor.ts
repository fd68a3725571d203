import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ComposedProvider, ComposedVmInput } from '@microvm/composer';
import { MicrovmError, type VmEvent, type VmInfo } from '@microvm/core';
import type { ProviderSettings, SupervisorStartOptions } from './context.js';
import type { FirecrackerChoice } from './settings.js';

/** The hidden command the CLI re-executes itself with to keep a detached VM's VMM company. */
export const SUPERVISE_COMMAND = '__supervise';

export type SupervisorRequest = {
  vmId: string;
  stateDir: string;
  firecracker: FirecrackerChoice;
} & ({ kind: 'create'; input: ComposedVmInput } | { kind: 'restore'; snapshotId: string; resume: boolean });

export interface SerializedError {
  name: string;
  message: string;
  code?: string;
  isUserError?: boolean;
  stack?: string;
  /** Kept as an error: the exit code of a hook failure is judged by its cause. */
  cause?: SerializedError | string;
}

export type ParentMessage = { type: 'start'; request: SupervisorRequest } | { type: 'abort' };
export type SupervisorMessage =
  | { type: 'event'; event: VmEvent }
  | { type: 'running'; info: VmInfo }
  | { type: 'failed'; error: SerializedError };

export function serializeError(error: unknown, depth = 0): SerializedError {
  if (!(error instanceof Error)) return { name: 'Error', message: String(error) };
  const cause = error.cause;
  return {
    name: error.name,
    message: error.message,
    ...(MicrovmError.isInstance(error) && { code: error.code, isUserError: error.isUserError }),
    ...(error.stack && { stack: error.stack }),
    ...(cause !== undefined && {
      cause: cause instanceof Error && depth < 8 ? serializeError(cause, depth + 1) : String(cause),
    }),
  };
}

/** The supervisor's error, back in the parent: same code and message, so the exit code is the same. */
export function deserializeError(serialized: SerializedError): Error {
  const cause = typeof serialized.cause === 'object' ? deserializeError(serialized.cause) : serialized.cause;
  const error: Error = serialized.code
    ? new MicrovmError<string>({
        code: serialized.code,
        message: serialized.message,
        ...(cause !== undefined && { cause }),
        ...(serialized.isUserError !== undefined && { isUserError: serialized.isUserError }),
      })
    : new Error(serialized.message, cause === undefined ? undefined : { cause });
  if (serialized.stack) error.stack = serialized.stack;
  return error;
}

/**
 * Parent side of `run -d` and `restore`: the VMM's stdout and stderr are pipes to the process that spawns it,
 * so a VM that must outlive this command is created by a supervisor in its own session, with its stdio on
 * /dev/null. Progress comes back over an IPC channel that is closed once the VM runs.
 */
export function startSupervisor(
  request: SupervisorRequest,
  options: SupervisorStartOptions,
): Promise<VmInfo> {
  const [executable, ...args] = options.selfCommand;
  if (!executable) return Promise.reject(new Error('No command line to start the supervisor with'));
  const child = spawn(executable, [...args, SUPERVISE_COMMAND], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: options.env,
  });
  return new Promise<VmInfo>((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      // The supervisor rolls the create back and answers with `failed`; wait for that.
      if (child.connected) child.send({ type: 'abort' } satisfies ParentMessage);
    };
    const settle = (outcome: () => void) => {
      if (settled) return;
      settled = true;
      options.signal?.removeEventListener('abort', onAbort);
      if (child.connected) child.disconnect();
      child.unref();
      outcome();
    };
    child.on('message', (message: SupervisorMessage) => {
      if (message.type === 'event') options.onEvent(message.event);
      else if (message.type === 'running') settle(() => resolve(message.info));
      else if (message.type === 'failed') settle(() => reject(deserializeError(message.error)));
    });
    child.once('error', (error) => settle(() => reject(error)));
    child.once('exit', (exitCode, signal) =>
      settle(() =>
        reject(
          new MicrovmError({
            code: 'ERR_MICROVM_PROCESS_EXITED',
            message: `The supervisor ended (${signal ? `signal ${signal}` : `exit code ${exitCode}`}) before VM '${request.vmId}' was running`,
          }),
        ),
      ),
    );
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
    child.send({ type: 'start', request } satisfies ParentMessage);
  });
}

/** The IPC channel of the supervisor process (`process` in the real one). */
export interface SupervisorChannel {
  send(message: SupervisorMessage): void;
  onMessage(listener: (message: ParentMessage) => void): void;
  onDisconnect(listener: () => void): void;
  disconnect(): void;
}

export interface SupervisorDependencies {
  openProvider(settings: ProviderSettings): ComposedProvider;
  env: NodeJS.ProcessEnv;
  /** Resolves once the process is gone. */
  waitForProcessExit(pid: number): Promise<void>;
}

/**
 * Supervisor side: creates (or restores) the VM, reports, then lives as long as the VMM so the VMM's pipes
 * stay open. It stops watching the VM once it runs: the VM's later state is written by whoever stops it
 * (`microvm stop`, `rm`), and a VMM that dies on its own is marked failed by the next command that looks.
 */
export async function runSupervisor(
  channel: SupervisorChannel,
  dependencies: SupervisorDependencies,
): Promise<number> {
  const controller = new AbortController();
  let connected = true;
  // Aborting after the create finished would reach whatever a primitive tied to the create's signal.
  let settled = false;
  const abort = () => {
    if (!settled) controller.abort();
  };
  const request = await new Promise<SupervisorRequest | undefined>((resolve) => {
    channel.onMessage((message) => {
      if (message.type === 'start') resolve(message.request);
      else if (message.type === 'abort') abort();
    });
    channel.onDisconnect(() => {
      connected = false;
      // The parent is gone before the VM runs: nobody will ever learn its id, so do not create it.
      abort();
      resolve(undefined);
    });
  });
  if (!request) return 1;
  const send = (message: SupervisorMessage) => {
    if (connected) channel.send(message);
  };
  let composed: ComposedProvider;
  try {
    composed = dependencies.openProvider({
      stateDir: request.stateDir,
      firecracker: request.firecracker,
      env: dependencies.env,
    });
  } catch (error) {
    // Bad MICROVM_* settings: the parent must get the error itself (exit 2), not a supervisor that died.
    send({ type: 'failed', error: serializeError(error) });
    if (connected) channel.disconnect();
    return 1;
  }
  const unsubscribe = composed.provider.onEvent((event) => {
    if (event.vmId === request.vmId) send({ type: 'event', event });
  });
  let info: VmInfo;
  try {
    const options = { signal: controller.signal };
    const vm =
      request.kind === 'create'
        ? await composed.create(request.vmId, request.input, options)
        : await composed.restore(request.vmId, request.snapshotId, { ...options, resume: request.resume });
    settled = true;
    info = await vm.info();
  } catch (error) {
    settled = true;
    unsubscribe();
    send({ type: 'failed', error: serializeError(error) });
    await composed.close().catch(() => undefined);
    if (connected) channel.disconnect();
    return 1;
  }
  unsubscribe();
  // Closing the provider (not the composer's primitives: the console keeps draining and logging) means a
  // `microvm stop` in another process is the only one that records how the VM ended.
  await composed.provider.close();
  send({ type: 'running', info });
  if (connected) channel.disconnect();
  if (info.pid !== undefined) await dependencies.waitForProcessExit(info.pid);
  await composed.close().catch(() => undefined);
  return 0;
}

/** Gone, or a zombie (its parent has not reaped it yet). */
async function isProcessGone(pid: number): Promise<boolean> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/**
 * Polls: the VMM is our child, but its exit event belongs to the closed provider's process handle. Nothing
 * waits on this but the supervisor's own lifetime, so a coarse interval is enough.
 */
export async function waitForProcessExit(pid: number, intervalMs = 250): Promise<void> {
  while (!(await isProcessGone(pid))) await sleep(intervalMs);
}

/** The real channel: this process's IPC link to the CLI that started it. */
export function processChannel(): SupervisorChannel {
  return {
    send: (message) => process.send?.(message),
    onMessage: (listener) => process.on('message', listener as (message: unknown) => void),
    onDisconnect: (listener) => process.once('disconnect', listener),
    disconnect: () => process.disconnect?.(),
  };
}
