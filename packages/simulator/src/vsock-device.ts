import { unlink } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';

/** What Firecracker answers when `uds_path` already exists (on `PUT /vsock` and on snapshot load). */
export const VSOCK_ADDRESS_IN_USE_MESSAGE =
  'Cannot create backend for vsock device: Error binding to the host-side Unix socket: Address in use';

/** `MAX_CONNECTIONS` of Firecracker's vsock muxer. */
export const VSOCK_MAX_CONNECTIONS = 1023;

/** `b"connect 0\n".len()`: Firecracker reads this many bytes before looking for the line end. */
const CONNECT_COMMAND_MIN_BYTES = 10;
/** Size of Firecracker's buffer for the `CONNECT` line. */
const CONNECT_COMMAND_MAX_BYTES = 32;
/** Host-initiated connections get local ports in `[2^30, 2^31)`, handed out round-robin. */
const LOCAL_PORT_FLOOR = 2 ** 30;
const LOCAL_PORT_MASK = 2 ** 31 - 1;
const CONTROL_LINE_MAX_BYTES = 4096;
const NEWLINE = 0x0a;

export interface VsockDeviceOptions {
  /** Host path of the device's Unix socket, already resolved (inside the jail root when jailed). */
  udsPath: string;
  guestCid: number;
  /** Port of the simulated guest's echo service. */
  echoPort: number;
  /** Time after `activate()` before the guest services listen, like a guest that is still booting. */
  guestReadyDelayMs: number;
  /**
   * Port of the simulated guest's control service, which makes the guest open connections to the host:
   * `DIAL <port> [payload]\n`. Default `echoPort + 1`.
   */
  controlPort?: number;
  /** Connection limit of the muxer. Default 1023, Firecracker's value; lower only to test the limit. */
  maxConnections?: number;
  /**
   * The last local port handed out, to continue after a snapshot restore (Firecracker ≥ 1.15 stores it in
   * the snapshot). Default `2^30 - 1`, so the first connection gets `2^30`.
   */
  lastLocalPort?: number;
}

/**
 * The host side of a simulated virtio-vsock device: Firecracker's AF_UNIX muxer in front of a guest that
 * runs an echo service and a control service.
 *
 * Host-initiated connections speak Firecracker's protocol (`CONNECT <port>\n` → `OK <local port>\n`, then a
 * raw pipe). The guest control service opens guest-initiated connections to `<udsPath>_<port>`.
 */
export class SimulatedVsockDevice {
  readonly udsPath: string;
  readonly guestCid: number;
  readonly echoPort: number;
  readonly controlPort: number;

  readonly #server: Server;
  readonly #guestReadyDelayMs: number;
  readonly #maxConnections: number;
  /** Accepted host streams whose `CONNECT` line has not been read yet (Firecracker's listener map). */
  readonly #waiting = new Set<Socket>();
  /** Streams that read data whenever the device is not paused. */
  readonly #flowing = new Set<Socket>();
  /** Established and connecting connections (Firecracker's connection map), with their local port. */
  readonly #connections = new Map<Socket, number | undefined>();
  readonly #localPorts = new Set<number>();
  #lastLocalPort: number;
  #transportResetPending = false;
  #active = false;
  #paused = false;
  #closed = false;
  #guestListening = false;
  #guestReadyTimer: NodeJS.Timeout | undefined;
  #closing: Promise<void> | undefined;

