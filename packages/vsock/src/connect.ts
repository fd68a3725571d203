import { createConnection, type Socket } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import { TimeoutError, validateUnixSocketPath } from '@microvm/core';
import { abortedError, positiveMilliseconds, VsockError, validateVsockPort } from './errors.js';

export interface ConnectVsockOptions {
  /** Deadline of the whole connect, retries included. Default 10000. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** First pause between attempts; it doubles after each failure, up to 250 ms. Default 10. */
  retryIntervalMs?: number;
  /**
   * How long one attempt waits for `OK` before it is dropped and retried. Firecracker itself gives up on a
   * guest that does not answer after 2000 ms; before the guest driver is up it reads nothing at all.
   * Default 3000.
   */
  attemptTimeoutMs?: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_RETRY_INTERVAL_MS = 10;
const MAX_RETRY_INTERVAL_MS = 250;
const DEFAULT_ATTEMPT_TIMEOUT_MS = 3_000;
/** `OK 2147483647\n` is 14 bytes; anything much longer without a newline is not Firecracker. */
const HANDSHAKE_LINE_MAX_BYTES = 32;
const NEWLINE = 0x0a;
const OK_LINE = /^OK (\d{1,10})$/;

/** System errors that mean "nobody serves this socket (yet)": worth retrying while the VM comes up. */
const retryableSocketCodes = new Set(['ENOENT', 'ECONNREFUSED', 'EAGAIN']);

type AttemptFailure =
  | { kind: 'refused'; systemCode?: string; cause?: unknown }
  | { kind: 'device-closed'; systemCode?: string; cause?: unknown }
  | { kind: 'no-answer' }
  | { kind: 'stopped'; connected: boolean };

class AttemptFailed extends Error {
  constructor(readonly failure: AttemptFailure) {
    super(failure.kind);
  }
}

/**
 * Opens a host-initiated vsock connection: connects to the device's host socket, sends `CONNECT <port>\n` and
 * waits for `OK <host port>\n`. Returns the socket as a plain byte stream to the guest service (bytes that
 * arrived after `OK` are kept).
 *
 * While the socket is missing (the VM is still being configured) or the guest closes the stream before `OK`
 * (its driver or service is not up yet), it retries until `timeoutMs`. At the deadline it rejects with what it
 * saw last: `VsockError` `refused` (the guest kept refusing the port), `VsockError` `device-closed` (the socket
 * never accepted a connection), or `TimeoutError` (the guest never answered, e.g. a paused VM).
 */
export async function connectVsock(
  hostUdsPath: string,
  port: number,
  options: ConnectVsockOptions = {},
): Promise<Socket> {
  validateUnixSocketPath(hostUdsPath, 'hostUdsPath');
  validateVsockPort(port);
  const timeoutMs = positiveMilliseconds(options.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS, 'timeoutMs');
  let pauseMs = positiveMilliseconds(options.retryIntervalMs ?? DEFAULT_RETRY_INTERVAL_MS, 'retryIntervalMs');
  const attemptTimeoutMs = positiveMilliseconds(
    options.attemptTimeoutMs ?? DEFAULT_ATTEMPT_TIMEOUT_MS,
    'attemptTimeoutMs',
  );
  const operation = `vsock CONNECT ${port} on ${hostUdsPath}`;
  const userSignal = options.signal;
  if (userSignal?.aborted) throw abortedError(operation, userSignal.reason);

  // One signal stops whatever is in flight (an attempt or the pause between two) on timeout or abort.
  const stop = new AbortController();
  const timer = setTimeout(() => stop.abort('timeout'), timeoutMs);
  const onUserAbort = () => stop.abort('abort');
  userSignal?.addEventListener('abort', onUserAbort, { once: true });
  let attempts = 0;
  let lastFailure: AttemptFailure | undefined;
  try {
    while (!stop.signal.aborted) {
      attempts += 1;
      try {
        return await attempt(hostUdsPath, port, stop.signal, attemptTimeoutMs);
      } catch (error) {
        if (!(error instanceof AttemptFailed)) throw error;
        const { failure } = error;
        if (failure.kind === 'stopped') {
          // The device answered connect() this time: an earlier "missing socket" is no longer the story.
          if (failure.connected && lastFailure?.kind === 'device-closed') lastFailure = undefined;
          break;
        }
        if (failure.kind === 'device-closed' && !retryableSocketCodes.has(failure.systemCode ?? '')) {
          throw deviceClosedError(hostUdsPath, port, attempts, failure);
        }
        lastFailure = failure;
      }
      await delay(pauseMs, undefined, { signal: stop.signal }).catch(() => undefined);
      pauseMs = Math.min(pauseMs * 2, MAX_RETRY_INTERVAL_MS);
    }
    if (stop.signal.reason === 'abort') throw abortedError(operation, userSignal?.reason);
    if (lastFailure?.kind === 'refused') {
      throw new VsockError({
        reason: 'refused',
        message: `${operation}: the guest refused port ${port} (closed before OK: nothing listens there yet) through ${timeoutMs} ms and ${attempts} attempt(s)`,
        hostUdsPath,
        port,
        attempts,
        ...(lastFailure.systemCode !== undefined && { systemCode: lastFailure.systemCode }),
        cause: lastFailure.cause,
      });
    }
    if (lastFailure?.kind === 'device-closed')
      throw deviceClosedError(hostUdsPath, port, attempts, lastFailure);
    throw new TimeoutError({ operation: `${operation} (the guest did not answer)`, timeoutMs });
  } finally {
    clearTimeout(timer);
    userSignal?.removeEventListener('abort', onUserAbort);
  }
}

function deviceClosedError(
  hostUdsPath: string,
  port: number,
  attempts: number,
  failure: { systemCode?: string; cause?: unknown },
): VsockError {
  return new VsockError({
    reason: 'device-closed',
    message: `vsock CONNECT ${port}: the device socket ${hostUdsPath} does not accept connections (${failure.systemCode ?? 'closed'}): the VM is not running or has no vsock device`,
    hostUdsPath,
    port,
    attempts,
    ...(failure.systemCode !== undefined && { systemCode: failure.systemCode }),
    cause: failure.cause,
  });
}

/** One connect + handshake. Resolves with the socket, or rejects with `AttemptFailed` or a bad-handshake error. */
function attempt(
  hostUdsPath: string,
  port: number,
  stop: AbortSignal,
  attemptTimeoutMs: number,
): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const socket = createConnection(hostUdsPath);
    let connected = false;
    let buffered: Buffer = Buffer.alloc(0);

