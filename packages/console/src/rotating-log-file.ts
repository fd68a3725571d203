import { type FileHandle, open, rename, rm, stat } from 'node:fs/promises';

export interface RotatingLogFileOptions {
  /** The current file; rotated files are `<path>.1` (newest) … `<path>.<maxFiles - 1>`. */
  path: string;
  /** Bytes per file before it is rotated. */
  maxBytes: number;
  /** Files kept, the current one included: disk use stays within `maxBytes × maxFiles`. */
  maxFiles: number;
  /** Lines waiting for the disk before new ones are dropped (a marker is written in their place). */
  maxPendingBytes?: number;
}

/** Written to the file in place of lines the disk could not take fast enough. */
export function droppedWritesMarker(droppedLines: number): string {
  return `… [dropped ${droppedLines} lines: the log file could not keep up]`;
}

/**
 * A size-capped log file with numbered rotation. `append` never waits: lines queue in memory (bounded) and one
 * write at a time drains them, so a slow disk costs lines, never the console's drain.
 */
export class RotatingLogFile {
  readonly path: string;
  readonly #maxBytes: number;
  readonly #maxFiles: number;
  readonly #maxPendingBytes: number;
  #pending: string[] = [];
  #pendingBytes = 0;
  #dropped = 0;
  #handle: FileHandle | undefined;
  #size = 0;
  #flushing: Promise<void> | undefined;
  #closed = false;
  #error: Error | undefined;
  #onError: ((error: Error) => void) | undefined;

  constructor(options: RotatingLogFileOptions & { onError?: (error: Error) => void }) {
    this.path = options.path;
    this.#maxBytes = options.maxBytes;
    this.#maxFiles = options.maxFiles;
    this.#maxPendingBytes = options.maxPendingBytes ?? 4 * 1024 * 1024;
    this.#onError = options.onError;
  }

  /** The first write or rotation failure; writing stops after it. */
  get error(): Error | undefined {
    return this.#error;
  }

  append(line: string): void {
    if (this.#closed || this.#error) return;
    const text = `${line}\n`;
    const bytes = Buffer.byteLength(text);
    if (this.#pendingBytes + bytes > this.#maxPendingBytes) {
      this.#dropped += 1;
      return;
    }
    this.#pending.push(text);
    this.#pendingBytes += bytes;
    this.#schedule();
  }

  #schedule(): void {
    if (this.#flushing) return;
    this.#flushing = this.#flush().finally(() => {
      this.#flushing = undefined;
      // Lines appended while the last write settled.
      if ((this.#pending.length > 0 || this.#dropped > 0) && !this.#error) this.#schedule();
    });
  }

  /** Resolves once everything appended so far is on disk (or was dropped after a failure). */
  async flush(): Promise<void> {
    while (this.#flushing) await this.#flushing;
  }

  /** Flushes and closes. Idempotent; appends after it are ignored. */
  async close(): Promise<void> {
    await this.flush();
    this.#closed = true;
    const handle = this.#handle;
    this.#handle = undefined;
    await handle?.close();
  }

  async #flush(): Promise<void> {
    try {
      while (this.#pending.length > 0 || this.#dropped > 0) {
        if (this.#dropped > 0) {
          this.#pending.unshift(`${droppedWritesMarker(this.#dropped)}\n`);
          this.#pendingBytes += Buffer.byteLength(this.#pending[0]!);
          this.#dropped = 0;
        }
        await this.#writeSome();
      }
    } catch (error) {
      this.#error = error instanceof Error ? error : new Error(String(error));
      this.#pending = [];
      this.#pendingBytes = 0;
      this.#onError?.(this.#error);
    }
  }

  /** Writes as many whole lines as fit in the current file, rotating first when none does. */
  async #writeSome(): Promise<void> {
    const handle = await this.#open();
    let batch = '';
    let batchBytes = 0;
    let taken = 0;
    for (const text of this.#pending) {
      const bytes = Buffer.byteLength(text);
      if (this.#size + batchBytes + bytes > this.#maxBytes) break;
      batch += text;
      batchBytes += bytes;
      taken += 1;
    }
    if (taken === 0) {
      if (this.#size > 0) {
        await this.#rotate();
        return;
      }
      // A line longer than a whole file: it gets a file of its own, cut to fit.
      const first = this.#pending[0]!;
      batch = `${Buffer.from(first)
        .subarray(0, this.#maxBytes - 1)
        .toString('utf8')
        .replace(/\uFFFD$/, '')}\n`;
      batchBytes = Buffer.byteLength(batch);
      taken = 1;
    }
    const removed = this.#pending.splice(0, taken);
    for (const text of removed) this.#pendingBytes -= Buffer.byteLength(text);
    await handle.write(batch);
    this.#size += batchBytes;
  }

  async #open(): Promise<FileHandle> {
    if (this.#handle) return this.#handle;
    this.#handle = await open(this.path, 'a', 0o640);
    this.#size = (await stat(this.path)).size;
    return this.#handle;
  }

  async #rotate(): Promise<void> {
    await this.#handle?.close();
    this.#handle = undefined;
    if (this.#maxFiles <= 1) {
      await rm(this.path, { force: true });
    } else {
      // Oldest first, so no rename overwrites a file that is still to be moved.
      await rm(`${this.path}.${this.#maxFiles - 1}`, { force: true });
      for (let index = this.#maxFiles - 2; index >= 1; index -= 1) {
        await rename(`${this.path}.${index}`, `${this.path}.${index + 1}`).catch((error: unknown) => {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        });
      }
      await rename(this.path, `${this.path}.1`);
    }
    this.#size = 0;
  }
}
