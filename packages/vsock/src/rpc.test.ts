import { once } from 'node:events';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { MicrovmError } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { caught, temporaryDirectory } from './__fixtures__/fake-muxer.js';
import { VsockError, VsockRemoteError } from './errors.js';
import { VsockRpc } from './rpc.js';

let sandbox: { dir: string; cleanup(): Promise<void> };
let server: Server;
let hostSide: Socket;
let guestSide: Socket;

beforeEach(async () => {
  sandbox = await temporaryDirectory();
  const path = join(sandbox.dir, 'pair.sock');
  server = createServer();
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  guestSide = createConnection(path);
  [hostSide] = await accepted;
});

afterEach(async () => {
  hostSide.destroy();
  guestSide.destroy();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await sandbox.cleanup();
});

describe('VsockRpc', () => {
  it('should serve at most maxConcurrentRequests at once and cut off a peer that never reads its answers', async () => {
    let running = 0;
    let mostAtOnce = 0;
    const host = new VsockRpc(hostSide, {
      maxConcurrentRequests: 8,
      maxLineBytes: 4096,
      handlers: {
        work: async () => {
          running += 1;
          mostAtOnce = Math.max(mostAtOnce, running);
          await new Promise((resolve) => setTimeout(resolve, 5));
          running -= 1;
          return 'x'.repeat(1000);
        },
      },
    });
    // The guest floods requests and never reads: no handler per line, and no answers piling up without end.
    guestSide.pause();
    const flood = Array.from({ length: 5000 }, (_, id) => `{"id":${id},"method":"work"}\n`).join('');
    guestSide.write(flood);
    const reason = await host.closed;
    expect(mostAtOnce).toBeLessThanOrEqual(8);
    expect(reason).toMatchObject({ code: 'ERR_MICROVM_PROTOCOL', reason: 'peer-not-reading' });
  });

  it('should round-trip calls in both directions and deliver notifications', async () => {
    const notes: unknown[] = [];
    const guest = new VsockRpc(guestSide, {
      handlers: {
        add: (params) => (params as number[]).reduce((sum, value) => sum + value, 0),
        note: (params) => {
          notes.push(params);
        },
      },
    });
    const host = new VsockRpc(hostSide, { handlers: { whoami: () => 'host' } });
    expect(await host.call('add', [1, 2, 3])).toBe(6);
    expect(await guest.call('whoami')).toBe('host');
    const many = await Promise.all(Array.from({ length: 200 }, (_, index) => host.call('add', [index, 1])));
    expect(many).toEqual(Array.from({ length: 200 }, (_, index) => index + 1));
    host.notify('note', { text: 'ünïcödé ✓' });
    expect(await host.call('add', [0])).toBe(0);
    expect(notes).toEqual([{ text: 'ünïcödé ✓' }]);
    await host.close();
    await guest.closed;
  });

  it('should reject with VsockRemoteError when the peer fails or lacks the method', async () => {
    new VsockRpc(guestSide, {
      handlers: {
        fail: () => {
          throw Object.assign(new Error('disk full'), { code: 'ENOSPC' });
        },
      },
    });
    const host = new VsockRpc(hostSide);
    const failed = await caught(host.call('fail'));
    expect(failed).toBeInstanceOf(VsockRemoteError);
    expect((failed as VsockRemoteError).remoteCode).toBe('ENOSPC');
    expect((failed as VsockRemoteError).code).toBe('ERR_MICROVM_PROTOCOL');
    const missing = await caught(host.call('nope'));
    expect((missing as VsockRemoteError).remoteCode).toBe('METHOD_NOT_FOUND');
    expect(host.isClosed).toBe(false);
  });

  it('should time out a call and drop its late answer', async () => {
    let release: () => void = () => {};
    new VsockRpc(guestSide, {
      handlers: { slow: () => new Promise<string>((resolve) => (release = () => resolve('late'))) },
    });
    const host = new VsockRpc(hostSide);
    const error = await caught(host.call('slow', undefined, { timeoutMs: 50 }));
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_TIMEOUT');
    release();
    expect(await caught(host.call('missing'))).toBeInstanceOf(VsockRemoteError);
    expect(host.pendingCount).toBe(0);
  });

  it('should reject an aborted call with ERR_MICROVM_ABORTED', async () => {
    new VsockRpc(guestSide, { handlers: { slow: () => new Promise(() => {}) } });
    const host = new VsockRpc(hostSide);
    const controller = new AbortController();
    const calling = host.call('slow', undefined, { signal: controller.signal });
    controller.abort();
    expect(((await caught(calling)) as MicrovmError).code).toBe('ERR_MICROVM_ABORTED');
    expect(host.pendingCount).toBe(0);
  });

  it('should reject pending calls with peer-closed when the peer goes away', async () => {
    const guest = new VsockRpc(guestSide, { handlers: { slow: () => new Promise(() => {}) } });
    const host = new VsockRpc(hostSide);
    const calls = [host.call('slow'), host.call('slow')];
    await new Promise((resolve) => setTimeout(resolve, 20));
    guestSide.destroy();
    for (const call of calls) {
      const error = await caught(call);
      expect(VsockError.hasReason(error, 'peer-closed')).toBe(true);
      expect((error as VsockError).code).toBe('ERR_MICROVM_SOCKET_UNAVAILABLE');
    }
    expect(VsockError.hasReason(await host.closed, 'peer-closed')).toBe(true);
    expect(VsockError.hasReason(await caught(host.call('again')), 'peer-closed')).toBe(true);
    await guest.closed;
    expect(guest.isClosed).toBe(true);
  });

  it('should close the channel on a line over maxLineBytes', async () => {
    const host = new VsockRpc(hostSide, { maxLineBytes: 1024 });
    const pending = caught(host.call('x'));
    guestSide.write('a'.repeat(600));
    guestSide.write('b'.repeat(600));
    expect(VsockError.hasReason(await pending, 'line-too-long')).toBe(true);
    expect(((await host.closed) as VsockError).code).toBe('ERR_MICROVM_PROTOCOL');
  });

  it('should refuse to send a message over maxLineBytes without closing', async () => {
    const host = new VsockRpc(hostSide, { maxLineBytes: 64 });
    const error = await caught(host.call('big', 'x'.repeat(100)));
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_INVALID_INPUT');
    expect(host.isClosed).toBe(false);
  });

  it('should close the channel on a line that is not a message', async () => {
    const host = new VsockRpc(hostSide);
    guestSide.write('this is not json\n');
    const reason = await host.closed;
    expect(VsockError.hasReason(reason, 'bad-message')).toBe(true);
  });

  it('should reject calls after close() with ERR_MICROVM_DISPOSED', async () => {
    new VsockRpc(guestSide, { handlers: { slow: () => new Promise(() => {}) } });
    const host = new VsockRpc(hostSide);
    const pending = caught(host.call('slow'));
    await host.close();
    expect(((await pending) as MicrovmError).code).toBe('ERR_MICROVM_DISPOSED');
    expect(((await caught(host.call('slow'))) as MicrovmError).code).toBe('ERR_MICROVM_DISPOSED');
    expect(await host.closed).toBeUndefined();
  });
});
