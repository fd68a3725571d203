import type { StopContext, VmPrimitive } from '@microvm/core';
import { resolveShutdownLadderOptions, type ShutdownLadderOptions } from './options.js';
import { type ShutdownOutcome, shutdownVm } from './shutdown-vm.js';

/** The primitive's `stop` returns the full outcome; the provider reads `how` and `durationMs` from it. */
export interface ShutdownPrimitive extends VmPrimitive {
  readonly name: 'shutdown';
  stop(context: StopContext): Promise<ShutdownOutcome>;
}

/**
 * Makes the provider's `stop(vmId)` (and `destroy(vmId, { graceful: true })`) run the shutdown ladder instead of
 * a bare SIGKILL. It answers every stop, so primitives after it never get asked. The options are checked here,
 * when the primitive is made, so a bad value fails before any VM exists.
 */
export function shutdownPrimitive(options: ShutdownLadderOptions = {}): ShutdownPrimitive {
  const settings = resolveShutdownLadderOptions(options);
  return {
    name: 'shutdown',
    stop: (context) =>
      shutdownVm({
        ...settings,
        process: context.process,
        client: context.client,
        signal: context.signal,
      }),
  };
}
