import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FirecrackerClient, type VmProcessHandle } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  processHandleForChild,
  processHandleForPid,
  readProcessStartTime,
  shutdownVm,
} from '../../src/index.js';
import {
  bootByHand,
  childProcesses,
  createSandbox,
  firecrackerSimulatorPath,
  jailerSimulatorPath,
  type Sandbox,
  simulatorEnvironment,
  waitForApi,
} from './helpers.js';

let sandbox: Sandbox;
const clients: FirecrackerClient[] = [];
const children: ChildProcess[] = [];
const foreignProcesses: VmProcessHandle[] = [];

beforeEach(async () => {
  sandbox = await createSandbox();
});

afterEach(async () => {
  for (const client of clients.splice(0)) await client.close();
  for (const foreign of foreignProcesses.splice(0)) {
    foreign.kill('SIGKILL');
    await foreign.waitForExit({ timeoutMs: 5000 });
  }
  for (const child of children.splice(0)) {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await once(child, 'exit');
    }
  }
  await sandbox.cleanup();
  expect(await childProcesses()).toEqual([]);
});

/** Spawns the simulated Firecracker as our own child, as a user without the provider would. */
async function spawnSimulator(options: Parameters<typeof simulatorEnvironment>[0] = {}) {
  const socketPath = join(sandbox.dir, `api-${children.length}.sock`);
  const child = spawn(firecrackerSimulatorPath, ['--api-sock', socketPath, '--id', 'standalone'], {
    env: { ...process.env, ...simulatorEnvironment(options) },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  });
  children.push(child);
  // Always drain: a full console pipe would stall the VMM.
  child.stdout?.resume();
  child.stderr?.resume();
  const client = new FirecrackerClient({ socketPath });
  clients.push(client);
  await waitForApi(client);
  return { child, client };
}

describe('shutdownVm on a VMM spawned without the provider', () => {
  it('should stop our own child gracefully and report its real exit code', async () => {
    const { child, client } = await spawnSimulator();
    await bootByHand(client, sandbox);
    const outcome = await shutdownVm({
      process: processHandleForChild(child),
      client,
      ctrlAltDel: true,
      ctrlAltDelGraceMs: 20_000,
    });
    expect(outcome).toMatchObject({ how: 'graceful', exitCode: 0, signal: null });
    expect(child.exitCode).toBe(0);
  });

  it('should stop a VMM known only by its pid, and wait until /proc shows it gone', async () => {
    const { child, client } = await spawnSimulator({ ignoreCtrlAltDel: true });
    await bootByHand(client, sandbox);
    const pid = child.pid as number;
    const outcome = await shutdownVm({
      process: processHandleForPid(pid),
      client,
      ctrlAltDel: true,
      ctrlAltDelGraceMs: 100,
      terminateGraceMs: 20_000,
    });
    // Not our child as far as the handle knows: how it ended is known, the exit status is not.
    expect(outcome).toMatchObject({ how: 'terminated', exitCode: null, signal: null });
    // Gone, or a zombie waiting for Node to reap it: either way it holds nothing any more.
    expect(readProcessStartTime(pid)).toBeUndefined();
  });

  it('should report a process that already exited without signalling anything', async () => {
    const { child, client } = await spawnSimulator();
    await bootByHand(client, sandbox);
    const handle = processHandleForChild(child);
    child.kill('SIGKILL');
    await once(child, 'exit');
    const outcome = await shutdownVm({ process: handle, client, ctrlAltDel: true });
    expect(outcome).toMatchObject({ how: 'already-exited', exitCode: null, signal: 'SIGKILL', steps: [] });
  });

  it('should SIGKILL a jailed Firecracker that is PID 1 of its pid namespace and ignores SIGTERM', async () => {
    const chrootBaseDir = join(sandbox.dir, 'j');
    await mkdir(chrootBaseDir);
    const jailId = `sd-${process.pid}`;
    const jailer = spawn(
      jailerSimulatorPath,
      [
        '--id',
        jailId,
        '--exec-file',
        firecrackerSimulatorPath,
        '--uid',
        '0',
        '--gid',
        '0',
        '--chroot-base-dir',
        chrootBaseDir,
        '--new-pid-ns',
        '--',
        '--api-sock',
        '/run/api.sock',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'], detached: true },
    );
    children.push(jailer);
    let stderr = '';
    jailer.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const [launcherExit] = await once(jailer, 'exit');
    expect(launcherExit, stderr).toBe(0);
    // The launcher is gone; the VMM is the pid it wrote into the jail.
    const jailRoot = join(chrootBaseDir, 'firecracker.js', jailId, 'root');
    const pid = Number((await readFile(join(jailRoot, 'firecracker.js.pid'), 'utf8')).trim());
    // Signalled in afterEach only if it is still the same process (never a reused pid).
    foreignProcesses.push(processHandleForPid(pid));
    const client = new FirecrackerClient({ socketPath: join(jailRoot, 'run', 'api.sock') });
    clients.push(client);
    await waitForApi(client);

    const outcome = await shutdownVm({
      process: processHandleForPid(pid),
      client,
      ctrlAltDel: true,
      terminateGraceMs: 300,
    });
    // Never started: no Ctrl-Alt-Del; SIGTERM never reaches PID 1 of a pid namespace; SIGKILL does.
    expect(outcome.how).toBe('killed');
    expect(outcome.steps.map((step) => [step.action, step.result])).toEqual([
      ['ctrl-alt-del', 'skipped'],
      ['SIGTERM', 'grace-expired'],
      ['SIGKILL', 'exited'],
    ]);
    expect(readProcessStartTime(pid)).toBeUndefined();
  });
});
