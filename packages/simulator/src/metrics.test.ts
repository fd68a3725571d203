import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { simulatorEnvironment } from './fault-injection.js';
import { MetricsAlreadyInitializedError, SimulatorMetrics } from './metrics.js';
import {
  cleanupSimulators,
  configureColdBoot,
  exitWithin,
  makeTempDir,
  startSimulator,
} from './test-helpers.js';

afterEach(cleanupSimulators);

function readLines(path: string): Record<string, Record<string, unknown>>[] {
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, Record<string, unknown>>);
}

describe('SimulatorMetrics', () => {
  it('should report counters as deltas and stores as absolute values', () => {
    const metrics = new SimulatorMetrics();
    metrics.addDevice('block', 'rootfs');
    metrics.increment('block', 'read_count', 3, { kind: 'block', id: 'rootfs' });
    metrics.store('latencies_us', 'pause_vm', 42);
    const first = JSON.parse(metrics.snapshotLine(1000));
    expect(first.utc_timestamp_ms).toBe(1000);
    expect(first.block.read_count).toBe(3);
    expect(first.block_rootfs.read_count).toBe(3);
    expect(first.block.read_agg).toEqual({ min_us: 0, max_us: 0, sum_us: 0 });
    const second = JSON.parse(metrics.snapshotLine());
    expect(second.block.read_count).toBe(0);
    expect(second.latencies_us.pause_vm).toBe(42);
  });

  it('should list every device group even without devices', () => {
    const line = JSON.parse(new SimulatorMetrics().snapshotLine());
    for (const key of [
      'api_server',
      'balloon',
      'block',
      'deprecated_api',
      'entropy',
      'get_api_requests',
      'i8042',
      'latencies_us',
      'logger',
      'mmds',
      'net',
      'patch_api_requests',
      'put_api_requests',
      'seccomp',
      'signals',
      'uart',
      'vcpu',
      'vmm',
      'vsock',
    ]) {
      expect(line, key).toHaveProperty(key);
    }
  });

  it('should refuse a second initialization', () => {
    const metrics = new SimulatorMetrics();
    metrics.initialize(join(makeTempDir(), 'metrics'));
    expect(() => metrics.initialize(join(makeTempDir(), 'metrics'))).toThrow(MetricsAlreadyInitializedError);
    metrics.close();
  });
});

describe('the metrics of the process', () => {
  it('should write a line at boot and on FlushMetrics, with per-interval counters', async () => {
    const simulator = await startSimulator();
    const metricsPath = join(simulator.dir, 'metrics.json');
    expect((await simulator.request('PUT', '/metrics', { metrics_path: metricsPath })).status).toBe(204);
    await configureColdBoot(simulator);
    expect(readLines(metricsPath)).toHaveLength(0);
    await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
    const [atBoot] = readLines(metricsPath);
    expect(atBoot?.put_api_requests?.boot_source_count).toBe(1);
    expect(atBoot?.put_api_requests?.drive_count).toBe(1);
    expect(atBoot?.put_api_requests?.actions_count).toBe(1);
    expect(atBoot?.block_rootfs).toBeDefined();
    await simulator.waitForStdout('guest ready');
    await simulator.request('GET', '/');
    await simulator.request('GET', '/');
    await simulator.request('PUT', '/drives/rootfs', { drive_id: 'other', is_root_device: true });
    expect((await simulator.request('PUT', '/actions', { action_type: 'FlushMetrics' })).status).toBe(204);
    const lines = readLines(metricsPath);
    expect(lines).toHaveLength(2);
    const flushed = lines[1];
    expect(flushed?.get_api_requests?.instance_info_count).toBe(2);
    expect(flushed?.put_api_requests?.boot_source_count).toBe(0);
    expect(flushed?.put_api_requests?.drive_fails).toBe(1);
    expect(flushed?.put_api_requests?.actions_count).toBe(1);
    expect(flushed?.uart?.write_count).toBeGreaterThan(0);
    expect(Number(flushed?.utc_timestamp_ms)).toBeGreaterThanOrEqual(Number(atBoot?.utc_timestamp_ms));
    expect(flushed?.api_server?.process_startup_time_us).toBeGreaterThan(0);
  });

  it('should count deprecated API calls', async () => {
    const simulator = await startSimulator();
    const metricsPath = join(simulator.dir, 'metrics.json');
    await simulator.request('PUT', '/metrics', { metrics_path: metricsPath });
    await simulator.request('PUT', '/vsock', {
      vsock_id: 'old',
      guest_cid: 3,
      uds_path: join(simulator.dir, 'v.sock'),
    });
    await configureColdBoot(simulator);
    await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
    expect(readLines(metricsPath)[0]?.deprecated_api?.deprecated_http_api_calls).toBe(1);
  });

  it('should take --metrics-path and then refuse PUT /metrics', async () => {
    const dir = makeTempDir();
    const metricsPath = join(dir, 'cli-metrics.json');
    const simulator = await startSimulator({ dir, args: ['--metrics-path', metricsPath] });
    const reply = await simulator.request('PUT', '/metrics', { metrics_path: join(dir, 'other.json') });
    expect(reply.json().fault_message).toBe('Metrics error: Reinitialization of metrics not allowed.');
  });

  it('should flush periodically while running and once more when the VMM stops', async () => {
    const simulator = await startSimulator({
      env: simulatorEnvironment({ metricsPeriodMs: 50, shutdownDelayMs: 0 }),
    });
    const metricsPath = join(simulator.dir, 'metrics.json');
    await simulator.request('PUT', '/metrics', { metrics_path: metricsPath });
    await configureColdBoot(simulator);
    await simulator.request('PUT', '/actions', { action_type: 'InstanceStart' });
    await vi.waitFor(() => expect(readLines(metricsPath).length).toBeGreaterThanOrEqual(3), {
      timeout: 20_000,
    });
    await simulator.request('PUT', '/actions', { action_type: 'SendCtrlAltDel' });
    expect((await exitWithin(simulator)).code).toBe(0);
    const last = readLines(metricsPath).at(-1);
    expect(last?.i8042?.reset_count).toBe(1);
  });
});
