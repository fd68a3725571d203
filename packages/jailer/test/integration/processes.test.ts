import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { VmEvent, VmPrimitive } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createJailSandbox, isAlive, type JailSandbox, processesOf } from './helpers.js';

const execFileAsync = promisify(execFile);

let sandbox: JailSandbox;

beforeEach(async () => {
  sandbox = await createJailSandbox();
});

afterEach(async () => {
  await sandbox.cleanup();
});

async function parentPidOf(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/^PPid:\s+(\d+)/m.exec(status)?.[1]);
}

const modes = [
  { name: 'plain (the jailer execs in place)', daemonize: false, newPidNamespace: false },
  { name: '--daemonize', daemonize: true, newPidNamespace: false },
  { name: '--new-pid-ns', daemonize: false, newPidNamespace: true },
  { name: '--daemonize --new-pid-ns', daemonize: true, newPidNamespace: true },
];

describe.each(modes)('the supervised process in mode $name', ({ daemonize, newPidNamespace }) => {
  it('should be Firecracker from the pid file, survive the jailer exiting, and be gone after stop, kill and destroy', async () => {
    const provider = sandbox.provider({ jailer: { daemonize, newPidNamespace } });
    const events: VmEvent[] = [];
    provider.onEvent((event) => events.push(event));
    const ends = ['stop', 'kill', 'destroy'] as const;
    for (const end of ends) {
      const vmId = `mode-${end}`;
      const vm = await provider.create(vmId, sandbox.spec());
      const jail = vm.facts.jail;
      const pidFromFile = Number(await readFile(join(jail?.rootDir ?? '', 'firecracker.js.pid'), 'utf8'));
      expect(vm.pid).toBe(pidFromFile);
      expect(isAlive(vm.pid)).toBe(true);
      const parent = await parentPidOf(vm.pid ?? 0);
      if (daemonize || newPidNamespace) {
        // The process we spawned was the jailer, which exited: Firecracker is someone else's child now.
        expect(parent).not.toBe(process.pid);
      } else {
        expect(parent).toBe(process.pid);
      }
      // The jailer's exit was not taken for the VM's: the VM is still running and answers.
      const client = await provider.client(vmId);
      expect((await client.describeInstance()).state).toBe('Running');
      expect((await provider.get(vmId))?.state).toBe('running');

      if (end === 'stop') expect((await provider.stop(vmId)).vm.state).toBe('stopped');
      if (end === 'kill') expect((await provider.kill(vmId)).vm.state).toBe('stopped');
      if (end !== 'destroy') {
        expect(isAlive(vm.pid)).toBe(false);
        expect(await processesOf(vmId)).toEqual([]);
      }
      await provider.destroy(vmId);
      expect(isAlive(vm.pid)).toBe(false);
      expect(await processesOf(vmId)).toEqual([]);
      expect(existsSync(jail?.jailDir ?? '/nonexistent')).toBe(false);
    }
    expect(events.filter((event) => event.type === 'exit' && !event.expected)).toEqual([]);
  });
});

describe('jailer flags that reach the host', () => {
  it('should put Firecracker in cgroup v1 groups with the limits asked for, and remove them on destroy', async () => {
    const provider = sandbox.provider({
      jailer: {
        cgroupVersion: 1,
        parentCgroup: sandbox.parentCgroup,
        cgroups: {
          'memory.limit_in_bytes': String(256 * 1024 * 1024),
          'cpu.cfs_period_us': '100000',
          'cpu.cfs_quota_us': '50000',
        },
        resourceLimits: { maxOpenFiles: 1024, maxFileSizeBytes: 1024 * 1024 * 1024 },
      },
    });
    const vm = await provider.create('limited', sandbox.spec());
    const memoryDir = join('/sys/fs/cgroup/memory', sandbox.parentCgroup, 'limited');
    const cpuDir = join('/sys/fs/cgroup/cpu', sandbox.parentCgroup, 'limited');
    expect(vm.facts.jail?.cgroupDirs?.sort()).toEqual([cpuDir, memoryDir].sort());
    expect((await readFile(join(memoryDir, 'memory.limit_in_bytes'), 'utf8')).trim()).toBe(
      String(256 * 1024 * 1024),
    );
    expect((await readFile(join(cpuDir, 'cpu.cfs_quota_us'), 'utf8')).trim()).toBe('50000');
    const membership = await readFile(`/proc/${vm.pid}/cgroup`, 'utf8');
    expect(membership).toContain(`memory:/${sandbox.parentCgroup}/limited`);
    expect(membership).toContain(`cpu:/${sandbox.parentCgroup}/limited`);
    const limits = await readFile(`/proc/${vm.pid}/limits`, 'utf8');
    expect(limits).toMatch(/Max open files\s+1024\s+1024/);
    expect(limits).toMatch(/Max file size\s+1073741824\s+1073741824/);

    await provider.destroy('limited');
    expect(existsSync(memoryDir)).toBe(false);
    expect(existsSync(cpuDir)).toBe(false);
  });

  it('should write cgroup v2 limits when v2 has the memory controller', async (test) => {
    const controllers = await readFile('/sys/fs/cgroup/unified/cgroup.controllers', 'utf8').catch(() => '');
    if (!controllers.split(/\s+/).includes('memory')) {
      test.skip(
        `cgroup v2 here has controllers [${controllers.trim()}] without memory; enabling one would change the host's root cgroup.subtree_control`,
      );
      return;
    }
    const provider = sandbox.provider({
      jailer: {
        cgroupVersion: 2,
        parentCgroup: sandbox.parentCgroup,
        cgroups: { 'memory.max': '268435456' },
      },
    });
    const vm = await provider.create('limited-v2', sandbox.spec());
    const dir = vm.facts.jail?.cgroupDirs?.[0] ?? '';
    expect((await readFile(join(dir, 'memory.max'), 'utf8')).trim()).toBe('268435456');
    await provider.destroy('limited-v2');
    expect(existsSync(dir)).toBe(false);
  });

  it('should turn the launch network namespace into --netns and run Firecracker inside it', async () => {
    const namespace = `jl${process.pid}ns`;
    await execFileAsync('ip', ['netns', 'add', namespace]);
    try {
      const enterNamespace: VmPrimitive = {
        name: 'namespace',
        prepare: async (context) => {
          context.launch.networkNamespacePath = `/run/netns/${namespace}`;
        },
      };
      const provider = sandbox.provider({ primitives: [enterNamespace, sandbox.primitive()] });
      const vm = await provider.create('in-netns', sandbox.spec());
      const record = JSON.parse(await readFile(join(sandbox.stateDir, 'vms', 'in-netns', 'vm.json'), 'utf8'));
      expect(record.launch.networkNamespacePath).toBeUndefined();
      expect(record.launch.args).toContain('--netns');
      expect((await stat(`/proc/${vm.pid}/ns/net`)).ino).toBe((await stat(`/run/netns/${namespace}`)).ino);
      await provider.destroy('in-netns');
      expect(await processesOf('in-netns')).toEqual([]);
    } finally {
      await execFileAsync('ip', ['netns', 'delete', namespace]);
    }
  });
});
