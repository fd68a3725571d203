import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  FirecrackerApiError,
  FirecrackerVmProvider,
  type FirecrackerVmProviderOptions,
  HookError,
  MicrovmError,
  TeardownError,
  ValidationError,
  type VmEvent,
  type VmPrimitive,
  type VmSpec,
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
/** Every namespace a test made; afterEach deletes them all, also when the test failed half-way. */
const namespaces: string[] = [];
let namespaceCounter = 0;

function newProvider(options: Partial<FirecrackerVmProviderOptions> = {}): FirecrackerVmProvider {
  const provider = new FirecrackerVmProvider({
    stateDir: sandbox.stateDir,
    firecrackerBinary: simulatorFirecracker,
    // The host is shared with other suites: Node's start-up alone can take seconds.
    socketReadyTimeoutMs: 30_000,
    ...options,
  });
  providers.push(provider);
  return provider;
}

/** A fresh network namespace holding the given TAP devices; returns its `/run/netns` path. */
async function createNamespaceWithTaps(tapNames: readonly string[]): Promise<string> {
  namespaceCounter += 1;
  const name = `mvm-tr-${process.pid}-${namespaceCounter}`;
  // Recorded before it exists, so a failure between the two commands still gets it deleted.
  namespaces.push(name);
  await execFileAsync('ip', ['netns', 'add', name]);
  for (const tapName of tapNames) {
    await execFileAsync('ip', ['-n', name, 'tuntap', 'add', 'dev', tapName, 'mode', 'tap']);
  }
  return `/run/netns/${name}`;
}

beforeEach(async () => {
  sandbox = await createSandbox();
});

afterEach(async () => {
  for (const provider of providers.splice(0)) {
    for (const vm of await provider.list().catch(() => [])) {
      // A TeardownError here still killed the VMM and removed the folder.
      await provider.destroy(vm.vmId).catch(() => undefined);
    }
    await provider.close();
  }
  for (const name of namespaces.splice(0)) {
    await execFileAsync('ip', ['netns', 'delete', name]).catch(() => undefined);
  }
  await sandbox.cleanup();
});

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected a rejection, got a result');
    },
    (reason: unknown) => reason,
  );
}

async function expectCode(promise: Promise<unknown>, code: string): Promise<MicrovmError> {
  const error = await rejectionOf(promise);
  expect(MicrovmError.isInstance(error), `expected a MicrovmError ${code}, got ${String(error)}`).toBe(true);
  expect((error as MicrovmError).code).toBe(code);
  return error as MicrovmError;
}

/** Processes anywhere on the host whose command line names this VM id after `--id` (the provider's launch argv). */
async function processesLaunchedFor(vmId: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      const idIndex = argv.indexOf('--id');
      if (idIndex !== -1 && argv[idIndex + 1] === vmId) found.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return found;
}

function vmFolder(vmId: string): string {
  return join(sandbox.stateDir, 'vms', vmId);
}

