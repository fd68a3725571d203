import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { inNamespace } from './commands.js';

/** Writes `payload` and resolves with what comes back once as many bytes arrived; destroys the socket. */
export function echoOver(socket: Socket, payload: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    const timer = setTimeout(
      () => finish(new Error(`no echo within ${timeoutMs} ms (got '${received}')`)),
      timeoutMs,
    );
    const finish = (error?: Error) => {
      clearTimeout(timer);
      socket.removeAllListeners('data');
      socket.destroy();
      if (error) reject(error);
      else resolve(received);
    };
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      received += chunk;
      if (received.length >= payload.length) finish();
    });
    socket.once('error', (error) => finish(error));
    socket.once('close', () => finish(new Error(`the connection closed after '${received}'`)));
    socket.write(payload);
  });
}

/**
 * A client run by `node -e` in the chosen namespace: connects to host:port, sends the payload and prints the
 * echo. Connections are retried until the deadline, since a guest's service may start after its ready line.
 */
const TCP_ECHO_CLIENT = `
const net = require('node:net');
const [host, port, payload, timeoutMs] = process.argv.slice(1);
const deadline = Date.now() + Number(timeoutMs);
let lastError = 'no attempt';
function attempt() {
  const left = deadline - Date.now();
  if (left <= 0) {
    process.stderr.write('no echo from ' + host + ':' + port + ': ' + lastError + '\\n');
    process.exit(1);
  }
  let received = '';
  const socket = net.connect({ host, port: Number(port) });
  // Long enough for TCP's own SYN retransmissions (1 s, then 3 s).
  const timer = setTimeout(() => { lastError = 'timed out'; socket.destroy(); }, Math.min(left, 10000));
  socket.setEncoding('utf8');
  socket.on('connect', () => socket.write(payload));
  socket.on('data', (chunk) => {
    received += chunk;
    if (received.length >= payload.length) { process.stdout.write(received); process.exit(0); }
  });
  socket.on('error', (error) => { lastError = error.message; });
  socket.on('close', () => { clearTimeout(timer); setTimeout(attempt, 200); });
}
attempt();
`;

/**
 * Connects to `host:port` from inside `namespace` (the current one when undefined), sends `payload` and
 * resolves with the echo. Rejects with the client's last error when nothing echoes before `timeoutMs`.
 */
export function tcpEchoFrom(options: {
  namespace: string | undefined;
  host: string;
  port: number;
  payload: string;
  timeoutMs: number;
}): Promise<string> {
  const [file, ...args] = inNamespace(options.namespace, [
    process.execPath,
    '-e',
    TCP_ECHO_CLIENT,
    options.host,
    String(options.port),
    options.payload,
    String(options.timeoutMs),
  ]);
  return new Promise((resolve, reject) => {
    const child = spawn(file!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
    });
    // The client keeps its own deadline; this one only catches a client that hangs.
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs + 15_000);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(stdout);
      else reject(new Error(`TCP echo client exited ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}
