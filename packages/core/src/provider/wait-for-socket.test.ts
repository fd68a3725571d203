import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { VmmProcess } from './vmm-process.js';
import { waitForSocket } from './wait-for-socket.js';

let dir: string;
let server: Server | undefined;
const orphans: ChildProcess[] = [];

/** A process that is not the launcher's child, standing in for the VMM a forking jailer leaves. Killed after each test. */
function spawnOrphan(): ChildProcess {
  const orphan = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  orphans.push(orphan);
  return orphan;
}

/** A launcher that exits 0 at once, like a daemonizing jailer; the VMM's pid is in `pidFile` (now or later). */
function spawnForkingLauncher(pidFile: string): VmmProcess {
  return VmmProcess.spawn({
    executable: process.execPath,
    args: ['-e', ''],
    apiSocketPath: pidFile,
    pidFilePath: pidFile,
  });
}

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mvm-sock-'));
});

afterEach(async () => {
  for (const orphan of orphans.splice(0)) orphan.kill('SIGKILL');
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  await rm(dir, { recursive: true, force: true });
});

describe('waitForSocket', () => {
  it('should resolve once a socket that appears later accepts connections', async () => {
    const socketPath = join(dir, 'api.sock');
    setTimeout(() => {
      server = createServer().listen(socketPath);
    }, 30);
    await expect(waitForSocket({ socketPath, timeoutMs: 20_000 })).resolves.toBeUndefined();
  });

  it('should time out when nothing ever listens', async () => {
    await expect(
      waitForSocket({ socketPath: join(dir, 'never.sock'), timeoutMs: 100 }),
    ).rejects.toMatchObject({
      code: 'ERR_MICROVM_TIMEOUT',
    });
  });

  it('should fail at once with the exit code and stderr when the process exits first', async () => {
    const vmm = VmmProcess.spawn({
      executable: process.execPath,
      args: ['-e', 'console.error("cannot bind"); process.exit(3)'],
      apiSocketPath: join(dir, 'api.sock'),
    });
    const error = await waitForSocket({
      socketPath: join(dir, 'api.sock'),
      timeoutMs: 20_000,
      process: vmm,
    }).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'ERR_MICROVM_PROCESS_EXITED', exitCode: 3 });
    expect((error as Error).message).toContain('cannot bind');
  });

  it('should stop waiting when aborted', async () => {
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('user gave up')), 20);
    await expect(
      waitForSocket({ socketPath: join(dir, 'x.sock'), timeoutMs: 10_000, signal: controller.signal }),
    ).rejects.toMatchObject({ code: 'ERR_MICROVM_ABORTED' });
  });
});

/**
 * Resolves once the launcher has exited and the VmmProcess waits for the pid file, the state in which it must
 * signal nothing. Polled instead of slept: a loaded CI host can take longer than any fixed delay to start Node.
 */
async function launcherAwaitingPidFile(launcher: VmmProcess): Promise<void> {
  // SIGCONT is harmless to the launcher while it still runs; kill() refuses it once the pid is unknown.
  await vi.waitFor(() => expect(launcher.kill('SIGCONT')).toBe(false), { timeout: 20_000, interval: 20 });
}

/** Field 22 of /proc/<pid>/stat (start time), zombies included: undefined once the process is reaped. */
async function startTimeOf(pid: number): Promise<string | undefined> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

/**
 * Resolves once Node has reaped our child `pid` (started at `startTime`), so its exit handler has run: Node
 * emits `exit` as it reaps. A start time that differs means the pid was reused after the reap.
 */
async function reaped(pid: number, startTime: string | undefined): Promise<void> {
  await vi.waitFor(
    async () => {
      const current = await startTimeOf(pid);
      expect(current === undefined || current !== startTime).toBe(true);
    },
    { timeout: 20_000, interval: 20 },
  );
}

