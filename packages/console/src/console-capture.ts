import type { Readable } from 'node:stream';
import { MicrovmError, TimeoutError } from '@microvm/core';
import { type FollowOptions, LineBuffer, type LineBufferStats } from './line-buffer.js';
import { LineSplitter } from './line-splitter.js';
import {
  type BufferOptions,
  type LogFileOptions,
  optionsObject,
  resolveBufferOptions,
  resolveLogFileOptions,
} from './options.js';
import { RotatingLogFile } from './rotating-log-file.js';

export interface ConsoleCaptureOptions extends BufferOptions {
  /** Also write every line to a size-capped file with rotation. */
  logFile?: LogFileOptions;
  /** `performance.now()` when the VMM was spawned: `first-line` reports the time since. Default: creation. */
  startTimeMs?: number;
  /** Look for kernel panics and guest reboots in the lines. Default true. */
  detectGuestEvents?: boolean;
  /**
   * Lines that belong elsewhere: those `test` accepts go to `to` and are not kept, logged or reported here
   * (Firecracker writes its own log to stdout, among the guest's console, when it has no log path).
   */
  divert?: { test: (line: string) => boolean; to: (line: string) => void };
}

/** One writer into a capture: see `ConsoleCapture.source()`. */
export interface CaptureSource {
  write(chunk: Uint8Array | string): void;
  end(): void;
}

export type GuestRebootKind = 'restart' | 'halt' | 'power-off';

/** What a capture reports. Listeners run synchronously in the drain; one that throws is ignored. */
export interface ConsoleEvents {
  line: { line: string };
  /** The first line: with the guest console, how long the guest took to say anything (boot time). */
  'first-line': { line: string; elapsedMs: number };
  /** `Kernel panic - not syncing: …` */
  'kernel-panic': { line: string };
  /** `reboot: Restarting system` (and `System halted`, `Power down`), or a panic's `Rebooting in N seconds..`. */
  'guest-reboot': { line: string; kind: GuestRebootKind };
  /** The stream ended (the VMM exited, or the capture was closed). */
  end: Record<string, never>;
  /** The log file could not be written; lines still reach the memory buffer. */
  'log-file-error': { error: Error };
}

export type ConsoleEventName = keyof ConsoleEvents;

export interface ConsoleCaptureStats extends LineBufferStats {
  /** Lines that were longer than `maxLineBytes` and were cut. */
  cutLines: number;
  /** Bytes read from the stream(s), terminators included. */
  bytesRead: number;
}

export interface WaitForLineOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
  /** Also look at up to this many kept lines first. Default: all kept lines. */
  fromTail?: number;
}

const kernelPanicPattern = /Kernel panic - not syncing/;
// `reboot: …` is printed by kernel_restart/halt/power_off; `Rebooting in N seconds..` by a panic with panic=N.
const guestRebootPattern = /reboot: (Restarting system|System halted|Power down)|Rebooting in \d+ seconds/;

function rebootKind(match: string): GuestRebootKind {
  if (match === 'System halted') return 'halt';
  if (match === 'Power down') return 'power-off';
  return 'restart';
}

type Listener<Name extends ConsoleEventName> = (event: ConsoleEvents[Name]) => void;

/**
 * Captures one text stream (a guest console, a VMM log) into a bounded line buffer: always drained, UTF-8 safe,
 * CRLF normalised, overlong lines cut. Read it with `tail()`, `follow()`, `waitForLine()` and events.
 */
export class ConsoleCapture {
  readonly #buffer: LineBuffer;
  readonly #maxLineBytes: number;
  readonly #logFile: RotatingLogFile | undefined;
  readonly #startTimeMs: number;
  readonly #detectGuestEvents: boolean;
  readonly #divert: ConsoleCaptureOptions['divert'];
  readonly #listeners = new Map<ConsoleEventName, Set<(event: never) => void>>();
  readonly #splitter: LineSplitter;
  readonly #sources = new Set<CaptureSource>();
  #firstLine: ConsoleEvents['first-line'] | undefined;
  #cutLines = 0;
  #bytesRead = 0;
  #ended = false;

