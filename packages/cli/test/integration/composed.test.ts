import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const execFileAsync = promisify(execFile);
const bin = fileURLToPath(new URL('../../dist/bin/microvm.js', import.meta.url));

let dir: string;
let namespace: string;
let env: NodeJS.ProcessEnv;

async function ip(...args: string[]): Promise<string> {
  return (await execFileAsync('ip', args, { encoding: 'utf8' })).stdout;
}

async function microvm(...args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [bin, ...args], {
      env,
      timeout: 60_000,
    });
    return { exitCode: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { exitCode: failed.code ?? 1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mvcli-'));
  // The jailed Firecracker runs as uid 65534 and must reach its chroot below this folder.
  await chmod(dir, 0o755);
  await mkdir(join(dir, 'jail'));
  await writeFile(join(dir, 'vmlinux'), 'not a real kernel');
  await writeFile(join(dir, 'rootfs.ext4'), Buffer.alloc(4096));
  namespace = `mvcli${process.pid.toString(36)}`;
  await ip('netns', 'add', namespace);
  await ip('-n', namespace, 'link', 'set', 'lo', 'up');
  // NAT needs an uplink: a veth pair with a default route, inside the test namespace only.
  await ip('-n', namespace, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0peer');
  await ip('-n', namespace, 'addr', 'add', '198.51.100.1/24', 'dev', 'up0');
  await ip('-n', namespace, 'link', 'set', 'up0', 'up');
  await ip('-n', namespace, 'route', 'add', 'default', 'via', '198.51.100.2');
  env = {
    ...process.env,
    MICROVM_STATE_DIR: join(dir, 'state'),
    MICROVM_NETWORK_NAMESPACE: namespace,
    MICROVM_FIREWALL_TABLE: 'microvmclitest',
    MICROVM_JAILER_CHROOT_BASE_DIR: join(dir, 'jail'),
  };
  for (const name of ['NETWORK', 'FIREWALL', 'VSOCK', 'CONSOLE', 'SHUTDOWN', 'JAILER']) {
    delete env[`MICROVM_COMPOSE_${name}`];
  }
  delete env.MICROVM_FIRECRACKER_BIN;
  delete env.MICROVM_JAILER_BIN;
});

afterAll(async () => {
  await microvm('rm', '-f', 'full-1');
  await ip('netns', 'del', namespace).catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('microvm with every primitive on (simulator, test namespace)', () => {
  // Six CLI processes or more, each starting Node and the composer: seconds apiece on a loaded host.
  it('should run a composed VM detached, stop it gracefully, remove it and leave nothing', async () => {
    const run = await microvm(
      'run',
      '-d',
      '--name',
      'full-1',
      '--kernel',
      join(dir, 'vmlinux'),
      '--rootfs',
      join(dir, 'rootfs.ext4'),
    );
    expect(run.exitCode, run.stderr).toBe(0);
    const info = JSON.parse((await microvm('inspect', 'full-1')).stdout);
    expect(Object.keys(info.facts).sort()).toEqual(
      expect.arrayContaining(['console', 'firewall', 'jail', 'network', 'vsock']),
    );
    // The console log is kept by default, so `logs` works out of the box.
    await expect
      .poll(async () => (await microvm('logs', 'full-1')).stdout, { timeout: 20_000 })
      .toContain('guest ready');
    expect(await ip('-n', namespace, '-o', 'link', 'show')).toContain(info.facts.network.tapName);

    const stop = await microvm('stop', 'full-1');
    expect(stop.stdout, stop.stderr).toMatch(/^full-1 stopped \(graceful, \d+ ms\)\n$/);
    expect((await microvm('rm', 'full-1')).exitCode).toBe(0);
    expect((await microvm('gc')).stdout).toBe('nothing to clean up\n');

    expect(await ip('-n', namespace, '-o', 'link', 'show')).not.toContain(info.facts.network.tapName);
    expect(await readdir(join(dir, 'state', 'vms'))).toEqual([]);
    expect(await readdir(join(dir, 'jail', 'firecracker.js')).catch(() => [])).toEqual([]);
  }, 180_000);
});
