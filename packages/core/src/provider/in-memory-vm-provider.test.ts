import { describe, expect, it } from 'vitest';
import type { VmSpec } from '../model/index.js';
import { InMemoryVmProvider } from './in-memory-vm-provider.js';
import type { VmEvent } from './types.js';

const spec: VmSpec = {
  bootSource: { kernelImagePath: '/images/vmlinux' },
  machine: { vcpuCount: 1, memSizeMib: 128 },
};

describe('InMemoryVmProvider', () => {
  it('should follow the same state machine as the Firecracker provider', async () => {
    const provider = new InMemoryVmProvider();
    const events: VmEvent[] = [];
    provider.onEvent((event) => events.push(event));
    expect((await provider.create('vm', spec, { start: false })).state).toBe('created');
    expect((await provider.start('vm')).state).toBe('running');
    expect((await provider.pause('vm')).state).toBe('paused');
    expect((await provider.resume('vm')).state).toBe('running');
    const snapshot = await provider.snapshot('vm', { snapshotId: 'snap' });
    expect((await provider.restore('clone', snapshot.snapshotId, { resume: false })).state).toBe('paused');
    expect((await provider.stop('vm')).how).toBe('graceful');
    await provider.destroy('vm');
    expect(await provider.get('vm')).toBeUndefined();
    expect((await provider.list()).map((vm) => vm.vmId)).toEqual(['clone']);
    const states = events.flatMap((event) =>
      event.vmId === 'vm' && event.type === 'state' ? [event.to] : [],
    );
    expect(states).toEqual(['creating', 'created', 'running', 'paused', 'running', 'stopped', 'destroyed']);
  });

  it.each([
    ['start', 'running'],
    ['snapshot', 'created'],
    ['pause', 'created'],
  ] as const)('should refuse %s from %s with ERR_MICROVM_INVALID_STATE', async (operation, state) => {
    const provider = new InMemoryVmProvider();
    await provider.create('vm', spec, { start: state === 'running' });
    await expect(provider[operation]('vm')).rejects.toMatchObject({ code: 'ERR_MICROVM_INVALID_STATE' });
  });

  it('should reject bad input and duplicates with typed errors', async () => {
    const provider = new InMemoryVmProvider();
    await expect(provider.create('bad_id', spec)).rejects.toMatchObject({
      code: 'ERR_MICROVM_INVALID_INPUT',
      field: 'vmId',
    });
    await provider.create('vm', spec);
    await expect(provider.create('vm', spec)).rejects.toMatchObject({ code: 'ERR_MICROVM_VM_EXISTS' });
    await expect(provider.destroy('ghost')).rejects.toMatchObject({ code: 'ERR_MICROVM_VM_NOT_FOUND' });
    await expect(provider.restore('x', 'ghost')).rejects.toMatchObject({
      code: 'ERR_MICROVM_SNAPSHOT_NOT_FOUND',
    });
  });

  it('should move a VM to failed when its VMM exits on its own', async () => {
    const provider = new InMemoryVmProvider();
    const exits: VmEvent[] = [];
    provider.onEvent((event) => event.type === 'exit' && exits.push(event));
    await provider.create('vm', spec);
    provider.simulateExit('vm', { exitCode: 1, stderrTail: 'vcpu failed' });
    expect((await provider.get('vm'))?.state).toBe('failed');
    expect(exits).toEqual([expect.objectContaining({ vmId: 'vm', exitCode: 1, expected: false })]);
    expect((await provider.stop('vm')).how).toBe('already-exited');
  });
});
