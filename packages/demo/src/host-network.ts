/**
 * The throw-away network the demo runs in, all inside namespaces it creates (never the root namespace):
 *
 *   guest    (stand-in for the VM's NIC: eth0, configured by the network primitive)
 *     │ veth, its host end named like the VM's TAP
 *   host     (the TAP/veth, routes, NAT and the firewall live here; Firecracker runs here)
 *     │ veth up0: 198.51.100.1/24 ↔ 198.51.100.2/24, the host's default route
 *   internet (a TCP server on the allowed and the denied port)
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import type { CleanupStack } from './cleanup-stack.js';

const execFileAsync = promisify(execFile);

export const HOST_UPLINK_IP = '198.51.100.1';
export const INTERNET_IP = '198.51.100.2';

/** Runs a command (argv, no shell) and returns its stdout; the error names the command and its stderr. */
export async function run(
  file: string,
  args: string[],
  options: { signal?: AbortSignal; timeoutMs?: number } = {},
): Promise<string> {
  try {
    const { stdout } = await execFileAsync(file, args, {
      encoding: 'utf8',
      ...(options.signal && { signal: options.signal }),
      ...(options.timeoutMs !== undefined && { timeout: options.timeoutMs }),
    });
    return stdout;
  } catch (error) {
    if (options.signal?.aborted) throw options.signal.reason;
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`${[file, ...args].join(' ')} failed${stderr ? `: ${stderr}` : ''}`, { cause: error });
  }
}

/** The names of this run's namespaces: `<prefix>h`, `<prefix>i`, `<prefix>g`. */
export interface NamespaceNames {
  host: string;
  internet: string;
  /** Only with the simulator: where the veth standing in for the guest's NIC ends. */
  guest: string | undefined;
}

/**
 * Creates the namespaces and the uplink. Each namespace is registered for deletion the moment it exists, so a
 * failure half-way leaves nothing.
 */
export async function createNamespaces(
  names: NamespaceNames,
  cleanup: CleanupStack,
  signal: AbortSignal,
): Promise<void> {
  for (const name of [names.host, names.internet, names.guest]) {
    if (name === undefined) continue;
    signal.throwIfAborted();
    await run('ip', ['netns', 'add', name]);
    cleanup.defer(`network namespace ${name}`, () => deleteNamespace(name));
    await run('ip', ['-n', name, 'link', 'set', 'lo', 'up'], { signal });
  }
  // Deleting either namespace deletes the pair: no cleanup step of its own.
  await run('ip', [
    '-n',
    names.host,
    'link',
    'add',
    'name',
    'up0',
    'type',
    'veth',
    'peer',
    'name',
    'up0',
    'netns',
    names.internet,
  ]);
  await ipBatch(names.host, [
    `addr add ${HOST_UPLINK_IP}/24 dev up0`,
    'link set up0 up',
    `route add default via ${INTERNET_IP}`,
  ]);
  await ipBatch(names.internet, [`addr add ${INTERNET_IP}/24 dev up0`, 'link set up0 up']);
}

async function ipBatch(namespace: string, lines: string[]): Promise<void> {
  const child = execFileAsync('ip', ['-n', namespace, '-batch', '-'], { encoding: 'utf8' });
  child.child.stdin?.end(`${lines.join('\n')}\n`);
  try {
    await child;
  } catch (error) {
    const stderr = String((error as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(`ip -n ${namespace} -batch failed: ${stderr}`, { cause: error });
  }
}

async function deleteNamespace(name: string): Promise<void> {
  const listed = await run('ip', ['netns', 'list']);
  if (!namespacesIn(listed).includes(name)) return;
  await run('ip', ['netns', 'del', name]);
}

/** The names in `ip netns list` output (`name (id: 3)` lines). */
export function namespacesIn(listOutput: string): string[] {
  return listOutput
    .split('\n')
    .map((line) => line.trim().split(/\s+/)[0] ?? '')
    .filter((name) => name !== '');
}

// ─── The internet's server and the guest's probes: small Node programs run with `ip netns exec` ───

const SERVER_PROGRAM = `
const net = require('node:net');
const ports = JSON.parse(process.argv[1]);
let pending = ports.length;
for (const port of ports) {
  net.createServer((socket) => {
    console.log(JSON.stringify({ port, from: socket.remoteAddress.replace('::ffff:', '') }));
    socket.on('error', () => {});
    socket.end('hello from the internet namespace\\n');
  }).listen(port, '0.0.0.0', () => { if (--pending === 0) console.log('ready'); });
}
// Ends with the demo, even a killed one: its end of stdin closes.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
`;

export interface Connection {
  port: number;
  from: string;
}

export interface InternetServer {
  /** Every connection that reached the server so far. */
  readonly connections: Connection[];
  stop(): Promise<void>;
}

/** Starts a TCP server on `ports` in `namespace`; resolves once it listens on all of them. */
export async function startServer(
  namespace: string,
  ports: number[],
  cleanup: CleanupStack,
): Promise<InternetServer> {
  const child: ChildProcess = spawn(
    'ip',
    ['netns', 'exec', namespace, process.execPath, '-e', SERVER_PROGRAM, JSON.stringify(ports)],
    { stdio: ['pipe', 'pipe', 'inherit'] },
  );
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  cleanup.defer(`the server in ${namespace} (pid ${child.pid})`, stop);
  const connections: Connection[] = [];
  const lines = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the server in ${namespace} did not start`)), 30_000);
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the server in ${namespace} exited with ${code}`)));
    lines.on('line', (line) => {
      if (line === 'ready') {
        clearTimeout(timer);
        resolve();
      } else {
        connections.push(JSON.parse(line) as Connection);
      }
    });
  });
  return { connections, stop };
}

const PROBE_PROGRAM = `
const net = require('node:net');
const { host, port, waitMs } = JSON.parse(process.argv[1]);
let reply = '';
const finish = (result) => { console.log(JSON.stringify({ result, reply: reply.trim() })); process.exit(0); };
setTimeout(() => finish('timeout'), waitMs);
const socket = net.connect({ host, port });
socket.on('data', (chunk) => { reply += chunk; });
socket.on('end', () => finish('connected'));
socket.on('error', (error) => finish(error.code === 'ECONNREFUSED' ? 'refused' : error.code));
`;

export interface ProbeResult {
  /** `connected`, `refused`, `timeout` (no answer: dropped), or the socket error's code. */
  result: string;
  /** What the server sent back. */
  reply: string;
}

/** Opens a TCP connection from `namespace` to `host:port`, waiting up to `waitMs` for the whole exchange. */
export async function tcpProbe(options: {
  namespace: string;
  host: string;
  port: number;
  waitMs: number;
  signal: AbortSignal;
}): Promise<ProbeResult> {
  const { namespace, host, port, waitMs, signal } = options;
  const stdout = await run(
    'ip',
    [
      'netns',
      'exec',
      namespace,
      process.execPath,
      '-e',
      PROBE_PROGRAM,
      JSON.stringify({ host, port, waitMs }),
    ],
    // Generous beyond waitMs: starting Node on a busy host takes a while.
    { signal, timeoutMs: waitMs + 30_000 },
  );
  return JSON.parse(stdout) as ProbeResult;
}