describe('destroy and rollback run every teardown', () => {
  it('should run every teardown in reverse order and report both failures together on destroy', async () => {
    const teardownsRun: string[] = [];
    const primitive = (name: string, failTeardown: boolean): VmPrimitive => ({
      name,
      async prepare() {},
      async teardown(context) {
        teardownsRun.push(`${name}:${context.state}`);
        if (failTeardown) throw new Error(`${name} could not tear down`);
      },
    });
    // The recording primitive sits between the failing ones: a failure must stop neither what follows it.
    const provider = newProvider({
      primitives: [primitive('first', true), primitive('second', false), primitive('third', true)],
    });
    const events: VmEvent[] = [];
    provider.onEvent((event) => events.push(event));

    const vm = await provider.create('vm-teardown', sandbox.spec());
    expect(isProcessAlive(vm.pid)).toBe(true);

    const error = await expectCode(provider.destroy('vm-teardown'), 'ERR_MICROVM_TEARDOWN_FAILED');
    expect(error).toBeInstanceOf(TeardownError);
    const teardownError = error as TeardownError;
    expect(teardownError.vmId).toBe('vm-teardown');
    expect(teardownError.errors).toHaveLength(2);
    // Collected in the order they ran: reverse of the primitives.
    expect(
      teardownError.errors.map((failure) => [
        (failure as HookError).primitive,
        (failure as HookError).phase,
        ((failure as HookError).cause as Error).message,
      ]),
    ).toEqual([
      ['third', 'teardown', 'third could not tear down'],
      ['first', 'teardown', 'first could not tear down'],
    ]);
    for (const failure of teardownError.errors) expect(failure).toBeInstanceOf(HookError);
    expect(teardownError.message).toContain('2 failure(s)');
    expect(teardownError.message).toContain('third could not tear down');
    expect(teardownError.message).toContain('first could not tear down');

    // The VMM was killed before any teardown ran (they see `stopped`), then every teardown ran.
    expect(teardownsRun).toEqual(['third:stopped', 'second:stopped', 'first:stopped']);
    expect(isProcessAlive(vm.pid)).toBe(false);
    expect((await childProcesses()).map((child) => child.pid)).not.toContain(vm.pid);

    // Documented by the code: the record is removed even after teardown failures, and `destroyed` is emitted.
    expect(existsSync(vmFolder('vm-teardown'))).toBe(false);
    expect(await provider.get('vm-teardown')).toBeUndefined();
    expect(await provider.list()).toEqual([]);
    expect(events.filter((event) => event.type === 'state').map((event) => event.to)).toEqual([
      'creating',
      'running',
      'stopped',
      'destroyed',
    ]);
    await expectCode(provider.destroy('vm-teardown'), 'ERR_MICROVM_VM_NOT_FOUND');
  });

  it('should roll back earlier primitives when a later prepare fails, even past a failing teardown', async () => {
    const calls: string[] = [];
    const primitive = (
      name: string,
      options: { failPrepare?: boolean; failTeardown?: boolean },
    ): VmPrimitive => ({
      name,
      async prepare() {
        calls.push(`prepare:${name}`);
        if (options.failPrepare) throw new Error(`${name} could not prepare`);
      },
      async teardown() {
        calls.push(`teardown:${name}`);
        if (options.failTeardown) throw new Error(`${name} could not tear down`);
      },
    });
    const provider = newProvider({
      primitives: [
        primitive('first', { failTeardown: true }),
        primitive('second', {}),
        primitive('third', { failPrepare: true }),
        primitive('fourth', {}),
      ],
    });
    const events: VmEvent[] = [];
    provider.onEvent((event) => events.push(event));

    const error = await expectCode(provider.create('vm-rollback', sandbox.spec()), 'ERR_MICROVM_HOOK_FAILED');
    // The caller gets the failure that stopped the create, not the cleanup's.
    expect(error).toBeInstanceOf(HookError);
    expect((error as HookError).primitive).toBe('third');
    expect((error as HookError).phase).toBe('prepare');
    // `fourth` never began its prepare, so it has nothing to tear down; `third` began, so it tears down.
    expect(calls).toEqual([
      'prepare:first',
      'prepare:second',
      'prepare:third',
      'teardown:third',
      'teardown:second',
      'teardown:first',
    ]);
    // The cleanup failure is not lost: it is reported as a warning event.
    const warnings = events.filter((event) => event.type === 'warning');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ vmId: 'vm-rollback' });
    expect((warnings[0] as { message: string }).message).toContain('first.teardown failed');
    expect(events.some((event) => event.type === 'phase' && event.phase === 'spawn')).toBe(false);
    expect(await processesLaunchedFor('vm-rollback')).toEqual([]);
    expect(existsSync(vmFolder('vm-rollback'))).toBe(false);
    expect(await provider.list()).toEqual([]);
  });

  it('should kill the VMM and roll back every primitive when a hook fails after the spawn', async () => {
    const calls: string[] = [];
    let spawnedPid: number | undefined;
    const provider = newProvider({
      primitives: [
        {
          name: 'watcher',
          async prepare() {},
          spawned(context) {
            spawnedPid = context.process.pid;
          },
          async teardown() {
            calls.push('teardown:watcher');
            throw new Error('watcher could not tear down');
          },
        },
        {
          name: 'late',
          async prepare() {},
          async started() {
            throw new Error('late could not start');
          },
          async teardown() {
            calls.push('teardown:late');
          },
        },
      ],
    });
    const error = await expectCode(
      provider.create('vm-late-fail', sandbox.spec()),
      'ERR_MICROVM_HOOK_FAILED',
    );
    expect((error as HookError).primitive).toBe('late');
    expect((error as HookError).phase).toBe('started');
    expect(calls).toEqual(['teardown:late', 'teardown:watcher']);
    expect(spawnedPid).toBeDefined();
    expect(isProcessAlive(spawnedPid)).toBe(false);
    expect(await processesLaunchedFor('vm-late-fail')).toEqual([]);
    expect(existsSync(vmFolder('vm-late-fail'))).toBe(false);
    expect(await provider.list()).toEqual([]);
  });
});

