/**
 * A throw-away network, all inside namespaces it creates (never the root namespace):
 *
 *   guest  (10.0.0.2/30, eth0) ── veth ── [tap-vm1 10.0.0.1/30]            host
 *   guest2 (10.0.0.6/30, eth0) ── veth ── [tap-vm2 10.0.0.5/30]   (routes; the firewall is applied here)
 *   internet (198.51.100.2/24, + 192.168.77.2, 169.254.169.254) ── veth ── [uplink 198.51.100.1/24]
 *
 * The host ends of the guest veths are named like the VMs' TAPs: to the host they are the TAPs.
 * Servers and probes are small Node programs run with `ip netns exec <ns> node -e …` (argv, no shell).
 * One topology can serve several tests: `reset` puts it back as created (servers keep running).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import type { FirewallTarget } from '../../src/index.js';

let counter = 0;

export interface TestVm {
  namespace: string;
  target: Required<Pick<FirewallTarget, 'tapName' | 'guestIp' | 'guestMac'>> & { dnsServers: string[] };
  gatewayIp: string;
}

export interface Topology {
  host: string;
  internet: string;
  vm1: TestVm;
  vm2: TestVm;
  /** Public-looking address of the internet namespace. */
  publicIp: string;
  /** Addresses of the internet namespace that internet-only must refuse. */
  privateIp: string;
  metadataIp: string;
  /** The host's address on the uplink. */
  hostUplinkIp: string;
  /** Removes every firewall rule of the host namespace and undoes what a test did to the guests' links. */
  reset(): Promise<void>;
  destroy(): Promise<void>;
}

async function ip(...args: string[]): Promise<void> {
  await execa('ip', args);
}

async function inNamespace(namespace: string, ...argv: string[]): Promise<string> {
  const result = await execa('ip', ['netns', 'exec', namespace, ...argv]);
  return result.stdout;
}

export async function nft(namespace: string, ...args: string[]): Promise<string> {
  return inNamespace(namespace, 'nft', ...args);
}

/** Loads an nft script (`nft -f -`) into `namespace`. */
export async function loadRuleset(namespace: string, script: string): Promise<void> {
  await execa('ip', ['netns', 'exec', namespace, 'nft', '-f', '-'], { input: script });
}

