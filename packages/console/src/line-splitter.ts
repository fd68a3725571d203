import { StringDecoder } from 'node:string_decoder';

/** Appended to a line that was longer than `maxLineBytes`; tells how many bytes were cut off. */
export function cutLineMarker(cutBytes: number): string {
  return `… [cut ${cutBytes} bytes]`;
}

/** The longest marker `cutLineMarker` can produce (a line of 2^53 bytes): what a stored line may add. */
export const cutLineMarkerMaxBytes: number = Buffer.byteLength(cutLineMarker(Number.MAX_SAFE_INTEGER));

export interface LineSplitterOptions {
  /** Bytes of text kept per line; the rest is cut and counted in a marker. */
  maxLineBytes: number;
  /**
   * Receives every complete line, without its terminator, and its UTF-8 size. `cutBytes` > 0 when the line was
   * cut (then `bytes` includes the marker).
   */
  onLine: (line: string, cutBytes: number, bytes: number) => void;
}

const lineFeed = '\n';
const carriageReturn = '\r';

/** The longest prefix of `text` that fits in `maxBytes` of UTF-8 without splitting a character. */
export function utf8Prefix(text: string, maxBytes: number): string {
  // A prefix of maxBytes bytes holds at most maxBytes UTF-16 units: never encode more of a huge line.
  let candidate = text.length > maxBytes ? text.slice(0, maxBytes) : text;
  // Do not leave half a surrogate pair: it would encode as U+FFFD.
  const last = candidate.charCodeAt(candidate.length - 1);
  if (candidate.length < text.length && last >= 0xd800 && last <= 0xdbff) candidate = candidate.slice(0, -1);
  const encoded = Buffer.from(candidate, 'utf8');
  if (encoded.length <= maxBytes) return candidate;
  let end = maxBytes;
  // Back off over continuation bytes (10xxxxxx) so the cut lands on a character boundary.
  while (end > 0 && ((encoded[end] ?? 0) & 0xc0) === 0x80) end -= 1;
  return encoded.subarray(0, end).toString('utf8');
}

/**
 * Splits a byte stream into lines. Multi-byte UTF-8 characters split across chunks are reassembled; `\r\n`, a lone
 * `\r` (the serial console's carriage returns) and `\n` all end a line; a line longer than `maxLineBytes` keeps its
 * first `maxLineBytes` bytes and gets `… [cut N bytes]`. Memory held is at most one line.
 */
export class LineSplitter {
  readonly #maxLineBytes: number;
  readonly #onLine: (line: string, cutBytes: number, bytes: number) => void;
  readonly #decoder = new StringDecoder('utf8');
  #pending = '';
  #pendingBytes = 0;
  #cutBytes = 0;
  // A `\r` ended the last line: a `\n` arriving next (maybe in the next chunk) belongs to it.
  #skipLineFeed = false;

  constructor(options: LineSplitterOptions) {
    this.#maxLineBytes = options.maxLineBytes;
    this.#onLine = options.onLine;
  }

  write(chunk: Uint8Array | string): void {
    const text = typeof chunk === 'string' ? chunk : this.#decoder.write(chunk as Buffer);
    if (text.length === 0) return;
    let start = 0;
    if (this.#skipLineFeed) {
      this.#skipLineFeed = false;
      if (text.charCodeAt(0) === 10) start = 1;
    }
    // Positions are cached so text with few `\r` is not rescanned for each line.
    let nextLineFeed = text.indexOf(lineFeed, start);
    let nextCarriageReturn = text.indexOf(carriageReturn, start);
    while (nextLineFeed !== -1 || nextCarriageReturn !== -1) {
      const isCarriageReturn =
        nextCarriageReturn !== -1 && (nextLineFeed === -1 || nextCarriageReturn < nextLineFeed);
      const end = isCarriageReturn ? nextCarriageReturn : nextLineFeed;
      this.#append(text, start, end);
      this.#emit();
      start = end + 1;
      if (isCarriageReturn) {
        if (start === text.length) {
          this.#skipLineFeed = true;
        } else if (text.charCodeAt(start) === 10) {
          start += 1;
        }
        nextCarriageReturn = text.indexOf(carriageReturn, start);
      }
      if (nextLineFeed !== -1 && nextLineFeed < start) nextLineFeed = text.indexOf(lineFeed, start);
    }
    if (start < text.length) this.#append(text, start, text.length);
  }

  /** Flushes a last line that had no terminator. */
  end(): void {
    const rest = this.#decoder.end();
    if (rest.length > 0) this.write(rest);
    if (this.#pending.length > 0 || this.#cutBytes > 0) this.#emit();
  }

  #append(text: string, start: number, end: number): void {
    if (start === end) return;
    const segment = start === 0 && end === text.length ? text : text.slice(start, end);
    if (this.#cutBytes > 0) {
      this.#cutBytes += Buffer.byteLength(segment);
      return;
    }
    const segmentBytes = Buffer.byteLength(segment);
    if (this.#pendingBytes + segmentBytes <= this.#maxLineBytes) {
      this.#pending += segment;
      this.#pendingBytes += segmentBytes;
      return;
    }
    const kept = utf8Prefix(segment, this.#maxLineBytes - this.#pendingBytes);
    const keptBytes = Buffer.byteLength(kept);
    this.#pending += kept;
    this.#pendingBytes += keptBytes;
    this.#cutBytes = segmentBytes - keptBytes;
  }

  #emit(): void {
    const cutBytes = this.#cutBytes;
    let line = this.#pending;
    let bytes = this.#pendingBytes;
    if (cutBytes > 0) {
      const marker = cutLineMarker(cutBytes);
      line += marker;
      bytes += Buffer.byteLength(marker);
    }
    this.#pending = '';
    this.#pendingBytes = 0;
    this.#cutBytes = 0;
    this.#onLine(line, cutBytes, bytes);
  }
}
