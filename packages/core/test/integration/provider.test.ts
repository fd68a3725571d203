import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  FirecrackerVmProvider,
  type FirecrackerVmProviderOptions,
  MicrovmError,
  type VmEvent,
  type VmPrimitive,
} from '../../src/index.js';
import {
  childProcesses,
  createSandbox,
  isProcessAlive,
  type Sandbox,
  simulatorFirecracker,
} from './helpers.js';

const execFileAsync = promisify(execFile);

let sandbox: Sandbox;
const providers: FirecrackerVmProvider[] = [];

function newProvider(options: Partial<FirecrackerVmProviderOptions> = {}): FirecrackerVmProvider {
  const provider = new FirecrackerVmProvider({
    stateDir: sandbox.stateDir,
    firecrackerBinary: simulatorFirecracker,
    // 20 simulators may start at once on a loaded host: Node's start-up alone can take seconds there.
    socketReadyTimeoutMs: 30_000,
    ...options,
  });
  providers.push(provider);
  return provider;
}

beforeEach(async () => {
  sandbox = await createSandbox();
});

afterEach(async () => {
  // Whatever a test left running is killed and reaped here, so a failing test leaks nothing.
  for (const provider of providers.splice(0)) {
    for (const vm of await provider.list().catch(() => [])) {
      await provider.destroy(vm.vmId).catch(() => undefined);
    }
    await provider.close();
  }
  await sandbox.cleanup();
});

async function expectCode(promise: Promise<unknown>, code: string): Promise<MicrovmError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(MicrovmError.isInstance(error), `expected a MicrovmError ${code}, got ${String(error)}`).toBe(true);
  expect((error as MicrovmError).code).toBe(code);
  return error as MicrovmError;
}