export async function createTopology(): Promise<Topology> {
  counter += 1;
  const prefix = `fw${process.pid}-${counter}`;
  const names = {
    host: `${prefix}-h`,
    guest1: `${prefix}-g1`,
    guest2: `${prefix}-g2`,
    internet: `${prefix}-i`,
  };
  const created: string[] = [];
  const servers: ChildProcess[] = [];
  const destroy = async () => {
    for (const server of servers) server.kill('SIGKILL');
    for (const namespace of created.reverse())
      await execa('ip', ['netns', 'del', namespace], { reject: false });
  };
  try {
    for (const namespace of Object.values(names)) {
      await ip('netns', 'add', namespace);
      created.push(namespace);
      await ip('-n', namespace, 'link', 'set', 'lo', 'up');
    }
    const { host, internet } = names;
    await inNamespace(host, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1');
    // Reverse-path filtering would hide spoofed packets from the firewall; the firewall must catch them itself.
    await inNamespace(host, 'sysctl', '-q', '-w', 'net.ipv4.conf.all.rp_filter=0');
    await inNamespace(host, 'sysctl', '-q', '-w', 'net.ipv4.conf.default.rp_filter=0');

    const vm = async (guest: string, tapName: string, index: number): Promise<TestVm> => {
      const base = 4 * (index - 1);
      const gatewayIp = `10.0.0.${base + 1}`;
      const guestIp = `10.0.0.${base + 2}`;
      const guestMac = `06:00:0a:00:00:0${base + 2}`;
      await ip('-n', host, 'link', 'add', tapName, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', guest);
      await ip('-n', host, 'addr', 'add', `${gatewayIp}/30`, 'dev', tapName);
      await ip('-n', host, 'link', 'set', tapName, 'up');
      await ip('-n', guest, 'link', 'set', 'eth0', 'address', guestMac);
      await ip('-n', guest, 'addr', 'add', `${guestIp}/30`, 'dev', 'eth0');
      await ip('-n', guest, 'link', 'set', 'eth0', 'up');
      await ip('-n', guest, 'route', 'add', 'default', 'via', gatewayIp);
      return {
        namespace: guest,
        gatewayIp,
        target: { tapName, guestIp, guestMac, dnsServers: ['198.51.100.2'] },
      };
    };
    const vm1 = await vm(names.guest1, 'tap-vm1', 1);
    const vm2 = await vm(names.guest2, 'tap-vm2', 2);

    await ip('-n', host, 'link', 'add', 'uplink', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', internet);
    await ip('-n', host, 'addr', 'add', '198.51.100.1/24', 'dev', 'uplink');
    await ip('-n', host, 'link', 'set', 'uplink', 'up');
    await ip('-n', internet, 'addr', 'add', '198.51.100.2/24', 'dev', 'eth0');
    await ip('-n', internet, 'link', 'set', 'eth0', 'up');
    for (const address of ['192.168.77.2/32', '169.254.169.254/32']) {
      await ip('-n', internet, 'addr', 'add', address, 'dev', 'lo');
      await ip('-n', host, 'route', 'add', address, 'via', '198.51.100.2');
    }
    await ip('-n', internet, 'route', 'add', '10.0.0.0/24', 'via', '198.51.100.1');

    const reset = async () => {
      // The test's own namespace: flushing its ruleset removes our table and any foreign one a test loaded.
      await nft(host, 'flush', 'ruleset');
      for (const { namespace, target, gatewayIp } of [vm1, vm2]) {
        // Spoofing tests add addresses and change the MAC; the host may have learnt the spoofed MAC.
        await ip('-4', '-n', namespace, 'addr', 'flush', 'dev', 'eth0');
        await ip('-n', namespace, 'link', 'set', 'eth0', 'address', target.guestMac);
        await ip('-n', namespace, 'addr', 'add', `${target.guestIp}/30`, 'dev', 'eth0');
        await ip('-n', namespace, 'route', 'replace', 'default', 'via', gatewayIp);
        await ip('-n', host, 'neigh', 'flush', 'dev', target.tapName);
      }
    };

    return {
      host,
      internet,
      vm1,
      vm2,
      publicIp: '198.51.100.2',
      privateIp: '192.168.77.2',
      metadataIp: '169.254.169.254',
      hostUplinkIp: '198.51.100.1',
      reset,
      destroy,
    };
  } catch (error) {
    await destroy();
    throw error;
  }
}

// ─── Servers and probes ───

const serverProgram = `
const net = require('node:net');
const dgram = require('node:dgram');
const { tcp = [], udp = [] } = JSON.parse(process.argv[1]);
let pending = tcp.length + udp.length;
const ready = () => { if (--pending === 0) console.log('ready'); };
for (const port of tcp) {
  net.createServer((socket) => {
    console.log(JSON.stringify({ protocol: 'tcp', port, from: socket.remoteAddress.replace('::ffff:', '') }));
    socket.end('hello');
    socket.on('error', () => {});
  }).listen(port, '0.0.0.0', ready);
}
for (const port of udp) {
  const socket = dgram.createSocket('udp4');
  socket.on('message', (message, remote) => {
    console.log(JSON.stringify({ protocol: 'udp', port, from: remote.address }));
    socket.send('hello', remote.port, remote.address);
  });
  socket.bind(port, '0.0.0.0', ready);
}
if (pending === 0) console.log('ready');
`;

export interface SeenPacket {
  protocol: 'tcp' | 'udp';
  port: number;
  from: string;
}

export interface Server {
  /** What reached the server so far: connections (tcp) and datagrams (udp). */
  seen: SeenPacket[];
  stop(): void;
}

/** Starts echo servers on all addresses of `namespace`; resolves once they listen. */
export async function startServer(
  topology: Topology,
  namespace: string,
  ports: { tcp?: number[]; udp?: number[] },
): Promise<Server> {
  const child = spawn(
    'ip',
    ['netns', 'exec', namespace, process.execPath, '-e', serverProgram, JSON.stringify(ports)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const seen: SeenPacket[] = [];
  const lines = createInterface({ input: child.stdout! });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`server in ${namespace} exited with ${code}`)));
    lines.on('line', (line) => {
      if (line === 'ready') resolve();
      else seen.push(JSON.parse(line) as SeenPacket);
    });
  });
  const stop = () => child.kill('SIGKILL');
  const destroy = topology.destroy;
  topology.destroy = async () => {
    stop();
    await destroy();
  };
  return { seen, stop };
}

