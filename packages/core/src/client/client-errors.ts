import { MicrovmError } from '../errors/microvm-error.js';

/** The API socket is missing, refuses connections, or dropped the connection mid-request. */
export class ApiSocketError extends MicrovmError<'ERR_MICROVM_SOCKET_UNAVAILABLE'> {
  override readonly name = 'ApiSocketError';
  readonly socketPath: string;
  /** The system error code behind it (`ENOENT`, `ECONNREFUSED`, `UND_ERR_SOCKET`, …), when known. */
  readonly systemCode: string | undefined;

  constructor(options: { socketPath: string; operation: string; systemCode?: string; cause?: unknown }) {
    super({
      code: 'ERR_MICROVM_SOCKET_UNAVAILABLE',
      message: `${options.operation}: the Firecracker API socket ${options.socketPath} ${describeSystemCode(options.systemCode)}`,
      cause: options.cause,
    });
    this.socketPath = options.socketPath;
    this.systemCode = options.systemCode;
  }
}

/** A field or endpoint is newer than the Firecracker that is running; nothing was sent. */
export class UnsupportedByVersionError extends MicrovmError<'ERR_MICROVM_UNSUPPORTED_BY_VERSION'> {
  override readonly name = 'UnsupportedByVersionError';
  /** e.g. `field "vsock_override" of PUT /snapshot/load` or `PUT /pmem/{id}`. */
  readonly feature: string;
  readonly requiredVersion: string;
  readonly runningVersion: string;

  constructor(options: { feature: string; requiredVersion: string; runningVersion: string }) {
    super({
      code: 'ERR_MICROVM_UNSUPPORTED_BY_VERSION',
      message: `${options.feature} needs Firecracker >= ${options.requiredVersion}, but ${options.runningVersion} is running`,
    });
    this.feature = options.feature;
    this.requiredVersion = options.requiredVersion;
    this.runningVersion = options.runningVersion;
  }
}

function describeSystemCode(systemCode: string | undefined): string {
  switch (systemCode) {
    case 'ENOENT':
      return 'does not exist (ENOENT)';
    case 'ECONNREFUSED':
      return 'refused the connection: nobody listens on it (ECONNREFUSED)';
    case 'ENOTSOCK':
      return 'is not a socket (ENOTSOCK)';
    case 'EACCES':
    case 'EPERM':
      return `cannot be opened: permission denied (${systemCode})`;
    case 'UND_ERR_CONNECT_TIMEOUT':
      return 'did not accept the connection in time';
    case undefined:
      return 'closed the connection before answering';
    default:
      return `closed the connection before answering (${systemCode})`;
  }
}
