import { ValidationError } from '@microvm/core';

/** How each rung of the ladder behaves. Every field is optional; the defaults are below. */
export interface ShutdownLadderOptions {
  /**
   * Ask the guest to reboot with `PUT /actions {"action_type":"SendCtrlAltDel"}` first (with `reboot=k` on the
   * kernel command line Firecracker then exits 0). Default: true on x86_64 hosts (`process.arch === 'x64'`),
   * false elsewhere — Firecracker on aarch64 has no Ctrl-Alt-Del and answers 400.
   */
  ctrlAltDel?: boolean;
  /** How long the guest may take to shut down after Ctrl-Alt-Del. Default 5000 (a real guest needs 1–3 s). */
  ctrlAltDelGraceMs?: number;
  /**
   * A paused guest cannot see the key press. True (default): resume it first, so it can flush its disks and
   * reboot. False: skip Ctrl-Alt-Del for a paused VM and go on with SIGTERM.
   */
  resumePaused?: boolean;
  /**
   * Send SIGTERM before SIGKILL. Default true. Firecracker has no SIGTERM handler, so it dies at once (no metrics
   * flush); as PID 1 of a pid namespace (`jailer --new-pid-ns`) it never receives SIGTERM, and SIGKILL follows.
   */
  terminate?: boolean;
  /** How long to wait after SIGTERM before SIGKILL. Default 1000. */
  terminateGraceMs?: number;
  /**
   * How long to wait after SIGKILL for the process to be gone and reaped. Past it, `shutdownVm` throws a
   * `TimeoutError` (a process stuck in the kernel, e.g. on a hung NFS mount). Default 5000.
   */
  killTimeoutMs?: number;
  /** Deadline of each Firecracker API call the ladder makes (`GET /`, resume, Ctrl-Alt-Del). Default 1000. */
  apiTimeoutMs?: number;
}

export type ResolvedShutdownLadderOptions = Required<ShutdownLadderOptions>;

export const defaultCtrlAltDelGraceMs = 5000;
export const defaultTerminateGraceMs = 1000;
export const defaultKillTimeoutMs = 5000;
export const defaultApiTimeoutMs = 1000;
// setTimeout's limit: a longer delay fires at once.
const maximumDelayMs = 2_147_483_647;

function checkDuration(field: string, value: unknown, fallback: number, minimum: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < minimum || value > maximumDelayMs) {
    throw new ValidationError({
      field,
      rule: `must be an integer number of milliseconds from ${minimum} to ${maximumDelayMs}`,
      value,
    });
  }
  return value;
}

function checkFlag(field: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new ValidationError({ field, rule: 'must be a boolean', value });
  return value;
}

/** Whether this host's Firecracker knows `SendCtrlAltDel` (x86_64 only). */
export function hostSupportsCtrlAltDel(arch: string = process.arch): boolean {
  return arch === 'x64';
}

/** Checks the options and fills in the defaults. Throws `ValidationError` naming the field and the rule. */
export function resolveShutdownLadderOptions(
  options: ShutdownLadderOptions = {},
): ResolvedShutdownLadderOptions {
  if (typeof options !== 'object' || options === null) {
    throw new ValidationError({ field: 'options', rule: 'must be an object', value: options });
  }
  return {
    ctrlAltDel: checkFlag('ctrlAltDel', options.ctrlAltDel, hostSupportsCtrlAltDel()),
    ctrlAltDelGraceMs: checkDuration(
      'ctrlAltDelGraceMs',
      options.ctrlAltDelGraceMs,
      defaultCtrlAltDelGraceMs,
      0,
    ),
    resumePaused: checkFlag('resumePaused', options.resumePaused, true),
    terminate: checkFlag('terminate', options.terminate, true),
    terminateGraceMs: checkDuration('terminateGraceMs', options.terminateGraceMs, defaultTerminateGraceMs, 0),
    // Zero would give up before the kernel has even delivered the signal.
    killTimeoutMs: checkDuration('killTimeoutMs', options.killTimeoutMs, defaultKillTimeoutMs, 1),
    apiTimeoutMs: checkDuration('apiTimeoutMs', options.apiTimeoutMs, defaultApiTimeoutMs, 1),
  };
}
