import { EventEmitter, once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  SimulatedVsockDevice,
  VSOCK_ADDRESS_IN_USE_MESSAGE,
  type VsockDeviceOptions,
} from './vsock-device.js';

const ECHO_PORT = 52;
const CONTROL_PORT = 53;
const WAIT_MS = 20_000;
/** How long "nothing happens" is observed: long enough for a wrong answer to show up on loopback. */
const QUIET_MS = 150;

/** A host-side client stream that records everything it receives. */
class HostStream {
  received: Buffer = Buffer.alloc(0);
  closed = false;
  readonly #changes = new EventEmitter();

  constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
      this.#changes.emit('change');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.closed = true;
      this.#changes.emit('change');
    });
  }

  get text(): string {
    return this.received.toString('utf8');
  }

  write(data: string): void {
    this.socket.write(data);
  }

  /** Resolves once `predicate` holds, rejects after the deadline. */
  async until(predicate: (stream: HostStream) => boolean, timeoutMs = WAIT_MS): Promise<void> {
    if (predicate(this)) return;
    const deadline = AbortSignal.timeout(timeoutMs);
    while (!predicate(this)) {
      await once(this.#changes, 'change', { signal: deadline });
    }
  }

  untilText(text: string): Promise<void> {
    return this.until((stream) => stream.text.includes(text));
  }

  untilClosed(): Promise<void> {
    return this.until((stream) => stream.closed);
  }
}

