import { existsSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  DEFAULT_GUEST_READY_MS,
  DEFAULT_READY_LINE,
  matchesEndpoint,
  readSimulatorBehaviour,
  SimulatorEnvironmentError,
  simulatorEnvironment,
} from './fault-injection.js';
import {
  cleanupSimulators,
  configureColdBoot,
  exitWithin,
  type SimulatorHandle,
  startSimulator,
  waitForSocket,
} from './test-helpers.js';

afterEach(cleanupSimulators);

describe('readSimulatorBehaviour', () => {
  it('should use the defaults for an empty environment', () => {
    const behaviour = readSimulatorBehaviour({});
    expect(behaviour).toMatchObject({
      socketDelayMs: 0,
      crashAtRequest: undefined,
      reject: [],
      hang: [],
      hangAtStartup: false,
      readyLine: DEFAULT_READY_LINE,
      vsockEchoPort: 5000,
      guestReadyMs: DEFAULT_GUEST_READY_MS,
      shutdownDelayMs: 100,
      requireTap: false,
    });
  });

  it('should read every variable that simulatorEnvironment writes', () => {
    const environment = simulatorEnvironment({
      socketDelayMs: 5,
      crashAtRequest: 3,
      reject: ['PUT /drives', 'patch /vm'],
      ignoreCtrlAltDel: true,
      hang: ['startup', 'PUT /snapshot/create'],
      exitAfterBootMs: 7,
      consoleFloodBytes: 1000,
      kernelPanic: true,
      readyLine: 'up',
      vsockEchoPort: 6000,
      guestReadyMs: 1,
      shutdownDelayMs: 2,
      requireTap: true,
      metricsPeriodMs: 100,
      rootDir: '/srv/jail/root',
    });
    expect(readSimulatorBehaviour(environment)).toEqual({
      socketDelayMs: 5,
      crashAtRequest: 3,
      reject: [
        { method: 'PUT', path: '/drives' },
        { method: 'PATCH', path: '/vm' },
      ],
      ignoreCtrlAltDel: true,
      hangAtStartup: true,
      hang: [{ method: 'PUT', path: '/snapshot/create' }],
      exitAfterBootMs: 7,
      consoleFloodBytes: 1000,
      kernelPanic: true,
      readyLine: 'up',
      vsockEchoPort: 6000,
      guestReadyMs: 1,
      shutdownDelayMs: 2,
      requireTap: true,
      metricsPeriodMs: 100,
      rootDir: '/srv/jail/root',
    });
  });

  it.each([
    ['MICROVM_SIMULATOR_CRASH_AT_REQUEST', '0'],
    ['MICROVM_SIMULATOR_SOCKET_DELAY_MS', 'soon'],
    ['MICROVM_SIMULATOR_REJECT', 'drives'],
    ['MICROVM_SIMULATOR_KERNEL_PANIC', 'yes'],
  ])('should refuse %s=%s', (name, value) => {
    expect(() => readSimulatorBehaviour({ [name]: value })).toThrow(SimulatorEnvironmentError);
  });

  it.each([
    ['PUT', '/drives/rootfs', true],
    ['PUT', '/drives', true],
    ['PUT', '/drives-extra', false],
    ['PATCH', '/drives/rootfs', false],
  ])('should match %s %s against PUT /drives: %s', (method, path, expected) => {
    expect(matchesEndpoint([{ method: 'PUT', path: '/drives' }], method, path)).toBe(expected);
  });
});

async function bootedSimulator(env: Record<string, string>, bootArgs?: string): Promise<SimulatorHandle> {
  const simulator = await startSimulator({ env });
  await configureColdBoot(simulator, bootArgs === undefined ? {} : { bootArgs });
  const start = await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
  expect(start.status, start.text).toBe(204);
  return simulator;
}

/** A negative check: the process is still alive after a while (used only where the point is "nothing happens"). */
async function stillRunningAfter(simulator: SimulatorHandle, waitMs: number): Promise<boolean> {
  await new Promise((resolve) => setTimeout(resolve, waitMs));
  return simulator.child.exitCode === null && simulator.child.signalCode === null;
}

