import { randomBytes } from 'node:crypto';
import { access } from 'node:fs/promises';
import type { ComposedVm } from '@microvm/composer';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { mustRun, runCommand } from '../src/commands.js';
import { echoOver, tcpEchoFrom } from '../src/echo.js';
import { E2eHarness } from '../src/harness.js';
import { compareHostStates, type HostState } from '../src/host-state.js';

// One scenario code path for both VMMs: only the harness differs (see src/harness.ts).
const target = inject('e2eTarget');
const harness = new E2eHarness(target);
let hostBefore: HostState;
/** With MICROVM_E2E_RESTORE_CLONES: the ready guest every later scenario is restored from. */
let baseSnapshotId: string | undefined;

beforeAll(async () => {
  await harness.setUp();
  hostBefore = await harness.captureHostState();
});

afterAll(async () => {
  const problems = await harness.tearDown();
  if (problems.length > 0) throw new Error(`The suite could not clean up:\n${problems.join('\n')}`);
});

function payload(what: string): string {
  return `microvm-e2e ${what} ${randomBytes(6).toString('hex')}\n`;
}

/** Cold-boots a VM with every primitive and waits for the guest's ready line on its console. */
async function bootVm(name: string): Promise<ComposedVm> {
  const vm = await harness.microvms.create(harness.vmId(name), harness.vmInput);
  harness.recordFacts(vm.vmId, vm.facts);
  expect(vm.console, 'the console primitive captures the serial console').toBeDefined();
  await vm.console!.waitForLine(target.readyLine, { timeoutMs: target.bootTimeoutMs });
  return vm;
}

/** Restores a clone from a snapshot, resumed; its guest is ready once its services answer. */
async function restoreVm(name: string, snapshotId: string): Promise<ComposedVm> {
  const vm = await harness.microvms.restore(harness.vmId(name), snapshotId, { resume: true });
  harness.recordFacts(vm.vmId, vm.facts);
  return vm;
}

/** A guest for one scenario: cold-booted, or with MICROVM_E2E_RESTORE_CLONES a clone of the ready base. */
function guestFor(name: string): Promise<ComposedVm> {
  return baseSnapshotId === undefined ? bootVm(name) : restoreVm(name, baseSnapshotId);
}

async function expectVsockEcho(vm: ComposedVm): Promise<void> {
  expect(vm.vsock, 'the vsock primitive gives the VM a device').toBeDefined();
  const socket = await vm.vsock!.connect(target.vsockEchoPort, { timeoutMs: target.bootTimeoutMs });
  const sent = payload(`vsock ${vm.vmId}`);
  expect(await echoOver(socket, sent, target.bootTimeoutMs)).toBe(sent);
}

/**
 * From the namespace holding the guest's host-side interface (the "host" as far as this guest is concerned; in
 * namespaced mode, the VM's own namespace) to the guest's address, as any host program would connect.
 */
async function expectNetworkEcho(vm: ComposedVm): Promise<void> {
  expect(vm.network, 'the network primitive gives the VM an interface').toBeDefined();
  const sent = payload(`tcp ${vm.vmId}`);
  const echoed = await tcpEchoFrom({
    namespace: vm.network!.namespace,
    host: vm.network!.guestIp,
    port: target.guestTcpPort,
    payload: sent,
    timeoutMs: target.bootTimeoutMs,
  });
  expect(echoed).toBe(sent);
}

