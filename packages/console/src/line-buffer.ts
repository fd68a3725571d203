/** Yielded to a follower in place of the lines it was too slow to take. */
export function droppedLinesMarker(droppedLines: number): string {
  return `… [dropped ${droppedLines} lines: the follower fell behind]`;
}

export interface LineBufferOptions {
  /** Lines kept; 0 keeps none (followers still get live lines). */
  maxLines: number;
  /** UTF-8 bytes of line text kept, over all kept lines. */
  maxBytes: number;
}

export interface FollowOptions {
  /** Ends the iteration: the pending `next()` rejects with the signal's reason. */
  signal?: AbortSignal;
  /** Start with up to this many kept lines before the live ones. Default 0: live lines only. */
  fromTail?: number;
  /**
   * Lines a follower may have waiting before the oldest are dropped (and a marker is yielded in their place).
   * Default: the buffer's `maxLines` (1000 when that is 0).
   */
  maxPendingLines?: number;
  /** UTF-8 bytes a follower may have waiting. Default: the buffer's `maxBytes` (1 MiB when that is 0). */
  maxPendingBytes?: number;
}

export interface LineBufferStats {
  /** Lines kept now. */
  lines: number;
  /** UTF-8 bytes of the kept lines. */
  bytes: number;
  /** Every line pushed since creation. */
  totalLines: number;
  /** UTF-8 bytes of every line pushed (after cutting), without terminators. */
  totalBytes: number;
  /** Lines evicted to stay within the bounds. */
  evictedLines: number;
  /** Lines dropped by followers that fell behind, summed over followers. */
  droppedFollowerLines: number;
  followers: number;
}

interface Entry {
  line: string;
  bytes: number;
}

/** A FIFO queue over an array with a moving head: O(1) amortised push and shift. */
class Queue {
  #items: (Entry | undefined)[] = [];
  #head = 0;
  bytes = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(entry: Entry): void {
    this.#items.push(entry);
    this.bytes += entry.bytes;
  }

  shift(): Entry | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const entry = this.#items[this.#head];
    this.#items[this.#head] = undefined;
    this.#head += 1;
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    if (entry) this.bytes -= entry.bytes;
    return entry;
  }

  /** The last `count` entries, oldest first. */
  last(count: number): Entry[] {
    const start = Math.max(this.#head, this.#items.length - count);
    return this.#items.slice(start) as Entry[];
  }

  clear(): void {
    this.#items = [];
    this.#head = 0;
    this.bytes = 0;
  }
}

class Follower implements AsyncIterableIterator<string> {
  readonly #queue = new Queue();
  readonly #maxPendingLines: number;
  readonly #maxPendingBytes: number;
  readonly #onDrop: (lines: number) => void;
  readonly #onClose: (follower: Follower) => void;
  readonly #signal: AbortSignal | undefined;
  #dropped = 0;
  #ended = false;
  #closed = false;
  #abortedWhileBusy = false;
  #waiter:
    | { resolve: (result: IteratorResult<string>) => void; reject: (error: unknown) => void }
    | undefined;

  constructor(options: {
    maxPendingLines: number;
    maxPendingBytes: number;
    signal: AbortSignal | undefined;
    onDrop: (lines: number) => void;
    onClose: (follower: Follower) => void;
  }) {
    this.#maxPendingLines = options.maxPendingLines;
    this.#maxPendingBytes = options.maxPendingBytes;
    this.#onDrop = options.onDrop;
    this.#onClose = options.onClose;
    this.#signal = options.signal;
    this.#signal?.addEventListener('abort', this.#abort, { once: true });
  }

