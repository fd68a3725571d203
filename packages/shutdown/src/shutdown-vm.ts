import {
  type FirecrackerClient,
  type ProcessExitInfo,
  type StopOutcome,
  TimeoutError,
  ValidationError,
  type VmProcessHandle,
} from '@microvm/core';
import { resolveShutdownLadderOptions, type ShutdownLadderOptions } from './options.js';

/** What the ladder needs of the VMM process: core's `VmProcessHandle`, or `processHandleForPid(pid)`. */
export type ShutdownProcess = Pick<VmProcessHandle, 'pid' | 'hasExited' | 'exit' | 'kill' | 'waitForExit'>;

/** What the ladder needs of the API client: core's `FirecrackerClient` fits. */
export type ShutdownClient = Pick<FirecrackerClient, 'describeInstance' | 'resumeVm' | 'sendCtrlAltDel'>;

export interface ShutdownVmOptions extends ShutdownLadderOptions {
  /** The Firecracker process (the real one: under the jailer, the pid in its pid file). */
  process: ShutdownProcess;
  /** The VM's API client. Without one, Ctrl-Alt-Del is skipped and the ladder starts at SIGTERM. */
  client?: ShutdownClient;
  /**
   * Cuts the grace periods short: on abort the ladder sends SIGKILL at once and still waits (up to
   * `killTimeoutMs`) until the process is gone, so an abort never leaves a half-stopped VM. The outcome then has
   * `aborted: true`; `shutdownVm` does not reject because of the abort.
   */
  signal?: AbortSignal;
}

export type ShutdownAction = 'ctrl-alt-del' | 'SIGTERM' | 'SIGKILL';

/** What one rung of the ladder did. */
export interface ShutdownStepReport {
  action: ShutdownAction;
  /**
   * `exited`: the process was gone within this step. `grace-expired`: it was still there after the grace period.
   * `skipped`: the step was not taken (see `detail`). `failed`: the API call failed (see `detail`); the ladder went
   * on. `aborted`: the caller's signal fired during the step.
   */
  result: 'exited' | 'grace-expired' | 'skipped' | 'failed' | 'aborted';
  /** Why a step was skipped or failed, e.g. `the VM was never started` or the API's fault message. */
  detail?: string;
  durationMs: number;
}

/** How the VM stopped. A superset of core's `StopOutcome`. */
export interface ShutdownOutcome extends StopOutcome {
  /** From the process's exit; both null when it is not our child (`processHandleForPid`) and nobody could tell. */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** True when the caller's signal cut the ladder short. */
  aborted: boolean;
  /** Every rung, in order, including the skipped ones. */
  steps: ShutdownStepReport[];
}

const howByAction = { 'ctrl-alt-del': 'graceful', SIGTERM: 'terminated', SIGKILL: 'killed' } as const;

function describeError(error: unknown): string {
  if (error instanceof Error) {
    const faultMessage = (error as { faultMessage?: unknown }).faultMessage;
    return typeof faultMessage === 'string' && faultMessage !== '' ? faultMessage : error.message;
  }
  return String(error);
}

function checkInputs(options: ShutdownVmOptions): void {
  const candidate = options.process as Partial<ShutdownProcess> | undefined;
  if (
    typeof candidate !== 'object' ||
    candidate === null ||
    !Number.isInteger(candidate.pid) ||
    typeof candidate.kill !== 'function' ||
    typeof candidate.waitForExit !== 'function'
  ) {
    throw new ValidationError({
      field: 'process',
      rule: 'must be a process handle with a pid, kill() and waitForExit()',
      value: candidate === undefined || candidate === null ? candidate : `pid ${String(candidate.pid)}`,
    });
  }
  const client = options.client as Partial<ShutdownClient> | undefined;
  if (
    client !== undefined &&
    (typeof client !== 'object' ||
      client === null ||
      typeof client.sendCtrlAltDel !== 'function' ||
      typeof client.describeInstance !== 'function' ||
      typeof client.resumeVm !== 'function')
  ) {
    throw new ValidationError({
      field: 'client',
      rule: 'must be a FirecrackerClient (describeInstance, resumeVm, sendCtrlAltDel)',
      value: typeof client,
    });
  }
  if (options.signal !== undefined && !(options.signal instanceof AbortSignal)) {
    throw new ValidationError({
      field: 'signal',
      rule: 'must be an AbortSignal',
      value: typeof options.signal,
    });
  }
}

/**
 * Stops a Firecracker VM: Ctrl-Alt-Del (x86_64; the guest reboots and, with `reboot=k`, Firecracker exits 0),
 * then SIGTERM, then SIGKILL, each after its grace period, and returns once the process is gone and reaped.
 * Throws `ValidationError` for bad options (before anything is sent) and `TimeoutError` only when the process
 * outlives SIGKILL by `killTimeoutMs`.
 */
