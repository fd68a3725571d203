import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { VmEvent } from '@microvm/core';
import { FirewallManager } from '@microvm/firewall';
import { firecrackerSimulatorPath } from '@microvm/simulator';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type BenchRow, measure, report, summarize } from '../../../bench/report.js';
import { type ComposedProvider, type ComposedVm, FirecrackerComposer } from '../src/index.js';

/**
 * A VM with network, firewall, vsock, console and shutdown, created and destroyed against the simulator inside a
 * network namespace this bench makes: one at a time (p50/p95, with the network and firewall hooks broken out
 * from the provider's `phase` events, beside the Firecracker docs' setup commands), then 100 at once (wall
 * time, errors, and everything left behind after destroy).
 */
const iterations = 30;
const warmup = 2;
const concurrentVms = 100;
const uplink = 'up0';
const suffix = process.pid.toString(36);
const hostNamespace = `bcmh${suffix}`;
const internetNamespace = `bcmi${suffix}`;
const namePrefix = 'bc';

const run = promisify(execFile);
const rows: BenchRow[] = [];
let dir: string;
let stateDir: string;
let kernel: string;
let rootfs: string;
const providers: ComposedProvider[] = [];

async function ipBatch(namespace: string, lines: string[]): Promise<void> {
  const child = run('ip', ['-n', namespace, '-batch', '-']);
  child.child.stdin?.end(`${lines.join('\n')}\n`);
  await child;
}

beforeAll(async () => {
  // Short: the API socket path (<stateDir>/vms/<id>/…) must stay within 107 bytes.
  dir = await mkdtemp(join(tmpdir(), 'bcm-'));
  stateDir = join(dir, 'state');
  kernel = join(dir, 'vmlinux');
  rootfs = join(dir, 'rootfs.ext4');
  await writeFile(kernel, 'not a real kernel');
  await writeFile(rootfs, Buffer.alloc(4096));
  // A "host" namespace whose default route leads through the uplink to an "internet" namespace, so NAT has an
  // uplink to masquerade out of; no packet leaves these namespaces.
  await run('ip', ['netns', 'add', hostNamespace]);
  await run('ip', ['netns', 'add', internetNamespace]);
  await ipBatch(hostNamespace, [
    'link set lo up',
    `link add name ${uplink} type veth peer name ${uplink} netns ${internetNamespace}`,
    `addr add 198.51.100.1/24 dev ${uplink}`,
    `link set ${uplink} up`,
    'route add default via 198.51.100.2',
  ]);
  await ipBatch(internetNamespace, [
    'link set lo up',
    `addr add 198.51.100.2/24 dev ${uplink}`,
    `link set ${uplink} up`,
  ]);
}, 60_000);

afterAll(async () => {
  try {
    report(
      'composer',
      `@microvm/composer: a composed VM (network + firewall + vsock + console + shutdown) on the simulator, ${iterations} one after another, then ${concurrentVms} at once`,
      rows,
    );
  } finally {
    for (const provider of providers) await provider.close().catch(() => undefined);
    // After a failed run: the VMMs this bench started (their command lines name our temp dir).
    for (const pid of dir ? await processesMentioning(dir) : []) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    for (const namespace of [hostNamespace, internetNamespace]) {
      await run('ip', ['netns', 'del', namespace]).catch(() => undefined);
    }
    if (dir) await rm(dir, { recursive: true, force: true });
  }
}, 60_000);

function composedProvider(): ComposedProvider {
  const provider = FirecrackerComposer.bare()
    .with('network', { namespace: hostNamespace, namePrefix, pool: '10.64.0.0/16' })
    .with('firewall', {})
    .with('vsock', {})
    .with('console', {})
    .with('shutdown', { ctrlAltDelGraceMs: 2000 })
    .provider({ stateDir, firecrackerBinary: firecrackerSimulatorPath });
  providers.push(provider);
  return provider;
}

interface RecordedEvents {
  /** Durations of the provider's `phase` events, by VM and phase (e.g. `prepare:network`, `teardown:firewall`). */
  phasesByVm: Map<string, Map<string, number>>;
  /** VMs whose VMM exited by itself with code 0: the guest honoured Ctrl-Alt-Del (no SIGTERM/SIGKILL). */
  cleanExits: Set<string>;
}

