import type { Duplex } from 'node:stream';
import { MicrovmError, TimeoutError, ValidationError } from '@microvm/core';
import { type ConnectVsockOptions, connectVsock } from './connect.js';
import {
  abortedError,
  positiveInteger,
  positiveMilliseconds,
  VsockError,
  VsockRemoteError,
} from './errors.js';

/** Answers one request (or notification) from the peer. Its return value is the response's `result`. */
export type VsockRpcHandler = (
  params: unknown,
  context: { method: string /** Aborted when the channel closes. */; signal: AbortSignal },
) => unknown;

export interface VsockRpcOptions {
  /** Methods the peer may call on this side. More can be added with `handle()`. */
  handlers?: Record<string, VsockRpcHandler>;
  /** Longest line (one message) accepted or sent, in bytes. Default 1 MiB. */
  maxLineBytes?: number;
  /** Default deadline of `call()`. Default 30000. */
  callTimeoutMs?: number;
  /**
   * Requests from the peer served at once. Past it, reading pauses until one finishes (responses to this
   * side's own calls wait too, within their timeouts). Default 64.
   */
  maxConcurrentRequests?: number;
}

export interface VsockRpcCallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** One line on the wire. */
export interface VsockRpcMessage {
  /** Present on requests and responses; absent on notifications. */
  id?: number | string;
  method?: string;
  params?: unknown;
  result?: unknown;
  error?: { code?: string; message: string; data?: unknown };
}

interface PendingCall {
  method: string;
  resolve: (value: unknown) => void;
  reject: (error: unknown) => void;
}

const DEFAULT_MAX_LINE_BYTES = 1024 * 1024;
const DEFAULT_CALL_TIMEOUT_MS = 30_000;
const DEFAULT_MAX_CONCURRENT_REQUESTS = 64;
/** Bytes written but not yet taken by the peer, in lines of `maxLineBytes`, before the channel is cut. */
const MAX_UNREAD_LINES = 4;
const NEWLINE = 0x0a;

/**
 * Request/response over one stream (a vsock connection, or any `Duplex`): newline-delimited JSON messages
 * `{ id, method, params }` → `{ id, result }` or `{ id, error: { code, message, data } }`; a message without
 * `id` is a notification. Both ends may call and serve, so it is the base for a guest agent.
 *
 * Every call has a deadline and takes a signal. When the peer closes or breaks the stream, or sends a line
 * that is too long or not a message, the channel closes and every pending call rejects with a `VsockError`
 * (`peer-closed`, `line-too-long`, `bad-message`); after a local `close()` they reject with
 * `ERR_MICROVM_DISPOSED`.
 */
export class VsockRpc implements AsyncDisposable {
  /** Resolves once the channel is closed: with the error that closed it, or undefined after `close()`. */
  readonly closed: Promise<MicrovmError | undefined>;

  readonly #stream: Duplex;
  readonly #maxLineBytes: number;
  readonly #callTimeoutMs: number;
  readonly #maxConcurrentRequests: number;
  #serving = 0;
  readonly #waitingToServe: (() => void)[] = [];
  readonly #handlers = new Map<string, VsockRpcHandler>();
  readonly #pending = new Map<number, PendingCall>();
  readonly #handlersAbort = new AbortController();
  #nextId = 1;
  #partial: Buffer[] = [];
  #partialBytes = 0;
  #closeReason: MicrovmError | undefined;
  #isClosed = false;
  #resolveClosed!: (reason: MicrovmError | undefined) => void;

