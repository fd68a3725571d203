import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';
import type { MicrovmError } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { caught, temporaryDirectory } from './__fixtures__/fake-muxer.js';
import { listenVsock } from './listen.js';

let sandbox: { dir: string; cleanup(): Promise<void> };
let udsPath: string;

beforeEach(async () => {
  sandbox = await temporaryDirectory();
  udsPath = join(sandbox.dir, 'v.sock');
});

afterEach(async () => {
  await sandbox.cleanup();
});

describe('listenVsock', () => {
  it('should serve <path>_<port> and remove it on close', async () => {
    const listener = await listenVsock(udsPath, 52, (socket) => {
      socket.end('hello from the host\n');
    });
    expect(listener.path).toBe(`${udsPath}_52`);
    const client = createConnection(listener.path);
    const [chunk] = (await once(client, 'data')) as [Buffer];
    expect(String(chunk)).toBe('hello from the host\n');
    client.destroy();
    await listener.close();
    await listener.close();
    expect(existsSync(listener.path)).toBe(false);
  });

  it('should destroy open connections on close', async () => {
    const listener = await listenVsock(udsPath, 52, () => {});
    const client = createConnection(listener.path);
    client.on('error', () => {});
    await once(client, 'connect');
    while (listener.connectionCount === 0) await new Promise((resolve) => setTimeout(resolve, 5));
    const closed = once(client, 'close');
    await listener.close();
    await closed;
  });

  it('should destroy a connection whose handler fails and report it', async () => {
    const failures: unknown[] = [];
    const listener = await listenVsock(
      udsPath,
      52,
      async () => {
        throw new Error('handler broke');
      },
      { onHandlerError: (error) => failures.push(error) },
    );
    const client = createConnection(listener.path);
    client.on('error', () => {});
    await once(client, 'close');
    expect(failures).toHaveLength(1);
    await listener.close();
  });

  it('should replace a stale socket nobody serves', async () => {
    const first = await listenVsock(udsPath, 52, () => {});
    // A crash leaves the file: simulate it by closing the server without unlinking.
    const stale = createServer();
    await first.close();
    await new Promise<void>((resolve) => stale.listen(`${udsPath}_52`, resolve));
    await new Promise<void>((resolve) => stale.close(() => resolve()));
    await writeFile(join(sandbox.dir, 'marker'), '');
    const second = await listenVsock(udsPath, 52, () => {});
    await second.close();
  });

  it.each([
    ['a socket another listener serves', 'live'],
    ['a file that is not a socket', 'file'],
    ['a path over 107 bytes with the port', 'long'],
    ['port 0', 'port'],
  ])('should refuse %s with ERR_MICROVM_INVALID_INPUT and leave it alone', async (_name, kind) => {
    const other = kind === 'live' ? await listenVsock(udsPath, 52, () => {}) : undefined;
    if (kind === 'file') await writeFile(`${udsPath}_52`, 'precious');
    const before = await readdir(sandbox.dir);
    const path = kind === 'long' ? join(sandbox.dir, 'x'.repeat(104 - sandbox.dir.length)) : udsPath;
    const error = await caught(listenVsock(path, kind === 'port' ? 0 : 52, () => {}));
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_INVALID_INPUT');
    expect(await readdir(sandbox.dir)).toEqual(before);
    await other?.close();
  });
});