describe(`a composed VM against ${target.vmm}`, () => {
  it('should boot with network, firewall, vsock, console, jailer and shutdown, and report ready', async () => {
    const vm = await bootVm('boot');
    const info = await vm.info();
    expect(info.state).toBe('running');
    expect(vm.facts.network).toMatchObject({ mode: 'namespaced', guestIp: expect.any(String) });
    expect(vm.facts.firewall).toBeDefined();
    expect(vm.facts.vsock?.guestCid).toBeGreaterThanOrEqual(3);
    expect(vm.facts.jail?.rootDir).toContain(harness.chrootBaseDir);
    expect(vm.firewall).toBeDefined();
    // The firewall's rules live where the guest's interface is: the VM's own namespace.
    const tables = await mustRun('ip', ['netns', 'exec', vm.network!.namespace!, 'nft', 'list', 'tables']);
    expect(tables).toContain('table inet microvm');

    if (target.restoreClones) {
      const snapshot = await vm.snapshot({ snapshotId: harness.vmId('base') });
      baseSnapshotId = snapshot.snapshotId;
    }
    const stopped = await vm.shutdown();
    // The shutdown primitive's ladder: Ctrl-Alt-Del makes the guest reboot, and reboot=k ends Firecracker.
    // Firecracker has no Ctrl-Alt-Del on aarch64: there the ladder's SIGTERM ends it.
    expect(stopped.how).toBe(process.arch === 'x64' ? 'graceful' : 'terminated');
    await vm.destroy();
    expect(await harness.microvms.get(vm.vmId)).toBeUndefined();
  });

  it('should reach the guest over vsock', async () => {
    await using vm = await guestFor('vsock');
    await expectVsockEcho(vm);
  });

  it('should reach the guest over the network, through its firewall', async () => {
    await using vm = await guestFor('net');
    await expectNetworkEcho(vm);
  });

  it('should pause and resume the guest', async () => {
    await using vm = await guestFor('pause');
    await expectVsockEcho(vm);
    expect((await vm.pause()).state).toBe('paused');
    expect((await vm.info()).state).toBe('paused');
    expect((await vm.resume()).state).toBe('running');
    await expectVsockEcho(vm);
    await expectNetworkEcho(vm);
  });

  it('should snapshot a VM and run a clone of it next to the original', async () => {
    await using original = await guestFor('original');
    await expectVsockEcho(original);
    const snapshot = await original.snapshot({ snapshotId: harness.vmId('snap') });
    expect((await original.info()).state).toBe('running');
    await using clone = await restoreVm('clone', snapshot.snapshotId);
    expect((await clone.info()).state).toBe('running');

    // Side by side: each has its own vsock socket and network namespace, the guest's address is the same.
    expect(clone.facts.vsock?.hostUdsPath).not.toBe(original.facts.vsock?.hostUdsPath);
    expect(clone.network?.namespace).not.toBe(original.network?.namespace);
    expect(clone.network?.guestIp).toBe(original.network?.guestIp);
    await expectVsockEcho(clone);
    await expectNetworkEcho(clone);
    await expectVsockEcho(original);
    await expectNetworkEcho(original);

    await clone.destroy();
    await original.destroy();
    await harness.microvms.provider.deleteSnapshot(snapshot.snapshotId);
  });

  it('should destroy everything and leave the host as it was', async () => {
    const { provider } = harness.microvms;
    for (const vm of await provider.list()) await provider.destroy(vm.vmId);
    for (const snapshot of await provider.listSnapshots()) await provider.deleteSnapshot(snapshot.snapshotId);
    expect(await provider.list()).toEqual([]);
    expect(await provider.listSnapshots()).toEqual([]);
    await harness.closeProvider();

    const hostAfter = await harness.captureHostState();
    // Kept on purpose, once per host namespace: the network's NAT table for its pool (until
    // NetworkManager.removeHostSetup()) and the firewall's table, which holds the host side of each namespaced
    // VM's rules. Everything per VM must be gone, from that table too.
    expect(
      compareHostStates(hostBefore, hostAfter, {
        hostNftTables: ['table ip microvm-nat', 'table inet microvm'],
      }),
    ).toEqual([]);
    const firewallTable = await runCommand('ip', [
      'netns',
      'exec',
      harness.hostNamespace,
      'nft',
      'list',
      'table',
      'inet',
      'microvm',
    ]);
    for (const vmId of harness.recordedFacts.keys())
      expect(firewallTable.stdout).not.toContain(`vm-${vmId}-`);

    const leftovers: string[] = [];
    for (const [vmId, facts] of harness.recordedFacts) {
      const paths = [
        facts.jail?.jailDir,
        ...(facts.jail?.cgroupDirs ?? []),
        facts.vsock?.hostUdsPath,
        facts.network?.namespace && `/run/netns/${facts.network.namespace}`,
      ];
      for (const path of paths) {
        if (
          path &&
          (await access(path).then(
            () => true,
            () => false,
          ))
        )
          leftovers.push(`${vmId}: ${path}`);
      }
    }
    expect(leftovers).toEqual([]);
    // boot, vsock, net, pause, original and clone: each was checked above.
    expect(harness.recordedFacts.size).toBe(6);
  });
});