describe('SimulatedVsockDevice', () => {
  let directory: string;
  let udsPath: string;
  const devices: SimulatedVsockDevice[] = [];
  const streams: HostStream[] = [];
  const servers: Server[] = [];

  beforeEach(async () => {
    directory = await mkdtemp(join(tmpdir(), 'vs-'));
    udsPath = join(directory, 'v.sock');
  });

  afterEach(async () => {
    for (const stream of streams.splice(0)) stream.socket.destroy();
    await Promise.all(devices.splice(0).map((device) => device.close()));
    await Promise.all(
      servers.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))),
    );
    await rm(directory, { recursive: true, force: true });
  });

  async function bindDevice(options: Partial<VsockDeviceOptions> = {}): Promise<SimulatedVsockDevice> {
    const device = await SimulatedVsockDevice.bind({
      udsPath,
      guestCid: 3,
      echoPort: ECHO_PORT,
      guestReadyDelayMs: 0,
      ...options,
    });
    devices.push(device);
    return device;
  }

  async function connectHost(path = udsPath): Promise<HostStream> {
    const socket = createConnection(path);
    const stream = new HostStream(socket);
    streams.push(stream);
    await once(socket, 'connect');
    return stream;
  }

  /** Connects and sends `CONNECT <port>`; resolves once the `OK` line arrived. */
  async function connectGuestPort(port: number): Promise<HostStream> {
    const stream = await connectHost();
    stream.write(`CONNECT ${port}\n`);
    await stream.until((candidate) => candidate.text.includes('\n') || candidate.closed);
    expect(stream.text).toMatch(/^OK \d+\n/);
    return stream;
  }

  /** A host program listening where guest-initiated connections to `port` arrive. */
  async function listenForGuest(port: number, onLine: (line: string, socket: Socket) => void): Promise<void> {
    const server = createServer((socket) => {
      socket.on('error', () => {});
      let text = '';
      const onData = (chunk: Buffer) => {
        text += chunk.toString('utf8');
        const end = text.indexOf('\n');
        if (end < 0) return;
        socket.off('data', onData);
        onLine(text.slice(0, end), socket);
      };
      socket.on('data', onData);
    });
    servers.push(server);
    server.listen(`${udsPath}_${port}`);
    await once(server, 'listening');
  }

  it('should reject a bind on an existing path with the message Firecracker gives', async () => {
    await writeFile(udsPath, 'stale');

    await expect(bindDevice()).rejects.toThrow(VSOCK_ADDRESS_IN_USE_MESSAGE);
    expect(VSOCK_ADDRESS_IN_USE_MESSAGE).toBe(
      'Cannot create backend for vsock device: Error binding to the host-side Unix socket: Address in use',
    );
  });

  it('should accept a connection before activation but answer only once activated', async () => {
    const device = await bindDevice();
    const stream = await connectHost();
    stream.write(`CONNECT ${ECHO_PORT}\n`);
    await sleep(QUIET_MS);
    expect(stream.text).toBe('');
    expect(stream.closed).toBe(false);

    device.activate();

    await stream.untilText('\n');
    expect(stream.text).toBe('OK 1073741824\n');
  });

  it('should echo bytes through the guest echo service', async () => {
    const device = await bindDevice();
    device.activate();
    const stream = await connectGuestPort(ECHO_PORT);

    stream.write('hello vsock');

    await stream.untilText('hello vsock');
    expect(stream.text).toBe('OK 1073741824\nhello vsock');
  });

  it('should hand out local ports round-robin from 2^30', async () => {
    const device = await bindDevice();
    device.activate();
    const first = await connectGuestPort(ECHO_PORT);
    const second = await connectGuestPort(ECHO_PORT);

    expect(first.text).toBe('OK 1073741824\n');
    expect(second.text).toBe('OK 1073741825\n');
  });

  it('should close the stream without OK when no guest service listens on the port', async () => {
    const device = await bindDevice();
    device.activate();
    const stream = await connectHost();

    stream.write('CONNECT 9999\n');

    await stream.untilClosed();
    expect(stream.text).toBe('');
    expect(device.connectionCount).toBe(0);
  });

  it.each([
    ['an unknown keyword', 'CONNEKT 52\n'],
    ['a port that is not a number', 'CONNECT abc\n'],
    ['a missing port', 'CONNECT   \n'],
    ['a port above u32', 'CONNECT 4294967296\n'],
    ['32 bytes without a line end', `CONNECT ${'5'.repeat(24)}`],
    ['bytes that are not UTF-8', 'CONNECT \xff\xfe52\n'],
  ])('should close the stream without OK on %s', async (_name, command) => {
    const device = await bindDevice();
    device.activate();
    const stream = await connectHost();

    stream.socket.write(Buffer.from(command, 'latin1'));

    await stream.untilClosed();
    expect(stream.text).toBe('');
  });

  it('should drop a stream that ends before a complete command', async () => {
    const device = await bindDevice();
    device.activate();
    const stream = await connectHost();

    stream.socket.end('CONN');

    await stream.untilClosed();
    expect(stream.text).toBe('');
  });

  it.each(['connect 52\n', 'CoNnEcT 52\n', '  connect   +52  extra words\n'])(
    'should accept the command %j',
    async (command) => {
      const device = await bindDevice();
      device.activate();
      const stream = await connectHost();

      stream.write(command);

      await stream.untilText('\n');
      expect(stream.text).toBe('OK 1073741824\n');
    },
  );

  it('should forward bytes sent after the command line once the connection is set up', async () => {
    const device = await bindDevice();
    device.activate();
    const stream = await connectHost();

    stream.write(`CONNECT ${ECHO_PORT}\nping`);

    await stream.untilText('ping');
    expect(stream.text).toBe('OK 1073741824\nping');
  });

  it('should refuse connections until the guest service listens, then accept a retry', async () => {
    // Long enough that the first connection is handled before the guest listens, even on a stalled worker.
    const device = await bindDevice({ guestReadyDelayMs: 3_000 });
    device.activate();
    const early = await connectHost();
    early.write(`CONNECT ${ECHO_PORT}\n`);
    await early.untilClosed();
    expect(early.text).toBe('');

    const deadline = Date.now() + WAIT_MS;
    let answered: HostStream | undefined;
    while (!answered && Date.now() < deadline) {
      const attempt = await connectHost();
      attempt.write(`CONNECT ${ECHO_PORT}\n`);
      await attempt.until((stream) => stream.text.includes('\n') || stream.closed);
      if (attempt.text.startsWith('OK ')) answered = attempt;
      else await sleep(25);
    }

    expect(answered?.text).toMatch(/^OK \d+\n$/);
  });

  it('should let the guest dial a host listener on <udsPath>_<port> through the control service', async () => {
    const device = await bindDevice();
    device.activate();
    await listenForGuest(5000, (line, socket) => socket.end(`pong:${line}\n`));
    const control = await connectGuestPort(CONTROL_PORT);

    control.write('DIAL 5000 hello guest\n');

    await control.untilText('pong:hello guest\n');
    await control.untilClosed();
    expect(control.text).toBe('OK 1073741824\npong:hello guest\n');
  });

  it('should pipe the control stream both ways once a dial succeeded', async () => {
    const device = await bindDevice();
    device.activate();
    const received: string[] = [];
    await listenForGuest(5002, (line, socket) => {
      received.push(line);
      socket.on('data', (chunk: Buffer) => socket.write(chunk.toString('utf8').toUpperCase()));
      socket.write('ready\n');
    });
    const control = await connectGuestPort(CONTROL_PORT);
    control.write('DIAL 5002 first\n');
    await control.untilText('ready\n');

    control.write('more bytes');

    await control.untilText('MORE BYTES');
    expect(received).toEqual(['first']);
    expect(device.connectionCount).toBe(2);
  });

  it('should answer ERR refused when nobody listens on <udsPath>_<port>, and keep taking commands', async () => {
    const device = await bindDevice();
    device.activate();
    const control = await connectGuestPort(CONTROL_PORT);

    control.write('DIAL 5001 anyone\n');
    await control.untilText('ERR refused\n');
    control.write('bogus\n');
    await control.untilText('ERR invalid\n');
    await listenForGuest(5001, (line, socket) => socket.end(`got:${line}\n`));
    control.write('DIAL 5001 again\n');

    await control.untilText('got:again\n');
    expect(control.text).toBe('OK 1073741824\nERR refused\nERR invalid\ngot:again\n');
  });

  it('should echo on 100 parallel connections', async () => {
    const device = await bindDevice();
    device.activate();

    const results = await Promise.all(
      Array.from({ length: 100 }, async (_unused, index) => {
        const stream = await connectGuestPort(ECHO_PORT);
        stream.write(`message-${index};`);
        await stream.untilText(`message-${index};`);
        return stream.text.split('\n')[1];
      }),
    );

    expect(results).toEqual(Array.from({ length: 100 }, (_unused, index) => `message-${index};`));
    expect(device.connectionCount).toBe(100);
  });

  it('should accept and drop host connections beyond the connection limit', async () => {
    const device = await bindDevice({ maxConnections: 2 });
    device.activate();
    await connectGuestPort(ECHO_PORT);
    await connectGuestPort(ECHO_PORT);

    const third = await connectHost();
    third.write(`CONNECT ${ECHO_PORT}\n`);

    await third.untilClosed();
    expect(third.text).toBe('');
    expect(device.connectionCount).toBe(2);
  });

  it('should close every open connection on a transport reset and keep the guest services listening', async () => {
    const device = await bindDevice();
    device.activate();
    const open = await Promise.all([1, 2, 3].map(() => connectGuestPort(ECHO_PORT)));

    device.resetTransport();

    await Promise.all(open.map((stream) => stream.untilClosed()));
    expect(device.connectionCount).toBe(0);
    const after = await connectGuestPort(ECHO_PORT);
    after.write('still there');
    await after.untilText('still there');
  });

  it('should end the first connection after a restore once data is sent, then work normally', async () => {
    const device = await bindDevice({ lastLocalPort: 1073741830 });
    device.queueTransportReset();
    device.activate();
    const first = await connectGuestPort(ECHO_PORT);

    first.write('lost');

    await first.untilClosed();
    expect(first.text).toBe('OK 1073741831\n');
    const second = await connectGuestPort(ECHO_PORT);
    second.write('kept');
    await second.untilText('kept');
    expect(second.text).toBe('OK 1073741832\nkept');
    expect(device.lastLocalPort).toBe(1073741832);
  });

  it('should hold every answer while paused and deliver them on resume', async () => {
    const device = await bindDevice();
    device.activate();
    const established = await connectGuestPort(ECHO_PORT);

    device.pause();
    established.write('held');
    const fresh = await connectHost();
    fresh.write(`CONNECT ${ECHO_PORT}\n`);
    await sleep(QUIET_MS);
    expect(established.text).toBe('OK 1073741824\n');
    expect(fresh.text).toBe('');

    device.resume();

    await established.untilText('held');
    await fresh.untilText('\n');
    expect(fresh.text).toBe('OK 1073741825\n');
  });

  it('should stop listening and unlink the socket path on close', async () => {
    const device = await bindDevice();
    device.activate();
    const stream = await connectGuestPort(ECHO_PORT);
    expect(existsSync(udsPath)).toBe(true);

    await device.close();

    expect(existsSync(udsPath)).toBe(false);
    await stream.untilClosed();
    const refused = createConnection(udsPath);
    const [error] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
    expect(error.code).toBe('ENOENT');
  });
});
