import { posix, relative, resolve } from 'node:path';

/** Longest `sun_path` Linux accepts (108 bytes including the NUL). */
export const MAX_UNIX_SOCKET_PATH_BYTES = 107;

/**
 * Maps the paths Firecracker receives to host paths. Without a root, relative paths are resolved against the
 * working directory, as for any process. With a root (the jail), every path is seen as a chrooted Firecracker
 * sees it: absolute paths are re-rooted, relative ones start at the jail's `/`, and `..` stops at the root.
 */
export class PathResolver {
  readonly rootDir: string | undefined;
  readonly #workingDirectory: string;

  constructor(options: { rootDir?: string | undefined; workingDirectory?: string }) {
    this.rootDir = options.rootDir === undefined ? undefined : resolve(options.rootDir);
    this.#workingDirectory = options.workingDirectory ?? process.cwd();
  }

  /** The host path of `path` as the (possibly jailed) VMM names it. */
  resolve(path: string): string {
    if (this.rootDir === undefined) return resolve(this.#workingDirectory, path);
    // posix.resolve from "/" clamps `..` at the root, exactly like a chroot.
    const insideJail = posix.resolve('/', path);
    return insideJail === '/' ? this.rootDir : `${this.rootDir}${insideJail}`;
  }

  /**
   * A path usable for bind()/connect(): the host path, or, when that exceeds `sun_path`, a path relative to
   * the working directory (the jail root when jailed), which a chrooted Firecracker would not need either.
   */
  socketPath(path: string): string {
    const hostPath = this.resolve(path);
    if (Buffer.byteLength(hostPath) <= MAX_UNIX_SOCKET_PATH_BYTES) return hostPath;
    const fromWorkingDirectory = relative(process.cwd(), hostPath);
    return fromWorkingDirectory.startsWith('..') ? hostPath : `./${fromWorkingDirectory}`;
  }
}

const ERRNO: Record<string, [number, string]> = {
  EPERM: [1, 'Operation not permitted'],
  ENOENT: [2, 'No such file or directory'],
  EIO: [5, 'Input/output error'],
  ENXIO: [6, 'No such device or address'],
  EBADF: [9, 'Bad file descriptor'],
  EAGAIN: [11, 'Resource temporarily unavailable'],
  ENOMEM: [12, 'Cannot allocate memory'],
  EACCES: [13, 'Permission denied'],
  EBUSY: [16, 'Device or resource busy'],
  EEXIST: [17, 'File exists'],
  ENODEV: [19, 'No such device'],
  ENOTDIR: [20, 'Not a directory'],
  EISDIR: [21, 'Is a directory'],
  EINVAL: [22, 'Invalid argument'],
  EMFILE: [24, 'Too many open files'],
  EFBIG: [27, 'File too large'],
  ENOSPC: [28, 'No space left on device'],
  EROFS: [30, 'Read-only file system'],
  EPIPE: [32, 'Broken pipe'],
  ENAMETOOLONG: [36, 'File name too long'],
  ELOOP: [40, 'Too many levels of symbolic links'],
  ENOTSOCK: [88, 'Socket operation on non-socket'],
  EADDRINUSE: [98, 'Address in use'],
  ECONNRESET: [104, 'Connection reset by peer'],
  ECONNREFUSED: [111, 'Connection refused'],
};

/** Renders a Node system error as Rust's `io::Error` displays it: `No such file or directory (os error 2)`. */
export function describeOsError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const known = code === undefined ? undefined : ERRNO[code];
  if (known !== undefined) return `${known[1]} (os error ${known[0]})`;
  const errno = (error as NodeJS.ErrnoException | undefined)?.errno;
  if (typeof errno === 'number') return `${code ?? 'Unknown error'} (os error ${Math.abs(errno)})`;
  return error instanceof Error ? error.message : String(error);
}
