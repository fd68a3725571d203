import { MicrovmError, ValidationError, validateUnixSocketPath } from '@microvm/core';

/**
 * Why a vsock operation failed. Core has no vsock codes yet, so the reason carries the distinction that the
 * code cannot: branch on `error.code`, then on `error.reason`.
 *
 * - `refused`: the guest has no listener on the port (Firecracker closed the stream before `OK`).
 * - `device-closed`: the host socket is missing or accepts no connections: the VM is not running, has not
 *   configured its vsock device yet, or has none.
 * - `peer-closed`: an established stream ended or broke while calls were pending.
 * - `bad-handshake`: the first line from the socket was not `OK <port>`: something else listens there.
 * - `line-too-long`, `bad-message`: the message layer got a line over its limit or one that is not a message.
 * - `peer-not-reading`: the peer left more answers unread than the message layer buffers.
 * - `remote-error`: the peer answered a call with an error.
 */
export type VsockFailureReason =
  | 'refused'
  | 'device-closed'
  | 'peer-closed'
  | 'bad-handshake'
  | 'line-too-long'
  | 'bad-message'
  | 'peer-not-reading'
  | 'remote-error';

const protocolReasons = new Set<VsockFailureReason>([
  'bad-handshake',
  'line-too-long',
  'bad-message',
  'peer-not-reading',
  'remote-error',
]);

export type VsockErrorCode = 'ERR_MICROVM_SOCKET_UNAVAILABLE' | 'ERR_MICROVM_PROTOCOL';

export interface VsockErrorOptions {
  reason: VsockFailureReason;
  message: string;
  /** The device's host socket (`uds_path` as the host sees it). */
  hostUdsPath?: string;
  port?: number;
  /** How many connection attempts were made before giving up. */
  attempts?: number;
  /** The system error behind it (`ENOENT`, `ECONNREFUSED`, `ECONNRESET`, …), when there was one. */
  systemCode?: string;
  cause?: unknown;
}

/**
 * A vsock connection or stream failed. `code` is `ERR_MICROVM_SOCKET_UNAVAILABLE` for `refused`,
 * `device-closed` and `peer-closed`, and `ERR_MICROVM_PROTOCOL` for the others.
 */
export class VsockError extends MicrovmError<VsockErrorCode> {
  override readonly name: string = 'VsockError';
  readonly reason: VsockFailureReason;
  readonly hostUdsPath: string | undefined;
  readonly port: number | undefined;
  readonly attempts: number | undefined;
  readonly systemCode: string | undefined;

  constructor(options: VsockErrorOptions) {
    super({
      code: protocolReasons.has(options.reason) ? 'ERR_MICROVM_PROTOCOL' : 'ERR_MICROVM_SOCKET_UNAVAILABLE',
      message: options.message,
      cause: options.cause,
    });
    this.reason = options.reason;
    this.hostUdsPath = options.hostUdsPath;
    this.port = options.port;
    this.attempts = options.attempts;
    this.systemCode = options.systemCode;
  }

  /** True for a `VsockError` with this reason, also one created by another copy of this package. */
  static hasReason(value: unknown, reason: VsockFailureReason): value is VsockError {
    return MicrovmError.isInstance(value) && (value as Partial<VsockError>).reason === reason;
  }
}

/** The peer answered a call with `{ error }`. */
export class VsockRemoteError extends VsockError {
  override readonly name: string = 'VsockRemoteError';
  readonly method: string;
  /** The `error.code` the peer sent, e.g. `METHOD_NOT_FOUND`. */
  readonly remoteCode: string | undefined;
  /** The `error.data` the peer sent. */
  readonly data: unknown;

  constructor(options: { method: string; remoteCode?: string; remoteMessage: string; data?: unknown }) {
    super({
      reason: 'remote-error',
      message: `The peer failed '${options.method}'${options.remoteCode ? ` (${options.remoteCode})` : ''}: ${options.remoteMessage}`,
    });
    this.method = options.method;
    this.remoteCode = options.remoteCode;
    this.data = options.data;
  }
}

export function abortedError(operation: string, reason: unknown): MicrovmError {
  return new MicrovmError({
    code: 'ERR_MICROVM_ABORTED',
    message: `${operation} was aborted`,
    cause: reason,
  });
}

/** Largest vsock port: 2^32 − 1 is `VMADDR_PORT_ANY`, never a real port. */
export const MAX_VSOCK_PORT = 0xffff_fffe;

/** A vsock port: an integer from 1 to 2^32 − 2. */
export function validateVsockPort(port: unknown, field = 'port'): number {
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > MAX_VSOCK_PORT) {
    throw new ValidationError({
      field,
      rule: `must be an integer from 1 to ${MAX_VSOCK_PORT} (2^32 − 1 is VMADDR_PORT_ANY)`,
      value: port,
    });
  }
  return port;
}

/** A host socket path, with the Unix socket limit (107 bytes) checked also for `<path>_<port>`. */
export function validateListenerPath(hostUdsPath: string, port: number, field: string): string {
  const path = listenerPathOf(hostUdsPath, port);
  try {
    validateUnixSocketPath(path, field);
  } catch (error) {
    throw new ValidationError({
      field,
      rule: `must leave room for the listener socket '<path>_${port}' within 107 bytes (it would be ${Buffer.byteLength(path)})`,
      value: hostUdsPath,
      cause: error,
    });
  }
  return path;
}

/** Where Firecracker delivers a guest-initiated connection to `port`. */
export function listenerPathOf(hostUdsPath: string, port: number): string {
  return `${hostUdsPath}_${port}`;
}

export function positiveMilliseconds(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new ValidationError({ field, rule: 'must be a positive number of milliseconds', value });
  }
  return value;
}

export function positiveInteger(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new ValidationError({ field, rule: 'must be a positive integer', value });
  }
  return value;
}