function recordEvents(provider: ComposedProvider): RecordedEvents {
  const recorded: RecordedEvents = { phasesByVm: new Map(), cleanExits: new Set() };
  provider.provider.onEvent((event: VmEvent) => {
    if (event.type === 'exit' && event.exitCode === 0 && event.signal === null) {
      recorded.cleanExits.add(event.vmId);
    }
    if (event.type !== 'phase') return;
    let phases = recorded.phasesByVm.get(event.vmId);
    if (!phases) {
      phases = new Map();
      recorded.phasesByVm.set(event.vmId, phases);
    }
    phases.set(event.phase, (phases.get(event.phase) ?? 0) + event.durationMs);
  });
  return recorded;
}

function phaseDuration(phases: Map<string, number> | undefined, phase: string): number {
  const duration = phases?.get(phase);
  if (duration === undefined) throw new Error(`No '${phase}' phase event was seen`);
  return duration;
}

/** Phase names in the order they were first seen (prepare hooks, spawn, …, teardown hooks). */
function phaseNames(phasesByVm: Map<string, Map<string, number>>): string[] {
  const names = new Set<string>();
  for (const phases of phasesByVm.values()) for (const name of phases.keys()) names.add(name);
  return [...names];
}

function ratio(numerator: number, denominator: number): number {
  return Number((numerator / denominator).toFixed(2));
}

/**
 * Pids of live processes whose command line contains `text`, or has an argument equal to one of `vmIds` (our
 * VMMs name their API socket under the state dir and get `--id <vmId>`).
 */
async function processesMentioning(text: string, vmIds: readonly string[] = []): Promise<number[]> {
  const ids = new Set(vmIds);
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const commandLine = await readFile(join('/proc', entry, 'cmdline'), 'utf8').catch(() => '');
    if (commandLine.includes(text) || commandLine.split('\0').some((argument) => ids.has(argument))) {
      pids.push(Number(entry));
    }
  }
  return pids;
}

/** Everything a destroyed VM could leave behind, counted. Every figure must be 0. */
async function leftovers(vmIds: readonly string[]): Promise<Record<string, number>> {
  const { stdout } = await run('ip', ['-n', hostNamespace, '-j', 'link', 'show']);
  const interfaces = (JSON.parse(stdout) as { ifname: string }[]).filter(
    (link) => link.ifname !== 'lo' && link.ifname !== uplink,
  );
  const firewalls = await new FirewallManager({ namespace: hostNamespace }).list();
  const vmFolders = await readdir(join(stateDir, 'vms')).catch(() => []);
  let leases = 0;
  const leasesDir = join(stateDir, 'leases');
  for (const pool of await readdir(leasesDir).catch(() => [])) {
    leases += (await readdir(join(leasesDir, pool)).catch(() => [])).length;
  }
  const processes = await processesMentioning(stateDir, vmIds);
  return {
    interfaces: interfaces.length,
    firewallVms: firewalls.length,
    vmFolders: vmFolders.length,
    leases,
    processes: processes.length,
  };
}

