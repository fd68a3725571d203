import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { processHandleForPid, readProcessStartTime } from './process-by-pid.js';

const children: ChildProcess[] = [];

function spawnSleeper(): ChildProcess & { pid: number } {
  const child = spawn('sleep', ['60'], { stdio: 'ignore' });
  children.push(child);
  if (child.pid === undefined) throw new Error('sleep did not start');
  return child as ChildProcess & { pid: number };
}

afterEach(async () => {
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
});

/** A pid no process has: above the kernel's pid_max default range would be refused, so find a free one. */
function unusedPid(): number {
  for (let pid = 4_000_000; pid > 1000; pid -= 7919) {
    if (readProcessStartTime(pid) === undefined) return pid;
  }
  throw new Error('no unused pid found');
}

describe('processHandleForPid', () => {
  it('should see a live process, signal it, and notice its exit through /proc', async () => {
    const child = spawnSleeper();
    const handle = processHandleForPid(child.pid);
    expect(handle.hasExited).toBe(false);
    expect(await handle.waitForExit({ timeoutMs: 30 })).toBeUndefined();
    expect(handle.kill('SIGTERM')).toBe(true);
    // Not our child as far as the handle knows: the exit code is unknown.
    expect(await handle.waitForExit({ timeoutMs: 10_000 })).toEqual({ exitCode: null, signal: null });
    expect(handle.hasExited).toBe(true);
    expect(handle.kill('SIGKILL')).toBe(false);
  });

  it('should report a pid without a process as exited and never signal it', () => {
    const handle = processHandleForPid(unusedPid());
    expect(handle.hasExited).toBe(true);
    expect(handle.exit).toEqual({ exitCode: null, signal: null });
    expect(handle.kill('SIGKILL')).toBe(false);
  });

  it('should treat a pid whose start time changed as exited (reused) and not signal the new owner', async () => {
    const child = spawnSleeper();
    const startTime = readProcessStartTime(child.pid);
    expect(startTime).toBeTypeOf('number');
    const handle = processHandleForPid(child.pid, { startTime: (startTime ?? 0) + 1 });
    expect(handle.hasExited).toBe(true);
    expect(handle.kill('SIGKILL')).toBe(false);
    expect(await handle.waitForExit({ timeoutMs: 1000 })).toEqual({ exitCode: null, signal: null });
    expect(child.exitCode === null && child.signalCode === null).toBe(true);
  });

  it('should treat a process without --id <vmId> on its command line as gone and never signal it', async () => {
    const stranger = spawnSleeper();
    const handle = processHandleForPid(stranger.pid, { vmId: 'sandbox-42' });
    expect(handle.hasExited).toBe(true);
    expect(handle.kill('SIGKILL')).toBe(false);
    expect(readProcessStartTime(stranger.pid)).toBeDefined();
    const vmm = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', '--', '--id', 'sandbox-42'], {
      stdio: 'ignore',
    });
    children.push(vmm);
    await once(vmm, 'spawn');
    expect(processHandleForPid(vmm.pid!, { vmId: 'sandbox-42' }).hasExited).toBe(false);
  });

  it('should reject waitForExit with the reason when the signal aborts', async () => {
    const child = spawnSleeper();
    const handle = processHandleForPid(child.pid);
    const reason = new Error('caller gave up');
    const controller = new AbortController();
    setTimeout(() => controller.abort(reason), 20);
    await expect(handle.waitForExit({ signal: controller.signal })).rejects.toBe(reason);
    expect(handle.hasExited).toBe(false);
  });

  it.each([
    { name: 'pid 0', pid: 0, options: {}, field: 'pid' },
    { name: 'a negative pid', pid: -1, options: {}, field: 'pid' },
    { name: 'a fractional pid', pid: 1.5, options: {}, field: 'pid' },
    { name: 'a string pid', pid: '12' as unknown as number, options: {}, field: 'pid' },
    { name: 'a zero poll interval', pid: 1, options: { pollIntervalMs: 0 }, field: 'pollIntervalMs' },
    { name: 'a negative start time', pid: 1, options: { startTime: -5 }, field: 'startTime' },
  ])('should reject $name', ({ pid, options, field }) => {
    expect(() => processHandleForPid(pid, options)).toThrow(
      expect.objectContaining({ code: 'ERR_MICROVM_INVALID_INPUT', field }),
    );
  });
});
