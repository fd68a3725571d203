import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SIMULATED_FIRECRACKER_VERSION } from './constants.js';
import {
  readSimulatorBehaviour,
  reportedVersionOf,
  SIMULATOR_ENVIRONMENT_VARIABLES,
  SimulatorEnvironmentError,
  simulatorEnvironment,
} from './fault-injection.js';
import { SerdeJsonError } from './serde-json.js';
import {
  builtFirecrackerPath,
  cleanupSimulators,
  configureColdBoot,
  exitWithin,
  startSimulator,
} from './test-helpers.js';
import { deserializeBody, isVersionBelow } from './validation.js';

afterEach(cleanupSimulators);

const VARIABLE = 'MICROVM_SIMULATOR_VERSION';
const DESERIALIZE_PREFIX = 'An error occurred when deserializing the json body of a request: ';
/** The fields of `LoadSnapshotConfig` a release before 1.16.0 knows, in declaration order. */
const FIELDS_BEFORE_1_16 =
  '`snapshot_path`, `mem_file_path`, `mem_backend`, `enable_diff_snapshots`, `track_dirty_pages`, `resume_vm`, `network_overrides`, `clock_realtime`';

/** serde's column of an unknown key: the 1-based column of its closing quote. */
function columnAfterKey(text: string, key: string): number {
  return text.indexOf(`"${key}"`) + key.length + 2;
}

describe('MICROVM_SIMULATOR_VERSION: reading the setting', () => {
  it('should be the variable simulatorEnvironment writes for reportedVersion', () => {
    expect(SIMULATOR_ENVIRONMENT_VARIABLES.reportedVersion).toBe(VARIABLE);
    expect(simulatorEnvironment({ reportedVersion: '1.15.0' })).toEqual({ [VARIABLE]: '1.15.0' });
    expect(readSimulatorBehaviour({ [VARIABLE]: '1.15.0' }).reportedVersion).toBe('1.15.0');
  });

  it('should report SIMULATED_FIRECRACKER_VERSION when unset or empty', () => {
    expect(SIMULATED_FIRECRACKER_VERSION).toBe('1.16.1');
    expect(reportedVersionOf(readSimulatorBehaviour({}))).toBe(SIMULATED_FIRECRACKER_VERSION);
    expect(reportedVersionOf(readSimulatorBehaviour({ [VARIABLE]: '' }))).toBe(SIMULATED_FIRECRACKER_VERSION);
    expect(simulatorEnvironment({})).toEqual({});
  });

  it.each(['0.0.0', '1.15.0', '1.16.0', '2.10.300'])('should accept %s', (version) => {
    expect(reportedVersionOf(readSimulatorBehaviour({ [VARIABLE]: version }))).toBe(version);
  });

  it.each([
    'v1.15.0',
    '1.15',
    '1.15.0-dev',
    '1.15.0+build',
    '1.15.0.1',
    '01.15.0',
    '1.015.0',
    ' 1.15.0',
    '1.15.0\n',
    'latest',
    '99999999999999999999.0.0',
  ])('should refuse %j like every other malformed setting', (value) => {
    expect(() => readSimulatorBehaviour({ [VARIABLE]: value })).toThrow(SimulatorEnvironmentError);
    expect(() => readSimulatorBehaviour({ [VARIABLE]: value })).toThrow(
      `microvm-simulator: invalid ${VARIABLE}=${JSON.stringify(value)}: expected a version X.Y.Z`,
    );
    expect(() => simulatorEnvironment({ reportedVersion: value })).toThrow(SimulatorEnvironmentError);
  });

  it('should make the simulator exit 1 at startup on a malformed version', async () => {
    const simulator = await startSimulator({ env: { [VARIABLE]: 'v1.15' }, waitForSocket: false });
    expect((await exitWithin(simulator)).code).toBe(1);
    expect(simulator.stderr()).toContain(`invalid ${VARIABLE}="v1.15"`);
  });
});

describe('PUT /snapshot/load bodies by release', () => {
  const body = JSON.stringify({
    snapshot_path: 's',
    mem_backend: { backend_type: 'File', backend_path: 'm' },
    vsock_override: { uds_path: 'v.sock' },
  });

  it.each([
    ['1.15.9', true],
    ['1.15.0', true],
    ['0.99.99', true],
    ['1.16.0', false],
    ['1.16.1', false],
    ['2.0.0', false],
    ['1.100.0', false],
  ])('%s is below 1.16.0: %s', (version, below) => {
    expect(isVersionBelow(version, '1.16.0')).toBe(below);
  });

  it.each(['1.15.9', '1.0.0'])('should refuse vsock_override as an unknown field on %s', (version) => {
    expect(() => deserializeBody('snapshotLoad', body, version)).toThrow(SerdeJsonError);
    expect(() => deserializeBody('snapshotLoad', body, version)).toThrow(
      `unknown field \`vsock_override\`, expected one of ${FIELDS_BEFORE_1_16} at line 1 column ${columnAfterKey(body, 'vsock_override')}`,
    );
  });

  it.each(['1.16.0', '1.16.1', '2.0.0', undefined])('should accept vsock_override on %s', (version) => {
    expect(deserializeBody('snapshotLoad', body, version).vsock_override).toEqual({ uds_path: 'v.sock' });
  });

  it('should leave every other field alone on an older release', () => {
    const withoutOverride = JSON.stringify({
      snapshot_path: 's',
      mem_backend: { backend_type: 'File', backend_path: 'm' },
      network_overrides: [{ iface_id: 'eth0', host_dev_name: 'tap1' }],
      clock_realtime: true,
    });
    expect(deserializeBody('snapshotLoad', withoutOverride, '1.15.0')).toEqual(
      deserializeBody('snapshotLoad', withoutOverride),
    );
    expect(() => deserializeBody('snapshotLoad', '{"snapshot_path":"s","extra":1}', '1.15.0')).toThrow(
      `unknown field \`extra\`, expected one of ${FIELDS_BEFORE_1_16}`,
    );
  });
});