it('measures a composed VM one at a time, beside the docs’ host setup', async () => {
  const provider = composedProvider();
  const { phasesByVm, cleanExits } = recordEvents(provider);
  const vmIds: string[] = [];
  const created: number[] = [];
  const destroyed: number[] = [];
  const networkSetup: number[] = [];
  const firewallSetup: number[] = [];
  const networkTeardown: number[] = [];
  const firewallTeardown: number[] = [];
  await measure(
    iterations,
    async (iteration) => {
      const vmId = iteration < 0 ? `warm-${-iteration}` : `seq-${iteration}`;
      let started = performance.now();
      const vm: ComposedVm = await provider.create(vmId, { kernel, rootfs });
      const createMs = performance.now() - started;
      started = performance.now();
      await vm.destroy();
      const destroyMs = performance.now() - started;
      if (iteration < 0) return;
      const phases = phasesByVm.get(vmId);
      vmIds.push(vmId);
      created.push(createMs);
      destroyed.push(destroyMs);
      networkSetup.push(phaseDuration(phases, 'prepare:network'));
      firewallSetup.push(phaseDuration(phases, 'prepare:firewall'));
      networkTeardown.push(phaseDuration(phases, 'teardown:network'));
      firewallTeardown.push(phaseDuration(phases, 'teardown:firewall'));
    },
    { warmup },
  );
  const hostSetup = networkSetup.map((duration, index) => duration + firewallSetup[index]!);
  const hostTeardown = networkTeardown.map((duration, index) => duration + firewallTeardown[index]!);
  const reference = await referenceSequence();
  const hostSetupSummary = summarize(hostSetup);
  const hostTeardownSummary = summarize(hostTeardown);
  const referenceSetupSummary = summarize(reference.setup);
  const referenceTeardownSummary = summarize(reference.teardown);
  rows.push(
    { name: 'composed VM: create', figures: summarize(created) },
    { name: 'composed VM: destroy (graceful, Ctrl-Alt-Del)', figures: summarize(destroyed) },
    {
      name: 'composed VM: create + destroy',
      figures: summarize(created.map((duration, index) => duration + destroyed[index]!)),
    },
    { name: 'host setup: network + firewall hooks (phase events)', figures: hostSetupSummary },
    { name: '  prepare:network', figures: summarize(networkSetup) },
    { name: '  prepare:firewall', figures: summarize(firewallSetup) },
    { name: 'host teardown: network + firewall hooks (phase events)', figures: hostTeardownSummary },
    { name: '  teardown:network', figures: summarize(networkTeardown) },
    { name: '  teardown:firewall', figures: summarize(firewallTeardown) },
    { name: 'reference (docs, one process per command): setup', figures: referenceSetupSummary },
    { name: 'reference (docs, one process per command): teardown', figures: referenceTeardownSummary },
    {
      name: 'ratio setup p50 (hooks / reference)',
      figures: { value: ratio(hostSetupSummary.p50Ms, referenceSetupSummary.p50Ms) },
    },
    {
      name: 'ratio setup p95 (hooks / reference)',
      figures: { value: ratio(hostSetupSummary.p95Ms, referenceSetupSummary.p95Ms) },
    },
    {
      name: 'ratio teardown p50 (hooks / reference)',
      figures: { value: ratio(hostTeardownSummary.p50Ms, referenceTeardownSummary.p50Ms) },
    },
    {
      name: 'ratio teardown p95 (hooks / reference)',
      figures: { value: ratio(hostTeardownSummary.p95Ms, referenceTeardownSummary.p95Ms) },
    },
    {
      name: `destroys ending in a clean guest exit (of ${iterations})`,
      figures: { value: vmIds.filter((vmId) => cleanExits.has(vmId)).length },
    },
  );
  // Nothing may be left by sequential VMs either (the VMs of the concurrent run are counted separately).
  expect(await leftovers([])).toEqual({
    interfaces: 0,
    firewallVms: 0,
    vmFolders: 0,
    leases: 0,
    processes: 0,
  });
});

/**
 * Firecracker's network-setup.md for one more VM on a host (its /30, iptables-nft variant with per-VM rules so
 * the reverse is exact), one process per command, in the bench namespace. Forwarding is enabled once (a host
 * setting, like the network manager's once-per-host setup), outside the timing.
 */