  deliver(entry: Entry): void {
    if (this.#closed) return;
    const waiter = this.#waiter;
    if (waiter && this.#queue.length === 0 && this.#dropped === 0) {
      this.#waiter = undefined;
      waiter.resolve({ value: entry.line, done: false });
      return;
    }
    this.#queue.push(entry);
    // A slow consumer loses its oldest lines, never the VMM its drain: memory stays bounded.
    while (this.#queue.length > this.#maxPendingLines || this.#queue.bytes > this.#maxPendingBytes) {
      this.#queue.shift();
      this.#dropped += 1;
      this.#onDrop(1);
    }
  }

  end(): void {
    this.#ended = true;
    if (this.#waiter && this.#queue.length === 0 && this.#dropped === 0) {
      const waiter = this.#waiter;
      this.#waiter = undefined;
      this.#close();
      waiter.resolve({ value: undefined, done: true });
    }
  }

  next(): Promise<IteratorResult<string>> {
    if (this.#abortedWhileBusy || (this.#signal?.aborted && !this.#closed)) {
      this.#abortedWhileBusy = false;
      this.#close();
      return Promise.reject(this.#signal?.reason);
    }
    if (this.#dropped > 0) {
      const marker = droppedLinesMarker(this.#dropped);
      this.#dropped = 0;
      return Promise.resolve({ value: marker, done: false });
    }
    const entry = this.#queue.shift();
    if (entry) return Promise.resolve({ value: entry.line, done: false });
    if (this.#ended || this.#closed) {
      this.#close();
      return Promise.resolve({ value: undefined, done: true });
    }
    if (this.#waiter) return Promise.reject(new Error('follow(): next() called again before it settled'));
    return new Promise((resolve, reject) => {
      this.#waiter = { resolve, reject };
    });
  }

  return(): Promise<IteratorResult<string>> {
    this.#close();
    return Promise.resolve({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<string> {
    return this;
  }

  #abort = (): void => {
    const waiter = this.#waiter;
    this.#waiter = undefined;
    this.#close();
    // No next() pending (the consumer is busy): its next call must reject, not look like the stream's end.
    if (waiter) waiter.reject(this.#signal?.reason);
    else this.#abortedWhileBusy = true;
  };

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#queue.clear();
    this.#signal?.removeEventListener('abort', this.#abort);
    const waiter = this.#waiter;
    this.#waiter = undefined;
    waiter?.resolve({ value: undefined, done: true });
    this.#onClose(this);
  }
}

/**
 * The last lines of a stream, bounded by line count and by bytes, with live followers. Pushing never waits:
 * followers that fall behind lose their oldest lines (a marker says how many) instead of holding memory.
 */
export class LineBuffer {
  readonly #maxLines: number;
  readonly #maxBytes: number;
  readonly #lines = new Queue();
  readonly #followers = new Set<Follower>();
  #ended = false;
  #totalLines = 0;
  #totalBytes = 0;
  #evictedLines = 0;
  #droppedFollowerLines = 0;

  constructor(options: LineBufferOptions) {
    this.#maxLines = options.maxLines;
    this.#maxBytes = options.maxBytes;
  }

  get ended(): boolean {
    return this.#ended;
  }

  push(line: string, bytes: number = Buffer.byteLength(line)): void {
    if (this.#ended) return;
    const entry = { line, bytes };
    this.#totalLines += 1;
    this.#totalBytes += bytes;
    if (this.#maxLines > 0 && bytes <= this.#maxBytes) {
      this.#lines.push(entry);
      while (this.#lines.length > this.#maxLines || this.#lines.bytes > this.#maxBytes) {
        this.#lines.shift();
        this.#evictedLines += 1;
      }
    } else {
      this.#evictedLines += 1;
    }
    for (const follower of this.#followers) follower.deliver(entry);
  }

  /** The last `count` kept lines (all kept lines without `count`), oldest first. */
  tail(count?: number): string[] {
    const wanted = count === undefined ? this.#lines.length : Math.max(0, Math.floor(count));
    if (wanted === 0) return [];
    return this.#lines.last(wanted).map((entry) => entry.line);
  }

  /**
   * Live lines as an async iterator, ending when the stream ends (or on `break`, or when `signal` aborts).
   * A follower that falls behind by more than `maxPendingLines`/`maxPendingBytes` loses its oldest lines and
   * receives `… [dropped N lines: the follower fell behind]` in their place.
   */
  follow(options: FollowOptions = {}): AsyncIterableIterator<string> {
    const follower = new Follower({
      maxPendingLines: options.maxPendingLines ?? (this.#maxLines > 0 ? this.#maxLines : 1000),
      maxPendingBytes: options.maxPendingBytes ?? (this.#maxBytes > 0 ? this.#maxBytes : 1024 * 1024),
      signal: options.signal,
      onDrop: (lines) => {
        this.#droppedFollowerLines += lines;
      },
      onClose: (closed) => this.#followers.delete(closed),
    });
    if (options.fromTail !== undefined && options.fromTail > 0) {
      for (const entry of this.#lines.last(Math.floor(options.fromTail))) follower.deliver(entry);
    }
    if (this.#ended) follower.end();
    else this.#followers.add(follower);
    return follower;
  }

  /** No more lines: followers finish once they have taken what is queued. Kept lines stay readable. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const follower of [...this.#followers]) follower.end();
  }

  stats(): LineBufferStats {
    return {
      lines: this.#lines.length,
      bytes: this.#lines.bytes,
      totalLines: this.#totalLines,
      totalBytes: this.#totalBytes,
      evictedLines: this.#evictedLines,
      droppedFollowerLines: this.#droppedFollowerLines,
      followers: this.#followers.size,
    };
  }
}
