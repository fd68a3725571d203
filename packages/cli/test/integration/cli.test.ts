import { execFile, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

/** The built bin, as a user runs it (`pnpm --filter @microvm/cli build` first). */
const bin = fileURLToPath(new URL('../../dist/bin/microvm.js', import.meta.url));

// Bare: every primitive off, so the test needs neither root nor namespaces; the simulator stands in.
const bare = Object.fromEntries(
  ['NETWORK', 'FIREWALL', 'VSOCK', 'CONSOLE', 'SHUTDOWN', 'JAILER'].map((name) => [
    `MICROVM_COMPOSE_${name}`,
    '0',
  ]),
);

interface Result {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

let dir: string;
let env: NodeJS.ProcessEnv;
let kernel: string;
let rootfs: string;

function microvm(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env, timeout: 30_000 }, (error, stdout, stderr) => {
      resolve({ exitCode: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function ok(...args: string[]): Promise<string> {
  const result = await microvm(...args);
  expect(result.exitCode, `microvm ${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result.stdout;
}

/**
 * Whether a process is alive: it exists and is not a zombie. A VMM stays a zombie until its supervisor reaps it,
 * but it is dead already (the provider, too, counts a zombie as exited).
 */
function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: the state follows the last ')'.
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Supervisors and VMMs started for this test's state directory. */
async function processesOf(stateDir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const commandLine = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const environment = await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '');
    if (commandLine.includes(stateDir) || environment.includes(`MICROVM_STATE_DIR=${stateDir}`)) {
      pids.push(Number(entry));
    }
  }
  return pids.filter((pid) => pid !== process.pid);
}

beforeEach(async () => {
  expect(existsSync(bin), `${bin} is missing: build the package first`).toBe(true);
  // Short: API socket paths must stay within 107 bytes.
  dir = await mkdtemp(join(tmpdir(), 'mvc-'));
  kernel = join(dir, 'vmlinux');
  rootfs = join(dir, 'rootfs.ext4');
  await writeFile(kernel, 'not a real kernel');
  await writeFile(rootfs, Buffer.alloc(4096));
  env = { ...process.env, ...bare, MICROVM_STATE_DIR: join(dir, 'state') };
  delete env.MICROVM_FIRECRACKER_BIN;
});

afterEach(async () => {
  for (const pid of await processesOf(join(dir, 'state'))) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Gone already.
    }
  }
  await rm(dir, { recursive: true, force: true });
});

describe('microvm against the simulator (bare composer)', () => {
  // About 17 CLI processes plus supervisors and simulators: seconds apiece on a loaded host.
  it('should run -d, list, inspect, pause, resume, snapshot, restore, stop, rm and gc, leaving nothing behind', async () => {
    const stateDir = join(dir, 'state');
    const run = await microvm(
      'run',
      '-d',
      '--name',
      'web-1',
      '--kernel',
      kernel,
      '--rootfs',
      rootfs,
      '--vcpus',
      '2',
    );
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toBe('web-1\n');
    expect(run.stderr).toContain('using the @microvm/simulator stand-in');
    expect(run.stderr).toMatch(/web-1\s+create instance-start\s+\d+ ms/);

    // The CLI has exited; the VM keeps running under its supervisor.
    const info = JSON.parse(await ok('inspect', 'web-1'));
    expect(info).toMatchObject({ vmId: 'web-1', state: 'running', spec: { machine: { vcpuCount: 2 } } });
    expect(isAlive(info.pid)).toBe(true);
    expect(await ok('ps')).toMatch(/web-1\s+running\s+\d+\s+2\s+256 MiB/);

    expect(await ok('pause', 'web-1')).toBe('web-1 paused\n');
    expect(await ok('resume', 'web-1')).toBe('web-1 running\n');
    expect(await ok('snapshot', 'web-1', '--snapshot-id', 'golden')).toBe('golden\n');
    expect(await ok('snapshots')).toMatch(/golden\s+web-1\s+Full/);

    expect(await ok('restore', 'golden', '--name', 'web-2')).toBe('web-2\n');
    const restored = JSON.parse(await ok('inspect', 'web-2'));
    expect(restored).toMatchObject({ state: 'running', restoredFromSnapshotId: 'golden' });
    expect(isAlive(restored.pid)).toBe(true);

    expect(await ok('stop', 'web-1')).toMatch(/^web-1 stopped \(killed, (\d+ ms|\d+\.\d+ s)\)\n$/);
    expect(isAlive(info.pid)).toBe(false);
    expect(JSON.parse(await ok('ps', '--json')).map((vm: { vmId: string }) => vm.vmId)).toEqual(['web-2']);
    expect(await ok('ps', '-a')).toMatch(/web-1\s+stopped/);

    const refused = await microvm('rm', 'web-2');
    expect(refused.exitCode).toBe(4);
    expect(refused.stderr).toContain('ERR_MICROVM_INVALID_STATE');
    expect(await ok('rm', '-f', 'web-2')).toBe('web-2\n');
    expect(isAlive(restored.pid)).toBe(false);
    expect(await ok('rm', 'web-1')).toBe('web-1\n');
    expect(await ok('gc')).toBe('nothing to clean up\n');
    expect(await ok('delete-snapshot', 'golden')).toBe('golden\n');

    expect(await readdir(join(stateDir, 'vms'))).toEqual([]);
    expect(await readdir(join(stateDir, 'snapshots'))).toEqual([]);
    // The supervisors leave once their VMM is gone.
    await expect.poll(() => processesOf(stateDir), { timeout: 15_000 }).toEqual([]);
  }, 180_000);

  it('should use exit codes scripts can rely on', async () => {
    expect((await microvm('inspect', 'nothing')).exitCode).toBe(3);
    expect((await microvm('restore', 'nothing')).exitCode).toBe(3);
    expect((await microvm('run', '-d', '--kernel', kernel)).exitCode).toBe(2);
    expect((await microvm('run', '-d', '--kernel', join(dir, 'missing'), '--rootfs', rootfs)).exitCode).toBe(
      2,
    );
    expect((await microvm('ps', '--no-such-flag')).exitCode).toBe(2);
    expect(await readdir(join(dir, 'state', 'vms')).catch(() => [])).toEqual([]);
  });

  it('should show the VMM error when a detached VM fails to start, and leave nothing', async () => {
    env.MICROVM_SIMULATOR_CRASH_AT_REQUEST = '3';
    const result = await microvm('run', '-d', '--name', 'crash', '--kernel', kernel, '--rootfs', rootfs);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain('[ERR_MICROVM_PROCESS_EXITED]');
    expect(result.stdout).toBe('');
    expect(await readdir(join(dir, 'state', 'vms'))).toEqual([]);
    await expect.poll(() => processesOf(join(dir, 'state')), { timeout: 15_000 }).toEqual([]);
  });

  it('should run in the foreground until SIGINT, then stop and remove the VM and exit 130', async () => {
    const child = spawn(
      process.execPath,
      [bin, 'run', '--name', 'fg', '--kernel', kernel, '--rootfs', rootfs],
      {
        env,
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await expect.poll(() => stderr, { timeout: 15_000 }).toContain('Ctrl-C stops the VM');
    const info = JSON.parse(await ok('inspect', 'fg'));
    expect(isAlive(info.pid)).toBe(true);
    child.kill('SIGINT');
    expect(await exited).toBe(130);
    expect(stderr).toContain('VM fg removed');
    expect(isAlive(info.pid)).toBe(false);
    expect(await readdir(join(dir, 'state', 'vms'))).toEqual([]);
  });
});