describe('FirecrackerVmProvider against the simulator', () => {
  it('should run the full lifecycle and report each phase', async () => {
    const provider = newProvider();
    const events: VmEvent[] = [];
    provider.onEvent((event) => events.push(event));

    const created = await provider.create('vm-one', sandbox.spec());
    expect(created.state).toBe('running');
    expect(isProcessAlive(created.pid)).toBe(true);
    expect(existsSync(join(sandbox.stateDir, 'vms', 'vm-one', 'vm.json'))).toBe(true);

    const client = await provider.client('vm-one');
    expect((await client.describeInstance()).state).toBe('Running');

    expect((await provider.pause('vm-one')).state).toBe('paused');
    expect((await client.describeInstance()).state).toBe('Paused');
    expect((await provider.resume('vm-one')).state).toBe('running');

    const snapshot = await provider.snapshot('vm-one', { snapshotId: 'snap-one' });
    expect((await stat(snapshot.memFilePath)).size).toBe(128 * 1024 * 1024);
    expect((await provider.get('vm-one'))?.state).toBe('running');

    const stopped = await provider.stop('vm-one');
    expect(stopped.how).toBe('killed');
    expect(stopped.vm.state).toBe('stopped');
    expect(isProcessAlive(created.pid)).toBe(false);

    await provider.destroy('vm-one');
    expect(await provider.get('vm-one')).toBeUndefined();
    expect(existsSync(join(sandbox.stateDir, 'vms', 'vm-one'))).toBe(false);
    // Snapshots outlive the VM they came from.
    expect((await provider.listSnapshots()).map((item) => item.snapshotId)).toEqual(['snap-one']);

    const states = events.filter((event) => event.type === 'state').map((event) => event.to);
    expect(states).toEqual([
      'creating',
      'running',
      'paused',
      'running',
      'paused',
      'running',
      'stopped',
      'destroyed',
    ]);
    const phases = events.filter((event) => event.type === 'phase').map((event) => event.phase);
    expect(phases).toEqual(expect.arrayContaining(['spawn', 'api-socket', 'configure', 'instance-start']));
  });

  it('should leave a VM in created until start when asked', async () => {
    const provider = newProvider();
    expect((await provider.create('vm-later', sandbox.spec(), { start: false })).state).toBe('created');
    expect((await (await provider.client('vm-later')).describeInstance()).state).toBe('Not started');
    await expectCode(provider.pause('vm-later'), 'ERR_MICROVM_INVALID_STATE');
    expect((await provider.start('vm-later')).state).toBe('running');
    await expectCode(provider.start('vm-later'), 'ERR_MICROVM_INVALID_STATE');
  });

  it('should restore a snapshot into a new VM beside the original', async () => {
    const provider = newProvider();
    await provider.create('vm-source', sandbox.spec({ machine: { vcpuCount: 2, memSizeMib: 256 } }));
    const snapshot = await provider.snapshot('vm-source', { snapshotId: 'snap-source' });

    const clone = await provider.restore('vm-clone', snapshot.snapshotId);
    expect(clone.state).toBe('running');
    expect(clone.restoredFromSnapshotId).toBe('snap-source');
    expect(clone.pid).not.toBe((await provider.get('vm-source'))?.pid);
    const config = await (await provider.client('vm-clone')).getMachineConfig();
    expect(config).toMatchObject({ vcpu_count: 2, mem_size_mib: 256 });

    const paused = await provider.restore('vm-paused-clone', snapshot.snapshotId, { resume: false });
    expect(paused.state).toBe('paused');
    expect((await provider.list()).map((vm) => [vm.vmId, vm.state])).toEqual([
      ['vm-clone', 'running'],
      ['vm-paused-clone', 'paused'],
      ['vm-source', 'running'],
    ]);
    await expectCode(provider.restore('vm-nothing', 'no-such-snapshot'), 'ERR_MICROVM_SNAPSHOT_NOT_FOUND');
  });

  it.each([1, 2, 3, 4])(
    'should leave no process, socket or folder behind when the VMM crashes at API request %i',
    async (requestNumber) => {
      const provider = newProvider({ env: { MICROVM_SIMULATOR_CRASH_AT_REQUEST: String(requestNumber) } });
      const spawned: number[] = [];
      provider.onEvent((event) => {
        if (event.type === 'phase' && event.phase === 'spawn') spawned.push(event.durationMs);
      });
      const error = await expectCode(
        provider.create('vm-crash', sandbox.spec()),
        'ERR_MICROVM_PROCESS_EXITED',
      );
      expect(error.message).toMatch(/exit code 1/);
      expect(spawned).toHaveLength(1);
      expect(existsSync(join(sandbox.stateDir, 'vms', 'vm-crash'))).toBe(false);
      expect(await provider.list()).toEqual([]);
      expect((await childProcesses()).filter((child) => child.state !== 'Z')).toEqual([]);
    },
  );

  it('should time out and kill the VMM when its socket never appears', async () => {
    const provider = newProvider({ socketReadyTimeoutMs: 300, env: { MICROVM_SIMULATOR_HANG: 'startup' } });
    const error = await expectCode(provider.create('vm-hang', sandbox.spec()), 'ERR_MICROVM_TIMEOUT');
    expect(error.message).toContain('API socket');
    expect(await childProcesses()).toEqual([]);
    expect(existsSync(join(sandbox.stateDir, 'vms', 'vm-hang'))).toBe(false);
  });

  it('should fail with ProcessExitError and leave nothing when the binary cannot be spawned', async () => {
    const provider = newProvider({ firecrackerBinary: join(sandbox.dir, 'no-such-firecracker') });
    const error = await expectCode(
      provider.create('vm-nobinary', sandbox.spec()),
      'ERR_MICROVM_PROCESS_EXITED',
    );
    expect(error.message).toContain('ENOENT');
    expect(await provider.list()).toEqual([]);
    expect(existsSync(join(sandbox.stateDir, 'vms', 'vm-nobinary'))).toBe(false);
  });

  it('should roll back prepared primitives in reverse when a prepare fails', async () => {
    const calls: string[] = [];
    const primitive = (name: string, failPrepare = false): VmPrimitive => ({
      name,
      async prepare(context) {
        calls.push(`prepare:${name}`);
        context.facts.extensions = { ...context.facts.extensions, [name]: true };
        if (failPrepare) throw new Error(`${name} could not prepare`);
      },
      async teardown(context) {
        calls.push(`teardown:${name}:${Object.keys(context.facts.extensions ?? {}).join('+')}`);
      },
    });
    const provider = newProvider({
      primitives: [primitive('first'), primitive('second'), primitive('third', true)],
    });
    const error = await expectCode(provider.create('vm-rollback', sandbox.spec()), 'ERR_MICROVM_HOOK_FAILED');
    expect(error.message).toContain('third.prepare failed');
    expect(calls).toEqual([
      'prepare:first',
      'prepare:second',
      'prepare:third',
      'teardown:third:first+second+third',
      'teardown:second:first+second+third',
      'teardown:first:first+second+third',
    ]);
    expect(existsSync(join(sandbox.stateDir, 'vms', 'vm-rollback'))).toBe(false);
  });

  it('should run the VMM in the network namespace a primitive asks for', async () => {
    const namespace = `mvm-core-${process.pid}`;
    const netnsPath = `/run/netns/${namespace}`;
    const primitive: VmPrimitive = {
      name: 'netns',
      async prepare(context) {
        await execFileAsync('ip', ['netns', 'add', namespace]);
        context.launch.networkNamespacePath = netnsPath;
      },
      async teardown() {
        await execFileAsync('ip', ['netns', 'delete', namespace]).catch(() => undefined);
      },
    };
    const provider = newProvider({ primitives: [primitive] });
    try {
      const vm = await provider.create('vm-netns', sandbox.spec());
      const [vmmNamespace, wanted] = await Promise.all([stat(`/proc/${vm.pid}/ns/net`), stat(netnsPath)]);
      expect(vmmNamespace.ino).toBe(wanted.ino);
      await provider.destroy('vm-netns');
      expect(existsSync(netnsPath)).toBe(false);
    } finally {
      await execFileAsync('ip', ['netns', 'delete', namespace]).catch(() => undefined);
    }
  });

  it('should give primitives leases that outlive a provider and are freed by their owner', async () => {
    const primitive: VmPrimitive = {
      name: 'cid',
      async prepare(context) {
        const value = await context.leases.claimFirstFree('test-cid', context.vmId, ['3', '4']);
        if (value === undefined) throw new Error('no CID left');
        context.facts.extensions = { cid: value };
      },
      async teardown(context) {
        await context.leases.releaseOwner('test-cid', context.vmId);
      },
      async reconcile(context) {
        const freed = await context.leases.releaseUnknownOwners('test-cid', context.liveVmIds);
        return { removed: freed.map((lease) => `cid ${lease.value}`) };
      },
    };
    const provider = newProvider({ primitives: [primitive] });
    const first = await provider.create('vm-lease-a', sandbox.spec());
    const second = await provider.create('vm-lease-b', sandbox.spec());
    expect([first.facts.extensions?.cid, second.facts.extensions?.cid].sort()).toEqual(['3', '4']);
    await expectCode(provider.create('vm-lease-c', sandbox.spec()), 'ERR_MICROVM_HOOK_FAILED');
    await provider.destroy('vm-lease-a');
    const third = await provider.create('vm-lease-c', sandbox.spec());
    expect(third.facts.extensions?.cid).toBe(first.facts.extensions?.cid);
  });

  it('should create 20 VMs concurrently', async () => {
    const provider = newProvider();
    const ids = Array.from({ length: 20 }, (_, index) => `vm-many-${index}`);
    const vms = await Promise.all(ids.map((id) => provider.create(id, sandbox.spec())));
    expect(new Set(vms.map((vm) => vm.pid)).size).toBe(20);
    expect((await provider.list()).every((vm) => vm.state === 'running')).toBe(true);
    await Promise.all(ids.map((id) => provider.destroy(id)));
    expect(await provider.list()).toEqual([]);
    expect(await childProcesses()).toEqual([]);
  });

  it('should let exactly one of two concurrent creates with the same id win', async () => {
    const provider = newProvider();
    const other = newProvider();
    const results = await Promise.allSettled([
      provider.create('vm-race', sandbox.spec()),
      other.create('vm-race', sandbox.spec()),
      provider.create('vm-race', sandbox.spec()),
    ]);
    expect(results.filter((result) => result.status === 'fulfilled')).toHaveLength(1);
    for (const result of results) {
      if (result.status === 'rejected')
        expect((result.reason as MicrovmError).code).toBe('ERR_MICROVM_VM_EXISTS');
    }
    expect(await provider.list()).toHaveLength(1);
  });

  it('should kill the VMM when a VM another provider started later is destroyed here', async () => {
    const here = newProvider();
    await here.list(); // recovered before the VM exists
    const elsewhere = newProvider();
    const vm = await elsewhere.create('vm-elsewhere', sandbox.spec());
    await here.destroy('vm-elsewhere');
    await expect.poll(() => isProcessAlive(vm.pid)).toBe(false);
    expect(await elsewhere.list()).toEqual([]);
  });

  it('should leave a VM another process started alone when reconciling', async () => {
    const cli = newProvider();
    await cli.list(); // recovered before the VM exists
    const service = newProvider();
    const vm = await service.create('vm-service', sandbox.spec());
    const report = await cli.reconcile();
    expect(report.destroyedVmIds).toEqual([]);
    expect(isProcessAlive(vm.pid)).toBe(true);
    expect((await service.get('vm-service'))?.state).toBe('running');
  });

  it('should say not found when a VM is destroyed twice', async () => {
    const provider = newProvider();
    await provider.create('vm-twice', sandbox.spec());
    await provider.destroy('vm-twice');
    await expectCode(provider.destroy('vm-twice'), 'ERR_MICROVM_VM_NOT_FOUND');
  });

  it('should mark a VM failed with its exit code when the VMM exits on its own', async () => {
    const provider = newProvider({ env: { MICROVM_SIMULATOR_EXIT_AFTER_BOOT_MS: '50' } });
    const exited = new Promise<VmEvent>((resolve) =>
      provider.onEvent((event) => {
        if (event.type === 'exit') resolve(event);
      }),
    );
    await provider.create('vm-dies', sandbox.spec());
    const event = await exited;
    expect(event).toMatchObject({ type: 'exit', vmId: 'vm-dies', exitCode: 1, expected: false });
    // Why it died is kept: the tail of what the VMM wrote on stderr.
    expect(event.type === 'exit' && event.stderrTail).toContain('Unexpected exit reason on vcpu run');
    const vm = await provider.get('vm-dies');
    expect(vm?.state).toBe('failed');
    expect(vm?.exit?.exitCode).toBe(1);
    expect(vm?.exit?.stderrTail).toContain('Unexpected exit reason on vcpu run');
    await expectCode(provider.pause('vm-dies'), 'ERR_MICROVM_INVALID_STATE');
    await provider.destroy('vm-dies');
  });

  it('should record a stop asked by another process as stopped, not failed, in the supervising one', async () => {
    const supervisor = newProvider();
    await supervisor.create('vm-shared', sandbox.spec());
    const statesSeen: string[] = [];
    const supervisorSawExit = new Promise<VmEvent>((resolve) =>
      supervisor.onEvent((event) => {
        if (event.type === 'state') statesSeen.push(event.to);
        if (event.type === 'exit') resolve(event);
      }),
    );
    // A second provider on the same state directory, like a CLI `stop` beside a `run -d` supervisor.
    const other = newProvider();
    await other.kill('vm-shared');
    await supervisorSawExit;
    // The supervisor notices the exit first (its child): it must not call it a failure.
    await expect.poll(() => statesSeen).toContain('stopped');
    expect(statesSeen).not.toContain('failed');
    expect((await supervisor.get('vm-shared'))?.state).toBe('stopped');
    expect((await other.get('vm-shared'))?.state).toBe('stopped');
  });

  it('should recover the list after a provider restart and mark dead VMMs failed', async () => {
    const first = newProvider();
    const alive = await first.create('vm-alive', sandbox.spec());
    const doomed = await first.create('vm-doomed', sandbox.spec());
    await first.close();
    process.kill(doomed.pid!, 'SIGKILL');
    await expect.poll(() => isProcessAlive(doomed.pid)).toBe(false);

    const second = newProvider();
    const vms = await second.list();
    expect(vms.map((vm) => [vm.vmId, vm.state])).toEqual([
      ['vm-alive', 'running'],
      ['vm-doomed', 'failed'],
    ]);
    // The adopted VMM is driven as before.
    expect((await second.pause('vm-alive')).state).toBe('paused');
    await second.destroy('vm-alive');
    expect(isProcessAlive(alive.pid)).toBe(false);
    const report = await second.reconcile();
    expect(report.destroyedVmIds).toEqual(['vm-doomed']);
    expect(await readdir(join(sandbox.stateDir, 'vms'))).toEqual([]);
  });
});
