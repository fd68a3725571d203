import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { FirewallManager } from '@microvm/firewall';
import { guestStandIn } from '@microvm/network/testing';
import { firecrackerSimulatorPath } from '@microvm/simulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FirecrackerComposer } from '../../src/index.js';
import { createTestHost, leftoversOf, run, type TestHost } from './host.js';

/**
 * In the network's namespaced mode the VM's traffic reaches the real host through a veth pair, masqueraded:
 * the firewall must close the host on that side too, or `internet-only` would let the guest reach every
 * public address of the host. A veth stand-in plays the guest's NIC (the simulator has no guest).
 */
let host: TestHost;
const guestNamespace = `mcg${process.pid.toString(36)}`;
const servers: ChildProcess[] = [];

const SERVER = `
const net = require('node:net');
const server = net.createServer((socket) => { socket.on('error', () => {}); socket.end('hi'); });
server.listen(Number(process.argv[2]), process.argv[1], () => process.stdout.write('ready\\n'));
`;

const PROBE = `
const net = require('node:net');
const socket = net.connect({ host: process.argv[1], port: Number(process.argv[2]) });
socket.setTimeout(4000, () => { process.stdout.write('timeout'); process.exit(0); });
socket.on('connect', () => { process.stdout.write('connected'); socket.destroy(); });
socket.on('error', (error) => process.stdout.write(error.code ?? 'error'));
`;

async function serve(namespace: string, address: string, port: number): Promise<void> {
  const server = spawn(
    'ip',
    ['netns', 'exec', namespace, process.execPath, '-e', SERVER, address, String(port)],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  servers.push(server);
  await once(server.stdout!, 'data');
}

async function probe(address: string, port: number): Promise<string> {
  return run('ip', ['netns', 'exec', guestNamespace, process.execPath, '-e', PROBE, address, String(port)]);
}

beforeAll(async () => {
  host = await createTestHost('n');
  await run('ip', ['netns', 'add', guestNamespace]);
  await serve(host.namespace, '198.51.100.1', 7101);
  await serve(host.internetNamespace, '198.51.100.2', 7102);
});

afterAll(async () => {
  for (const server of servers) server.kill('SIGKILL');
  await run('ip', ['netns', 'del', guestNamespace]).catch(() => undefined);
  await host?.cleanup();
});

describe('the firewall with namespaced networking', () => {
  it('should keep the host closed to an internet-only VM and remove the host-side rules on destroy', async () => {
    const microvms = FirecrackerComposer.bare()
      .with('network', {
        mode: 'namespaced',
        namespace: host.namespace,
        namePrefix: 'mn',
        pool: '10.214.0.0/24',
        [guestStandIn]: () => guestNamespace,
      })
      .with('firewall', { tableName: host.tableName })
      .provider({
        stateDir: host.stateDir,
        firecrackerBinary: firecrackerSimulatorPath,
        socketReadyTimeoutMs: 30_000,
      });
    try {
      const vm = await microvms.create('ns-fw', {
        kernel: host.kernel,
        rootfs: host.rootfs,
        egress: 'internet-only',
      });
      expect(vm.network?.hostLink?.namespace).toBe(host.namespace);
      expect(await probe('198.51.100.2', 7102)).toBe('connected');
      expect(await probe('198.51.100.1', 7101)).toBe('timeout');
      const hostSide = new FirewallManager({ namespace: host.namespace, tableName: host.tableName });
      expect((await hostSide.list()).map((installed) => installed.vmId)).toEqual(['ns-fw']);
      await vm.destroy();
      expect(await hostSide.list()).toEqual([]);
    } finally {
      await microvms.provider.destroy('ns-fw').catch(() => undefined);
      await microvms.close();
    }
    expect(await leftoversOf(host, 'ns-fw')).toEqual([]);
  });
});