describe('diff snapshots', () => {
  it('should take a Diff snapshot of a VM that tracks dirty pages and restore a running VM from it', async () => {
    const provider = newProvider();
    await provider.create(
      'vm-dirty',
      sandbox.spec({ machine: { vcpuCount: 1, memSizeMib: 128, trackDirtyPages: true } }),
    );
    const snapshot = await provider.snapshot('vm-dirty', { snapshotId: 'snap-diff', type: 'Diff' });
    expect(snapshot.type).toBe('Diff');
    expect(snapshot.sourceVmId).toBe('vm-dirty');
    expect((await stat(snapshot.snapshotPath)).isFile()).toBe(true);
    expect((await stat(snapshot.memFilePath)).size).toBe(128 * 1024 * 1024);
    expect((await provider.listSnapshots()).map((item) => [item.snapshotId, item.type])).toEqual([
      ['snap-diff', 'Diff'],
    ]);
    // The source was running: the snapshot resumes it.
    expect((await provider.get('vm-dirty'))?.state).toBe('running');

    const clone = await provider.restore('vm-diff-clone', 'snap-diff');
    expect(clone.state).toBe('running');
    expect(clone.restoredFromSnapshotId).toBe('snap-diff');
    const client = await provider.client('vm-diff-clone');
    expect((await client.describeInstance()).state).toBe('Running');
    // Dirty tracking is not in the snapshot: the provider must set it again on the load.
    expect((await client.getMachineConfig()).track_dirty_pages).toBe(true);
    // …which is what lets the clone take a Diff snapshot of its own.
    const second = await provider.snapshot('vm-diff-clone', { snapshotId: 'snap-diff-2', type: 'Diff' });
    expect(second.type).toBe('Diff');
  });

  it('should refuse a Diff snapshot without dirty page tracking and leave the VM running', async () => {
    const provider = newProvider();
    await provider.create('vm-clean', sandbox.spec());
    const error = await expectCode(
      provider.snapshot('vm-clean', { snapshotId: 'snap-refused', type: 'Diff' }),
      'ERR_MICROVM_API',
    );
    expect(error).toBeInstanceOf(FirecrackerApiError);
    const apiError = error as FirecrackerApiError;
    expect(apiError.statusCode).toBe(400);
    expect(apiError.path).toBe('/snapshot/create');
    expect(apiError.faultMessage).toContain('dirty page tracking disabled');
    expect(await provider.listSnapshots()).toEqual([]);
    expect(existsSync(join(sandbox.stateDir, 'snapshots', 'snap-refused'))).toBe(false);
    expect((await provider.get('vm-clean'))?.state).toBe('running');
    expect((await (await provider.client('vm-clean')).describeInstance()).state).toBe('Running');
    // The id was released: a Full snapshot may take it.
    expect((await provider.snapshot('vm-clean', { snapshotId: 'snap-refused' })).type).toBe('Full');
  });
});