  constructor(options: ConsoleCaptureOptions = {}) {
    const source = optionsObject(options, 'options');
    const bounds = resolveBufferOptions(source);
    const logFile = resolveLogFileOptions(source.logFile, 'logFile');
    this.#buffer = new LineBuffer(bounds);
    this.#maxLineBytes = bounds.maxLineBytes;
    this.#startTimeMs = typeof options.startTimeMs === 'number' ? options.startTimeMs : performance.now();
    this.#detectGuestEvents = options.detectGuestEvents ?? true;
    this.#divert = options.divert;
    this.#splitter = this.#newSplitter();
    this.#logFile =
      logFile &&
      new RotatingLogFile({
        ...logFile,
        onError: (error) => this.#emit('log-file-error', { error }),
      });
  }

  /** The log file's path, when one is kept. */
  get logFilePath(): string | undefined {
    return this.#logFile?.path;
  }

  /** The first line and when it came (also after its event fired): the guest's boot time. */
  get firstLine(): ConsoleEvents['first-line'] | undefined {
    return this.#firstLine;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /**
   * Reads `stream` to its end, however fast it writes: lines that do not fit are evicted, never held back.
   * The capture ends when every attached source has ended. Returns a function that detaches the stream (which
   * then counts as ended; the caller must drain or destroy it).
   */
  attach(stream: Readable): () => void {
    const source = this.source();
    const onData = (chunk: Buffer | string) => source.write(chunk);
    const detach = () => {
      stream.off('data', onData);
      stream.off('end', detach);
      stream.off('close', detach);
      stream.off('error', detach);
      source.end();
    };
    stream.on('data', onData);
    stream.once('end', detach);
    stream.once('close', detach);
    // A read error ends the stream; it must not become an uncaught 'error' event.
    stream.on('error', detach);
    stream.resume();
    return detach;
  }

  /**
   * A source of bytes with its own line state (a partial line of one source never joins another's). The capture
   * ends when every source has ended.
   */
  source(): CaptureSource {
    if (this.#ended)
      throw new MicrovmError({ code: 'ERR_MICROVM_INVALID_STATE', message: 'The capture ended' });
    const splitter = this.#newSplitter();
    let open = true;
    const source: CaptureSource = {
      write: (chunk) => {
        if (!open) return;
        this.#bytesRead += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
        splitter.write(chunk);
      },
      end: () => {
        if (!open) return;
        open = false;
        splitter.end();
        this.#sources.delete(source);
        if (this.#sources.size === 0) this.end();
      },
    };
    this.#sources.add(source);
    return source;
  }

  /** Feeds bytes directly (for sources that are not streams). */
  write(chunk: Uint8Array | string): void {
    if (this.#ended) return;
    this.#bytesRead += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    this.#splitter.write(chunk);
  }

  /** Ends the capture: flushes partial lines, ends followers. Kept lines stay readable. Idempotent. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#splitter.end();
    for (const source of [...this.#sources]) source.end();
    this.#buffer.end();
    this.#emit('end', {});
  }

  /** Ends the capture and closes the log file once what was captured is written. */
  async close(): Promise<void> {
    this.end();
    await this.#logFile?.close();
  }

  /** The last `count` lines kept (all kept lines without `count`), oldest first. */
  tail(count?: number): string[] {
    return this.#buffer.tail(count);
  }

  /**
   * Live lines as an async iterator; ends when the stream ends, on `break`, or rejects with the signal's reason
   * on abort. A follower that falls behind loses its oldest lines and gets a `… [dropped N lines …]` marker.
   */
  follow(options: FollowOptions = {}): AsyncIterableIterator<string> {
    return this.#buffer.follow(options);
  }

  /**
   * The first line (kept or live) that matches. Rejects with `TimeoutError` after `timeoutMs`, with the signal's
   * reason on abort, and with `ERR_MICROVM_PROCESS_EXITED` when the stream ends first.
   */
  async waitForLine(
    match: string | RegExp | ((line: string) => boolean),
    options: WaitForLineOptions = {},
  ): Promise<string> {
    const test =
      typeof match === 'string'
        ? (line: string) => line.includes(match)
        : match instanceof RegExp
          ? (line: string) => match.test(line)
          : match;
    const signals: AbortSignal[] = [];
    if (options.signal) signals.push(options.signal);
    if (options.timeoutMs !== undefined) signals.push(AbortSignal.timeout(options.timeoutMs));
    const signal = signals.length > 0 ? AbortSignal.any(signals) : undefined;
    const kept = options.fromTail ?? Number.MAX_SAFE_INTEGER;
    try {
      for await (const line of this.follow({ ...(signal && { signal }), fromTail: kept })) {
        if (test(line)) return line;
      }
    } catch (error) {
      if (options.signal?.aborted) throw options.signal.reason;
      if (options.timeoutMs !== undefined) {
        throw new TimeoutError({ operation: 'Waiting for a console line', timeoutMs: options.timeoutMs });
      }
      throw error;
    }
    throw new MicrovmError({
      code: 'ERR_MICROVM_PROCESS_EXITED',
      message: 'The console ended before a matching line appeared',
    });
  }

  /** Subscribes to an event; returns the unsubscribe function. */
  on<Name extends ConsoleEventName>(event: Name, listener: Listener<Name>): () => void {
    let listeners = this.#listeners.get(event);
    if (!listeners) {
      listeners = new Set();
      this.#listeners.set(event, listeners);
    }
    listeners.add(listener as (event: never) => void);
    return () => listeners.delete(listener as (event: never) => void);
  }

  once<Name extends ConsoleEventName>(event: Name, listener: Listener<Name>): () => void {
    const off = this.on(event, (payload) => {
      off();
      listener(payload);
    });
    return off;
  }

  stats(): ConsoleCaptureStats {
    return { ...this.#buffer.stats(), cutLines: this.#cutLines, bytesRead: this.#bytesRead };
  }

  /** Resolves once every line so far is in the log file. */
  async flushLogFile(): Promise<void> {
    await this.#logFile?.flush();
  }

  #newSplitter(): LineSplitter {
    return new LineSplitter({
      maxLineBytes: this.#maxLineBytes,
      onLine: (line, cutBytes, bytes) => this.#onLine(line, cutBytes, bytes),
    });
  }

  #onLine(line: string, cutBytes: number, bytes: number): void {
    if (this.#divert?.test(line)) {
      try {
        this.#divert.to(line);
      } catch {
        // Same rule as listeners: the drain goes on.
      }
      return;
    }
    if (cutBytes > 0) this.#cutLines += 1;
    this.#buffer.push(line, bytes);
    this.#logFile?.append(line);
    if (!this.#firstLine) {
      this.#firstLine = { line, elapsedMs: performance.now() - this.#startTimeMs };
      this.#emit('first-line', this.#firstLine);
    }
    if (this.#detectGuestEvents) {
      if (kernelPanicPattern.test(line)) this.#emit('kernel-panic', { line });
      const reboot = guestRebootPattern.exec(line);
      if (reboot) this.#emit('guest-reboot', { line, kind: rebootKind(reboot[1] ?? '') });
    }
    if (this.#listeners.get('line')?.size) this.#emit('line', { line });
  }

  #emit<Name extends ConsoleEventName>(event: Name, payload: ConsoleEvents[Name]): void {
    const listeners = this.#listeners.get(event);
    if (!listeners || listeners.size === 0) return;
    for (const listener of [...listeners]) {
      try {
        (listener as Listener<Name>)(payload);
      } catch {
        // A listener's failure must not stop the drain: the VMM would block on a full pipe.
      }
    }
  }
}
