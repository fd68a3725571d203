/**
 * A fake Firecracker API: a real `node:http` server on a Unix socket in a fresh temp dir, recording
 * every request with its raw headers, its body bytes, its connection and the concurrency it saw.
 * For tests only; not exported from the package index.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RecordedRequest {
  method: string;
  /** The request target as sent, e.g. `/drives/rootfs`. */
  path: string;
  headers: IncomingHttpHeaders;
  /** Header names and values exactly as they came over the wire, alternating. */
  rawHeaders: string[];
  body: Buffer;
  /** Which connection carried it: 1 for the first one the server accepted, and so on. */
  connectionId: number;
}

/** Decides the answer. Return nothing to leave the request hanging (a VMM that never answers). */
export type TestApiHandler = (request: RecordedRequest, response: ServerResponse) => void | Promise<void>;

export interface TestApiServerOptions {
  /** What `GET /version` reports with the default handler. Default `1.16.1`. */
  firecrackerVersion?: string;
  handler?: TestApiHandler;
}

export interface TestApiServer {
  readonly socketPath: string;
  readonly directory: string;
  readonly requests: RecordedRequest[];
  /** Requests received and not yet answered, right now. */
  readonly inFlight: number;
  /** The most requests that were ever in flight at once. */
  readonly maxInFlight: number;
  /** How many connections the server accepted. */
  readonly connectionCount: number;
  firecrackerVersion: string;
  setHandler(handler: TestApiHandler): void;
  /** Requests other than the version probe, in arrival order. */
  requestsExcludingVersion(): RecordedRequest[];
  close(): Promise<void>;
}

export function sendJson(response: ServerResponse, statusCode: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(statusCode, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
  });
  response.end(text);
}

export function sendNoContent(response: ServerResponse): void {
  response.writeHead(204);
  response.end();
}

/** Answers like Firecracker would for a healthy VM: JSON for GETs, 204 for the rest. */
export function defaultHandler(server: Pick<TestApiServer, 'firecrackerVersion'>): TestApiHandler {
  return (request, response) => {
    if (request.method !== 'GET') return sendNoContent(response);
    switch (request.path) {
      case '/version':
        return sendJson(response, 200, { firecracker_version: server.firecrackerVersion });
      case '/':
        return sendJson(response, 200, {
          app_name: 'Firecracker',
          id: 'anonymous-instance',
          state: 'Not started',
          vmm_version: server.firecrackerVersion,
        });
      case '/machine-config':
        return sendJson(response, 200, {
          vcpu_count: 1,
          mem_size_mib: 128,
          smt: false,
          track_dirty_pages: false,
        });
      default:
        return sendJson(response, 200, {});
    }
  };
}

export async function startTestApiServer(options: TestApiServerOptions = {}): Promise<TestApiServer> {
  // A short prefix keeps the socket path far below the 107-byte sun_path limit.
  const directory = await mkdtemp(join(tmpdir(), 'fc-'));
  const socketPath = join(directory, 'api.sock');
  const requests: RecordedRequest[] = [];
  const sockets = new Set<Socket>();
  const connectionIds = new WeakMap<Socket, number>();
  let connectionCount = 0;
  let inFlight = 0;
  let maxInFlight = 0;

  const state: TestApiServer = {
    socketPath,
    directory,
    requests,
    get inFlight() {
      return inFlight;
    },
    get maxInFlight() {
      return maxInFlight;
    },
    get connectionCount() {
      return connectionCount;
    },
    firecrackerVersion: options.firecrackerVersion ?? '1.16.1',
    setHandler(next) {
      handler = next;
    },
    requestsExcludingVersion() {
      return requests.filter((request) => !(request.method === 'GET' && request.path === '/version'));
    },
    close,
  };
  let handler: TestApiHandler = options.handler ?? defaultHandler(state);

  const server = createServer((incoming: IncomingMessage, response: ServerResponse) => {
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let counted = true;
    const settle = () => {
      if (counted) inFlight--;
      counted = false;
    };
    response.once('finish', settle);
    response.once('close', settle);
    const chunks: Buffer[] = [];
    incoming.on('data', (chunk: Buffer) => chunks.push(chunk));
    incoming.once('end', () => {
      const recorded: RecordedRequest = {
        method: incoming.method ?? '',
        path: incoming.url ?? '',
        headers: incoming.headers,
        rawHeaders: incoming.rawHeaders,
        body: Buffer.concat(chunks),
        connectionId: connectionIds.get(incoming.socket) ?? 0,
      };
      requests.push(recorded);
      Promise.resolve(handler(recorded, response)).catch((error: unknown) => {
        if (!response.headersSent) sendJson(response, 500, { error: String(error) });
      });
    });
  });
  server.on('connection', (socket: Socket) => {
    connectionCount++;
    connectionIds.set(socket, connectionCount);
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });

  let closing: Promise<void> | undefined;
  function close(): Promise<void> {
    closing ??= (async () => {
      // Hanging requests would keep close() waiting forever.
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(directory, { recursive: true, force: true });
    })();
    return closing;
  }

  return state;
}

/** The value of a header as it came over the wire (case-insensitive name), or undefined. */
export function rawHeader(request: RecordedRequest, name: string): string | undefined {
  for (let index = 0; index + 1 < request.rawHeaders.length; index += 2) {
    if (request.rawHeaders[index]?.toLowerCase() === name.toLowerCase()) return request.rawHeaders[index + 1];
  }
  return undefined;
}