describe('bad input to create', () => {
  const badSpecs: [description: string, field: string, spec: () => VmSpec][] = [
    [
      'a zero vCPU count',
      'machine.vcpuCount',
      () => sandbox.spec({ machine: { vcpuCount: 0, memSizeMib: 128 } }),
    ],
    [
      'a kernel that does not exist',
      'bootSource.kernelImagePath',
      () => sandbox.spec({ bootSource: { kernelImagePath: join(sandbox.dir, 'no-such-kernel') } }),
    ],
    [
      'a drive id with a space',
      'drives[0].driveId',
      () =>
        sandbox.spec({
          drives: [{ driveId: 'root fs', pathOnHost: sandbox.rootfs, isRootDevice: true, isReadOnly: false }],
        }),
    ],
    [
      'a TAP name longer than 15 bytes',
      'networkInterfaces[0].hostDevName',
      () =>
        sandbox.spec({ networkInterfaces: [{ ifaceId: 'eth0', hostDevName: 'a-tap-name-far-too-long' }] }),
    ],
  ];

  it.each(badSpecs)(
    'should reject %s naming %s, spawn nothing and record nothing',
    async (_description, field, badSpec) => {
      const prepared: string[] = [];
      const provider = newProvider({
        primitives: [
          {
            name: 'recorder',
            async prepare(context) {
              prepared.push(context.vmId);
            },
          },
        ],
      });
      const events: VmEvent[] = [];
      provider.onEvent((event) => events.push(event));
      await provider.create('vm-good', sandbox.spec());
      const listBefore = await provider.list();
      const childrenBefore = (await childProcesses()).map((child) => child.pid).sort();
      const vmId = `vm-bad-${process.pid}`;

      const error = await expectCode(provider.create(vmId, badSpec()), 'ERR_MICROVM_INVALID_INPUT');
      expect(error).toBeInstanceOf(ValidationError);
      expect((error as ValidationError).field).toBe(field);
      expect(error.message).toContain(field);
      expect(error.isUserError).toBe(true);

      expect(prepared).toEqual(['vm-good']);
      expect(events.filter((event) => event.vmId === vmId)).toEqual([]);
      expect(await processesLaunchedFor(vmId)).toEqual([]);
      expect((await childProcesses()).map((child) => child.pid).sort()).toEqual(childrenBefore);
      expect(await provider.list()).toEqual(listBefore);
      expect(await readdir(join(sandbox.stateDir, 'vms'))).toEqual(['vm-good']);
      expect(await provider.get(vmId)).toBeUndefined();
    },
  );

  it('should reject a VM id that would leave the state directory before touching it', async () => {
    const provider = newProvider();
    const error = await expectCode(provider.create('../escape', sandbox.spec()), 'ERR_MICROVM_INVALID_INPUT');
    expect((error as ValidationError).field).toBe('vmId');
    expect(existsSync(join(sandbox.stateDir, 'escape'))).toBe(false);
    expect(existsSync(join(sandbox.dir, 'escape'))).toBe(false);
    expect(await processesLaunchedFor('../escape')).toEqual([]);
  });
});

