/**
 * The API transport, as micro_http serves it: HTTP/1.1 over a Unix socket, bodies read by `Content-Length`
 * only, a payload limit, at most 10 connections, and one request processed at a time across all of them.
 */
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { MAX_API_CONNECTIONS } from './constants.js';
import type { HttpMethod, IncomingRequest } from './request-parser.js';

export interface ApiResponse {
  status: number;
  /** A JSON-serializable body; omitted for 204. */
  body?: unknown;
  /** Sets `Deprecation: true`. */
  deprecation?: boolean;
  /** Runs once the response has been handed to the socket (a fatal snapshot load exits then). */
  afterSend?: () => void;
}

/** Runs tasks one after another: Firecracker's single VMM thread. */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task, task);
    // A failed task must not stop the tasks behind it.
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

export interface ApiServerOptions {
  /** What bind() gets (may be relative, for long jail paths). */
  bindPath: string;
  maxPayloadBytes: number;
  queue: SerialQueue;
  /** Handles one well-formed request on the VMM thread. */
  handle: (request: IncomingRequest) => Promise<ApiResponse>;
  /** Called when a request arrives, before anything else; returning false drops it unanswered. */
  onArrival?: (method: string, path: string) => boolean;
  /** Errors of micro_http itself (bad method, oversized payload), for the log. */
  onTransportError?: (message: string) => void;
}

const SUPPORTED_METHODS = new Set<string>(['GET', 'PUT', 'PATCH', 'DELETE']);

/** The raw 503 micro_http writes to an 11th connection before closing it. */
const TOO_MANY_CONNECTIONS_RESPONSE = (() => {
  const body = '{ "error": "Too many open connections" }';
  return [
    'HTTP/1.1 503 Service Unavailable',
    'Server: Firecracker API',
    'Connection: close',
    'Content-Type: application/json',
    `Content-Length: ${Buffer.byteLength(body)}`,
    '',
    body,
  ].join('\r\n');
})();

function writeJson(
  response: ServerResponse,
  status: number,
  body: unknown,
  extraHeaders: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  response.sendDate = false;
  response.statusCode = status;
  response.setHeader('Server', 'Firecracker API');
  response.setHeader('Connection', 'keep-alive');
  for (const [name, value] of Object.entries(extraHeaders)) response.setHeader(name, value);
  response.setHeader('Content-Type', 'application/json');
  response.setHeader('Content-Length', Buffer.byteLength(text));
  response.end(text);
}

function writeEmpty(
  response: ServerResponse,
  status: number,
  extraHeaders: Record<string, string> = {},
): void {
  response.sendDate = false;
  response.statusCode = status;
  response.setHeader('Server', 'Firecracker API');
  response.setHeader('Connection', 'keep-alive');
  for (const [name, value] of Object.entries(extraHeaders)) response.setHeader(name, value);
  response.end();
}

/** micro_http's own errors: `{"error": …}`, and the connection is dropped. */
function writeTransportError(response: ServerResponse, status: number, message: string): void {
  const text = JSON.stringify({ error: message });
  response.sendDate = false;
  response.shouldKeepAlive = false;
  response.statusCode = status;
  response.setHeader('Server', 'Firecracker API');
  response.setHeader('Connection', 'close');
  response.setHeader('Content-Type', 'application/json');
  response.setHeader('Content-Length', Buffer.byteLength(text));
  response.end(text);
}

export class ApiServer {
  readonly #options: ApiServerOptions;
  readonly #netServer: Server;
  readonly #httpServer = createHttpServer();
  readonly #connections = new Set<Socket>();
  #stopped = false;

  constructor(options: ApiServerOptions) {
    this.#options = options;
    // micro_http never times a client out.
    this.#httpServer.keepAliveTimeout = 0;
    this.#httpServer.requestTimeout = 0;
    this.#httpServer.headersTimeout = 0;
    this.#httpServer.on('request', (request, response) => this.#onRequest(request, response));
    this.#httpServer.on('clientError', (error, socket) => {
      if (socket.writable) {
        const body = JSON.stringify({ error: `Invalid HTTP request: ${(error as Error).message}` });
        socket.end(
          `HTTP/1.1 400 Bad Request\r\nServer: Firecracker API\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
      } else {
        socket.destroy();
      }
    });
    this.#netServer = createNetServer((socket) => this.#onConnection(socket));
  }

  /** Binds and listens; rejects with the bind error (e.g. EADDRINUSE when the path exists). */
  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (error: Error) => reject(error);
      this.#netServer.once('error', onError);
      this.#netServer.listen(this.#options.bindPath, () => {
        this.#netServer.off('error', onError);
        resolve();
      });
    });
  }

  /** Stops answering. The socket file is deliberately left behind, as Firecracker leaves it. */
  stop(): void {
    this.#stopped = true;
    for (const socket of this.#connections) socket.destroy();
  }

  #onConnection(socket: Socket): void {
    if (this.#stopped) {
      socket.destroy();
      return;
    }
    if (this.#connections.size >= MAX_API_CONNECTIONS) {
      socket.on('error', () => {});
      socket.end(TOO_MANY_CONNECTIONS_RESPONSE);
      return;
    }
    this.#connections.add(socket);
    socket.on('close', () => this.#connections.delete(socket));
    this.#httpServer.emit('connection', socket);
  }

  #onRequest(request: IncomingMessage, response: ServerResponse): void {
    response.on('error', () => {});
    const method = request.method ?? '';
    const path = request.url ?? '/';
    if (this.#stopped) return;
    if (this.#options.onArrival !== undefined && !this.#options.onArrival(method, path)) {
      request.resume();
      return;
    }
    if (!SUPPORTED_METHODS.has(method)) {
      request.resume();
      const message = 'Invalid HTTP Method: Unsupported HTTP method.';
      this.#options.onTransportError?.(message);
      writeTransportError(response, 400, message);
      return;
    }
    const contentLengthHeader = request.headers['content-length'];
    const contentLength = contentLengthHeader === undefined ? 0 : Number(contentLengthHeader);
    if (contentLength > this.#options.maxPayloadBytes) {
      const message = `Request payload with size ${contentLength} is larger than the limit of ${this.#options.maxPayloadBytes} allowed by server.\nAll previous unanswered requests will be dropped.`;
      this.#options.onTransportError?.(message);
      writeTransportError(response, 400, message);
      response.on('finish', () => request.socket.destroySoon());
      request.resume();
      return;
    }
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => {
      // Bodies are read by Content-Length only: a chunked body is invisible to micro_http.
      if (contentLengthHeader !== undefined) chunks.push(chunk);
    });
    request.on('end', () => {
      const body = chunks.length === 0 ? undefined : Buffer.concat(chunks);
      const incoming: IncomingRequest = {
        method: method as HttpMethod,
        path,
        body: body === undefined || body.length === 0 ? undefined : body,
      };
      void this.#options.queue
        .run(() => this.#options.handle(incoming))
        .then((result) => this.#respond(response, result));
    });
  }

  #respond(response: ServerResponse, result: ApiResponse): void {
    if (this.#stopped) return;
    const headers: Record<string, string> = result.deprecation ? { Deprecation: 'true' } : {};
    if (result.afterSend !== undefined) {
      const afterSend = result.afterSend;
      response.once('finish', afterSend);
      response.once('close', afterSend);
    }
    if (result.body === undefined) writeEmpty(response, result.status, headers);
    else writeJson(response, result.status, result.body, headers);
  }
}
