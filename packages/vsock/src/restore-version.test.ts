import { createServer } from 'node:http';
import { join } from 'node:path';
import { FirecrackerClient, type MicrovmError, snapshotLoadToWire } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { caught, temporaryDirectory } from './__fixtures__/fake-muxer.js';

/**
 * A clone's own socket travels as `vsock_override`, which exists since Firecracker 1.16. Core's client gates it
 * by version; this checks the user of this package gets that typed error and nothing reaches an older VMM.
 */
let sandbox: { dir: string; cleanup(): Promise<void> };
const requests: string[] = [];
let server: ReturnType<typeof createServer>;
let socketPath: string;

beforeEach(async () => {
  sandbox = await temporaryDirectory();
  socketPath = join(sandbox.dir, 'api.sock');
  requests.length = 0;
  server = createServer((request, response) => {
    requests.push(`${request.method} ${request.url}`);
    request.resume();
    if (request.url === '/version') {
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify({ firecracker_version: '1.15.1' }));
      return;
    }
    response.writeHead(204);
    response.end();
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
});

afterEach(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await sandbox.cleanup();
});

describe('restoring a clone with its own vsock socket on Firecracker < 1.16', () => {
  it('should fail with ERR_MICROVM_UNSUPPORTED_BY_VERSION before sending the load', async () => {
    const client = new FirecrackerClient({ socketPath });
    const body = snapshotLoadToWire({
      snapshotPath: '/s/vmstate',
      memFilePath: '/s/memory',
      resumeVm: true,
      vsockOverride: { udsPath: '/state/vms/clone/vsock.sock' },
    });
    const error = await caught(client.loadSnapshot(body));
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_UNSUPPORTED_BY_VERSION');
    expect((error as MicrovmError).message).toContain('vsock_override');
    expect(requests).toEqual(['GET /version']);
    await client.close();
  });
});
