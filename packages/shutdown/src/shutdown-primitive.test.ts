import type { StopContext } from '@microvm/core';
import { describe, expect, it } from 'vitest';
import { fakeClient, fakeProcess } from './__fixtures__/fakes.js';
import { hostSupportsCtrlAltDel, resolveShutdownLadderOptions } from './options.js';
import { shutdownPrimitive } from './shutdown-primitive.js';

function stopContext(
  parts: Pick<StopContext, 'process' | 'client' | 'state'> & { signal?: AbortSignal },
): StopContext {
  return { vmId: 'vm1', signal: new AbortController().signal, ...parts } as unknown as StopContext;
}

describe('shutdownPrimitive', () => {
  it('should be named shutdown and implement only the stop phase', () => {
    const primitive = shutdownPrimitive();
    expect(primitive.name).toBe('shutdown');
    expect(Object.keys(primitive).sort()).toEqual(['name', 'stop']);
  });

  it('should run the ladder on the context process and client and answer with the outcome', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { honoursCtrlAltDel: true });
    const primitive = shutdownPrimitive({ ctrlAltDel: true, ctrlAltDelGraceMs: 60_000 });
    const outcome = await primitive.stop(
      stopContext({
        process: vmm as unknown as StopContext['process'],
        client: client as unknown as StopContext['client'],
        state: 'running',
      }),
    );
    expect(outcome).toMatchObject({ how: 'graceful', exitCode: 0 });
    expect(outcome.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('should honour the context signal: an aborted stop kills at once', async () => {
    const vmm = fakeProcess();
    const client = fakeClient(vmm, { honoursCtrlAltDel: true });
    const primitive = shutdownPrimitive({ ctrlAltDel: true });
    const outcome = await primitive.stop(
      stopContext({
        process: vmm as unknown as StopContext['process'],
        client: client as unknown as StopContext['client'],
        state: 'running',
        signal: AbortSignal.abort(),
      }),
    );
    expect(outcome).toMatchObject({ how: 'killed', aborted: true });
  });

  it('should reject bad options when it is made, before any VM exists', () => {
    expect(() => shutdownPrimitive({ terminateGraceMs: -1 })).toThrow(
      expect.objectContaining({ code: 'ERR_MICROVM_INVALID_INPUT', field: 'terminateGraceMs' }),
    );
  });
});

describe('resolveShutdownLadderOptions', () => {
  it('should send Ctrl-Alt-Del by default only on x86_64 hosts', () => {
    expect(hostSupportsCtrlAltDel('x64')).toBe(true);
    expect(hostSupportsCtrlAltDel('arm64')).toBe(false);
    expect(resolveShutdownLadderOptions().ctrlAltDel).toBe(process.arch === 'x64');
  });

  it('should fill in the documented defaults', () => {
    expect(resolveShutdownLadderOptions({ ctrlAltDel: false })).toEqual({
      ctrlAltDel: false,
      ctrlAltDelGraceMs: 5000,
      resumePaused: true,
      terminate: true,
      terminateGraceMs: 1000,
      killTimeoutMs: 5000,
      apiTimeoutMs: 1000,
    });
  });
});
