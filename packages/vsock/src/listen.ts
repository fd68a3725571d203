import { lchown, lstat, rm } from 'node:fs/promises';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { MicrovmError, ValidationError } from '@microvm/core';
import { validateListenerPath, validateVsockPort } from './errors.js';

/** Serves one guest-initiated connection. A throw or rejection destroys that connection. */
export type VsockConnectionHandler = (socket: Socket) => unknown;

export interface ListenVsockOptions {
  /**
   * Owner of the listener socket. Under the jailer Firecracker runs as the jail's uid/gid and needs write
   * permission on the socket to connect to it.
   */
  socketOwner?: { uid: number; gid: number };
  /** Called when a handler fails (its connection is destroyed either way). */
  onHandlerError?: (error: unknown, socket: Socket) => void;
}

/** A bound guest-to-host listener at `<uds_path>_<port>`. */
export interface VsockListener extends AsyncDisposable {
  /** The socket path the listener serves: `<hostUdsPath>_<port>`. */
  readonly path: string;
  readonly port: number;
  /** Connections accepted and still open. */
  readonly connectionCount: number;
  /** Stops accepting, destroys the open connections and removes the socket file. Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves guest-initiated connections to `port`: Firecracker connects to `<hostUdsPath>_<port>` when the guest
 * connects to CID 2 (the host) on that port, so the listener must be bound before the guest dials.
 *
 * A stale socket file nobody listens on (left by a crash) is replaced; a live one, or any other file, is an
 * error and is left alone.
 */
export async function listenVsock(
  hostUdsPath: string,
  port: number,
  handler: VsockConnectionHandler,
  options: ListenVsockOptions = {},
): Promise<VsockListener> {
  validateVsockPort(port);
  const path = validateListenerPath(hostUdsPath, port, 'hostUdsPath');
  if (typeof handler !== 'function') {
    throw new ValidationError({ field: 'handler', rule: 'must be a function', value: handler });
  }
  await removeStaleSocket(path);
  const connections = new Set<Socket>();
  const server = createServer((socket) => {
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    // A guest that resets is the end of that stream, never a crash of the host program.
    socket.on('error', () => {});
    Promise.resolve()
      .then(() => handler(socket))
      .catch((error: unknown) => {
        socket.destroy();
        options.onHandlerError?.(error, socket);
      });
  });
  await bind(server, path);
  if (options.socketOwner) {
    try {
      // lchown: in a jail the folder belongs to the jail uid, which could swap the socket for a symlink.
      await lchown(path, options.socketOwner.uid, options.socketOwner.gid);
    } catch (error) {
      await closeServer(server, connections, path);
      throw error;
    }
  }
  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= closeServer(server, connections, path);
    return closing;
  };
  return {
    path,
    port,
    get connectionCount() {
      return connections.size;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

function bind(server: Server, path: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'EADDRINUSE'
          ? new ValidationError({
              field: 'hostUdsPath',
              rule: 'the listener socket is already served by another process',
              value: path,
              cause: error,
            })
          : new MicrovmError({
              code: 'ERR_MICROVM_SOCKET_UNAVAILABLE',
              message: `Could not listen on ${path}: ${error.message}`,
              cause: error,
            }),
      );
    };
    server.once('error', onError);
    server.listen(path, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

async function closeServer(server: Server, connections: Set<Socket>, path: string): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const socket of connections) socket.destroy();
  await closed;
  await rm(path, { force: true });
}

/** Removes `path` when it is a socket nobody listens on; throws when it is anything else. */
export async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  if (!isSocket) {
    throw new ValidationError({
      field: 'hostUdsPath',
      rule: 'the listener path exists and is not a socket; it is left alone',
      value: path,
    });
  }
  const live = await new Promise<boolean>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (live) {
    throw new ValidationError({
      field: 'hostUdsPath',
      rule: 'the listener socket is already served by another process',
      value: path,
    });
  }
  await rm(path, { force: true });
}
