import { once } from 'node:events';
import { stat } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { FirewallManager } from '@microvm/firewall';
import { firecrackerSimulatorPath, jailerSimulatorPath } from '@microvm/simulator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FirecrackerComposer } from '../../src/index.js';
import { PRIMITIVE_NAMES, type PrimitiveName } from '../../src/types.js';
import { createTestHost, leftoversOf, run, type TestHost } from './host.js';

let host: TestHost;

beforeAll(async () => {
  host = await createTestHost('c');
});

afterAll(async () => {
  await host?.cleanup();
});

/** The composer the tests use for a set of primitives: everything in the test's namespaces and folders. */
function composerFor(enabled: readonly PrimitiveName[]): FirecrackerComposer {
  let composer = FirecrackerComposer.bare();
  for (const name of enabled) {
    if (name === 'network')
      composer = composer.with('network', { namespace: host.namespace, namePrefix: 'mc' });
    if (name === 'firewall') composer = composer.with('firewall', { tableName: host.tableName });
    if (name === 'vsock') composer = composer.with('vsock', {});
    if (name === 'console') composer = composer.with('console', {});
    if (name === 'shutdown') composer = composer.with('shutdown', { ctrlAltDelGraceMs: 20_000 });
    if (name === 'jailer') {
      composer = composer.with('jailer', {
        jailerBinary: jailerSimulatorPath,
        chrootBaseDir: host.chrootBaseDir,
        parentCgroup: host.parentCgroup,
      });
    }
  }
  return composer;
}

function providerFor(enabled: readonly PrimitiveName[]) {
  return composerFor(enabled).provider({
    stateDir: host.stateDir,
    firecrackerBinary: firecrackerSimulatorPath,
    socketReadyTimeoutMs: 15_000,
  });
}

async function echo(socket: Socket, text: string): Promise<string> {
  socket.write(text);
  const [reply] = (await once(socket, 'data')) as [Buffer];
  socket.destroy();
  return reply.toString('utf8');
}

/** All 64 subsets of the primitives, named by what is on. */
const combinations = Array.from({ length: 2 ** PRIMITIVE_NAMES.length }, (_, mask) => {
  const enabled = PRIMITIVE_NAMES.filter((_, bit) => (mask & (1 << bit)) !== 0);
  return { mask, enabled, label: enabled.length === 0 ? 'bare' : enabled.join('+') };
});

describe('every combination of primitives against the simulator', () => {
  it.each(combinations)(
    'should create, run and destroy a VM with $label and leave nothing',
    async ({ mask, enabled }) => {
      const on = (name: PrimitiveName) => enabled.includes(name);
      const microvms = providerFor(enabled);
      const vmId = `combo-${mask}`;
      try {
        const vm = await microvms.create(vmId, { kernel: host.kernel, rootfs: host.rootfs });
        expect((await vm.info()).state).toBe('running');

        expect(vm.network !== undefined).toBe(on('network'));
        if (vm.network) {
          const links = await run('ip', ['-n', host.namespace, '-o', 'link', 'show', vm.network.tapName]);
          expect(links).toContain(vm.network.tapName);
        }
        const withFirewall = on('firewall') && on('network');
        expect(vm.firewall !== undefined).toBe(withFirewall);
        const installed = await new FirewallManager({
          namespace: host.namespace,
          tableName: host.tableName,
        }).list();
        expect(installed.map((entry) => entry.vmId)).toEqual(withFirewall ? [vmId] : []);

        expect(vm.vsock !== undefined).toBe(on('vsock'));
        if (vm.vsock)
          expect(await echo(await vm.vsock.connect(5000, { timeoutMs: 10_000 }), 'ping')).toBe('ping');

        expect(vm.console !== undefined).toBe(on('console'));
        if (vm.console) {
          const ready = await vm.console.waitForLine(/microvm-simulator: guest ready/, { timeoutMs: 10_000 });
          expect(ready).toContain('guest ready');
        }

        expect(vm.facts.jail !== undefined).toBe(on('jailer'));
        if (vm.facts.jail) expect((await stat(vm.facts.jail.rootDir)).isDirectory()).toBe(true);

        // With the shutdown primitive the guest is asked to stop (and honours it); without it the VMM is killed.
        const stopped = await vm.shutdown();
        expect(stopped.how).toBe(on('shutdown') ? 'graceful' : 'killed');
        await vm.destroy();
        expect(await microvms.get(vmId)).toBeUndefined();
      } finally {
        await microvms.provider.destroy(vmId).catch(() => undefined);
        await microvms.close();
      }
      expect(await leftoversOf(host, vmId)).toEqual([]);
    },
  );
});

