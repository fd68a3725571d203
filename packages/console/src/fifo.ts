import { execFile } from 'node:child_process';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { chown, lstat } from 'node:fs/promises';
import { Socket } from 'node:net';
import { promisify } from 'node:util';
import type { CaptureSource } from './console-capture.js';

const execFileAsync = promisify(execFile);

/** Creates a FIFO (mode 0600, owned by `owner` when given). Node has no mkfifo: coreutils' does it, argv only. */
export async function createFifo(path: string, owner?: { uid: number; gid: number }): Promise<void> {
  await execFileAsync('mkfifo', ['-m', '0600', '--', path]);
  if (owner) await chown(path, owner.uid, owner.gid);
}

/** What is at `path`: a FIFO, another kind of file, or nothing. */
export async function fileKind(path: string): Promise<'fifo' | 'other' | 'missing'> {
  try {
    return (await lstat(path)).isFIFO() ? 'fifo' : 'other';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw error;
  }
}

const finalReadBytes = 64 * 1024;
// A writer that is still running could keep the final read going: stop after this many chunks (4 MiB).
const finalReadMaxChunks = 64;

/**
 * Reads a FIFO into a capture source without ever blocking a thread. The FIFO is opened read-write: a reader that
 * also holds a write end never sees end-of-file while no writer is there yet (Firecracker opens it at
 * InstanceStart) or between writers. The end is therefore decided by the caller: `close()` reads what is left
 * and ends the source.
 */
export class FifoReader {
  readonly path: string;
  readonly #socket: Socket;
  readonly #fileDescriptor: number;
  readonly #source: CaptureSource;
  #closed = false;

  private constructor(path: string, fileDescriptor: number, source: CaptureSource) {
    this.path = path;
    this.#fileDescriptor = fileDescriptor;
    this.#source = source;
    // libuv reads a pipe fd with epoll, off the thread pool (a blocking fs read would pin a worker per VM).
    this.#socket = new Socket({ fd: fileDescriptor, readable: true, writable: false });
    this.#socket.on('data', (chunk: Buffer) => source.write(chunk));
    this.#socket.on('error', () => this.close());
  }

  /** Opens the FIFO at `path`; throws when it is not one. */
  static open(path: string, source: CaptureSource): FifoReader {
    const fileDescriptor = openSync(path, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOFOLLOW);
    try {
      if (!fstatSync(fileDescriptor).isFIFO()) throw new Error(`${path} is not a FIFO`);
    } catch (error) {
      closeSync(fileDescriptor);
      throw error;
    }
    return new FifoReader(path, fileDescriptor, source);
  }

  /** Reads whatever is still in the FIFO, then closes it and ends the source. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.pause();
    for (let chunk = this.#socket.read() as Buffer | null; chunk !== null; chunk = this.#socket.read()) {
      this.#source.write(chunk);
    }
    const buffer = Buffer.allocUnsafe(finalReadBytes);
    for (let chunks = 0; chunks < finalReadMaxChunks; chunks += 1) {
      let bytesRead = 0;
      try {
        bytesRead = readSync(this.#fileDescriptor, buffer, 0, buffer.length, null);
      } catch {
        break; // EAGAIN: empty. Anything else: nothing more to read either.
      }
      if (bytesRead <= 0) break;
      this.#source.write(buffer.subarray(0, bytesRead));
    }
    this.#socket.destroy();
    this.#source.end();
  }
}