async function referenceSequence(): Promise<{ setup: number[]; teardown: number[] }> {
  const inNamespace = ['netns', 'exec', hostNamespace];
  await run('ip', [...inNamespace, 'sysctl', '-q', '-w', 'net.ipv4.ip_forward=1']);
  const setup: number[] = [];
  const teardown: number[] = [];
  await measure(
    iterations,
    async (iteration) => {
      const index = iteration + warmup;
      const tap = `tap${index}`;
      const gateway = `172.16.${Math.floor((4 * index + 1) / 256)}.${(4 * index + 1) % 256}`;
      const guest = `172.16.${Math.floor((4 * index + 2) / 256)}.${(4 * index + 2) % 256}`;
      const rules = [
        ['-t', 'nat', '-A', 'POSTROUTING', '-o', uplink, '-s', guest, '-j', 'MASQUERADE'],
        ['-A', 'FORWARD', '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT'],
        ['-A', 'FORWARD', '-i', tap, '-o', uplink, '-j', 'ACCEPT'],
      ];
      let started = performance.now();
      await run('ip', ['-n', hostNamespace, 'tuntap', 'add', tap, 'mode', 'tap']);
      await run('ip', ['-n', hostNamespace, 'addr', 'add', `${gateway}/30`, 'dev', tap]);
      await run('ip', ['-n', hostNamespace, 'link', 'set', tap, 'up']);
      for (const rule of rules) await run('ip', [...inNamespace, 'iptables-nft', ...rule]);
      if (iteration >= 0) setup.push(performance.now() - started);
      started = performance.now();
      await run('ip', ['-n', hostNamespace, 'link', 'del', tap]);
      for (const rule of rules) {
        await run('ip', [
          ...inNamespace,
          'iptables-nft',
          ...rule.map((part) => (part === '-A' ? '-D' : part)),
        ]);
      }
      if (iteration >= 0) teardown.push(performance.now() - started);
    },
    { warmup },
  );
  return { setup, teardown };
}

it(`creates and destroys ${concurrentVms} composed VMs at once`, async () => {
  const provider = composedProvider();
  const { phasesByVm, cleanExits } = recordEvents(provider);
  const vmIds = Array.from({ length: concurrentVms }, (_, index) => `burst-${index}`);
  const createMs: number[] = [];
  let started = performance.now();
  const creates = await Promise.allSettled(
    vmIds.map(async (vmId) => {
      const vmStarted = performance.now();
      const vm = await provider.create(vmId, { kernel, rootfs });
      createMs.push(performance.now() - vmStarted);
      return vm;
    }),
  );
  const createWallMs = performance.now() - started;
  const vms = creates.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const createErrors = creates.filter((result) => result.status === 'rejected');
  started = performance.now();
  const destroys = await Promise.allSettled(vms.map((vm) => vm.destroy()));
  const destroyWallMs = performance.now() - started;
  const destroyErrors = destroys.filter((result) => result.status === 'rejected');
  // A VM whose create failed must have been rolled back; whatever remains counts as a leftover.
  const left = await leftovers(vmIds);
  const errorSamples = [...createErrors, ...destroyErrors].slice(0, 3).map((result) => String(result.reason));
  if (errorSamples.length > 0) process.stdout.write(`\nFirst errors:\n${errorSamples.join('\n')}\n`);
  const phaseRows: BenchRow[] = [];
  for (const phase of phaseNames(phasesByVm)) {
    const durations = vmIds.flatMap((vmId) => {
      const duration = phasesByVm.get(vmId)?.get(phase);
      return duration === undefined ? [] : [duration];
    });
    const summary = summarize(durations);
    // Hooks that do no I/O (console) take microseconds: rows of them would only stretch the summary chart.
    if (summary.p95Ms >= 1)
      phaseRows.push({ name: `${concurrentVms} at once: phase ${phase}`, figures: summary });
  }
  const count = (name: string, value: number): BenchRow => ({
    name: `${concurrentVms} at once: ${name}`,
    figures: { value },
  });
  rows.push(
    count('create wall time (ms)', Math.round(createWallMs)),
    count('destroy wall time (ms)', Math.round(destroyWallMs)),
    count('create + destroy wall time (ms)', Math.round(createWallMs + destroyWallMs)),
    ...(createMs.length > 0
      ? [{ name: `${concurrentVms} at once: each create`, figures: summarize(createMs) }]
      : []),
    ...phaseRows,
    count('VMs created', vms.length),
    count('create errors', createErrors.length),
    count('destroy errors', destroyErrors.length),
    count('destroys ending in a clean guest exit', vmIds.filter((vmId) => cleanExits.has(vmId)).length),
    ...Object.entries(left).map(([what, value]) => count(`leftover ${what}`, value)),
  );
  expect(createErrors.length + destroyErrors.length).toBe(0);
  expect(left).toEqual({ interfaces: 0, firewallVms: 0, vmFolders: 0, leases: 0, processes: 0 });
});
