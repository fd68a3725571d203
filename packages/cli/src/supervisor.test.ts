import { HookError, MicrovmError, ValidationError } from '@microvm/core';
import { describe, expect, it } from 'vitest';
import { fakeComposedProvider } from './__fixtures__/fake-provider.js';
import { exitCodeOf } from './output.js';
import {
  deserializeError,
  type ParentMessage,
  runSupervisor,
  type SupervisorChannel,
  type SupervisorMessage,
  type SupervisorRequest,
  serializeError,
} from './supervisor.js';

const request: SupervisorRequest = {
  kind: 'create',
  vmId: 'web-1',
  stateDir: '/var/lib/microvm',
  firecracker: { path: '/sim/firecracker.js', source: 'simulator' },
  input: { kernel: '/img/vmlinux', rootfs: '/img/rootfs.ext4' },
};

function fakeChannel() {
  const sent: SupervisorMessage[] = [];
  let onMessage: ((message: ParentMessage) => void) | undefined;
  let onDisconnect: (() => void) | undefined;
  let disconnected = false;
  const channel: SupervisorChannel = {
    send: (message) => sent.push(structuredClone(message)),
    onMessage: (listener) => {
      onMessage = listener;
    },
    onDisconnect: (listener) => {
      onDisconnect = listener;
    },
    disconnect: () => {
      disconnected = true;
      onDisconnect?.();
    },
  };
  return {
    channel,
    sent,
    parentSends: (message: ParentMessage) => onMessage?.(message),
    parentLeaves: () => onDisconnect?.(),
    get disconnected() {
      return disconnected;
    },
  };
}

describe('runSupervisor', () => {
  it('should create the VM, forward its events, report running, stop watching it and wait for the VMM', async () => {
    const composed = fakeComposedProvider();
    const ipc = fakeChannel();
    const waited: number[] = [];
    const done = runSupervisor(ipc.channel, {
      openProvider: () => composed,
      env: {},
      waitForProcessExit: async (pid) => {
        waited.push(pid);
      },
    });
    ipc.parentSends({ type: 'start', request });
    expect(await done).toBe(0);
    expect(ipc.sent.map((message) => message.type)).toEqual(['event', 'event', 'event', 'running']);
    expect(ipc.sent.at(-1)).toMatchObject({ type: 'running', info: { vmId: 'web-1', state: 'running' } });
    expect(composed.fake.closed).toBe(true);
    expect(ipc.disconnected).toBe(true);
    // The in-memory VM has no pid: nothing to wait for.
    expect(waited).toEqual([]);
    expect((await composed.fake.get('web-1'))?.state).toBe('running');
  });

  it('should report a failed create with its code, and exit 1', async () => {
    const composed = fakeComposedProvider();
    await composed.fake.create('web-1', {
      bootSource: { kernelImagePath: '/k' },
      machine: { vcpuCount: 1, memSizeMib: 128 },
    });
    const ipc = fakeChannel();
    const done = runSupervisor(ipc.channel, {
      openProvider: () => composed,
      env: {},
      waitForProcessExit: async () => undefined,
    });
    ipc.parentSends({ type: 'start', request });
    expect(await done).toBe(1);
    expect(ipc.sent.at(-1)).toMatchObject({ type: 'failed', error: { code: 'ERR_MICROVM_VM_EXISTS' } });
    expect(composed.closedCount).toBe(1);
  });

  it('should create nothing when the parent is gone before it asked', async () => {
    const composed = fakeComposedProvider();
    const ipc = fakeChannel();
    const done = runSupervisor(ipc.channel, {
      openProvider: () => composed,
      env: {},
      waitForProcessExit: async () => undefined,
    });
    ipc.parentLeaves();
    expect(await done).toBe(1);
    expect(await composed.fake.list()).toEqual([]);
  });
});

describe('errors across the supervisor channel', () => {
  it.each([
    [new ValidationError({ field: 'vmId', rule: 'must be short', value: 'x' }), 2],
    [new MicrovmError({ code: 'ERR_MICROVM_SNAPSHOT_NOT_FOUND', message: 'no' }), 3],
    [new MicrovmError({ code: 'ERR_MICROVM_VM_EXISTS', message: 'taken' }), 4],
    [
      new MicrovmError({ code: 'ERR_MICROVM_PROCESS_EXITED', message: 'crashed', cause: new Error('vcpu') }),
      1,
    ],
    [new Error('plain'), 1],
    // A hook failure is judged by its cause: bad input inside a primitive stays exit code 2 across the channel.
    [
      new MicrovmError({
        code: 'ERR_MICROVM_HOOK_FAILED',
        message: 'network.prepare failed',
        cause: new ValidationError({ field: 'namespace', rule: 'must exist', value: 'nope' }),
      }),
      2,
    ],
  ])('should keep the exit code of %s', (error, exitCode) => {
    const back = deserializeError(structuredClone(serializeError(error)));
    expect(back.message).toBe(error.message);
    expect(exitCodeOf(back)).toBe(exitCode);
    expect(exitCodeOf(error)).toBe(exitCode);
  });
});

describe('exitCodeOf', () => {
  it.each([
    ['ERR_MICROVM_INVALID_INPUT', 2],
    ['ERR_MICROVM_VM_NOT_FOUND', 3],
    ['ERR_MICROVM_INVALID_STATE', 4],
    ['ERR_MICROVM_SNAPSHOT_EXISTS', 4],
    ['ERR_MICROVM_TIMEOUT', 1],
    ['ERR_MICROVM_ABORTED', 130],
  ])('should map %s to %i', (code, exitCode) => {
    expect(exitCodeOf(new MicrovmError({ code: code as 'ERR_MICROVM_TIMEOUT', message: code }))).toBe(
      exitCode,
    );
  });

  it('should judge a failed hook by its cause: bad input inside a hook is still exit code 2', () => {
    const cause = new ValidationError({ field: 'egress', rule: 'must be a preset', value: 'x' });
    expect(exitCodeOf(new HookError({ primitive: 'firewall', phase: 'prepare', vmId: 'a', cause }))).toBe(2);
    expect(
      exitCodeOf(new HookError({ primitive: 'network', phase: 'prepare', vmId: 'a', cause: new Error('x') })),
    ).toBe(1);
  });

  it('should call any failure interrupted once the user pressed Ctrl-C, unless it has a code of its own', () => {
    expect(exitCodeOf(new Error('aborted'), true)).toBe(130);
    expect(exitCodeOf(new MicrovmError({ code: 'ERR_MICROVM_VM_EXISTS', message: 'taken' }), true)).toBe(4);
  });
});
