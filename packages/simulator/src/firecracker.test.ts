import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { simulatorEnvironment } from './fault-injection.js';
import {
  apiRequest,
  bootFiles,
  builtFirecrackerPath,
  cleanupSimulators,
  configureColdBoot,
  exitWithin,
  makeTempDir,
  startSimulator,
  waitForSocket,
} from './test-helpers.js';

afterEach(cleanupSimulators);

/** Runs the built bin to completion (for flags that print and exit). */
function runToExit(
  args: string[],
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [builtFirecrackerPath, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: makeTempDir(),
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

describe('the command line', () => {
  it.each([
    [['--version'], 'Firecracker v1.16.1\n'],
    [['--snapshot-version'], 'v10.0.0\n'],
  ])('should print %j and exit 0', async (args, output) => {
    const result = await runToExit(args);
    expect(result.code).toBe(0);
    expect(result.stdout).toBe(output);
  });

  it('should print the usage for --help and -h', async () => {
    for (const flag of ['--help', '-h']) {
      const result = await runToExit([flag]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('--api-sock <api-sock>');
    }
  });

  it.each([
    [['--api-sock=/tmp/x.sock'], "Found argument 'api-sock=/tmp/x.sock' which wasn't expected"],
    [['--id', 'a', '--id', 'b'], "The argument 'id' was provided more than once."],
    [['--api-sock'], "The argument 'api-sock' requires a value, but none was supplied."],
    [['--api-sock', '--id'], "The argument 'api-sock' requires a value, but none was supplied."],
    [['--no-api'], "Argument 'config-file' required, but not found."],
    [['--no-seccomp', '--seccomp-filter', 'f.bpf'], 'cannot be used together with argument'],
    [['--frobnicate'], "Found argument 'frobnicate' which wasn't expected"],
    [['positional'], "Found argument 'positional' which wasn't expected"],
    [
      ['--http-api-max-payload-size', 'lots'],
      "Invalid value 'lots' for argument 'http-api-max-payload-size'.",
    ],
  ])('should exit 153 for %j', async (args, message) => {
    const result = await runToExit(args);
    expect(result.code).toBe(153);
    expect(result.stderr).toContain('Arguments parsing error: ');
    expect(result.stderr).toContain(message);
  });

  it('should exit 152 for an invalid --level', async () => {
    const result = await runToExit(['--level', 'Loud']);
    expect(result.code).toBe(152);
    expect(result.stderr).toContain('Invalid value for logger level: Loud');
  });

  it.each([['bad_id'], ['x'.repeat(65)], ['']])('should panic and abort for --id %j', async (id) => {
    const result = await runToExit(['--id', id]);
    expect(result.signal).toBe('SIGABRT');
    expect(result.stderr).toContain('Invalid instance ID');
  });
});

describe('the process', () => {
  it('should refuse to start when the API socket path exists, and leave the file alone', async () => {
    const dir = makeTempDir();
    const socketPath = join(dir, 'api.sock');
    writeFileSync(socketPath, '');
    const simulator = await startSimulator({ dir, apiSocketPath: socketPath, waitForSocket: false });
    expect((await exitWithin(simulator)).code).toBe(1);
    expect(simulator.stderr()).toContain(
      `Failed to open the API socket at: ${socketPath}. Check that it is not already used.`,
    );
    expect(existsSync(socketPath)).toBe(true);
  });

  it('should die from SIGTERM (no handler) and leave its API socket behind', async () => {
    const simulator = await startSimulator();
    simulator.child.kill('SIGTERM');
    expect((await exitWithin(simulator)).signal).toBe('SIGTERM');
    expect(existsSync(simulator.apiSocketPath)).toBe(true);
  });

  it('should exit 156 on SIGHUP', async () => {
    const simulator = await startSimulator();
    simulator.child.kill('SIGHUP');
    expect((await exitWithin(simulator)).code).toBe(156);
  });

  it('should log to stdout in Firecracker format with the instance id', async () => {
    const simulator = await startSimulator({ args: ['--id', 'vm-7'] });
    await simulator.request('GET', '/version');
    await simulator.waitForStdout('The request was executed successfully. Status code: 200 OK.');
    expect(simulator.stdout()).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9} \[vm-7:main\] Running Firecracker v1\.16\.1$/m,
    );
    expect(simulator.stdout()).toMatch(
      /\[vm-7:fc_api\] The API server received a Get request on "\/version"\.$/m,
    );
  });
});

describe('running in process (the jailer imports the bin to simulate exec)', () => {
  it('should export runFirecracker from the bin without running it on import, and honour rootDir', async () => {
    const dir = makeTempDir();
    const root = join(dir, 'root');
    const script = `
      const module = await import(${JSON.stringify(builtFirecrackerPath)});
      const code = await module.runFirecracker(['--api-sock', '/api.sock', '--id', 'inproc'], { rootDir: ${JSON.stringify(root)}, env: {} });
      process.exit(code);
    `;
    mkdirSync(root);
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, '--', '--version'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    try {
      const socketPath = join(root, 'api.sock');
      await waitForSocket(
        socketPath,
        exited.then(() => ({ code: child.exitCode, signal: child.signalCode })),
      );
      expect((await apiRequest(socketPath, 'GET', '/')).json().id).toBe('inproc');
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
  });
});

describe('a cold boot', () => {
  it('should boot, print the guest console on stdout and report Running', async () => {
    const simulator = await startSimulator();
    await configureColdBoot(simulator, {
      bootArgs: 'console=ttyS0 reboot=k panic=1 ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off',
    });
    expect((await simulator.request('GET', '/')).json().state).toBe('Not started');
    expect((await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' })).status).toBe(204);
    expect((await simulator.request('GET', '/')).json().state).toBe('Running');
    await simulator.waitForStdout('microvm-simulator: guest ready');
    const stdout = simulator.stdout();
    expect(stdout).toContain('Linux version');
    expect(stdout).toContain(
      'Kernel command line: console=ttyS0 reboot=k panic=1 ip=172.16.0.2::172.16.0.1:255.255.255.252::eth0:off root=/dev/vda rw pci=off',
    );
  });

  it('should print nothing from the guest with the default command line (serial disabled)', async () => {
    const simulator = await startSimulator();
    const files = bootFiles(simulator.dir);
    await simulator.request('PUT', '/boot-source', { kernel_image_path: files.kernel });
    await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
    await simulator.request('PUT', '/actions', { action_type: 'SendCtrlAltDel' });
    expect((await exitWithin(simulator)).code).toBe(0);
    expect(simulator.stdout()).not.toContain('Linux version');
    expect(simulator.stdout()).not.toContain('guest ready');
  });

  it('should send the console to serial_out_path when PUT /serial set one', async () => {
    const simulator = await startSimulator({ env: simulatorEnvironment({ readyLine: 'READY-42' }) });
    const serialPath = join(simulator.dir, 'serial.out');
    expect((await simulator.request('PUT', '/serial', { serial_out_path: serialPath })).status).toBe(204);
    await configureColdBoot(simulator);
    await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
    await simulator.request('PUT', '/actions', { action_type: 'SendCtrlAltDel' });
    expect((await exitWithin(simulator)).code).toBe(0);
    const serial = readFileSync(serialPath, 'utf8');
    expect(serial).toContain('READY-42');
    expect(serial).toContain('reboot: Restarting system');
    expect(simulator.stdout()).not.toContain('READY-42');
  });

  it('should exit 0 after SendCtrlAltDel, with a shutdown log on the console', async () => {
    const simulator = await startSimulator();
    await configureColdBoot(simulator);
    await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
    await simulator.waitForStdout('guest ready');
    expect((await simulator.request('PUT', '/actions', { action_type: 'SendCtrlAltDel' })).status).toBe(204);
    expect(await exitWithin(simulator)).toEqual({ code: 0, signal: null });
    expect(simulator.stdout()).toContain('reboot: Restarting system');
    expect(simulator.stdout()).toContain('Firecracker exiting successfully. exit_code=0');
  });

  it('should pause and resume, and only act on Ctrl-Alt-Del once resumed', async () => {
    const simulator = await startSimulator({ env: simulatorEnvironment({ shutdownDelayMs: 0 }) });
    await configureColdBoot(simulator);
    await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
    expect((await simulator.request('PATCH', '/vm', { state: 'Paused' })).status).toBe(204);
    expect((await simulator.request('GET', '/')).json().state).toBe('Paused');
    expect((await simulator.request('PUT', '/actions', { action_type: 'SendCtrlAltDel' })).status).toBe(204);
    // A paused guest cannot react; the VMM keeps answering.
    expect((await simulator.request('GET', '/')).json().state).toBe('Paused');
    expect(simulator.child.exitCode).toBeNull();
    expect((await simulator.request('PATCH', '/vm', { state: 'Resumed' })).status).toBe(204);
    expect((await exitWithin(simulator)).code).toBe(0);
  });

  it('should log the guest boot time with --boot-timer', async () => {
    const simulator = await startSimulator({ args: ['--boot-timer'] });
    await configureColdBoot(simulator);
    await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
    await simulator.waitForStdout('Guest-boot-time =');
    expect(simulator.stdout()).toMatch(/Guest-boot-time = +\d+ us +\d+ ms, +\d+ CPU us +\d+ CPU ms/);
  });

  it('should set the Deprecation header for deprecated inputs', async () => {
    const simulator = await startSimulator();
    const vsock = await simulator.request('PUT', '/vsock', {
      vsock_id: 'v',
      guest_cid: 3,
      uds_path: join(simulator.dir, 'v.sock'),
    });
    expect(vsock.status).toBe(204);
    expect(vsock.headers.deprecation).toBe('true');
    const template = await simulator.request('PUT', '/machine-config', {
      vcpu_count: 1,
      mem_size_mib: 128,
      cpu_template: 'T2',
    });
    expect(template.headers.deprecation).toBe('true');
    await simulator.request('PUT', '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'tap0' });
    const mmdsWithoutVersion = await simulator.request('PUT', '/mmds/config', {
      network_interfaces: ['eth0'],
    });
    expect(mmdsWithoutVersion.headers.deprecation).toBe('true');
    const mmdsV2 = await simulator.request('PUT', '/mmds/config', {
      network_interfaces: ['eth0'],
      version: 'V2',
    });
    expect(mmdsV2.headers.deprecation).toBeUndefined();
  });

  it('should seed MMDS from --metadata', async () => {
    const dir = makeTempDir();
    writeFileSync(join(dir, 'metadata.json'), JSON.stringify({ latest: { 'user-data': 'hello' } }));
    const simulator = await startSimulator({ dir, args: ['--metadata', join(dir, 'metadata.json')] });
    expect((await simulator.request('GET', '/mmds')).json()).toEqual({ latest: { 'user-data': 'hello' } });
  });
});

describe('--config-file', () => {
  function writeConfig(dir: string, overrides: Record<string, unknown> = {}): string {
    const files = bootFiles(dir);
    const path = join(dir, 'vm.json');
    writeFileSync(
      path,
      JSON.stringify({
        'boot-source': { kernel_image_path: files.kernel, boot_args: 'console=ttyS0 reboot=k panic=1' },
        drives: [
          { drive_id: 'rootfs', path_on_host: files.rootfs, is_root_device: true, is_read_only: false },
        ],
        'machine-config': { vcpu_count: 2, mem_size_mib: 256 },
        'network-interfaces': [{ iface_id: 'eth0', host_dev_name: 'tap0', guest_mac: '06:00:ac:10:00:02' }],
        'mmds-config': { network_interfaces: ['eth0'], version: 'V2' },
        ...overrides,
      }),
    );
    return path;
  }

  it('should configure and boot at startup, with the API still usable', async () => {
    const dir = makeTempDir();
    const simulator = await startSimulator({ dir, args: ['--config-file', writeConfig(dir)] });
    await simulator.waitForStdout('guest ready');
    expect((await simulator.request('GET', '/')).json().state).toBe('Running');
    expect((await simulator.request('GET', '/machine-config')).json()).toMatchObject({
      vcpu_count: 2,
      mem_size_mib: 256,
    });
    expect((await simulator.request('PUT', '/boot-source', { kernel_image_path: 'x' })).status).toBe(400);
  });

  it('should boot without any socket with --no-api', async () => {
    const dir = makeTempDir();
    const simulator = await startSimulator({
      dir,
      args: ['--no-api', '--config-file', writeConfig(dir)],
      waitForSocket: false,
    });
    await simulator.waitForStdout('guest ready');
    expect(existsSync(simulator.apiSocketPath)).toBe(false);
  });

  it.each([
    ['an unknown section', { serial: { serial_out_path: 'x' } }, 'unknown field `serial`'],
    [
      'a missing kernel',
      { 'boot-source': { kernel_image_path: '/nonexistent/vmlinux' } },
      'No such file or directory (os error 2)',
    ],
    [
      'an invalid machine config',
      { 'machine-config': { vcpu_count: 0, mem_size_mib: 128 } },
      'The number of vCPUs must be greater than 0',
    ],
  ])('should exit 1 for %s', async (_name, overrides, message) => {
    const dir = makeTempDir();
    const simulator = await startSimulator({
      dir,
      args: ['--config-file', writeConfig(dir, overrides)],
      waitForSocket: false,
    });
    expect((await exitWithin(simulator)).code).toBe(1);
    expect(simulator.stderr()).toContain(message);
  });
});