  constructor(stream: Duplex, options: VsockRpcOptions = {}) {
    this.#maxLineBytes = positiveInteger(options.maxLineBytes ?? DEFAULT_MAX_LINE_BYTES, 'maxLineBytes');
    this.#callTimeoutMs = positiveMilliseconds(
      options.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS,
      'callTimeoutMs',
    );
    this.#maxConcurrentRequests = positiveInteger(
      options.maxConcurrentRequests ?? DEFAULT_MAX_CONCURRENT_REQUESTS,
      'maxConcurrentRequests',
    );
    for (const [method, handler] of Object.entries(options.handlers ?? {})) this.handle(method, handler);
    this.#stream = stream;
    this.closed = new Promise((resolve) => {
      this.#resolveClosed = resolve;
    });
    stream.on('data', this.#onData);
    stream.once('end', this.#onEnd);
    stream.once('close', this.#onEnd);
    stream.on('error', this.#onError);
    if (stream.destroyed) this.#onEnd();
  }

  /** Connects to a guest service over vsock (see `connectVsock`) and speaks this protocol on it. */
  static async connect(
    hostUdsPath: string,
    port: number,
    options: ConnectVsockOptions & VsockRpcOptions = {},
  ): Promise<VsockRpc> {
    const socket = await connectVsock(hostUdsPath, port, options);
    try {
      return new VsockRpc(socket, options);
    } catch (error) {
      // Bad options are found only in the constructor: the connection must not outlive them.
      socket.destroy();
      throw error;
    }
  }

  get isClosed(): boolean {
    return this.#isClosed;
  }

  /** Calls are waiting for their response. */
  get pendingCount(): number {
    return this.#pending.size;
  }

  /** Serves `method` on this side; returns a function that removes it. */
  handle(method: string, handler: VsockRpcHandler): () => void {
    if (typeof method !== 'string' || method.length === 0) {
      throw new ValidationError({ field: 'method', rule: 'must be a non-empty string', value: method });
    }
    if (typeof handler !== 'function') {
      throw new ValidationError({ field: 'handler', rule: 'must be a function', value: handler });
    }
    this.#handlers.set(method, handler);
    return () => {
      if (this.#handlers.get(method) === handler) this.#handlers.delete(method);
    };
  }

  /** Calls `method` on the peer and resolves with its `result`. */
  call<Result = unknown>(
    method: string,
    params?: unknown,
    options: VsockRpcCallOptions = {},
  ): Promise<Result> {
    if (typeof method !== 'string' || method.length === 0) {
      return Promise.reject(
        new ValidationError({ field: 'method', rule: 'must be a non-empty string', value: method }),
      );
    }
    const operation = `vsock call '${method}'`;
    if (this.#isClosed) return Promise.reject(this.#closedError(operation));
    const signal = options.signal;
    if (signal?.aborted) return Promise.reject(abortedError(operation, signal.reason));
    let timeoutMs: number;
    try {
      timeoutMs = positiveMilliseconds(options.timeoutMs ?? this.#callTimeoutMs, 'timeoutMs');
    } catch (error) {
      return Promise.reject(error);
    }
    const id = this.#nextId++;
    return new Promise<Result>((resolve, reject) => {
      let line: string;
      try {
        line = this.#encode({ id, method, ...(params !== undefined && { params }) }, 'params');
      } catch (error) {
        reject(error);
        return;
      }
      const settle = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.#pending.delete(id);
      };
      const onAbort = () => {
        settle();
        reject(abortedError(operation, signal?.reason));
      };
      const timer = setTimeout(() => {
        settle();
        reject(new TimeoutError({ operation, timeoutMs }));
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#pending.set(id, {
        method,
        resolve: (value) => {
          settle();
          resolve(value as Result);
        },
        reject: (error) => {
          settle();
          reject(error);
        },
      });
      this.#write(line);
    });
  }

  /** Sends a message that gets no response. */
  notify(method: string, params?: unknown): void {
    if (this.#isClosed) throw this.#closedError(`vsock notification '${method}'`);
    this.#write(this.#encode({ method, ...(params !== undefined && { params }) }, 'params'));
  }

  /** Rejects pending calls with `ERR_MICROVM_DISPOSED`, ends the stream and waits until it is closed. */
  async close(): Promise<void> {
    if (!this.#isClosed) {
      this.#shutDown(undefined);
      await new Promise<void>((resolve) => {
        if (this.#stream.destroyed) {
          resolve();
          return;
        }
        this.#stream.once('close', () => resolve());
        this.#stream.end();
        // A peer that never ends its half would keep the stream open: give it a moment, then cut it.
        setTimeout(() => this.#stream.destroy(), 1_000).unref();
      });
    }
    await this.closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  // ---------------------------------------------------------------------------------------------------------

  #encode(message: VsockRpcMessage, field: string): string {
    let text: string | undefined;
    try {
      text = JSON.stringify(message);
    } catch (error) {
      throw new ValidationError({
        field,
        rule: 'must be serialisable as JSON',
        value: message,
        cause: error,
      });
    }
    if (text === undefined)
      throw new ValidationError({ field, rule: 'must be serialisable as JSON', value: message });
    const bytes = Buffer.byteLength(text);
    if (bytes > this.#maxLineBytes) {
      throw new ValidationError({
        field,
        rule: `the message must fit in maxLineBytes (${this.#maxLineBytes}), it has ${bytes} bytes`,
        value: message.method ?? message.id,
      });
    }
    return `${text}\n`;
  }

  readonly #onData = (chunk: Buffer | string) => {
    let data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    for (let end = data.indexOf(NEWLINE); end >= 0 && !this.#isClosed; end = data.indexOf(NEWLINE)) {
      const piece = data.subarray(0, end);
      const lineBytes = this.#partialBytes + piece.length;
      if (lineBytes > this.#maxLineBytes) {
        this.#breakOff('line-too-long', `the peer sent a line of more than ${this.#maxLineBytes} bytes`);
        return;
      }
      const line = this.#partial.length === 0 ? piece : Buffer.concat([...this.#partial, piece]);
      this.#partial = [];
      this.#partialBytes = 0;
      data = data.subarray(end + 1);
      this.#receive(line);
    }
    if (this.#isClosed || data.length === 0) return;
    this.#partialBytes += data.length;
    if (this.#partialBytes > this.#maxLineBytes) {
      this.#breakOff('line-too-long', `the peer sent a line of more than ${this.#maxLineBytes} bytes`);
      return;
    }
    this.#partial.push(data);
  };

  readonly #onEnd = () => {
    if (this.#isClosed) return;
    this.#shutDown(new VsockError({ reason: 'peer-closed', message: 'The peer closed the vsock stream' }));
    this.#stream.destroy();
  };

  readonly #onError = (error: NodeJS.ErrnoException) => {
    if (this.#isClosed) return;
    this.#shutDown(
      new VsockError({
        reason: 'peer-closed',
        message: `The vsock stream broke: ${error.message}`,
        ...(error.code !== undefined && { systemCode: error.code }),
        cause: error,
      }),
    );
  };

  #receive(line: Buffer): void {
    if (line.length === 0 || (line.length === 1 && line[0] === 0x0d)) return;
    let message: unknown;
    try {
      message = JSON.parse(line.toString('utf8'));
    } catch {
      this.#breakOff('bad-message', `the peer sent a line that is not JSON: ${preview(line)}`);
      return;
    }
    if (typeof message !== 'object' || message === null || Array.isArray(message)) {
      this.#breakOff('bad-message', `the peer sent a line that is not a message object: ${preview(line)}`);
      return;
    }
    const { id, method } = message as VsockRpcMessage;
    const hasId = typeof id === 'number' || typeof id === 'string';
    if (typeof method === 'string') {
      void this.#serve(method, (message as VsockRpcMessage).params, hasId ? id : undefined);
      return;
    }
    if (hasId) {
      this.#settle(message as VsockRpcMessage);
      return;
    }
    this.#breakOff('bad-message', `the peer sent a message with neither id nor method: ${preview(line)}`);
  }

  #settle(message: VsockRpcMessage): void {
    // A late answer to a call that already timed out is dropped.
    const pending = typeof message.id === 'number' ? this.#pending.get(message.id) : undefined;
    if (!pending) return;
    const error = message.error;
    if (error !== undefined && error !== null) {
      const remote = typeof error === 'object' ? error : { message: String(error) };
      pending.reject(
        new VsockRemoteError({
          method: pending.method,
          ...(typeof remote.code === 'string' && { remoteCode: remote.code }),
          remoteMessage: typeof remote.message === 'string' ? remote.message : 'no message',
          data: remote.data,
        }),
      );
      return;
    }
    pending.resolve(message.result);
  }

  async #serve(method: string, params: unknown, id: number | string | undefined): Promise<void> {
    const handler = this.#handlers.get(method);
    let response: VsockRpcMessage;
    if (!handler) {
      response = { id, error: { code: 'METHOD_NOT_FOUND', message: `No handler for '${method}'` } };
    } else {
      // The guest decides how many requests it sends: past the limit, stop reading until a handler finishes,
      // so a flood costs at most one chunk of queued lines, not a handler each.
      if (this.#serving >= this.#maxConcurrentRequests) {
        this.#stream.pause();
        await new Promise<void>((resolve) => this.#waitingToServe.push(resolve));
        if (this.#isClosed) return;
      }
      this.#serving += 1;
      try {
        const result = await handler(params, { method, signal: this.#handlersAbort.signal });
        response = { id, result: result === undefined ? null : result };
      } catch (error) {
        const code = (error as { code?: unknown } | null)?.code;
        response = {
          id,
          error: {
            code: typeof code === 'string' ? code : 'HANDLER_FAILED',
            message: error instanceof Error ? error.message : String(error),
          },
        };
      } finally {
        this.#serving -= 1;
        const next = this.#waitingToServe.shift();
        if (next) next();
        else if (!this.#isClosed) this.#stream.resume();
      }
    }
    if (id === undefined || this.#isClosed) return;
    let line: string;
    try {
      line = this.#encode(response, 'result');
    } catch (error) {
      line = this.#encode(
        {
          id,
          error: { code: 'BAD_RESULT', message: error instanceof Error ? error.message : String(error) },
        },
        'result',
      );
    }
    this.#write(line);
  }

  /** Writes a line; a peer that leaves more than a few lines unread is cut off, so its answers cannot pile up. */
  #write(line: string): void {
    this.#stream.write(line);
    if (this.#stream.writableLength > MAX_UNREAD_LINES * this.#maxLineBytes) {
      this.#shutDown(
        new VsockError({
          reason: 'peer-not-reading',
          message: `vsock message channel closed: the peer left ${this.#stream.writableLength} bytes unread`,
        }),
      );
      this.#stream.destroy();
    }
  }

  #breakOff(reason: 'line-too-long' | 'bad-message', message: string): void {
    this.#shutDown(new VsockError({ reason, message: `vsock message channel closed: ${message}` }));
    this.#stream.destroy();
  }

  #closedError(operation: string): MicrovmError {
    if (this.#closeReason) {
      return new VsockError({
        reason: (this.#closeReason as VsockError).reason ?? 'peer-closed',
        message: `${operation}: ${this.#closeReason.message}`,
        cause: this.#closeReason,
      });
    }
    return new MicrovmError({
      code: 'ERR_MICROVM_DISPOSED',
      message: `${operation}: the channel was closed`,
    });
  }

  #shutDown(reason: MicrovmError | undefined): void {
    if (this.#isClosed) return;
    this.#isClosed = true;
    this.#closeReason = reason;
    this.#stream.off('data', this.#onData);
    this.#handlersAbort.abort(reason ?? new Error('closed'));
    for (const release of this.#waitingToServe.splice(0)) release();
    for (const pending of [...this.#pending.values()]) {
      pending.reject(this.#closedError(`vsock call '${pending.method}'`));
    }
    this.#resolveClosed(reason);
  }
}

function preview(line: Buffer): string {
  const text = line.subarray(0, 80).toString('utf8');
  return JSON.stringify(line.length > 80 ? `${text}…` : text);
}
