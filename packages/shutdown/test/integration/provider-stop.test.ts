import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type ShutdownOutcome, shutdownPrimitive } from '../../src/index.js';
import { childProcesses, createSandbox, isProcessAlive, type Sandbox } from './helpers.js';

let sandbox: Sandbox;

beforeEach(async () => {
  sandbox = await createSandbox();
});

afterEach(async () => {
  await sandbox.cleanup();
  // Whatever a test did, no VMM may be left running or unreaped.
  expect(await childProcesses()).toEqual([]);
});

/** The provider returns the primitive's whole outcome spread into its StopResult. */
function outcomeOf(result: unknown): ShutdownOutcome {
  return result as ShutdownOutcome;
}

function stepsOf(result: unknown): [string, string][] {
  return outcomeOf(result).steps.map((step) => [step.action, step.result]);
}

async function expectNoZombies(): Promise<void> {
  expect((await childProcesses()).filter((child) => child.state === 'Z')).toEqual([]);
}

describe('shutdownPrimitive with FirecrackerVmProvider and the simulator', () => {
  it('should stop a guest that honours Ctrl-Alt-Del gracefully, with exit code 0', async () => {
    const provider = sandbox.provider({ shutdown: { ctrlAltDel: true, ctrlAltDelGraceMs: 20_000 } });
    const created = await provider.create('vm-graceful', sandbox.spec());
    const result = await provider.stop('vm-graceful');
    expect(result).toMatchObject({ how: 'graceful', exitCode: 0, signal: null, aborted: false });
    expect(stepsOf(result)).toEqual([['ctrl-alt-del', 'exited']]);
    expect(result.vm.state).toBe('stopped');
    expect(result.vm.exit).toMatchObject({ exitCode: 0, signal: null });
    expect(isProcessAlive(created.pid)).toBe(false);
    await expectNoZombies();
  });

  it('should terminate a guest that ignores Ctrl-Alt-Del once the grace period is over', async () => {
    const provider = sandbox.provider({
      shutdown: { ctrlAltDel: true, ctrlAltDelGraceMs: 200, terminateGraceMs: 20_000 },
      simulator: { ignoreCtrlAltDel: true },
    });
    const created = await provider.create('vm-ignores', sandbox.spec());
    const result = await provider.stop('vm-ignores');
    // Firecracker has no SIGTERM handler: it dies by the signal.
    expect(result).toMatchObject({ how: 'terminated', exitCode: null, signal: 'SIGTERM' });
    expect(stepsOf(result)).toEqual([
      ['ctrl-alt-del', 'grace-expired'],
      ['SIGTERM', 'exited'],
    ]);
    expect(isProcessAlive(created.pid)).toBe(false);
    await expectNoZombies();
  });

  it('should kill a guest that ignores Ctrl-Alt-Del when SIGTERM is switched off', async () => {
    const provider = sandbox.provider({
      shutdown: { ctrlAltDel: true, ctrlAltDelGraceMs: 200, terminate: false },
      simulator: { ignoreCtrlAltDel: true },
    });
    const created = await provider.create('vm-killed', sandbox.spec());
    const result = await provider.stop('vm-killed');
    expect(result).toMatchObject({ how: 'killed', exitCode: null, signal: 'SIGKILL' });
    expect(stepsOf(result)).toEqual([
      ['ctrl-alt-del', 'grace-expired'],
      ['SIGTERM', 'skipped'],
      ['SIGKILL', 'exited'],
    ]);
    expect(isProcessAlive(created.pid)).toBe(false);
    await expectNoZombies();
  });

  it('should resume a paused VM and stop it gracefully', async () => {
    const provider = sandbox.provider({ shutdown: { ctrlAltDel: true, ctrlAltDelGraceMs: 20_000 } });
    await provider.create('vm-paused', sandbox.spec());
    await provider.pause('vm-paused');
    const result = await provider.stop('vm-paused');
    expect(result).toMatchObject({ how: 'graceful', exitCode: 0 });
    expect(result.vm.state).toBe('stopped');
  });

  it('should leave a paused VM paused and go on with SIGTERM when resumePaused is false', async () => {
    const provider = sandbox.provider({
      shutdown: { ctrlAltDel: true, resumePaused: false, terminateGraceMs: 20_000 },
    });
    await provider.create('vm-stays-paused', sandbox.spec());
    await provider.pause('vm-stays-paused');
    const result = await provider.stop('vm-stays-paused');
    expect(result).toMatchObject({ how: 'terminated', signal: 'SIGTERM' });
    expect(outcomeOf(result).steps[0]).toMatchObject({ action: 'ctrl-alt-del', result: 'skipped' });
  });

  it('should skip Ctrl-Alt-Del for a VM that was never started', async () => {
    const provider = sandbox.provider({ shutdown: { ctrlAltDel: true, terminateGraceMs: 20_000 } });
    await provider.create('vm-created', sandbox.spec(), { start: false });
    const result = await provider.stop('vm-created');
    expect(result).toMatchObject({ how: 'terminated', signal: 'SIGTERM' });
    expect(outcomeOf(result).steps[0]?.detail).toMatch(/never started/);
  });

  it('should report a VMM that already exited as such', async () => {
    const provider = sandbox.provider({
      shutdown: { ctrlAltDel: true },
      simulator: { exitAfterBootMs: 10 },
    });
    const created = await provider.create('vm-gone', sandbox.spec());
    while (isProcessAlive(created.pid)) await sleep(10);
    const result = await provider.stop('vm-gone');
    expect(result.how).toBe('already-exited');
    await expectNoZombies();
  });

  it('should kill at once when the stop is aborted during the grace period', async () => {
    const controller = new AbortController();
    const shutdown = shutdownPrimitive({
      ctrlAltDel: true,
      ctrlAltDelGraceMs: 60_000,
      terminateGraceMs: 60_000,
    });
    const provider = sandbox.provider({
      simulator: { ignoreCtrlAltDel: true },
      provider: {
        primitives: [
          {
            name: shutdown.name,
            // The abort timer starts with the ladder, whose Ctrl-Alt-Del step has begun by then: a timer started
            // before provider.stop() could fire first on a loaded host, and the step would be skipped instead.
            stop: (context) => {
              setTimeout(() => controller.abort(), 200);
              return shutdown.stop(context);
            },
          },
        ],
      },
    });
    const created = await provider.create('vm-abort', sandbox.spec());
    const result = await provider.stop('vm-abort', { signal: controller.signal });
    expect(result).toMatchObject({ how: 'killed', aborted: true, signal: 'SIGKILL' });
    expect(stepsOf(result)).toEqual([
      ['ctrl-alt-del', 'aborted'],
      ['SIGTERM', 'skipped'],
      ['SIGKILL', 'exited'],
    ]);
    expect(result.vm.state).toBe('stopped');
    expect(isProcessAlive(created.pid)).toBe(false);
    await expectNoZombies();
  });

  it('should shut down gracefully on destroy({ graceful: true })', async () => {
    const provider = sandbox.provider({ shutdown: { ctrlAltDel: true, ctrlAltDelGraceMs: 20_000 } });
    const exits: unknown[] = [];
    provider.onEvent((event) => {
      if (event.type === 'exit') exits.push({ exitCode: event.exitCode, signal: event.signal });
    });
    const created = await provider.create('vm-destroy', sandbox.spec());
    await provider.destroy('vm-destroy', { graceful: true });
    expect(exits).toEqual([{ exitCode: 0, signal: null }]);
    expect(isProcessAlive(created.pid)).toBe(false);
    expect(await provider.get('vm-destroy')).toBeUndefined();
  });
});