describe('fault injection in the simulator process', () => {
  it('MICROVM_SIMULATOR_SOCKET_DELAY_MS: should bind the API socket late', async () => {
    const simulator = await startSimulator({
      // Long enough that a stalled test worker still checks before the bind.
      env: simulatorEnvironment({ socketDelayMs: 5_000 }),
      waitForSocket: false,
    });
    await simulator.waitForStdout('Running Firecracker v1.16.1');
    expect(existsSync(simulator.apiSocketPath)).toBe(false);
    await waitForSocket(simulator.apiSocketPath, simulator.exited, 20_000);
    expect((await simulator.request('GET', '/')).status).toBe(200);
  });

  it('MICROVM_SIMULATOR_CRASH_AT_REQUEST: should exit 1 at the Nth request without answering it', async () => {
    const simulator = await startSimulator({ env: simulatorEnvironment({ crashAtRequest: 2 }) });
    expect((await simulator.request('GET', '/')).status).toBe(200);
    await expect(simulator.request('PUT', '/actions', { action_type: 'InstanceStart' })).rejects.toThrow();
    expect((await exitWithin(simulator)).code).toBe(1);
    expect(simulator.stderr()).toContain('injected crash at API request 2 (PUT /actions)');
  });

  it('MICROVM_SIMULATOR_REJECT: should answer 400 for the listed endpoints only', async () => {
    const simulator = await startSimulator({
      env: simulatorEnvironment({ reject: ['PUT /drives', 'PATCH /vm'] }),
    });
    const drive = await simulator.request('PUT', '/drives/rootfs', {
      drive_id: 'rootfs',
      path_on_host: '/x',
      is_root_device: true,
    });
    expect(drive.status).toBe(400);
    expect(drive.json().fault_message).toBe(
      'Injected failure (MICROVM_SIMULATOR_REJECT): PUT /drives/rootfs',
    );
    expect((await simulator.request('PATCH', '/vm', { state: 'Paused' })).json().fault_message).toContain(
      'Injected failure',
    );
    expect((await simulator.request('PUT', '/logger', { level: 'Info' })).status).toBe(204);
  });

  it('MICROVM_SIMULATOR_IGNORE_CTRL_ALT_DEL: should keep running after SendCtrlAltDel', async () => {
    const simulator = await bootedSimulator(
      simulatorEnvironment({ ignoreCtrlAltDel: true, shutdownDelayMs: 0 }),
    );
    expect((await simulator.request('PUT', '/actions', { action_type: 'SendCtrlAltDel' })).status).toBe(204);
    expect(await stillRunningAfter(simulator, 300)).toBe(true);
    expect(simulator.stdout()).not.toContain('reboot: Restarting system');
    expect((await simulator.request('GET', '/')).json().state).toBe('Running');
  });

  it('MICROVM_SIMULATOR_HANG=<endpoint>: should never answer that request', async () => {
    const simulator = await bootedSimulator(simulatorEnvironment({ hang: ['PUT /snapshot/create'] }));
    await simulator.request('PATCH', '/vm', { state: 'Paused' });
    const create = simulator.request(
      'PUT',
      '/snapshot/create',
      { snapshot_path: join(simulator.dir, 's'), mem_file_path: join(simulator.dir, 'm') },
      { timeoutMs: 400 },
    );
    await expect(create).rejects.toThrow('no answer within 400 ms');
    expect(simulator.child.exitCode).toBeNull();
  });

  it('MICROVM_SIMULATOR_HANG=startup: should never bind the socket', async () => {
    const simulator = await startSimulator({
      env: simulatorEnvironment({ hang: ['startup'] }),
      waitForSocket: false,
    });
    await simulator.waitForStdout('the API socket will never be bound');
    // Still hung a while later: neither bound nor exited.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(existsSync(simulator.apiSocketPath)).toBe(false);
    expect(simulator.child.exitCode).toBeNull();
  });

  it('MICROVM_SIMULATOR_EXIT_AFTER_BOOT_MS: should exit 1 after InstanceStart, like a vCPU failure', async () => {
    const simulator = await bootedSimulator(simulatorEnvironment({ exitAfterBootMs: 50 }));
    expect((await exitWithin(simulator)).code).toBe(1);
    expect(simulator.stderr()).toContain('injected vCPU failure');
  });

  it('MICROVM_SIMULATOR_CONSOLE_FLOOD_BYTES: should print that much chatter after boot, API still answering', async () => {
    const floodBytes = 2_000_000;
    const simulator = await bootedSimulator(simulatorEnvironment({ consoleFloodBytes: floodBytes }));
    await simulator.waitForStdout('guest ready');
    const chatterBytes = () =>
      simulator
        .stdout()
        .split('\n')
        .filter((line) => line.startsWith('microvm-simulator chatter'))
        .reduce((total, line) => total + line.length + 1, 0);
    await vi.waitFor(() => expect(chatterBytes()).toBeGreaterThanOrEqual(floodBytes - 80), {
      timeout: 20_000,
    });
    expect((await simulator.request('GET', '/')).status).toBe(200);
  });

  it('MICROVM_SIMULATOR_KERNEL_PANIC: should print a kernel panic and exit like panic=1 with reboot=k', async () => {
    const simulator = await bootedSimulator(simulatorEnvironment({ kernelPanic: true }));
    expect((await exitWithin(simulator)).code).toBe(0);
    expect(simulator.stdout()).toContain('Kernel panic - not syncing: VFS: Unable to mount root fs');
    expect(simulator.stdout()).toContain('Rebooting in 1 seconds..');
    expect(simulator.stdout()).not.toContain('guest ready');
  });

  it('MICROVM_SIMULATOR_KERNEL_PANIC without panic= on the command line: the guest hangs', async () => {
    const simulator = await bootedSimulator(
      simulatorEnvironment({ kernelPanic: true, shutdownDelayMs: 0 }),
      'console=ttyS0 reboot=k',
    );
    await simulator.waitForStdout('end Kernel panic');
    expect(await stillRunningAfter(simulator, 200)).toBe(true);
  });

  it('MICROVM_SIMULATOR_READY_LINE: should print the configured readiness line', async () => {
    const simulator = await bootedSimulator(
      simulatorEnvironment({ readyLine: 'agent listening on vsock 5000' }),
    );
    await simulator.waitForStdout('\nagent listening on vsock 5000\n');
  });

  it('MICROVM_SIMULATOR_GUEST_READY_MS: should hold the readiness line back', async () => {
    const simulator = await bootedSimulator(simulatorEnvironment({ guestReadyMs: 60_000 }));
    await simulator.waitForStdout('Linux version');
    expect(await stillRunningAfter(simulator, 200)).toBe(true);
    expect(simulator.stdout()).not.toContain(DEFAULT_READY_LINE);
  });

  it('MICROVM_SIMULATOR_SHUTDOWN_DELAY_MS: should keep the VMM up that long after the guest reboots', async () => {
    const simulator = await bootedSimulator(simulatorEnvironment({ shutdownDelayMs: 60_000 }));
    await simulator.request('PUT', '/actions', { action_type: 'SendCtrlAltDel' });
    await simulator.waitForStdout('Requesting system reboot');
    expect(await stillRunningAfter(simulator, 200)).toBe(true);
  });

  it('MICROVM_SIMULATOR_VSOCK_ECHO_PORT: should serve the echo service on that port', async () => {
    const simulator = await startSimulator({
      env: simulatorEnvironment({ vsockEchoPort: 6000, guestReadyMs: 0 }),
    });
    await configureColdBoot(simulator);
    const udsPath = join(simulator.dir, 'v.sock');
    await simulator.request('PUT', '/vsock', { guest_cid: 3, uds_path: udsPath });
    await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
    await simulator.waitForStdout('guest ready');
    const answer = (port: number) =>
      new Promise<string>((resolve) => {
        const socket = createConnection(udsPath);
        let received = '';
        socket.on('connect', () => socket.write(`CONNECT ${port}\n`));
        socket.on('data', (chunk: Buffer) => {
          received += chunk.toString();
          if (received.startsWith('OK ') && received.endsWith('\n') && !received.includes('hi'))
            socket.write('hi');
          if (received.endsWith('hi')) socket.end();
        });
        socket.on('close', () => resolve(received));
        socket.on('error', () => resolve(received));
      });
    expect(await answer(6000)).toMatch(/^OK \d+\nhi$/);
    expect(await answer(5000)).toBe('');
  });

  it('MICROVM_SIMULATOR_REQUIRE_TAP: should require the TAP in the current network namespace', async () => {
    const simulator = await startSimulator({ env: simulatorEnvironment({ requireTap: true }) });
    const missing = await simulator.request('PUT', '/network-interfaces/eth0', {
      iface_id: 'eth0',
      host_dev_name: 'fcsimnotap0',
    });
    expect(missing.status).toBe(400);
    expect(missing.json().fault_message).toContain(
      'Operation not permitted (os error 1). Invalid TUN/TAP Backend provided by fcsimnotap0',
    );
    // `lo` exists in every network namespace.
    expect(
      (await simulator.request('PUT', '/network-interfaces/eth0', { iface_id: 'eth0', host_dev_name: 'lo' }))
        .status,
    ).toBe(204);
  });

  it('should exit 1 on a malformed variable', async () => {
    const simulator = await startSimulator({
      env: { MICROVM_SIMULATOR_CRASH_AT_REQUEST: 'never' },
      waitForSocket: false,
    });
    expect((await exitWithin(simulator)).code).toBe(1);
    expect(simulator.stderr()).toContain('invalid MICROVM_SIMULATOR_CRASH_AT_REQUEST="never"');
  });
});
