import type { ComposedProvider, ComposedVm, ComposedVmInput } from '@microvm/composer';
import { toVmSpec } from '@microvm/composer';
import {
  type FirecrackerVmProvider,
  InMemoryVmProvider,
  type VmEvent,
  type VmEventListener,
  type VmFacts,
  type VmInfo,
} from '@microvm/core';
import type { CliDependencies, CliIo, ProviderSettings } from '../context.js';
import type { SupervisorRequest } from '../supervisor.js';

/** The in-memory provider with what the CLI uses beyond `VmProvider`: facts, reconcile, close, events. */
export class FakeProvider extends InMemoryVmProvider {
  readonly facts = new Map<string, VmFacts>();
  readonly listeners = new Set<VmEventListener>();
  reconcileResult = { destroyedVmIds: [] as string[], removed: [] as string[] };
  closed = false;
  destroyed: { vmId: string; graceful: boolean | undefined }[] = [];

  override onEvent(listener: VmEventListener): () => void {
    this.listeners.add(listener);
    const off = super.onEvent(listener);
    return () => {
      this.listeners.delete(listener);
      off();
    };
  }

  emit(event: VmEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  override async get(vmId: string): Promise<VmInfo | undefined> {
    const info = await super.get(vmId);
    return info && { ...info, facts: this.facts.get(vmId) ?? info.facts };
  }

  override async list(): Promise<VmInfo[]> {
    return (await super.list()).map((info) => ({ ...info, facts: this.facts.get(info.vmId) ?? info.facts }));
  }

  override async destroy(
    vmId: string,
    options?: { graceful?: boolean; signal?: AbortSignal },
  ): Promise<void> {
    this.destroyed.push({ vmId, graceful: options?.graceful });
    await super.destroy(vmId, options);
  }

  async reconcile() {
    return this.reconcileResult;
  }

  async close() {
    this.closed = true;
  }
}

export interface FakeComposed extends ComposedProvider {
  readonly fake: FakeProvider;
  /** Lines the console primitive would stream for every VM; undefined: the console primitive is off. */
  consoleLines: string[] | undefined;
  closedCount: number;
}

export function fakeComposedProvider(): FakeComposed {
  const fake = new FakeProvider();
  const handle = async (vmId: string): Promise<ComposedVm> => {
    const info = (await fake.get(vmId))!;
    const destroy = async () => {
      if (await fake.get(vmId)) await fake.destroy(vmId, { graceful: true });
    };
    const lines = composed.consoleLines;
    return {
      vmId,
      facts: info.facts,
      info: async () => (await fake.get(vmId))!,
      network: info.facts.network,
      firewall: undefined,
      vsock: undefined,
      // Only the two methods the CLI calls; a real ConsoleCapture would need a VMM to read from.
      console:
        lines &&
        ({
          tail: (count = 100) => lines.slice(-count),
          async *follow() {
            yield* lines;
          },
        } as unknown as ComposedVm['console']),
      vmmLog: undefined,
      pause: () => fake.pause(vmId),
      resume: () => fake.resume(vmId),
      snapshot: (options) => fake.snapshot(vmId, options),
      shutdown: () => fake.stop(vmId),
      kill: () => fake.kill(vmId),
      destroy,
      [Symbol.asyncDispose]: destroy,
    };
  };
  const composed: FakeComposed = {
    fake,
    consoleLines: undefined,
    closedCount: 0,
    enabled: [],
    provider: fake as unknown as FirecrackerVmProvider,
    async create(vmId: string, input: ComposedVmInput, options?: { signal?: AbortSignal }) {
      await fake.create(vmId, toVmSpec(input), options);
      fake.emit({ type: 'phase', vmId, operation: 'create', phase: 'spawn', durationMs: 3 });
      return handle(vmId);
    },
    async restore(vmId: string, snapshotId: string, options?: { signal?: AbortSignal; resume?: boolean }) {
      await fake.restore(vmId, snapshotId, options);
      return handle(vmId);
    },
    async get(vmId: string) {
      return (await fake.get(vmId)) ? handle(vmId) : undefined;
    },
    async close() {
      composed.closedCount += 1;
    },
  };
  return composed;
}

export interface Harness {
  io: CliIo;
  stdout(): string;
  stderr(): string;
  composed: FakeComposed;
  dependencies: CliDependencies;
  settings: ProviderSettings[];
  supervisorRequests: SupervisorRequest[];
  abort(): void;
  /** Forgets the output so far. */
  clearOutput(): void;
}

/** `runCli`'s io and dependencies, collecting output, with one fake provider behind every command. */
export function harness(env: NodeJS.ProcessEnv = { PATH: '/nowhere' }): Harness {
  let stdout = '';
  let stderr = '';
  const controller = new AbortController();
  const composed = fakeComposedProvider();
  const settings: ProviderSettings[] = [];
  const supervisorRequests: SupervisorRequest[] = [];
  let counter = 0;
  return {
    io: {
      stdout: { write: (text: string) => (stdout += text) },
      stderr: { write: (text: string) => (stderr += text) },
      env,
      signal: controller.signal,
      selfCommand: ['node', '/opt/microvm.js'],
    },
    stdout: () => stdout,
    stderr: () => stderr,
    composed,
    settings,
    supervisorRequests,
    abort: () => controller.abort(),
    clearOutput: () => {
      stdout = '';
      stderr = '';
    },
    dependencies: {
      openProvider: (providerSettings) => {
        settings.push(providerSettings);
        return composed;
      },
      runDoctor: async () => [],
      startSupervisor: async (request, options) => {
        supervisorRequests.push(request);
        settings.push({ stateDir: request.stateDir, firecracker: request.firecracker, env: options.env });
        options.onEvent({
          type: 'phase',
          vmId: request.vmId,
          operation: request.kind,
          phase: 'spawn',
          durationMs: 2,
        });
        // The supervisor opens its own provider; this one stands in for it.
        const vm =
          request.kind === 'create'
            ? await composed.create(request.vmId, request.input)
            : await composed.restore(request.vmId, request.snapshotId, { resume: request.resume });
        return vm.info();
      },
      simulator: { firecracker: '/sim/firecracker.js', jailer: '/sim/jailer.js' },
      newVmId: () => {
        counter += 1;
        return `vm-test${counter}`;
      },
      nowMs: () => Date.parse('2025-01-01T00:00:10Z'),
    },
  };
}