describe('network overrides on restore', () => {
  /**
   * Runs the source in a namespace holding only `tap-src`, and a clone in one holding only `tap-clone`; with
   * MICROVM_SIMULATOR_REQUIRE_TAP the simulator refuses a load naming a TAP its namespace lacks, so the clone
   * only comes up if the provider sent `network_overrides`.
   */
  async function setUp() {
    const sourceNamespacePath = await createNamespaceWithTaps(['tap-src']);
    const cloneNamespacePath = await createNamespaceWithTaps(['tap-clone']);
    const behaviour = { renameOnRestore: true };
    const renamer: VmPrimitive = {
      name: 'tap-renamer',
      async prepare(context) {
        if (context.mode === 'boot') {
          context.launch.networkNamespacePath = sourceNamespacePath;
          return;
        }
        context.launch.networkNamespacePath = cloneNamespacePath;
        context.spec = {
          ...context.spec,
          // The clone's log shows the load request's body.
          logger: { logPath: join(sandbox.dir, `${context.vmId}.log`), level: 'Info' },
          networkInterfaces: (context.spec.networkInterfaces ?? []).map((networkInterface) =>
            behaviour.renameOnRestore && networkInterface.hostDevName === 'tap-src'
              ? { ...networkInterface, hostDevName: 'tap-clone' }
              : networkInterface,
          ),
        };
      },
    };
    const provider = newProvider({
      primitives: [renamer],
      env: { MICROVM_SIMULATOR_REQUIRE_TAP: '1' },
    });
    const source = await provider.create(
      'vm-net-source',
      sandbox.spec({
        networkInterfaces: [{ ifaceId: 'eth0', hostDevName: 'tap-src', guestMac: '06:00:ac:10:00:02' }],
      }),
    );
    const [sourceNamespace, wanted] = await Promise.all([
      stat(`/proc/${source.pid}/ns/net`),
      stat(sourceNamespacePath),
    ]);
    expect(sourceNamespace.ino).toBe(wanted.ino);
    await provider.snapshot('vm-net-source', { snapshotId: 'snap-net' });
    return { provider, behaviour, cloneNamespacePath };
  }

  /** The body of `PUT /snapshot/load` as the simulator logged it. */
  async function loggedLoadBody(vmId: string): Promise<Record<string, unknown>> {
    const log = await readFile(join(sandbox.dir, `${vmId}.log`), 'utf8');
    const marker = 'Put request on "/snapshot/load" with body ';
    const line = log.split('\n').find((candidate) => candidate.includes(marker));
    expect(line, `no snapshot load in the log:\n${log}`).toBeDefined();
    const quotedBody = line!.slice(line!.indexOf(marker) + marker.length).replace(/\.$/, '');
    return JSON.parse(JSON.parse(quotedBody) as string) as Record<string, unknown>;
  }

  it('should send network_overrides when a primitive renamed the TAP on restore', async () => {
    const { provider, cloneNamespacePath } = await setUp();
    const clone = await provider.restore('vm-net-clone', 'snap-net');
    expect(clone.state).toBe('running');
    expect(clone.spec.networkInterfaces?.[0]?.hostDevName).toBe('tap-clone');
    const [cloneNamespace, wanted] = await Promise.all([
      stat(`/proc/${clone.pid}/ns/net`),
      stat(cloneNamespacePath),
    ]);
    expect(cloneNamespace.ino).toBe(wanted.ino);

    const body = await loggedLoadBody('vm-net-clone');
    expect(body.network_overrides).toEqual([{ iface_id: 'eth0', host_dev_name: 'tap-clone' }]);
    const config = await (await provider.client('vm-net-clone')).getVmConfig();
    expect(config['network-interfaces']).toMatchObject([
      { iface_id: 'eth0', host_dev_name: 'tap-clone', guest_mac: '06:00:ac:10:00:02' },
    ]);
    // The source keeps its own TAP.
    const sourceConfig = await (await provider.client('vm-net-source')).getVmConfig();
    expect(sourceConfig['network-interfaces']).toMatchObject([
      { iface_id: 'eth0', host_dev_name: 'tap-src' },
    ]);
  });

  it('should send no override when the TAP is unchanged, which fails where only the renamed TAP exists', async () => {
    // The control for the test above: it shows the simulator really checks the TAP in the clone's namespace.
    const { provider, behaviour } = await setUp();
    behaviour.renameOnRestore = false;
    const error = await rejectionOf(provider.restore('vm-net-unrenamed', 'snap-net'));
    expect(MicrovmError.isInstance(error)).toBe(true);
    // A failed load answers 400 and then exits: the API's answer is what the caller gets, whichever is seen first.
    expect((error as MicrovmError).code).toBe('ERR_MICROVM_API');
    expect((error as Error).message).toContain('Invalid TUN/TAP Backend provided by tap-src');
    const body = await loggedLoadBody('vm-net-unrenamed');
    expect(body).not.toHaveProperty('network_overrides');
    expect(await processesLaunchedFor('vm-net-unrenamed')).toEqual([]);
    expect(existsSync(vmFolder('vm-net-unrenamed'))).toBe(false);
  });
});