/** Boots a VM with a vsock device and snapshots it; the source process is killed afterwards. */
async function snapshotWithVsock(): Promise<{ snapshotPath: string; memoryPath: string }> {
  const source = await startSimulator();
  await configureColdBoot(source);
  const request = async (method: string, path: string, requestBody?: unknown) => {
    const reply = await source.request(method, path, requestBody);
    expect(reply.status, `${method} ${path}: ${reply.text}`).toBeLessThan(300);
  };
  await request('PUT', '/vsock', { guest_cid: 3, uds_path: join(source.dir, 'v.sock') });
  await request('PUT', '/actions', { action_type: 'InstanceStart' });
  await request('PATCH', '/vm', { state: 'Paused' });
  const snapshotPath = join(source.dir, 'vm.snap');
  const memoryPath = join(source.dir, 'vm.mem');
  await request('PUT', '/snapshot/create', { snapshot_path: snapshotPath, mem_file_path: memoryPath });
  await source.kill();
  return { snapshotPath, memoryPath };
}

function loadBody(files: { snapshotPath: string; memoryPath: string }, udsPath?: string) {
  return {
    snapshot_path: files.snapshotPath,
    mem_backend: { backend_type: 'File', backend_path: files.memoryPath },
    resume_vm: true,
    ...(udsPath !== undefined && { vsock_override: { uds_path: udsPath } }),
  };
}

function runVersionFlag(env: Record<string, string>, flag: string): string {
  const result = spawnSync(process.execPath, [builtFirecrackerPath, flag], {
    env: { ...process.env, ...env },
    encoding: 'utf8',
    timeout: 20_000,
  });
  expect(result.status, result.stderr).toBe(0);
  return result.stdout;
}

describe('a simulator reporting another version', () => {
  it('should state it in --version, --help, GET /version, GET / and the startup log line', async () => {
    const env = simulatorEnvironment({ reportedVersion: '1.15.0' });
    expect(runVersionFlag(env, '--version')).toBe('Firecracker v1.15.0\n');
    expect(runVersionFlag(env, '--help').split('\n')[0]).toBe('Firecracker v1.15.0 (microvm-simulator)');
    const simulator = await startSimulator({ env, args: ['--id', 'vm-old'] });
    const version = await simulator.request('GET', '/version');
    expect(version.status).toBe(200);
    expect(version.json()).toEqual({ firecracker_version: '1.15.0' });
    expect((await simulator.request('GET', '/')).json()).toMatchObject({ vmm_version: '1.15.0' });
    await simulator.waitForStdout('Running Firecracker v1.15.0');
    expect(simulator.stdout()).toMatch(/\[vm-old:main\] Running Firecracker v1\.15\.0$/m);
  });

  it('should state 1.16.1 without the setting', async () => {
    expect(runVersionFlag({}, '--version')).toBe(`Firecracker v${SIMULATED_FIRECRACKER_VERSION}\n`);
    const simulator = await startSimulator();
    expect((await simulator.request('GET', '/version')).json()).toEqual({
      firecracker_version: SIMULATED_FIRECRACKER_VERSION,
    });
  });

  it('should refuse vsock_override below 1.16.0 with the unknown-field 400, keep running, and load without it', async () => {
    const files = await snapshotWithVsock();
    const restored = await startSimulator({
      env: simulatorEnvironment({ reportedVersion: '1.15.0' }),
    });
    const overridePath = join(restored.dir, 'clone.sock');
    const sent = JSON.stringify(loadBody(files, overridePath));
    const refused = await restored.request('PUT', '/snapshot/load', sent);
    expect(refused.status).toBe(400);
    expect(refused.json()).toEqual({
      fault_message: `${DESERIALIZE_PREFIX}unknown field \`vsock_override\`, expected one of ${FIELDS_BEFORE_1_16} at line 1 column ${columnAfterKey(sent, 'vsock_override')}.`,
    });
    // Refused by the API server before the VMM saw it: nothing was loaded and the process stays up.
    expect((await restored.request('GET', '/')).json()).toMatchObject({ state: 'Not started' });
    expect(restored.child.exitCode).toBeNull();
    await restored.waitForStdout('Received Error. Status code: 400 Bad Request.');

    // The same load without the field works on this release (the source's socket path is free again).
    rmSync(join(files.snapshotPath, '..', 'v.sock'), { force: true });
    const loaded = await restored.request('PUT', '/snapshot/load', loadBody(files));
    expect(loaded.status, loaded.text).toBe(204);
    expect((await restored.request('GET', '/')).json()).toMatchObject({ state: 'Running' });
  });

  it('should accept vsock_override from 1.16.0 on', async () => {
    const files = await snapshotWithVsock();
    const restored = await startSimulator({ env: simulatorEnvironment({ reportedVersion: '1.16.0' }) });
    const overridePath = join(restored.dir, 'clone.sock');
    const loaded = await restored.request('PUT', '/snapshot/load', loadBody(files, overridePath));
    expect(loaded.status, loaded.text).toBe(204);
    expect(
      ((await restored.request('GET', '/vm/config')).json().vsock as { uds_path: string }).uds_path,
    ).toBe(overridePath);
  });
});
