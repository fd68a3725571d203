import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { simulatorEnvironment } from './fault-injection.js';
import { describeOsError, PathResolver } from './paths.js';
import { bootFiles, cleanupSimulators, makeTempDir, startSimulator } from './test-helpers.js';

afterEach(cleanupSimulators);

describe('PathResolver', () => {
  it('should resolve relative paths against the working directory without a root', () => {
    const resolver = new PathResolver({ workingDirectory: '/srv/vm' });
    expect(resolver.resolve('rootfs.ext4')).toBe('/srv/vm/rootfs.ext4');
    expect(resolver.resolve('/images/vmlinux')).toBe('/images/vmlinux');
  });

  it.each([
    ['/run/firecracker.socket', '/jail/root/run/firecracker.socket'],
    ['rootfs.ext4', '/jail/root/rootfs.ext4'],
    ['./a/../b', '/jail/root/b'],
    ['../../../etc/passwd', '/jail/root/etc/passwd'],
    ['/../../tmp/x', '/jail/root/tmp/x'],
    ['/', '/jail/root'],
  ])('should see %s as %s inside a jail', (path, expected) => {
    expect(new PathResolver({ rootDir: '/jail/root' }).resolve(path)).toBe(expected);
  });

  it('should fall back to a relative socket path when the host path exceeds sun_path', () => {
    const rootDir = join(process.cwd(), 'x'.repeat(120));
    const resolver = new PathResolver({ rootDir });
    expect(resolver.socketPath('/run/firecracker.socket')).toBe(
      `./${'x'.repeat(120)}/run/firecracker.socket`,
    );
    expect(new PathResolver({ rootDir: '/j' }).socketPath('/api.sock')).toBe('/j/api.sock');
  });

  it('should describe system errors like Rust io::Error', () => {
    expect(describeOsError(Object.assign(new Error('x'), { code: 'ENOENT', errno: -2 }))).toBe(
      'No such file or directory (os error 2)',
    );
    expect(describeOsError(Object.assign(new Error('x'), { code: 'EWEIRD', errno: -200 }))).toBe(
      'EWEIRD (os error 200)',
    );
  });
});

describe('a jailed simulator (MICROVM_SIMULATOR_ROOT_DIR)', () => {
  async function startJailed() {
    const dir = makeTempDir();
    const root = join(dir, 'root');
    mkdirSync(join(root, 'run'), { recursive: true });
    const hostFiles = bootFiles(dir);
    writeFileSync(join(root, 'vmlinux'), 'kernel');
    writeFileSync(join(root, 'rootfs.ext4'), 'disk');
    const simulator = await startSimulator({
      dir,
      omitApiSock: true,
      apiSocketPath: join(root, 'run', 'firecracker.socket'),
      env: simulatorEnvironment({ rootDir: root }),
    });
    return { simulator, root, hostFiles };
  }

  it('should bind the default API socket inside the root', async () => {
    const { simulator, root } = await startJailed();
    expect(existsSync(join(root, 'run', 'firecracker.socket'))).toBe(true);
    expect((await simulator.request('GET', '/')).status).toBe(200);
  });

  it('should not find a host path, even through ..', async () => {
    const { simulator, hostFiles } = await startJailed();
    for (const path of [hostFiles.kernel, `../../../../../../..${hostFiles.kernel}`]) {
      const reply = await simulator.request('PUT', '/boot-source', { kernel_image_path: path });
      expect(reply.status).toBe(400);
      expect(reply.json().fault_message).toBe(
        'Boot source error: The kernel file cannot be opened: No such file or directory (os error 2)',
      );
    }
  });

  it('should use jail-relative paths for every resource', async () => {
    const { simulator, root } = await startJailed();
    const requests: [string, string, unknown][] = [
      ['PUT', '/logger', { log_path: '/fc.log' }],
      ['PUT', '/metrics', { metrics_path: 'metrics.json' }],
      ['PUT', '/boot-source', { kernel_image_path: '/vmlinux', boot_args: 'console=ttyS0 reboot=k panic=1' }],
      ['PUT', '/drives/rootfs', { drive_id: 'rootfs', path_on_host: 'rootfs.ext4', is_root_device: true }],
      ['PUT', '/vsock', { guest_cid: 3, uds_path: '/run/v.sock' }],
      ['PUT', '/actions', { action_type: 'InstanceStart' }],
      ['PATCH', '/vm', { state: 'Paused' }],
      ['PUT', '/snapshot/create', { snapshot_path: '/snap', mem_file_path: '../../mem' }],
    ];
    for (const [method, path, body] of requests) {
      const reply = await simulator.request(method, path, body);
      expect(reply.status, `${method} ${path}: ${reply.text}`).toBe(204);
    }
    for (const file of ['fc.log', 'metrics.json', 'run/v.sock', 'snap', 'mem'])
      expect(existsSync(join(root, file)), file).toBe(true);
  });
});
