import { FirecrackerVmProvider, MicrovmError, ValidationError, type VmInfo } from '@microvm/core';
import { validatePolicy } from '@microvm/firewall';
import { optionsFromEnv } from './env-options.js';
import type { EgressPolicy, PrimitiveOptions } from './options.js';
import { isVmSpec, toVmSpec } from './spec.js';
import { enabledFromEnv } from './toggles.js';
import type {
  ComposedProvider,
  ComposedProviderOptions,
  ComposedVm,
  ComposedVmInput,
  PrimitiveName,
} from './types.js';
import { PRIMITIVE_NAMES } from './types.js';
import { composedFirewall, composedVsock, type Wiring, wirePrimitives } from './wiring.js';

/**
 * Which primitives run, and how each is configured. Immutable: `with()`/`without()` return a new composer.
 *
 * ```ts
 * const microvms = FirecrackerComposer.fromEnv().provider({ stateDir: '/var/lib/microvm' });
 * await using vm = await microvms.create('sandbox-42', { kernel, rootfs });
 * ```
 */
export class FirecrackerComposer {
  readonly #options: PrimitiveOptions;

  private constructor(options: PrimitiveOptions) {
    this.#options = options;
  }

  /** No primitive: spawn, configure and start only. */
  static bare(): FirecrackerComposer {
    return new FirecrackerComposer({});
  }

  /** Every primitive, each with the given options or its defaults. */
  static all(options: PrimitiveOptions = {}): FirecrackerComposer {
    const all: PrimitiveOptions = {};
    for (const name of PRIMITIVE_NAMES) (all as Record<string, unknown>)[name] = options[name] ?? {};
    return new FirecrackerComposer(all);
  }

  /**
   * Primitives switched by `MICROVM_COMPOSE_<NAME>` (absent = on; `0`, `false`, `no`, `off` = off), each
   * configured from its own `MICROVM_<NAME>_*` variables (see the README's table).
   */
  static fromEnv(env: NodeJS.ProcessEnv = process.env): FirecrackerComposer {
    const options: PrimitiveOptions = {};
    for (const name of enabledFromEnv(env)) {
      (options as Record<string, unknown>)[name] = optionsFromEnv(name, env);
    }
    return new FirecrackerComposer(options);
  }

  /** Switches a primitive on with these options (replacing earlier ones). */
  with<Name extends PrimitiveName>(
    name: Name,
    options: NonNullable<PrimitiveOptions[Name]>,
  ): FirecrackerComposer {
    return new FirecrackerComposer({ ...this.#options, [name]: options });
  }

  without(name: PrimitiveName): FirecrackerComposer {
    const options = { ...this.#options };
    delete options[name];
    return new FirecrackerComposer(options);
  }

  /** The primitives that will run, in prepare order. */
  get enabled(): PrimitiveName[] {
    return PRIMITIVE_NAMES.filter((name) => this.#options[name] !== undefined);
  }

  /** The options each enabled primitive gets (a copy). */
  get options(): PrimitiveOptions {
    return { ...this.#options };
  }

  /** A provider whose VMs get every enabled primitive. Bad options fail here, before any VM exists. */
  provider(options: ComposedProviderOptions = {}): ComposedProvider {
    return new ComposedVmProvider(this.enabled, wirePrimitives(this.#options), options);
  }
}

class ComposedVmProvider implements ComposedProvider {
  readonly enabled: readonly PrimitiveName[];
  readonly provider: FirecrackerVmProvider;
  readonly #wiring: Wiring;
  readonly #creating = new Set<string>();

  constructor(enabled: readonly PrimitiveName[], wiring: Wiring, options: ComposedProviderOptions) {
    this.enabled = enabled;
    this.#wiring = wiring;
    this.provider = new FirecrackerVmProvider({ ...options, primitives: wiring.primitives });
  }

  async create(
    vmId: string,
    input: ComposedVmInput,
    options: { signal?: AbortSignal; egress?: EgressPolicy } = {},
  ): Promise<ComposedVm> {
    const spec = toVmSpec(input);
    const egress = options.egress ?? (isVmSpec(input) ? undefined : input.egress);
    await this.#withEgress(vmId, egress, () =>
      this.provider.create(vmId, spec, { ...(options.signal && { signal: options.signal }) }),
    );
    return this.#handle(vmId);
  }

  async restore(
    vmId: string,
    snapshotId: string,
    options: { signal?: AbortSignal; resume?: boolean; egress?: EgressPolicy } = {},
  ): Promise<ComposedVm> {
    const { egress, ...restoreOptions } = options;
    await this.#withEgress(vmId, egress, () => this.provider.restore(vmId, snapshotId, restoreOptions));
    return this.#handle(vmId);
  }

  /**
   * Hands a create's egress to the firewall's prepare. Checked first, before any primitive touches the host;
   * one create per id at a time here, so a duplicate can neither replace nor clear the first one's policy.
   */
  async #withEgress<T>(vmId: string, egress: EgressPolicy | undefined, work: () => Promise<T>): Promise<T> {
    if (egress !== undefined) {
      if (!this.#wiring.firewall) {
        // An egress policy nobody enforces is worse than an error: the caller believes the VM is confined.
        throw new ValidationError({
          field: 'egress',
          rule: 'needs the firewall primitive, which is off',
          value: egress,
        });
      }
      validatePolicy(typeof egress === 'string' ? { preset: egress } : egress, [], 'egress');
    }
    if (this.#creating.has(vmId)) {
      throw new MicrovmError({
        code: 'ERR_MICROVM_VM_EXISTS',
        message: `A VM with id '${vmId}' is being created`,
      });
    }
    this.#creating.add(vmId);
    this.#wiring.setEgress(vmId, egress);
    try {
      return await work();
    } finally {
      this.#wiring.setEgress(vmId, undefined);
      this.#creating.delete(vmId);
    }
  }

  async get(vmId: string): Promise<ComposedVm | undefined> {
    return (await this.provider.get(vmId)) ? this.#handle(vmId) : undefined;
  }

  async close(): Promise<void> {
    await this.provider.close();
  }

  async #handle(vmId: string): Promise<ComposedVm> {
    const provider = this.provider;
    const wiring = this.#wiring;
    const current = async (): Promise<VmInfo> => {
      const info = await provider.get(vmId);
      if (!info)
        throw new MicrovmError({ code: 'ERR_MICROVM_VM_NOT_FOUND', message: `No VM with id '${vmId}'` });
      return info;
    };
    const { facts } = await current();
    const destroy = async () => {
      const info = await provider.get(vmId);
      if (!info) return;
      await provider.destroy(vmId, { graceful: this.enabled.includes('shutdown') });
    };
    const captures = wiring.console?.get(vmId);
    return {
      vmId,
      facts,
      info: current,
      network: facts.network,
      firewall: wiring.firewall && facts.network && composedFirewall(wiring.firewall, vmId, facts.network),
      vsock: wiring.vsock && facts.vsock && composedVsock(wiring.vsock, vmId, facts.vsock),
      console: captures?.console,
      vmmLog: captures?.vmmLog,
      pause: () => provider.pause(vmId),
      resume: () => provider.resume(vmId),
      snapshot: (snapshotOptions) => provider.snapshot(vmId, snapshotOptions),
      shutdown: () => provider.stop(vmId),
      kill: () => provider.kill(vmId),
      destroy,
      [Symbol.asyncDispose]: destroy,
    };
  }
}