  private constructor(server: Server, options: VsockDeviceOptions) {
    this.#server = server;
    this.udsPath = options.udsPath;
    this.guestCid = options.guestCid;
    this.echoPort = options.echoPort;
    this.controlPort = options.controlPort ?? options.echoPort + 1;
    this.#guestReadyDelayMs = options.guestReadyDelayMs;
    this.#maxConnections = options.maxConnections ?? VSOCK_MAX_CONNECTIONS;
    this.#lastLocalPort = options.lastLocalPort ?? LOCAL_PORT_FLOOR - 1;
    server.on('connection', (socket) => this.#acceptHostStream(socket));
  }

  /** Binds and listens on `udsPath`, as Firecracker does when it handles `PUT /vsock`. */
  static async bind(options: VsockDeviceOptions): Promise<SimulatedVsockDevice> {
    // Streams are not read until the guest driver is up, so the server must not start reading on its own.
    const server = createServer({ pauseOnConnect: true });
    await new Promise<void>((resolve, reject) => {
      const onError = (error: NodeJS.ErrnoException) => {
        reject(
          new Error(
            error.code === 'EADDRINUSE'
              ? VSOCK_ADDRESS_IN_USE_MESSAGE
              : `Cannot create backend for vsock device: Error binding to the host-side Unix socket: ${error.message}`,
            { cause: error },
          ),
        );
      };
      server.once('error', onError);
      server.listen(options.udsPath, () => {
        server.off('error', onError);
        resolve();
      });
    });
    return new SimulatedVsockDevice(server, options);
  }

  /** Number of connections in the muxer's connection map (host- and guest-initiated). */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** The last local port handed out (what a snapshot of this device stores). */
  get lastLocalPort(): number {
    return this.#lastLocalPort;
  }

  /** The guest's virtio-vsock driver is up: the backend is polled from now on (InstanceStart, resume). */
  activate(): void {
    if (this.#closed || this.#active) return;
    this.#active = true;
    if (this.#guestReadyDelayMs <= 0) {
      this.#guestListening = true;
    } else {
      this.#guestReadyTimer = setTimeout(() => {
        this.#guestReadyTimer = undefined;
        this.#guestListening = true;
      }, this.#guestReadyDelayMs);
      this.#guestReadyTimer.unref();
    }
    this.#serveWaitingStreams();
  }

  /** The VM is paused: nothing is read or answered until `resume()`. */
  pause(): void {
    this.#paused = true;
    for (const socket of this.#flowing) socket.pause();
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    for (const socket of this.#flowing) socket.resume();
    this.#serveWaitingStreams();
  }

  /** `VIRTIO_VSOCK_EVENT_TRANSPORT_RESET` (snapshot create): every open connection is closed. */
  resetTransport(): void {
    this.#transportResetPending = false;
    for (const socket of [...this.#connections.keys()]) socket.destroy();
  }

  /**
   * A restored snapshot carries the transport reset queued when it was taken; the guest handles it at its
   * next vsock interrupt. So the first connection after the restore gets `OK`, then EOF as soon as the host
   * sends data (seen on a real Firecracker). Call on a device bound for `PUT /snapshot/load`.
   */
  queueTransportReset(): void {
    this.#transportResetPending = true;
  }

  /** Stops listening, drops every stream and removes `udsPath`. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#guestReadyTimer);
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const socket of [...this.#waiting, ...this.#flowing, ...this.#connections.keys()]) socket.destroy();
    await closed;
    await unlink(this.udsPath).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error;
    });
  }

  #acceptHostStream(socket: Socket): void {
    // A peer that resets is an ordinary end of a stream here, never a crash of the VMM.
    socket.on('error', () => {});
    if (this.#closed || this.#connections.size >= this.#maxConnections) {
      socket.destroy();
      return;
    }
    this.#waiting.add(socket);
    socket.once('close', () => this.#waiting.delete(socket));
    this.#serveWaitingStreams();
  }

  #serveWaitingStreams(): void {
    if (!this.#active || this.#paused || this.#closed) return;
    for (const socket of this.#waiting) {
      this.#waiting.delete(socket);
      this.#readConnectCommand(socket);
    }
  }

  #letFlow(socket: Socket): void {
    if (!this.#flowing.has(socket)) {
      this.#flowing.add(socket);
      socket.once('close', () => this.#flowing.delete(socket));
    }
    if (!this.#paused) socket.resume();
  }

  #stopFlow(socket: Socket): void {
    this.#flowing.delete(socket);
    socket.pause();
  }

  #readConnectCommand(socket: Socket): void {
    let buffered: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const length = connectCommandLength(buffered);
      if (length === undefined) return;
      socket.off('data', onData);
      socket.off('end', onEnd);
      this.#stopFlow(socket);
      // Bytes after the line stay in the stream and reach the guest once the connection is set up.
      const rest = buffered.subarray(length);
      if (rest.length > 0) socket.unshift(rest);
      this.#connectToGuest(socket, parseConnectCommand(buffered.subarray(0, length)));
    };
    // A stream that ends before a complete command is dropped (Firecracker's read_exact fails).
    const onEnd = () => socket.destroy();
    socket.on('data', onData);
    socket.on('end', onEnd);
    this.#letFlow(socket);
  }

  #connectToGuest(socket: Socket, port: number | undefined): void {
    if (port === undefined || this.#connections.size >= this.#maxConnections || this.#closed) {
      socket.destroy();
      return;
    }
    const localPort = this.#allocateLocalPort();
    this.#addConnection(socket, localPort);
    if (!this.#guestListening || (port !== this.echoPort && port !== this.controlPort)) {
      // The guest answers with RST: Firecracker closes the host stream without `OK`.
      socket.destroy();
      return;
    }
    socket.write(`OK ${localPort}\n`);
    if (this.#transportResetPending) {
      // The guest's next vsock interrupt (this connection's first data) delivers the queued reset.
      socket.once('data', () => this.resetTransport());
      this.#letFlow(socket);
      return;
    }
    if (port === this.echoPort) this.#serveEcho(socket);
    else this.#serveControl(socket);
  }

  #addConnection(socket: Socket, localPort: number | undefined): void {
    this.#connections.set(socket, localPort);
    socket.once('close', () => {
      this.#connections.delete(socket);
      if (localPort !== undefined) this.#localPorts.delete(localPort);
    });
  }

  #allocateLocalPort(): number {
    // Firecracker: `(last + 1) & !(1 << 31) | (1 << 30)`, skipping ports still in use.
    do {
      this.#lastLocalPort = ((this.#lastLocalPort + 1) & LOCAL_PORT_MASK) | LOCAL_PORT_FLOOR;
    } while (this.#localPorts.has(this.#lastLocalPort));
    this.#localPorts.add(this.#lastLocalPort);
    return this.#lastLocalPort;
  }

  #serveEcho(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => socket.write(chunk));
    this.#letFlow(socket);
  }

  #serveControl(control: Socket): void {
    let buffered: Buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      const end = buffered.indexOf(NEWLINE);
      if (end < 0) {
        if (buffered.length > CONTROL_LINE_MAX_BYTES) {
          control.end('ERR invalid\n');
          control.off('data', onData);
        }
        return;
      }
      const line = buffered.subarray(0, end).toString('utf8').replace(/\r$/, '');
      const rest = buffered.subarray(end + 1);
      buffered = Buffer.alloc(0);
      const command = /^DIAL\s+(\d+)(?:\s(.*))?$/i.exec(line);
      const port = command?.[1] === undefined ? Number.NaN : Number(command[1]);
      if (!command || port > 0xffff_ffff) {
        control.write('ERR invalid\n');
        if (rest.length > 0) onData(rest);
        return;
      }
      control.off('data', onData);
      this.#stopFlow(control);
      this.#dialFromGuest(control, port, command[2], rest, () => {
        // Refused: the control stream takes commands again, starting with what was already sent.
        control.on('data', onData);
        this.#letFlow(control);
        if (rest.length > 0) onData(rest);
      });
    };
    control.on('data', onData);
    this.#letFlow(control);
  }

  /** A guest-initiated connection: Firecracker connects to `<uds_path>_<port>`; failure is an RST. */
  #dialFromGuest(
    control: Socket,
    port: number,
    payload: string | undefined,
    rest: Buffer,
    onRefused: () => void,
  ): void {
    const refuse = () => {
      if (control.destroyed) return;
      control.write('ERR refused\n');
      onRefused();
    };
    if (this.#connections.size >= this.#maxConnections) {
      refuse();
      return;
    }
    const dial = createConnection(`${this.udsPath}_${port}`);
    dial.once('error', refuse);
    dial.once('connect', () => {
      dial.off('error', refuse);
      dial.on('error', () => {});
      if (this.#closed || control.destroyed) {
        dial.destroy();
        return;
      }
      this.#addConnection(dial, undefined);
      if (payload !== undefined) dial.write(`${payload}\n`);
      if (rest.length > 0) dial.write(rest);
      // From now on the control stream is the guest's end of the new connection.
      control.on('data', (chunk: Buffer) => dial.write(chunk));
      dial.on('data', (chunk: Buffer) => control.write(chunk));
      control.once('end', () => dial.end());
      dial.once('end', () => control.end());
      control.once('close', () => dial.destroy());
      dial.once('close', () => control.destroy());
      this.#letFlow(control);
      this.#letFlow(dial);
    });
  }
}

/** How many bytes Firecracker consumes for the `CONNECT` line, or undefined while more bytes are needed. */
function connectCommandLength(buffer: Buffer): number | undefined {
  if (buffer.length < CONNECT_COMMAND_MIN_BYTES) return undefined;
  let length = CONNECT_COMMAND_MIN_BYTES;
  while (buffer[length - 1] !== NEWLINE && length < CONNECT_COMMAND_MAX_BYTES) {
    if (buffer.length < length + 1) return undefined;
    length += 1;
  }
  return length;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Firecracker's `read_local_stream_port`: `connect` (any case), then a u32; further words are ignored. */
function parseConnectCommand(command: Buffer): number | undefined {
  let text: string;
  try {
    text = utf8.decode(command);
  } catch {
    return undefined;
  }
  const [keyword, port] = text.split(/\s+/u).filter((word) => word.length > 0);
  if (keyword?.toLowerCase() !== 'connect' || port === undefined || !/^\+?\d+$/.test(port)) return undefined;
  const value = Number(port);
  return value <= 0xffff_ffff ? value : undefined;
}