    const cleanUp = () => {
      clearTimeout(attemptTimer);
      stop.removeEventListener('abort', onStop);
      socket.off('connect', onConnect);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.off('end', onClosed);
      socket.off('close', onClosed);
    };
    const fail = (error: Error) => {
      cleanUp();
      socket.destroy();
      reject(error);
    };
    const onStop = () => fail(new AttemptFailed({ kind: 'stopped', connected }));
    const onConnect = () => {
      connected = true;
      socket.write(`CONNECT ${port}\n`);
    };
    const onError = (error: NodeJS.ErrnoException) => {
      const systemCode = error.code;
      fail(
        new AttemptFailed(
          connected
            ? { kind: 'refused', ...(systemCode && { systemCode }), cause: error }
            : { kind: 'device-closed', ...(systemCode && { systemCode }), cause: error },
        ),
      );
    };
    // Firecracker closes the stream without `OK` when the guest resets the connection (no listener).
    const onClosed = () =>
      fail(new AttemptFailed(connected ? { kind: 'refused' } : { kind: 'device-closed' }));
    // 'readable' + read() keeps the stream out of flowing mode, so no byte after `OK` is lost before the
    // caller attaches its own reader.
    const onReadable = () => {
      for (let chunk: Buffer | null = socket.read(); chunk !== null; chunk = socket.read()) {
        buffered = buffered.length === 0 ? chunk : Buffer.concat([buffered, chunk]);
      }
      const end = buffered.indexOf(NEWLINE);
      if (end < 0) {
        if (buffered.length > HANDSHAKE_LINE_MAX_BYTES) fail(badHandshake(hostUdsPath, port, buffered));
        return;
      }
      const line = buffered.subarray(0, end).toString('latin1');
      if (!OK_LINE.test(line)) {
        fail(badHandshake(hostUdsPath, port, buffered.subarray(0, end)));
        return;
      }
      cleanUp();
      const rest = buffered.subarray(end + 1);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    const attemptTimer = setTimeout(() => fail(new AttemptFailed({ kind: 'no-answer' })), attemptTimeoutMs);

    stop.addEventListener('abort', onStop, { once: true });
    socket.once('connect', onConnect);
    socket.on('readable', onReadable);
    socket.on('error', onError);
    socket.on('end', onClosed);
    socket.on('close', onClosed);
  });
}

function badHandshake(hostUdsPath: string, port: number, received: Buffer): VsockError {
  const shown = received.subarray(0, HANDSHAKE_LINE_MAX_BYTES).toString('latin1');
  return new VsockError({
    reason: 'bad-handshake',
    message: `vsock CONNECT ${port} on ${hostUdsPath}: expected 'OK <port>', got ${JSON.stringify(shown)}: is this a Firecracker vsock socket?`,
    hostUdsPath,
    port,
  });
}