export interface Flow {
  protocol: 'tcp' | 'udp';
  host: string;
  port: number;
  /** Source address to bind (a spoofing guest binds an address that is not its own). */
  from?: string;
}

export type FlowResult = 'connected' | 'refused' | 'timeout';

const probeProgram = `
const net = require('node:net');
const dgram = require('node:dgram');
const { flows, timeoutMs } = JSON.parse(process.argv[1]);
const probe = (flow) => new Promise((resolve) => {
  const timer = setTimeout(() => { done('timeout'); }, timeoutMs);
  let finished = false;
  let cleanup = () => {};
  const done = (result) => { if (finished) return; finished = true; clearTimeout(timer); cleanup(); resolve(result); };
  if (flow.protocol === 'tcp') {
    const socket = net.connect({ host: flow.host, port: flow.port, ...(flow.from ? { localAddress: flow.from } : {}) });
    cleanup = () => socket.destroy();
    socket.on('data', (data) => { if (String(data).includes('hello')) done('connected'); });
    socket.on('error', (error) => done(error.code === 'ECONNREFUSED' ? 'refused' : 'timeout'));
  } else {
    const socket = dgram.createSocket('udp4');
    cleanup = () => socket.close();
    socket.on('message', () => done('connected'));
    socket.on('error', () => done('timeout'));
    socket.bind({ port: 0, ...(flow.from ? { address: flow.from } : {}) }, () => {
      socket.send('ping', flow.port, flow.host);
    });
  }
});
Promise.all(flows.map(probe)).then((results) => console.log(JSON.stringify(results)));
`;

/**
 * Tries every flow from `namespace` at once; a dropped flow ends as 'timeout'. The wait also bounds flows that
 * must connect (the server runs in another process, slow to be scheduled on a loaded host); flows run in
 * parallel, so a call costs one wait at most.
 */
export async function probe(namespace: string, flows: Flow[], timeoutMs = 3000): Promise<FlowResult[]> {
  const { stdout } = await execa('ip', [
    'netns',
    'exec',
    namespace,
    process.execPath,
    '-e',
    probeProgram,
    JSON.stringify({ flows, timeoutMs }),
  ]);
  return JSON.parse(stdout) as FlowResult[];
}

/**
 * One ICMP echo from `namespace` (iputils `ping`): 'connected' when the reply came back within 2 s.
 * Dropped pings cost that wait, so callers run them in parallel.
 */
export async function ping(namespace: string, address: string): Promise<FlowResult> {
  const result = await execa('ip', ['netns', 'exec', namespace, 'ping', '-c', '1', '-W', '2', address], {
    reject: false,
  });
  // iputils: 0 a reply, 1 none. `ip netns exec` also exits 1 when there is no `ping` to run, so a miss counts
  // only with ping's own summary.
  if (result.exitCode === 0) return 'connected';
  if (result.exitCode === 1 && /1 packets transmitted, 0 (packets )?received/.test(result.stdout))
    return 'timeout';
  throw new Error(`ping in ${namespace} failed (${result.exitCode}): ${result.stderr} (needs iputils-ping)`);
}

/** Whether `ping` is installed (Debian: iputils-ping). */
export async function pingInstalled(): Promise<boolean> {
  const result = await execa('ping', ['-V'], { reject: false });
  return result.exitCode === 0;
}

export { inNamespace };
