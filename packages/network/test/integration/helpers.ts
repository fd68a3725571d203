import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
let counter = 0;

/** A name unique to this test process: `<tag><pid base36><counter>` (≤ 15 bytes for tags ≤ 4). */
export function uniqueName(tag: string): string {
  counter += 1;
  return `${tag}${process.pid.toString(36)}${counter.toString(36)}`;
}

/**
 * A `namePrefix` unique to this test process, `<one-letter tag><pid base36>` (≤ 6 bytes: pids stay below 36⁵):
 * a manager's VM namespaces live in the global /run/netns, where another test process (a second suite run) must
 * not meet the names it makes from the same pool.
 */
export function processNamePrefix(tag: string): string {
  return `${tag}${process.pid.toString(36)}`;
}

export async function sh(file: string, args: string[], input?: string): Promise<string> {
  const child = execFileAsync(file, args, { encoding: 'utf8' });
  if (input !== undefined) {
    child.child.stdin?.end(input);
  }
  return (await child).stdout;
}

export async function ipJson<T>(namespace: string, args: string[]): Promise<T[]> {
  const stdout = await sh('ip', ['-n', namespace, '-j', ...args]);
  return stdout.trim() === '' ? [] : (JSON.parse(stdout) as T[]);
}

export interface LinkInfo {
  ifname: string;
  operstate?: string;
  flags?: string[];
  master?: string;
  address?: string;
  addr_info?: { family: string; local: string; prefixlen: number }[];
}

/** Namespaces and temp dirs created by a test; `cleanup()` deletes them all (call it in afterEach). */
export class Sandbox {
  readonly namespaces: string[] = [];
  readonly dirs: string[] = [];
  readonly #cleanups: (() => Promise<unknown>)[] = [];

  /** Runs before the namespaces are deleted (e.g. a detach, so VM namespaces do not outlive a failed test). */
  onCleanup(cleanup: () => Promise<unknown>): void {
    this.#cleanups.push(cleanup);
  }

  async namespace(tag: string): Promise<string> {
    const name = uniqueName(tag);
    await sh('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    await sh('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    return name;
  }

  async stateDir(): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'mvnet-'));
    this.dirs.push(dir);
    return dir;
  }

  /**
   * A "host" namespace whose default route leads to an "internet" namespace through a veth pair (the uplink,
   * `up0`, 198.51.100.1/24 on the host side; 198.51.100.2 on the internet side).
   */
  async hostWithInternet(): Promise<{ host: string; internet: string }> {
    const host = await this.namespace('h');
    const internet = await this.namespace('i');
    // No IPv6 duplicate address detection: else up0's link-local address turns from tentative to valid a second
    // or two after it comes up, in the middle of a test comparing the host's state before and after.
    for (const namespace of [host, internet]) {
      await sh('ip', [
        'netns',
        'exec',
        namespace,
        'sysctl',
        '-q',
        '-w',
        'net.ipv6.conf.all.accept_dad=0',
        'net.ipv6.conf.default.accept_dad=0',
      ]);
    }
    await sh(
      'ip',
      ['-n', host, '-batch', '-'],
      [
        `link add name up0 type veth peer name up0 netns ${internet}`,
        'addr add 198.51.100.1/24 dev up0',
        'link set up0 up',
        'route add default via 198.51.100.2',
        '',
      ].join('\n'),
    );
    await sh(
      'ip',
      ['-n', internet, '-batch', '-'],
      ['addr add 198.51.100.2/24 dev up0', 'link set up0 up', ''].join('\n'),
    );
    return { host, internet };
  }

  async cleanup(): Promise<void> {
    for (const cleanup of this.#cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
    for (const name of this.namespaces.splice(0).reverse()) {
      await sh('ip', ['netns', 'del', name]).catch(() => undefined);
    }
    for (const dir of this.dirs.splice(0)) await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Starts a TCP server in `namespace` that answers each connection with the peer's address, runs a client in
 * `clientNamespace` against `host:port`, and returns what the server saw (the client's source address after NAT).
 */
export async function tcpProbe(options: {
  serverNamespace: string;
  clientNamespace: string;
  host: string;
  port: number;
}): Promise<string> {
  const server = `
    const net = require('node:net');
    const server = net.createServer((socket) => { socket.end(socket.remoteAddress); server.close(); });
    server.listen(${options.port}, '0.0.0.0', () => process.stdout.write('ready\\n'));
    // Only a safety net for a client that never comes: its Node start alone may take seconds on a loaded host.
    setTimeout(() => process.exit(2), 30000).unref();
  `;
  const { spawn } = await import('node:child_process');
  const child = spawn('ip', ['netns', 'exec', options.serverNamespace, process.execPath, '-e', server], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    });
    const client = `
      const net = require('node:net');
      const socket = net.connect(${options.port}, '${options.host}');
      let data = '';
      socket.on('data', (chunk) => { data += chunk; });
      socket.on('end', () => { process.stdout.write(data); });
      socket.on('error', (error) => { console.error(error.message); process.exit(1); });
      setTimeout(() => { console.error('timeout'); process.exit(3); }, 20000).unref();
    `;
    return await sh('ip', ['netns', 'exec', options.clientNamespace, process.execPath, '-e', client]);
  } finally {
    child.kill('SIGKILL');
  }
}
