import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, it } from 'vitest';
import { type BenchRow, measure, report, summarize } from '../../../bench/report.js';
import { NetworkManager, type NetworkMode } from '../src/index.js';

const run = promisify(execFile);
const iterations = 30;
const benchNamespace = `bnet${process.pid.toString(36)}`;
let stateDir: string;

async function ipBatch(namespace: string, lines: string[]): Promise<void> {
  const child = run('ip', ['-n', namespace, '-batch', '-']);
  child.child.stdin?.end(`${lines.join('\n')}\n`);
  await child;
}

beforeAll(async () => {
  stateDir = await mkdtemp(join(tmpdir(), 'mvnet-bench-'));
  await run('ip', ['netns', 'add', benchNamespace]);
  // An uplink with a default route, so NAT has somewhere to go; no traffic leaves the namespace.
  await ipBatch(benchNamespace, [
    'link set lo up',
    'link add name up0 type veth peer name up1',
    'addr add 198.51.100.1/24 dev up0',
    'link set up0 up',
    'link set up1 up',
    'route add default via 198.51.100.2',
  ]);
});

afterAll(async () => {
  await run('ip', ['netns', 'del', benchNamespace]).catch(() => undefined);
  await rm(stateDir, { recursive: true, force: true });
});

/** Setup and teardown of one VM at a time, `iterations` times. */
async function benchManager(mode: NetworkMode): Promise<BenchRow[]> {
  const network = new NetworkManager({
    mode,
    namespace: benchNamespace,
    stateDir,
    pool: mode === 'bridge' ? '10.210.0.0/24' : mode === 'routed' ? '10.211.0.0/24' : '10.212.0.0/24',
    namePrefix: mode.slice(0, 1),
  });
  await network.ensureHost();
  const setup: number[] = [];
  const teardown: number[] = [];
  await measure(
    iterations,
    async (iteration) => {
      const vmId = `bench-${iteration + 10}`;
      let started = performance.now();
      await network.attach(vmId);
      if (iteration >= 0) setup.push(performance.now() - started);
      started = performance.now();
      await network.detach(vmId);
      if (iteration >= 0) teardown.push(performance.now() - started);
    },
    { warmup: 2 },
  );
  await network.removeHostSetup();
  return [
    { name: `${mode}: setup (attach)`, figures: summarize(setup) },
    { name: `${mode}: teardown (detach)`, figures: summarize(teardown) },
  ];
}

/** Firecracker's network-setup.md, one command at a time (iptables-nft variant, per-VM rules). */
async function benchReference(): Promise<BenchRow[]> {
  const inNamespace = ['netns', 'exec', benchNamespace];
  const setup: number[] = [];
  const teardown: number[] = [];
  await run('ip', [...inNamespace, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  await measure(
    iterations,
    async (iteration) => {
      const index = iteration + 10;
      const tap = `tap${index}`;
      const gateway = `172.16.${Math.floor((4 * index + 1) / 256)}.${(4 * index + 1) % 256}`;
      const guest = `172.16.${Math.floor((4 * index + 2) / 256)}.${(4 * index + 2) % 256}`;
      const rules = [
        ['-t', 'nat', '-A', 'POSTROUTING', '-o', 'up0', '-s', guest, '-j', 'MASQUERADE'],
        ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
        ['-A', 'FORWARD', '-i', tap, '-o', 'up0', '-j', 'ACCEPT'],
      ];
      let started = performance.now();
      await run('ip', ['-n', benchNamespace, 'tuntap', 'add', tap, 'mode', 'tap']);
      await run('ip', ['-n', benchNamespace, 'addr', 'add', `${gateway}/30`, 'dev', tap]);
      await run('ip', ['-n', benchNamespace, 'link', 'set', tap, 'up']);
      for (const rule of rules) await run('ip', [...inNamespace, 'iptables-nft', ...rule]);
      if (iteration >= 0) setup.push(performance.now() - started);
      started = performance.now();
      await run('ip', ['-n', benchNamespace, 'link', 'del', tap]);
      for (const rule of rules) {
        await run('ip', [
          ...inNamespace,
          'iptables-nft',
          ...rule.map((part) => (part === '-A' ? '-D' : part)),
        ]);
      }
      if (iteration >= 0) teardown.push(performance.now() - started);
    },
    { warmup: 2 },
  );
  return [
    { name: 'reference (docs, one command at a time): setup', figures: summarize(setup) },
    { name: 'reference (docs, one command at a time): teardown', figures: summarize(teardown) },
  ];
}

it('measures per-VM network setup and teardown', async () => {
  const rows: BenchRow[] = [];
  for (const mode of ['routed', 'bridge', 'namespaced'] as const) rows.push(...(await benchManager(mode)));
  rows.push(...(await benchReference()));
  report('network', `@microvm/network: per-VM setup and teardown, ${iterations} VMs one after another`, rows);
});
