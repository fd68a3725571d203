import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { formatLocalTimestamp, VmmLogger } from './logger.js';
import { cleanupSimulators, makeTempDir, startSimulator } from './test-helpers.js';

afterEach(cleanupSimulators);

const LINE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9} \[[^\]]+\] .+$/;

describe('VmmLogger', () => {
  it('should format the timestamp with nanoseconds in local time', () => {
    const unixNanoseconds = BigInt(new Date(2024, 4, 1, 12, 34, 56, 789).getTime()) * 1_000_000n + 123_456n;
    expect(formatLocalTimestamp(unixNanoseconds)).toBe('2024-05-01T12:34:56.789123456');
  });

  it('should show the level and origin only when asked, and filter by level and module', () => {
    const lines: string[] = [];
    const logger = new VmmLogger({ instanceId: 'vm', writeStdout: (text) => lines.push(text) });
    const origin = { module: 'vmm::builder', file: 'src/vmm/src/builder.rs', line: 10 };
    logger.info('main', 'plain', origin);
    logger.configure({ showLevel: true, showLogOrigin: true });
    logger.warn('fc_api', 'decorated', origin);
    logger.configure({ level: 'Warn' });
    logger.info('main', 'dropped by level', origin);
    logger.configure({ level: 'Trace', module: 'firecracker' });
    logger.debug('main', 'dropped by module', origin);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(/ \[vm:main\] plain\n$/);
    expect(lines[1]).toMatch(/ \[vm:fc_api:WARN:src\/vmm\/src\/builder\.rs:10\] decorated\n$/);
  });
});

describe('the logger of the process', () => {
  it('should write Firecracker-format lines to log_path from offset 0, without truncating', async () => {
    const simulator = await startSimulator({ args: ['--id', 'logvm'] });
    const logPath = join(simulator.dir, 'fc.log');
    const filler = `${'x'.repeat(20_000)}TAIL`;
    writeFileSync(logPath, filler);
    const reply = await simulator.request('PUT', '/logger', {
      log_path: logPath,
      level: 'Debug',
      show_level: true,
      show_log_origin: true,
    });
    expect(reply.status).toBe(204);
    await simulator.request('GET', '/machine-config');
    await simulator.request('PUT', '/drives/x', { drive_id: 'y', is_root_device: false });
    const text = readFileSync(logPath, 'utf8');
    expect(text.endsWith('TAIL')).toBe(true);
    const lines = text.slice(0, text.indexOf('xxxx')).split('\n').filter(Boolean);
    for (const line of lines) expect(line).toMatch(LINE);
    expect(text).toMatch(
      /\[logvm:fc_api:INFO:src\/firecracker\/src\/api_server\/parsed_request\.rs:\d+\] The API server received a Get request on "\/machine-config"\./,
    );
    expect(text).toContain(
      '[logvm:fc_api:ERROR:src/firecracker/src/api_server/parsed_request.rs:70] Received Error. Status code: 400 Bad Request. Message: The id from the path does not match the id from the body!',
    );
    // Lines no longer go to stdout once a path is set.
    expect(simulator.stdout()).not.toContain('/machine-config');
  });

  it('should take --log-path, --level, --show-level and --module from the command line', async () => {
    const dir = makeTempDir();
    const logPath = join(dir, 'cli.log');
    const simulator = await startSimulator({
      dir,
      args: [
        '--log-path',
        logPath,
        '--level',
        'warning',
        '--show-level',
        '--module',
        'firecracker::api_server',
      ],
    });
    await simulator.request('GET', '/');
    await simulator.request('PUT', '/boot-source', { kernel_image_path: join(dir, 'missing') });
    const text = readFileSync(logPath, 'utf8');
    expect(text).not.toContain('Running Firecracker');
    expect(text).not.toContain('received a Get request');
    expect(text).toMatch(
      /\[anonymous-instance:fc_api:ERROR\] Received Error\. Status code: 400 Bad Request\. Message: Boot source error/,
    );
  });

  it('should refuse a log path in a missing directory', async () => {
    const simulator = await startSimulator();
    const reply = await simulator.request('PUT', '/logger', {
      log_path: join(simulator.dir, 'no', 'such', 'fc.log'),
    });
    expect(reply.status).toBe(400);
    expect(reply.json().fault_message).toBe(
      'Logger error: Failed to open target file: No such file or directory (os error 2)',
    );
  });
});
