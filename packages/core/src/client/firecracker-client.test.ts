import { link, mkdtemp, rm } from 'node:fs/promises';
import type { ServerResponse } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FirecrackerApiError } from '../errors/api-error.js';
import { MicrovmError } from '../errors/microvm-error.js';
import { TimeoutError } from '../errors/timeout-error.js';
import { ValidationError } from '../errors/validation-error.js';
import { ApiSocketError, UnsupportedByVersionError } from './client-errors.js';
import { FirecrackerClient } from './firecracker-client.js';
import type { RecordedRequest, TestApiServer } from './test-server.js';
import { defaultHandler, rawHeader, sendJson, sendNoContent, startTestApiServer } from './test-server.js';

let server: TestApiServer;
let client: FirecrackerClient;
const cleanups: (() => Promise<void>)[] = [];

beforeEach(async () => {
  server = await startTestApiServer();
  client = new FirecrackerClient({ socketPath: server.socketPath, defaultTimeoutMs: 5_000 });
});

afterEach(async () => {
  await client.close();
  await server.close();
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

/** Holds every request whose path matches until `release()`; the rest get the default answers. */
function holdRequests(matches: (request: RecordedRequest) => boolean) {
  const held: { request: RecordedRequest; response: ServerResponse }[] = [];
  const arrivals: (() => void)[] = [];
  const fallback = defaultHandler(server);
  server.setHandler((request, response) => {
    if (!matches(request)) return fallback(request, response);
    held.push({ request, response });
    for (const notify of arrivals.splice(0)) notify();
  });
  return {
    held,
    /** Resolves once `count` requests are being held. */
    async arrived(count: number): Promise<void> {
      while (held.length < count) await new Promise<void>((resolve) => arrivals.push(resolve));
    },
  };
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the promise to reject');
}

describe('FirecrackerClient on the wire', () => {
  it('should send method, path, JSON headers and a Content-Length equal to the UTF-8 byte length', async () => {
    const body = { kernel_image_path: '/srv/vmlinux', boot_args: 'console=ttyS0 reboot=k — ünïcødé ✓ 🐧' };

    await client.putBootSource(body);

    const [request] = server.requests;
    expect(request?.method).toBe('PUT');
    expect(request?.path).toBe('/boot-source');
    const expectedText = JSON.stringify(body);
    expect(request?.body.toString('utf8')).toBe(expectedText);
    expect(rawHeader(request!, 'content-length')).toBe(String(Buffer.byteLength(expectedText)));
    expect(Buffer.byteLength(expectedText)).toBeGreaterThan(expectedText.length);
    expect(rawHeader(request!, 'content-type')).toBe('application/json');
    expect(rawHeader(request!, 'accept')).toBe('application/json');
    expect(rawHeader(request!, 'transfer-encoding')).toBeUndefined();
  });

  it.each([
    ['GET /machine-config', (c: FirecrackerClient) => c.getMachineConfig(), 'GET', '/machine-config'],
    ['DELETE /drives/{id}', (c: FirecrackerClient) => c.deleteDrive('scratch'), 'DELETE', '/drives/scratch'],
    [
      'PATCH /balloon/hinting/stop',
      (c: FirecrackerClient) => c.stopBalloonHinting(),
      'PATCH',
      '/balloon/hinting/stop',
    ],
    [
      'PATCH /balloon/hinting/start',
      (c: FirecrackerClient) => c.startBalloonHinting(),
      'PATCH',
      '/balloon/hinting/start',
    ],
  ])('should send %s without a body', async (_name, call, method, path) => {
    await call(client);

    const [request] = server.requestsExcludingVersion();
    expect(request?.method).toBe(method);
    expect(request?.path).toBe(path);
    expect(request?.body.length).toBe(0);
    expect(rawHeader(request!, 'transfer-encoding')).toBeUndefined();
    expect(rawHeader(request!, 'content-type')).toBeUndefined();
  });

  it('should take path ids from the body', async () => {
    await client.putDrive({
      drive_id: 'rootfs',
      is_root_device: true,
      path_on_host: '/r.ext4',
      is_read_only: false,
    });
    await client.patchNetworkInterface({ iface_id: 'eth0' });
    await client.patchPmem({ id: 'pmem_0' });

    expect(server.requestsExcludingVersion().map((request) => `${request.method} ${request.path}`)).toEqual([
      'PUT /drives/rootfs',
      'PATCH /network-interfaces/eth0',
      'PATCH /pmem/pmem_0',
    ]);
  });

  it('should reuse one keep-alive connection across calls', async () => {
    await client.describeInstance();
    await client.getMachineConfig();
    await client.putMetrics({ metrics_path: '/tmp/metrics.fifo' });
    await client.startInstance();

    expect(server.requests).toHaveLength(4);
    expect(server.connectionCount).toBe(1);
    expect(new Set(server.requests.map((request) => request.connectionId))).toEqual(new Set([1]));
  });

  it('should never have two requests in flight and keep calls in FIFO order', async () => {
    server.setHandler((request, response) => {
      // Answer later, so overlapping requests would show up in the server's count.
      setTimeout(() => defaultHandler(server)(request, response), 20);
    });

    const calls = [
      client.putLogger({ level: 'Info' }),
      client.putMachineConfig({ vcpu_count: 2, mem_size_mib: 256 }),
      client.getMachineConfig(),
      client.putVsock({ guest_cid: 3, uds_path: '/tmp/v.sock' }),
      client.describeInstance(),
    ];
    await Promise.all(calls);

    expect(server.maxInFlight).toBe(1);
    expect(server.connectionCount).toBe(1);
    expect(server.requests.map((request) => `${request.method} ${request.path}`)).toEqual([
      'PUT /logger',
      'PUT /machine-config',
      'GET /machine-config',
      'PUT /vsock',
      'GET /',
    ]);
  });

  it('should return parsed JSON bodies and nothing for 204', async () => {
    await expect(client.getMachineConfig()).resolves.toEqual({
      vcpu_count: 1,
      mem_size_mib: 128,
      smt: false,
      track_dirty_pages: false,
    });
    await expect(client.putMmds({ latest: { meta: 'data' } })).resolves.toBeUndefined();
    await expect(client.request('GET', '/machine-config')).resolves.toMatchObject({ vcpu_count: 1 });
    await expect(client.request('PUT', '/mmds', { a: 1 })).resolves.toBeUndefined();
  });
});

describe('FirecrackerClient errors', () => {
  it.each([
    [
      'Firecracker fault_message',
      400,
      '{"fault_message":"The requested operation is not supported after starting the microVM."}',
      'The requested operation is not supported after starting the microVM.',
    ],
    ['micro_http error', 400, '{"error":"Empty PUT request."}', 'Empty PUT request.'],
    ['plain text', 500, 'something broke\n', 'something broke'],
    ['too many connections', 503, '{"error":"Too many open connections"}', 'Too many open connections'],
    ['empty body', 500, '', '(empty body)'],
  ])('should turn a %s answer into a FirecrackerApiError', async (_name, statusCode, text, faultMessage) => {
    server.setHandler((_request, response) => {
      response.writeHead(statusCode, { 'content-length': Buffer.byteLength(text) });
      response.end(text);
    });

    const error = await rejectionOf(client.putBootSource({ kernel_image_path: '/k' }));

    expect(error).toBeInstanceOf(FirecrackerApiError);
    expect(error).toMatchObject({
      code: 'ERR_MICROVM_API',
      method: 'PUT',
      path: '/boot-source',
      statusCode,
      faultMessage,
      isRetryable: statusCode === 503,
    });
  });

  it('should start a fresh connection after a micro_http-level error but keep it after a fault_message', async () => {
    let answer: 'fault' | 'error' | 'ok' = 'fault';
    server.setHandler((request, response) => {
      if (answer === 'fault') return sendJson(response, 400, { fault_message: 'no' });
      if (answer === 'error') return sendJson(response, 400, { error: 'parse' });
      return defaultHandler(server)(request, response);
    });

    await expect(client.putMetrics({ metrics_path: '/m' })).rejects.toBeInstanceOf(FirecrackerApiError);
    answer = 'ok';
    await client.describeInstance();
    expect(server.connectionCount).toBe(1);

    answer = 'error';
    await expect(client.putMetrics({ metrics_path: '/m' })).rejects.toBeInstanceOf(FirecrackerApiError);
    answer = 'ok';
    await client.describeInstance();
    expect(server.connectionCount).toBe(2);
  });

  it('should report a 2xx answer that is not JSON where JSON was expected as ERR_MICROVM_PROTOCOL', async () => {
    server.setHandler((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json', 'content-length': 9 });
      response.end('not json!');
    });

    const error = await rejectionOf(client.getBalloon());

    expect(MicrovmError.isInstance(error)).toBe(true);
    expect(error).toMatchObject({ code: 'ERR_MICROVM_PROTOCOL' });
    expect((error as Error).message).toContain('GET /balloon');
  });

  it('should report an empty 2xx answer to a GET as ERR_MICROVM_PROTOCOL', async () => {
    server.setHandler((_request, response) => sendNoContent(response));

    await expect(client.describeInstance()).rejects.toMatchObject({ code: 'ERR_MICROVM_PROTOCOL' });
  });

  it('should report a socket path that does not exist as ERR_MICROVM_SOCKET_UNAVAILABLE', async () => {
    const missingPath = join(server.directory, 'missing.sock');
    const missing = new FirecrackerClient({ socketPath: missingPath });
    cleanups.push(() => missing.close());

    const error = await rejectionOf(missing.describeInstance());

    expect(error).toBeInstanceOf(ApiSocketError);
    expect(error).toMatchObject({
      code: 'ERR_MICROVM_SOCKET_UNAVAILABLE',
      socketPath: missingPath,
      systemCode: 'ENOENT',
    });
    expect((error as Error).message).toContain(missingPath);
  });

  it('should report a socket nobody listens on as ERR_MICROVM_SOCKET_UNAVAILABLE', async () => {
    const directory = await mkdtemp(join(tmpdir(), 'fc-'));
    cleanups.push(() => rm(directory, { recursive: true, force: true }));
    const listeningPath = join(directory, 'live.sock');
    const stalePath = join(directory, 'stale.sock');
    const listener = createServer();
    await new Promise<void>((resolve) => listener.listen(listeningPath, resolve));
    // Node unlinks a Unix socket when its server closes; a second name for the same inode
    // survives, like the stale socket a killed Firecracker leaves behind.
    await link(listeningPath, stalePath);
    await new Promise<void>((resolve) => listener.close(() => resolve()));
    const refused = new FirecrackerClient({ socketPath: stalePath });
    cleanups.push(() => refused.close());

    const error = await rejectionOf(refused.getVersion());

    expect(error).toBeInstanceOf(ApiSocketError);
    expect(error).toMatchObject({
      code: 'ERR_MICROVM_SOCKET_UNAVAILABLE',
      socketPath: stalePath,
      systemCode: 'ECONNREFUSED',
    });
    expect((error as Error).message).toContain(stalePath);
  });

  it('should report a VMM that closes the connection without answering as ERR_MICROVM_SOCKET_UNAVAILABLE', async () => {
    server.setHandler((_request, response) => {
      response.socket?.destroy();
    });

    await expect(client.describeInstance()).rejects.toMatchObject({ code: 'ERR_MICROVM_SOCKET_UNAVAILABLE' });
  });
});

describe('FirecrackerClient deadlines and cancellation', () => {
  it('should time out a call the VMM never answers, then use a fresh connection', async () => {
    const hold = holdRequests((request) => request.path === '/snapshot/create');

    const error = await rejectionOf(
      // Long enough that the (in-process) server has read the request before the deadline, even when stalled.
      client.createSnapshot({ snapshot_path: '/s', mem_file_path: '/m' }, { timeoutMs: 1_000 }),
    );

    expect(error).toBeInstanceOf(TimeoutError);
    expect(error).toMatchObject({
      code: 'ERR_MICROVM_TIMEOUT',
      operation: 'PUT /snapshot/create',
      timeoutMs: 1_000,
    });
    expect(hold.held).toHaveLength(1);
    await expect(client.getMachineConfig()).resolves.toMatchObject({ vcpu_count: 1 });
    const last = server.requests.at(-1);
    expect(last?.connectionId).not.toBe(hold.held[0]?.request.connectionId);
  });

  it('should reject at once when the signal is already aborted, sending nothing', async () => {
    const reason = new Error('user gave up');

    const error = await rejectionOf(client.describeInstance({ signal: AbortSignal.abort(reason) }));

    expect(error).toMatchObject({ code: 'ERR_MICROVM_ABORTED', cause: reason });
    expect(server.requests).toHaveLength(0);
  });

  it('should abort a call while it waits its turn, and never send it', async () => {
    const hold = holdRequests((request) => request.path === '/snapshot/create');
    const first = client.createSnapshot({ snapshot_path: '/s', mem_file_path: '/m' });
    await hold.arrived(1);
    const controller = new AbortController();
    const queued = client.putMetrics({ metrics_path: '/never' }, { signal: controller.signal });
    const reason = new Error('not needed any more');

    controller.abort(reason);

    await expect(queued).rejects.toMatchObject({ code: 'ERR_MICROVM_ABORTED', cause: reason });
    sendNoContent(hold.held[0]!.response);
    await first;
    await client.describeInstance();
    expect(server.requests.map((request) => request.path)).toEqual(['/snapshot/create', '/']);
  });

  it('should time out a call while it waits its turn, and never send it', async () => {
    const hold = holdRequests((request) => request.path === '/snapshot/create');
    const first = client.createSnapshot({ snapshot_path: '/s', mem_file_path: '/m' });
    await hold.arrived(1);

    const error = await rejectionOf(client.putMetrics({ metrics_path: '/never' }, { timeoutMs: 50 }));

    expect(error).toMatchObject({ code: 'ERR_MICROVM_TIMEOUT', operation: 'PUT /metrics', timeoutMs: 50 });
    sendNoContent(hold.held[0]!.response);
    await first;
    expect(server.requests.map((request) => request.path)).toEqual(['/snapshot/create']);
  });

  it('should abort a call in flight and never read its late answer as the next reply', async () => {
    const hold = holdRequests(
      (request) => request.path === '/machine-config' && server.requests.length === 1,
    );
    const controller = new AbortController();
    const reason = new Error('stop');
    const inFlight = client.getMachineConfig({ signal: controller.signal });
    await hold.arrived(1);

    controller.abort(reason);
    await expect(inFlight).rejects.toMatchObject({ code: 'ERR_MICROVM_ABORTED', cause: reason });
    // The abandoned request now answers; its reply must go nowhere.
    sendJson(hold.held[0]!.response, 200, { vcpu_count: 99, mem_size_mib: 99 });

    await expect(client.getMachineConfig()).resolves.toMatchObject({ vcpu_count: 1, mem_size_mib: 128 });
    expect(server.requests.at(-1)?.connectionId).not.toBe(hold.held[0]?.request.connectionId);
  });

  it.each([0, -1, Number.NaN, Number.POSITIVE_INFINITY])('should refuse timeoutMs %s', async (timeoutMs) => {
    await expect(client.describeInstance({ timeoutMs })).rejects.toMatchObject({
      code: 'ERR_MICROVM_INVALID_INPUT',
      field: 'timeoutMs',
    });
    expect(server.requests).toHaveLength(0);
  });
});

describe('FirecrackerClient input checks', () => {
  it.each([
    ['drive_id', 'a-b', (c: FirecrackerClient, id: string) => c.deleteDrive(id)],
    ['drive_id', '', (c: FirecrackerClient, id: string) => c.patchDrive({ drive_id: id })],
    [
      'drive_id',
      'ünï',
      (c: FirecrackerClient, id: string) => c.putDrive({ drive_id: id, is_root_device: false }),
    ],
    ['drive_id', '../etc', (c: FirecrackerClient, id: string) => c.deleteDrive(id)],
    [
      'iface_id',
      'eth 0',
      (c: FirecrackerClient, id: string) => c.putNetworkInterface({ iface_id: id, host_dev_name: 't' }),
    ],
    ['iface_id', 'eth0?x=1', (c: FirecrackerClient, id: string) => c.deleteNetworkInterface(id)],
    ['id', 'pmem/0', (c: FirecrackerClient, id: string) => c.putPmem({ id, path_on_host: '/p' })],
    ['id', 'pmem٣', (c: FirecrackerClient, id: string) => c.deletePmem(id)],
  ])('should refuse %s %j before sending', async (field, id, call) => {
    const error = await rejectionOf(call(client, id));

    expect(error).toBeInstanceOf(ValidationError);
    expect(error).toMatchObject({ code: 'ERR_MICROVM_INVALID_INPUT', field, value: id });
    expect(server.requests).toHaveLength(0);
  });

  it.each([
    ['method', () => client.request('POST' as 'PUT', '/actions', {})],
    ['path', () => client.request('GET', 'machine-config')],
    ['path', () => client.request('GET', '/machine config')],
    ['path', () => client.request('GET', '/a\r\nX-Injected: 1')],
    ['body', () => client.request('PUT', '/mmds', { big: 1n })],
  ])('should refuse a bad %s for request() before sending', async (field, call) => {
    await expect(call()).rejects.toMatchObject({ code: 'ERR_MICROVM_INVALID_INPUT', field });
    expect(server.requests).toHaveLength(0);
  });

  it('should refuse a socket path longer than 107 bytes', () => {
    expect(() => new FirecrackerClient({ socketPath: `/tmp/${'s'.repeat(110)}` })).toThrow(ValidationError);
  });
});

describe('FirecrackerClient version gate', () => {
  const loadWithVsockOverride = {
    snapshot_path: '/snap/vmstate',
    mem_backend: { backend_type: 'File', backend_path: '/snap/memory' },
    vsock_override: { uds_path: '/run/v.sock' },
  } as const;

  it('should refuse vsock_override on Firecracker 1.15.0 before sending the load', async () => {
    server.firecrackerVersion = '1.15.0';

    const error = await rejectionOf(client.loadSnapshot(loadWithVsockOverride));

    expect(error).toBeInstanceOf(UnsupportedByVersionError);
    expect(error).toMatchObject({
      code: 'ERR_MICROVM_UNSUPPORTED_BY_VERSION',
      requiredVersion: '1.16.0',
      runningVersion: '1.15.0',
      isUserError: true,
    });
    expect((error as Error).message).toContain('vsock_override');
    expect((error as Error).message).toContain('1.16.0');
    expect((error as Error).message).toContain('1.15.0');
    expect(server.requests.map((request) => `${request.method} ${request.path}`)).toEqual(['GET /version']);
  });

  it('should send vsock_override to Firecracker 1.16.1, asking for the version only once', async () => {
    server.firecrackerVersion = '1.16.1';

    await client.loadSnapshot(loadWithVsockOverride);
    await client.putNetworkInterface({ iface_id: 'eth0', host_dev_name: 'tap0', mtu: 1400 });

    expect(server.requests.map((request) => `${request.method} ${request.path}`)).toEqual([
      'GET /version',
      'PUT /snapshot/load',
      'PUT /network-interfaces/eth0',
    ]);
    expect(JSON.parse(server.requests[1]!.body.toString())).toEqual(loadWithVsockOverride);
    expect(client.firecrackerVersion).toBe('1.16.1');
  });

  it('should not ask for the version when the body has no gated field', async () => {
    server.firecrackerVersion = '1.10.0';

    await client.loadSnapshot({
      snapshot_path: '/s',
      mem_file_path: '/m',
      resume_vm: true,
      clock_realtime: undefined,
    });

    expect(server.requests.map((request) => request.path)).toEqual(['/snapshot/load']);
  });

  it.each([
    ['PUT /pmem/{id}', '1.14.0', (c: FirecrackerClient) => c.putPmem({ id: 'p0', path_on_host: '/p' })],
    ['PUT /serial', '1.14.0', (c: FirecrackerClient) => c.putSerial({ serial_out_path: '/s' })],
    ['PUT /hotplug/memory', '1.14.0', (c: FirecrackerClient) => c.putMemoryHotplug({ total_size_mib: 1024 })],
    ['GET /balloon/hinting/status', '1.14.0', (c: FirecrackerClient) => c.getBalloonHintingStatus()],
    ['DELETE /drives/{drive_id}', '1.16.0', (c: FirecrackerClient) => c.deleteDrive('d1')],
    [
      'field "free_page_reporting"',
      '1.14.0',
      (c: FirecrackerClient) =>
        c.putBalloon({ amount_mib: 0, deflate_on_oom: true, free_page_reporting: true }),
    ],
    [
      'field "network_overrides"',
      '1.12.0',
      (c: FirecrackerClient) =>
        c.loadSnapshot({
          snapshot_path: '/s',
          network_overrides: [{ iface_id: 'eth0', host_dev_name: 'tap1' }],
        }),
    ],
  ])('should refuse %s on Firecracker 1.11.0 (needs %s)', async (feature, requiredVersion, call) => {
    server.firecrackerVersion = '1.11.0';

    const error = await rejectionOf(call(client));

    expect(error).toMatchObject({ code: 'ERR_MICROVM_UNSUPPORTED_BY_VERSION', requiredVersion });
    expect((error as Error).message).toContain(feature);
    expect(server.requestsExcludingVersion()).toHaveLength(0);
  });

  it('should gate the serial rate limiter separately from the serial endpoint', async () => {
    server.firecrackerVersion = '1.15.2';

    await client.putSerial({ serial_out_path: '/s' });
    const error = await rejectionOf(client.putSerial({ rate_limiter: { size: 1024, refill_time: 100 } }));

    expect(error).toMatchObject({ code: 'ERR_MICROVM_UNSUPPORTED_BY_VERSION', requiredVersion: '1.16.0' });
    expect(server.requestsExcludingVersion().map((request) => request.path)).toEqual(['/serial']);
  });

  it('should fill the version cache from getVersion()', async () => {
    server.firecrackerVersion = '1.14.1';

    await expect(client.getVersion()).resolves.toEqual({ firecracker_version: '1.14.1' });
    await client.putPmem({ id: 'p0', path_on_host: '/p' });

    expect(server.requests.map((request) => request.path)).toEqual(['/version', '/pmem/p0']);
  });

  it('should gate known endpoints reached through request()', async () => {
    server.firecrackerVersion = '1.13.0';

    await expect(client.request('PUT', '/pmem/p0', { id: 'p0', path_on_host: '/p' })).rejects.toMatchObject({
      code: 'ERR_MICROVM_UNSUPPORTED_BY_VERSION',
    });
    expect(server.requestsExcludingVersion()).toHaveLength(0);
  });

  it('should treat a VMM without GET /version as older than 1.0.0', async () => {
    server.setHandler((request, response) => {
      if (request.path === '/version') {
        return sendJson(response, 400, { fault_message: 'Invalid request method and/or path: GET version.' });
      }
      return sendNoContent(response);
    });

    await expect(client.putEntropy({})).rejects.toMatchObject({ code: 'ERR_MICROVM_UNSUPPORTED_BY_VERSION' });
  });

  it('should report a version it cannot parse as ERR_MICROVM_PROTOCOL', async () => {
    server.firecrackerVersion = 'banana';

    await expect(client.putPmem({ id: 'p0', path_on_host: '/p' })).rejects.toMatchObject({
      code: 'ERR_MICROVM_PROTOCOL',
    });
  });
});

describe('FirecrackerClient deprecation and disposal', () => {
  it('should expose a Deprecation: true answer', async () => {
    const events: unknown[] = [];
    const watched = new FirecrackerClient({
      socketPath: server.socketPath,
      onDeprecation: (event) => events.push(event),
    });
    cleanups.push(() => watched.close());
    server.setHandler((request, response) => {
      if (request.path === '/vsock') response.setHeader('Deprecation', 'true');
      sendNoContent(response);
    });

    await watched.putVsock({ guest_cid: 3, uds_path: '/v.sock', vsock_id: 'vsock0' });
    expect(watched.lastResponseDeprecated).toBe(true);
    expect(events).toEqual([{ method: 'PUT', path: '/vsock' }]);

    await watched.putMetrics({ metrics_path: '/m' });
    expect(watched.lastResponseDeprecated).toBe(false);
    expect(events).toHaveLength(1);
  });

  it('should refuse calls after close() and close idempotently', async () => {
    await client.describeInstance();

    await client.close();
    await client[Symbol.asyncDispose]();

    await expect(client.describeInstance()).rejects.toMatchObject({ code: 'ERR_MICROVM_DISPOSED' });
    expect(server.requests).toHaveLength(1);
  });

  it('should let the call on the wire finish and reject the queued ones when closed', async () => {
    const hold = holdRequests((request) => request.path === '/snapshot/create');
    const inFlight = client.createSnapshot({ snapshot_path: '/s', mem_file_path: '/m' });
    await hold.arrived(1);
    const queued = client.getMachineConfig();

    const closed = client.close();
    await expect(queued).rejects.toMatchObject({ code: 'ERR_MICROVM_DISPOSED' });
    sendNoContent(hold.held[0]!.response);

    await expect(inFlight).resolves.toBeUndefined();
    await closed;
    expect(server.requests.map((request) => request.path)).toEqual(['/snapshot/create']);
  });
});
