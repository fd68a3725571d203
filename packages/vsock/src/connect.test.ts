import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { MicrovmError } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { caught, FakeMuxer, temporaryDirectory } from './__fixtures__/fake-muxer.js';
import { connectVsock } from './connect.js';
import { VsockError } from './errors.js';

let sandbox: { dir: string; cleanup(): Promise<void> };
let muxer: FakeMuxer;
let udsPath: string;

beforeEach(async () => {
  sandbox = await temporaryDirectory();
  udsPath = join(sandbox.dir, 'v.sock');
  muxer = new FakeMuxer(udsPath, (port) =>
    port === 5000
      ? 'echo'
      : port === 6000
        ? 'hang'
        : port === 7000
          ? 'garbage'
          : port === 8000
            ? { okThen: 'early' }
            : 'refuse',
  );
});

afterEach(async () => {
  await muxer.stop();
  await sandbox.cleanup();
});

async function readSome(socket: import('node:net').Socket, bytes: number): Promise<string> {
  let text = '';
  for await (const chunk of socket) {
    text += String(chunk);
    if (text.length >= bytes) break;
  }
  return text;
}

describe('connectVsock', () => {
  it('should send CONNECT, wait for OK and return a raw stream', async () => {
    await muxer.start();
    const socket = await connectVsock(udsPath, 5000, { timeoutMs: 2_000 });
    expect(muxer.connectLines).toEqual(['CONNECT 5000']);
    socket.write('ping');
    expect(await readSome(socket, 4)).toBe('ping');
    socket.destroy();
  });

  it('should keep bytes that arrived right after OK for the caller', async () => {
    await muxer.start();
    const socket = await connectVsock(udsPath, 8000, { timeoutMs: 2_000 });
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    expect(String(chunk)).toBe('early');
    socket.destroy();
  });

  it('should retry while the socket is missing, then connect', async () => {
    const connecting = connectVsock(udsPath, 5000, { timeoutMs: 5_000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await muxer.start();
    const socket = await connecting;
    socket.destroy();
  });

  it('should reject with refused when the guest keeps closing before OK', async () => {
    await muxer.start();
    const error = await caught(connectVsock(udsPath, 5001, { timeoutMs: 2_000 }));
    expect(VsockError.hasReason(error, 'refused')).toBe(true);
    expect((error as VsockError).code).toBe('ERR_MICROVM_SOCKET_UNAVAILABLE');
    expect((error as VsockError).attempts).toBeGreaterThan(1);
    expect(muxer.connectLines.every((line) => line === 'CONNECT 5001')).toBe(true);
  });

  it('should reject with TimeoutError when the guest never answers', async () => {
    await muxer.start();
    const error = await caught(connectVsock(udsPath, 6000, { timeoutMs: 300 }));
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_TIMEOUT');
    expect((error as MicrovmError).name).toBe('TimeoutError');
  });

  it('should reject with device-closed when nobody serves the socket', async () => {
    const error = await caught(connectVsock(udsPath, 5000, { timeoutMs: 2_000 }));
    expect(VsockError.hasReason(error, 'device-closed')).toBe(true);
    expect((error as VsockError).systemCode).toBe('ENOENT');
  });

  it('should not retry an answer that is not OK', async () => {
    await muxer.start();
    const error = await caught(connectVsock(udsPath, 7000, { timeoutMs: 2_000 }));
    expect(VsockError.hasReason(error, 'bad-handshake')).toBe(true);
    expect((error as VsockError).code).toBe('ERR_MICROVM_PROTOCOL');
    expect(muxer.connectLines).toHaveLength(1);
  });

  it('should reject with ERR_MICROVM_ABORTED when the signal fires, and leave no connection open', async () => {
    await muxer.start();
    const controller = new AbortController();
    const connecting = connectVsock(udsPath, 6000, { timeoutMs: 5_000, signal: controller.signal });
    await new Promise((resolve) => setTimeout(resolve, 50));
    controller.abort(new Error('changed my mind'));
    const error = await caught(connecting);
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_ABORTED');
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(muxer.sockets.size).toBe(0);
    const early = await caught(connectVsock(udsPath, 5000, { signal: AbortSignal.abort() }));
    expect((early as MicrovmError).code).toBe('ERR_MICROVM_ABORTED');
  });

  it.each([
    ['port 0', 'v.sock', 0],
    ['negative port', 'v.sock', -1],
    ['fractional port', 'v.sock', 1.5],
    ['VMADDR_PORT_ANY', 'v.sock', 0xffff_ffff],
    ['port as text', 'v.sock', '5000'],
    ['path over 107 bytes', 'x'.repeat(120), 5000],
  ])(
    'should reject bad input (%s) with ERR_MICROVM_INVALID_INPUT and touch nothing',
    async (_name, file, port) => {
      await muxer.start();
      const path = file === 'v.sock' ? udsPath : join(sandbox.dir, file);
      const error = await caught(connectVsock(path, port as number, { timeoutMs: 500 }));
      expect((error as MicrovmError).code).toBe('ERR_MICROVM_INVALID_INPUT');
      expect(muxer.connectLines).toEqual([]);
      expect(await readdir(sandbox.dir)).toEqual(['v.sock']);
    },
  );

  it('should reject a non-positive timeout as bad input', async () => {
    const error = await caught(connectVsock(udsPath, 5000, { timeoutMs: 0 }));
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_INVALID_INPUT');
  });
});
