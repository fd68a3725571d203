import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** How the fake device answers `CONNECT <port>`. */
export type FakeAnswer = 'echo' | 'refuse' | 'hang' | 'garbage' | { okThen: string };

/**
 * A stand-in for Firecracker's vsock muxer on a Unix socket, for unit tests: answers `CONNECT <port>` with
 * `OK <n>` and echoes, or refuses (closes), hangs, or answers garbage, per port.
 */
export class FakeMuxer {
  readonly sockets = new Set<Socket>();
  connectLines: string[] = [];
  #server: Server | undefined;

  constructor(
    readonly udsPath: string,
    readonly answer: (port: number) => FakeAnswer,
  ) {}

  async start(): Promise<void> {
    const server = createServer((socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      socket.on('error', () => {});
      let buffered = '';
      const onData = (chunk: Buffer) => {
        buffered += chunk.toString('latin1');
        const end = buffered.indexOf('\n');
        if (end < 0) return;
        socket.off('data', onData);
        const line = buffered.slice(0, end);
        this.connectLines.push(line);
        const rest = buffered.slice(end + 1);
        const answer = this.answer(Number(/^CONNECT (\d+)$/.exec(line)?.[1] ?? Number.NaN));
        if (answer === 'refuse') socket.destroy();
        else if (answer === 'garbage') socket.write('HELLO THERE\n');
        else if (answer === 'echo') {
          socket.write('OK 1073741824\n');
          if (rest) socket.write(rest);
          socket.on('data', (data) => socket.write(data));
        } else if (typeof answer === 'object') {
          socket.write(`OK 1073741825\n${answer.okThen}`);
        }
      };
      socket.on('data', onData);
    });
    await new Promise<void>((resolve) => server.listen(this.udsPath, resolve));
    this.#server = server;
  }

  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = undefined;
    if (!server) return;
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

export async function temporaryDirectory(): Promise<{ dir: string; cleanup(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'vsk-'));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export async function caught(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection');
    },
    (error: unknown) => error,
  );
}