export async function shutdownVm(options: ShutdownVmOptions): Promise<ShutdownOutcome> {
  const settings = resolveShutdownLadderOptions(options);
  checkInputs(options);
  const { process: vmm, client, signal } = options;
  const started = performance.now();
  const steps: ShutdownStepReport[] = [];

  const finish = (how: ShutdownOutcome['how'], exit: ProcessExitInfo | undefined): ShutdownOutcome => ({
    how,
    durationMs: performance.now() - started,
    exitCode: exit?.exitCode ?? null,
    signal: exit?.signal ?? null,
    aborted: signal?.aborted ?? false,
    steps,
  });

  /** Waits up to `graceMs` for the exit; `aborted` when the caller's signal fired first. */
  const waitGrace = async (graceMs: number): Promise<ProcessExitInfo | 'aborted' | undefined> => {
    if (signal?.aborted) return vmm.hasExited ? vmm.exit : 'aborted';
    try {
      return await vmm.waitForExit({ timeoutMs: graceMs, ...(signal && { signal }) });
    } catch (error) {
      if (signal?.aborted) return vmm.hasExited ? vmm.exit : 'aborted';
      throw error;
    }
  };

  // The last signal or request that reached the VMM: it decides `how` once the process is seen gone.
  let lastDelivered: ShutdownAction | undefined;
  const howItEnded = (): ShutdownOutcome['how'] =>
    lastDelivered === undefined ? 'already-exited' : howByAction[lastDelivered];

  /**
   * Runs one gentle rung. `act` returns a reason to skip it, or undefined once it delivered its request or
   * signal. Returns the exit when the process was gone within the rung.
   */
  const gentleStep = async (
    action: Exclude<ShutdownAction, 'SIGKILL'>,
    graceMs: number,
    act: () => Promise<string | undefined>,
  ): Promise<ProcessExitInfo | undefined> => {
    const stepStarted = performance.now();
    const report = (result: ShutdownStepReport['result'], detail?: string) =>
      steps.push({
        action,
        result,
        ...(detail !== undefined && { detail }),
        durationMs: performance.now() - stepStarted,
      });
    if (signal?.aborted) {
      report('skipped', 'aborted by the caller');
      return undefined;
    }
    let failure: string | undefined;
    try {
      const skipReason = await act();
      if (skipReason !== undefined) {
        report('skipped', skipReason);
        return vmm.hasExited ? vmm.exit : undefined;
      }
      lastDelivered = action;
    } catch (error) {
      failure = describeError(error);
    }
    // After a failed call, only look whether it is gone: there is nothing to wait for.
    const waited = await waitGrace(failure === undefined ? graceMs : 0);
    if (waited === 'aborted') {
      report('aborted');
      return undefined;
    }
    if (waited) {
      report('exited', failure);
      return waited;
    }
    report(failure === undefined ? 'grace-expired' : 'failed', failure);
    return undefined;
  };

  if (vmm.hasExited) return finish('already-exited', vmm.exit);

  // 1. Ctrl-Alt-Del: the guest reboots, syncing its disks; Firecracker exits 0 on the reset.
  const ctrlAltDelExit = await gentleStep('ctrl-alt-del', settings.ctrlAltDelGraceMs, async () => {
    if (!settings.ctrlAltDel) return 'disabled (ctrlAltDel: false; the default on hosts that are not x86_64)';
    if (!client) return 'no API client given';
    const apiOptions = { timeoutMs: settings.apiTimeoutMs, ...(signal && { signal }) };
    const { state } = await client.describeInstance(apiOptions);
    if (state === 'Not started') return 'the VM was never started: there is no guest to shut down';
    if (state === 'Paused') {
      // A paused guest would see the key press only once resumed: the grace period would be wasted.
      if (!settings.resumePaused) return 'the VM is paused (resumePaused: false)';
      await client.resumeVm(apiOptions);
    }
    await client.sendCtrlAltDel(apiOptions);
    return undefined;
  });
  if (ctrlAltDelExit) return finish(howItEnded(), ctrlAltDelExit);

  // 2. SIGTERM: Firecracker has no handler, so it dies at once; as PID 1 of a pid namespace it never gets it.
  const terminateExit = await gentleStep('SIGTERM', settings.terminateGraceMs, async () => {
    if (!settings.terminate) return 'disabled (terminate: false)';
    // false: the process is already gone; the wait below sees it and nothing counts as delivered.
    return vmm.kill('SIGTERM') ? undefined : 'the process is already gone';
  });
  if (terminateExit) return finish(howItEnded(), terminateExit);
  if (vmm.hasExited) return finish(howItEnded(), vmm.exit);

  // 3. SIGKILL, always delivered; the caller's signal no longer applies: the process must be gone and reaped.
  const killStarted = performance.now();
  const killDelivered = vmm.kill('SIGKILL');
  if (killDelivered) lastDelivered = 'SIGKILL';
  const exit = await vmm.waitForExit({ timeoutMs: settings.killTimeoutMs });
  if (!exit) {
    throw new TimeoutError({
      operation: `the exit of pid ${vmm.pid} after SIGKILL`,
      timeoutMs: settings.killTimeoutMs,
    });
  }
  steps.push({
    action: 'SIGKILL',
    result: 'exited',
    ...(!killDelivered && { detail: 'the process was already gone' }),
    durationMs: performance.now() - killStarted,
  });
  return finish(howItEnded(), exit);
}