describe('rollback and handles', () => {
  it('should remove what the earlier primitives set up when the last one fails', async () => {
    const microvms = composerFor(PRIMITIVE_NAMES)
      .with('jailer', { chrootBaseDir: host.chrootBaseDir, jailerBinary: '/nonexistent/jailer' })
      .provider({ stateDir: host.stateDir, firecrackerBinary: firecrackerSimulatorPath });
    try {
      await expect(
        microvms.create('rollback-1', { kernel: host.kernel, rootfs: host.rootfs, egress: 'internet-only' }),
      ).rejects.toMatchObject({ name: expect.stringMatching(/Error$/) });
    } finally {
      await microvms.close();
    }
    expect(await leftoversOf(host, 'rollback-1')).toEqual([]);
  });

  it('should give a working handle to a VM created by another provider on the same state directory', async () => {
    const enabled = ['network', 'firewall', 'vsock', 'console', 'shutdown'] as const;
    const first = providerFor(enabled);
    const second = providerFor(enabled);
    try {
      await first.create('shared-1', { kernel: host.kernel, rootfs: host.rootfs, egress: 'deny-all' });
      const vm = await second.get('shared-1');
      expect(vm?.network?.tapName).toMatch(/^mc/);
      // The second provider did not prepare it: vsock goes by the recorded facts.
      expect(await echo(await vm!.vsock!.connect(5000, { timeoutMs: 10_000 }), 'hello')).toBe('hello');
      await vm!.firewall!.update('internet-only');
      await vm!.destroy();
      expect(await first.get('shared-1')).toBeUndefined();
    } finally {
      await first.provider.destroy('shared-1').catch(() => undefined);
      await first.close();
      await second.close();
    }
    expect(await leftoversOf(host, 'shared-1')).toEqual([]);
  });

  it('should keep the egress of the first create when a duplicate races it, check egress first, and give a restore its own', async () => {
    const microvms = providerFor(['network', 'firewall']);
    const image = { kernel: host.kernel, rootfs: host.rootfs };
    const table = () =>
      run('ip', ['netns', 'exec', host.namespace, 'nft', 'list', 'table', 'inet', host.tableName]);
    try {
      // A bad policy is refused before the network primitive leases or creates anything.
      await expect(
        microvms.create('bad-egress', { ...image, egress: { preset: 'open-sesame' as never } }),
      ).rejects.toMatchObject({ code: 'ERR_MICROVM_INVALID_INPUT' });
      expect(await leftoversOf(host, 'bad-egress')).toEqual([]);

      const [first, duplicate] = await Promise.allSettled([
        microvms.create('race-1', {
          ...image,
          egress: { allow: [{ cidr: '198.51.100.2', protocol: 'tcp', port: 8081 }] },
        }),
        microvms.create('race-1', { ...image, egress: 'allow-all' }),
      ]);
      expect(first.status).toBe('fulfilled');
      expect(duplicate).toMatchObject({ status: 'rejected', reason: { code: 'ERR_MICROVM_VM_EXISTS' } });
      expect(await table()).toContain('8081');

      // The policy is not in the snapshot: the restore names its own.
      await microvms.provider.snapshot('race-1', { snapshotId: 'race-snap' });
      await microvms.provider.destroy('race-1');
      await microvms.restore('race-2', 'race-snap', {
        egress: { allow: [{ cidr: '198.51.100.2', protocol: 'tcp', port: 9091 }] },
      });
      const rules = await table();
      expect(rules).toContain('9091');
      expect(rules).not.toContain('8081');
      await microvms.provider.destroy('race-2');
      await microvms.provider.deleteSnapshot('race-snap');
    } finally {
      for (const vmId of ['race-1', 'race-2']) await microvms.provider.destroy(vmId).catch(() => undefined);
      await microvms.provider.deleteSnapshot('race-snap').catch(() => undefined);
      await microvms.close();
    }
    expect(await leftoversOf(host, 'race-1')).toEqual([]);
    expect(await leftoversOf(host, 'race-2')).toEqual([]);
  });

  it('should apply the egress given to create() and refuse one without a firewall', async () => {
    const microvms = providerFor(['network', 'firewall']);
    try {
      await microvms.create('egress-1', {
        kernel: host.kernel,
        rootfs: host.rootfs,
        egress: { preset: 'deny-all', allow: [{ cidr: '198.51.100.2', protocol: 'tcp', port: 8080 }] },
      });
      const chains = await run('ip', [
        'netns',
        'exec',
        host.namespace,
        'nft',
        'list',
        'table',
        'inet',
        host.tableName,
      ]);
      expect(chains).toContain('198.51.100.2');
      expect(chains).toContain('8080');
      await microvms.provider.destroy('egress-1');
    } finally {
      await microvms.provider.destroy('egress-1').catch(() => undefined);
      await microvms.close();
    }
    const bare = providerFor(['network']);
    await expect(
      bare.create('egress-2', { kernel: host.kernel, rootfs: host.rootfs, egress: 'deny-all' }),
    ).rejects.toMatchObject({ field: 'egress' });
    await bare.close();
    expect(await leftoversOf(host, 'egress-1')).toEqual([]);
    expect(await leftoversOf(host, 'egress-2')).toEqual([]);
  });
});