describe('VmmProcess', () => {
  it('should drain a flood of output so the child never blocks, and reap it', async () => {
    const vmm = VmmProcess.spawn({
      executable: process.execPath,
      args: ['-e', 'process.stdout.write("x".repeat(8 * 1024 * 1024)); process.stderr.write("tail\\n")'],
      apiSocketPath: join(dir, 'unused.sock'),
    });
    await expect(vmm.exited).resolves.toEqual({ exitCode: 0, signal: null });
    expect(vmm.stderrTail()).toContain('tail');
  });

  it('should follow the pid named in a pid file and notice when it is gone', async () => {
    const orphan = spawnOrphan();
    const pidFile = join(dir, 'vmm.pid');
    await writeFile(pidFile, `${orphan.pid}`);
    const launcher = spawnForkingLauncher(pidFile);
    // The launcher exits 0 at once, like a daemonizing jailer: that must not count as the VMM's exit. Its exit
    // handler switches to the pid in the (already written) file; only then does the provider's call come.
    await vi.waitFor(() => expect(launcher.pid).toBe(orphan.pid), { timeout: 20_000, interval: 20 });
    await launcher.followPidFile(pidFile);
    expect(launcher.pid).toBe(orphan.pid);
    expect(launcher.hasExited).toBe(false);
    orphan.kill('SIGKILL');
    await expect(launcher.waitForExit({ timeoutMs: 20_000 })).resolves.toEqual({
      exitCode: null,
      signal: null,
    });
  });

  it('should wait for a pid file the launcher writes only after it has exited', async () => {
    const orphan = spawnOrphan();
    const pidFile = join(dir, 'late.pid');
    const launcher = spawnForkingLauncher(pidFile);
    // Like the real jailer's forked child: the file appears well after the launcher is gone.
    await launcherAwaitingPidFile(launcher);
    expect(launcher.hasExited).toBe(false);
    await writeFile(pidFile, `${orphan.pid}`);
    await vi.waitFor(() => expect(launcher.pid).toBe(orphan.pid), { timeout: 20_000, interval: 20 });
    expect(launcher.hasExited).toBe(false);
    orphan.kill('SIGKILL');
    await expect(launcher.waitForExit({ timeoutMs: 20_000 })).resolves.toEqual({
      exitCode: null,
      signal: null,
    });
  });

  it('should not mark a forked VMM exited when the provider switches to it before the exit handler does', async () => {
    const orphan = spawnOrphan();
    const pidFile = join(dir, 'raced.pid');
    await writeFile(pidFile, `${orphan.pid}`);
    const launcher = spawnForkingLauncher(pidFile);
    const launcherPid = launcher.pid;
    // Like the provider once the API answers: it may get there before the launcher's exit handler.
    const [launcherStartTime] = await Promise.all([
      startTimeOf(launcherPid),
      launcher.followPidFile(pidFile),
    ]);
    await reaped(launcherPid, launcherStartTime);
    expect(launcher.pid).toBe(orphan.pid);
    expect(launcher.hasExited).toBe(false);
    orphan.kill('SIGKILL');
    await launcher.waitForExit({ timeoutMs: 20_000 });
  });

  it('should deliver a kill asked for while the pid file is not written yet, and treat an empty file as unwritten', async () => {
    const orphan = spawnOrphan();
    const pidFile = join(dir, 'pending.pid');
    const launcher = spawnForkingLauncher(pidFile);
    await launcherAwaitingPidFile(launcher);
    // The jailer creates the file, then writes it.
    await writeFile(pidFile, '');
    const killed = launcher.killAndWait();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(launcher.hasExited).toBe(false);
    await writeFile(pidFile, `${orphan.pid}`);
    await expect(killed).resolves.toEqual({ exitCode: null, signal: null });
    expect(
      orphan.signalCode ??
        (await new Promise((resolve) => orphan.once('exit', (_, signal) => resolve(signal)))),
    ).toBe('SIGKILL');
  });

  it('should count the exit as the VMM exit when the pid file names the launcher itself (exec in place)', async () => {
    const pidFile = join(dir, 'self.pid');
    const launcher = VmmProcess.spawn({
      executable: process.execPath,
      // Like a jailer without --daemonize: it writes its own pid, then becomes Firecracker, which exits 0.
      args: ['-e', `require('node:fs').writeFileSync(${JSON.stringify(pidFile)}, String(process.pid))`],
      apiSocketPath: pidFile,
      pidFilePath: pidFile,
    });
    await expect(launcher.waitForExit({ timeoutMs: 20_000 })).resolves.toEqual({ exitCode: 0, signal: null });
  });

  it('should report a timeout as undefined from waitForExit', async () => {
    const vmm = VmmProcess.spawn({
      executable: process.execPath,
      args: ['-e', 'setTimeout(() => {}, 60000)'],
      apiSocketPath: join(dir, 'unused.sock'),
    });
    await expect(vmm.waitForExit({ timeoutMs: 20 })).resolves.toBeUndefined();
    await vmm.killAndWait();
    expect(vmm.exit).toEqual({ exitCode: null, signal: 'SIGKILL' });
  });
});
