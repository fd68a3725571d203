import { createConnection, type Socket } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SerialQueue } from './api-server.js';
import { simulatorEnvironment } from './fault-injection.js';
import { cleanupSimulators, startSimulator } from './test-helpers.js';

afterEach(cleanupSimulators);

/** Opens a raw connection and resolves once it is established. */
function connect(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(path);
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Sends raw bytes and collects everything until the server closes or `until` matches. */
function exchange(socket: Socket, data: string, until?: RegExp): Promise<string> {
  return new Promise((resolve) => {
    let received = '';
    const finish = () => {
      socket.removeAllListeners('data');
      resolve(received);
    };
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('utf8');
      if (until?.test(received)) finish();
    });
    socket.once('close', finish);
    socket.once('error', finish);
    if (data !== '') socket.write(data);
  });
}

describe('the API transport', () => {
  it('should answer with the Firecracker server headers and keep the connection alive', async () => {
    const simulator = await startSimulator();
    const socket = await connect(simulator.apiSocketPath);
    const first = await exchange(
      socket,
      'GET / HTTP/1.1\r\nHost: localhost\r\n\r\n',
      /"app_name":"Firecracker"\}/,
    );
    expect(first).toMatch(/^HTTP\/1\.1 200/);
    expect(first).toContain('Server: Firecracker API\r\n');
    expect(first).toContain('Connection: keep-alive\r\n');
    expect(first).toContain('Content-Type: application/json\r\n');
    // The same connection serves the next request.
    const second = await exchange(socket, 'GET /version HTTP/1.1\r\nHost: localhost\r\n\r\n', /\}$/);
    expect(second).toContain('{"firecracker_version":"1.16.1"}');
    socket.destroy();
  });

  it('should answer 204 without a body for a successful PUT', async () => {
    const simulator = await startSimulator();
    const reply = await simulator.request('PUT', '/logger', { level: 'Info' });
    expect(reply.status).toBe(204);
    expect(reply.text).toBe('');
    expect(reply.headers.server).toBe('Firecracker API');
  });

  it('should read a chunked body as an empty body', async () => {
    const simulator = await startSimulator();
    const put = await simulator.request('PUT', '/logger', { level: 'Info' }, { chunked: true });
    expect(put.status).toBe(400);
    expect(put.json()).toEqual({ fault_message: 'Empty PUT request.' });
    const patch = await simulator.request('PATCH', '/machine-config', { vcpu_count: 2 }, { chunked: true });
    expect(patch.json()).toEqual({ fault_message: 'Empty PATCH request.' });
  });

  it('should refuse a body over the payload limit with an `error` body', async () => {
    const simulator = await startSimulator();
    const reply = await simulator.request('PUT', '/mmds', { data: 'x'.repeat(51_200) });
    expect(reply.status).toBe(400);
    expect(reply.json().error).toMatch(
      /^Request payload with size 512\d\d is larger than the limit of 51200 allowed by server\.\nAll previous unanswered requests will be dropped\.$/,
    );
  });

  it('should take the payload limit from --http-api-max-payload-size', async () => {
    const simulator = await startSimulator({ args: ['--http-api-max-payload-size', '100'] });
    const refused = await simulator.request('PUT', '/mmds', { data: 'x'.repeat(100) });
    expect(refused.json().error).toContain('larger than the limit of 100 allowed by server');
    expect((await simulator.request('PUT', '/mmds', { data: 'small' })).status).toBe(204);
  });

  it.each(['POST', 'HEAD', 'OPTIONS'])('should refuse the %s method with an `error` body', async (method) => {
    const simulator = await startSimulator();
    const socket = await connect(simulator.apiSocketPath);
    const raw = await exchange(
      socket,
      `${method} /actions HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n`,
    );
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    if (method !== 'HEAD') expect(raw).toContain('{"error":"Invalid HTTP Method: Unsupported HTTP method."}');
  });

  it('should answer the 11th connection with 503 Too many open connections', async () => {
    const simulator = await startSimulator();
    const open: Socket[] = [];
    for (let index = 0; index < 10; index += 1) {
      const socket = await connect(simulator.apiSocketPath);
      open.push(socket);
      // A round trip proves the server has accepted this connection.
      await exchange(socket, 'GET /version HTTP/1.1\r\nHost: x\r\n\r\n', /\}$/);
    }
    const eleventh = await connect(simulator.apiSocketPath);
    const raw = await exchange(eleventh, '');
    expect(raw).toMatch(/^HTTP\/1\.1 503/);
    expect(raw).toContain('{ "error": "Too many open connections" }');
    // Closing one makes room again (once the server has seen the close).
    open.pop()?.destroy();
    await vi.waitFor(async () => expect((await simulator.request('GET', '/')).status).toBe(200), {
      timeout: 20_000,
    });
    for (const socket of open) socket.destroy();
  });

  it('should process one request at a time across connections', async () => {
    const simulator = await startSimulator({ env: simulatorEnvironment({ hang: ['PUT /logger'] }) });
    // This request blocks the (simulated) VMM thread forever.
    const stuck = simulator
      .request('PUT', '/logger', { level: 'Info' }, { timeoutMs: 60_000 })
      .catch(() => undefined);
    // Only once the VMM thread holds it is the GET below guaranteed to queue behind it.
    await simulator.waitForStdout('MICROVM_SIMULATOR_HANG: PUT /logger will never be answered.');
    const queued = simulator.request('GET', '/', undefined, { timeoutMs: 400 });
    await expect(queued).rejects.toThrow('no answer within 400 ms');
    expect(simulator.child.exitCode).toBeNull();
    simulator.child.kill('SIGKILL');
    await stuck;
  });

  it('should accept absolute-form request targets', async () => {
    const simulator = await startSimulator();
    expect((await simulator.request('GET', 'http://localhost/version')).json()).toEqual({
      firecracker_version: '1.16.1',
    });
  });
});

describe('SerialQueue', () => {
  it('should run tasks one after another, even after a failure', async () => {
    const queue = new SerialQueue();
    const order: string[] = [];
    let releaseFirst: () => void = () => {};
    const first = queue.run(
      () =>
        new Promise<void>((resolve) => {
          order.push('first started');
          releaseFirst = () => {
            order.push('first done');
            resolve();
          };
        }),
    );
    const failing = queue.run(async () => {
      order.push('second');
      throw new Error('boom');
    });
    const third = queue.run(async () => {
      order.push('third');
      return 3;
    });
    await new Promise((resolve) => setImmediate(resolve));
    expect(order).toEqual(['first started']);
    releaseFirst();
    await first;
    await expect(failing).rejects.toThrow('boom');
    expect(await third).toBe(3);
    expect(order).toEqual(['first started', 'first done', 'second', 'third']);
  });
});
