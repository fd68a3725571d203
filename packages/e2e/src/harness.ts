import { chmod, constants, copyFile, mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type ComposedProvider,
  type ComposedProviderOptions,
  FirecrackerComposer,
  type SimpleVmOptions,
} from '@microvm/composer';
import type { VmFacts } from '@microvm/core';
import { guestStandIn } from '@microvm/network/testing';
import { simulatorEnvironment } from '@microvm/simulator';
import { mustRun } from './commands.js';
import { GuestStandIn } from './guest-stand-in.js';
import { captureHostState, type HostState, type HostStateScope } from './host-state.js';
import type { E2eTarget } from './target.js';

/** Inside every VM namespace (namespaced mode): the guest is always `.2`, its gateway `.1`. */
const GUEST_SUBNET = '192.168.241.0/30';
/** The VMs' veth /30s are leased from here; it must not overlap the host namespace's uplink (198.51.100.0/24). */
const POOL = '10.213.0.0/24';

/**
 * Everything the scenarios run in, and nothing they check: a work folder (state dir, jails, images), a host
 * namespace with an uplink to an "internet" namespace, and the composed provider. Names are unique per run, so
 * the suite can run beside other tests, and `tearDown` removes it all, also after a failure.
 */
export class E2eHarness {
  readonly target: E2eTarget;
  /** Start of every VM id of this run. */
  readonly runTag: string;
  /** The network primitive's prefix for interfaces and VM namespaces (at most 6 characters). */
  readonly namePrefix: string;
  readonly hostNamespace: string;
  readonly internetNamespace: string;
  readonly standIn: GuestStandIn | undefined;
  #workDir: string | undefined;
  #composer: FirecrackerComposer | undefined;
  #providerOptions: ComposedProviderOptions | undefined;
  #microvms: ComposedProvider | undefined;
  #providerClosed = false;
  #vmInput: SimpleVmOptions | undefined;
  readonly #facts = new Map<string, VmFacts>();
  readonly #namespaces: string[] = [];

  constructor(target: E2eTarget) {
    this.target = target;
    const run = process.pid.toString(36);
    this.runTag = `e2e-${run}`;
    this.namePrefix = `v${run.slice(-5)}`;
    this.hostNamespace = `${this.runTag}-host`;
    this.internetNamespace = `${this.runTag}-internet`;
    // The simulator has no guest network stack: a veth end in a namespace of its own plays the guest's NIC.
    this.standIn =
      target.vmm === 'simulator'
        ? new GuestStandIn({ namePrefix: `${this.runTag}-guest`, tcpPort: target.guestTcpPort })
        : undefined;
  }

  get workDir(): string {
    if (this.#workDir === undefined) throw new Error('E2eHarness.setUp() has not run');
    return this.#workDir;
  }

  get stateDir(): string {
    return join(this.workDir, 'state');
  }

  get chrootBaseDir(): string {
    return join(this.workDir, 'jail');
  }

  get microvms(): ComposedProvider {
    if (this.#microvms === undefined) throw new Error('E2eHarness.setUp() has not run');
    return this.#microvms;
  }

  /** What every scenario boots: the target's kernel and rootfs, default-deny egress. */
  get vmInput(): SimpleVmOptions {
    if (this.#vmInput === undefined) throw new Error('E2eHarness.setUp() has not run');
    return this.#vmInput;
  }

  vmId(name: string): string {
    return `${this.runTag}-${name}`;
  }

  /** Remembers a VM's facts, so the end can check that everything it owned is gone. */
  recordFacts(vmId: string, facts: VmFacts): void {
    this.#facts.set(vmId, facts);
  }

  get recordedFacts(): ReadonlyMap<string, VmFacts> {
    return this.#facts;
  }

  async setUp(): Promise<void> {
    const workDir = await mkdtemp(join(tmpdir(), 'microvm-e2e-'));
    this.#workDir = workDir;
    // A jailed VMM runs as nobody and must walk to its jail: mkdtemp's 0700 would stop it.
    await chmod(workDir, 0o755);
    await mkdir(this.chrootBaseDir, { mode: 0o755 });
    await chmod(this.chrootBaseDir, 0o755);

    await this.#addNamespace(this.hostNamespace);
    await this.#addNamespace(this.internetNamespace);
    await mustRun('ip', ['-n', this.hostNamespace, '-batch', '-'], {
      input: [
        `link add name up0 type veth peer name up0 netns ${this.internetNamespace}`,
        'addr add 198.51.100.1/24 dev up0',
        'link set up0 up',
        'route add default via 198.51.100.2',
        '',
      ].join('\n'),
    });
    await mustRun('ip', ['-n', this.internetNamespace, '-batch', '-'], {
      input: ['addr add 198.51.100.2/24 dev up0', 'link set up0 up', ''].join('\n'),
    });

    const { kernel, rootfs } = await this.#guestImages(workDir);
    this.#vmInput = {
      kernel,
      rootfs,
      egress: 'deny-all',
      ...(this.target.bootArgs && { bootArgs: this.target.bootArgs }),
    };

    const standIn = this.standIn;
    this.#composer = FirecrackerComposer.bare()
      .with('network', {
        mode: 'namespaced',
        namespace: this.hostNamespace,
        pool: POOL,
        guestSubnet: GUEST_SUBNET,
        namePrefix: this.namePrefix,
        ...(standIn && { [guestStandIn]: (vmId: string) => standIn.namespaceFor(vmId) }),
      })
      .with('firewall', {})
      .with('vsock', { connectTimeoutMs: this.target.bootTimeoutMs })
      .with('console', {})
      .with('shutdown', { ctrlAltDelGraceMs: 30_000 })
      .with('jailer', { jailerBinary: this.target.jailerBinary, chrootBaseDir: this.chrootBaseDir });
    this.#providerOptions = {
      stateDir: this.stateDir,
      firecrackerBinary: this.target.firecrackerBinary,
      socketReadyTimeoutMs: 30_000,
      // Harness only: the simulated guest prints the target's ready line and echoes on its vsock port.
      ...(this.target.vmm === 'simulator' && {
        env: simulatorEnvironment({
          readyLine: this.target.readyLine,
          vsockEchoPort: this.target.vsockEchoPort,
        }),
      }),
    };
    this.#microvms = this.#composer.provider(this.#providerOptions);
  }

  /** Closes the provider (the scenarios' last step); `tearDown` still finds whatever a failure left running. */
  async closeProvider(): Promise<void> {
    this.#providerClosed = true;
    await this.#microvms?.close();
  }

  /** Where the host-state check looks. */
  get hostStateScope(): HostStateScope {
    return {
      hostNamespace: this.hostNamespace,
      namePrefix: this.namePrefix,
      stateDir: this.stateDir,
      chrootBaseDir: this.chrootBaseDir,
      processMarkers: [this.stateDir, this.chrootBaseDir, `--id ${this.runTag}-`],
    };
  }

  captureHostState(): Promise<HostState> {
    return captureHostState(this.hostStateScope);
  }

  /**
   * Removes everything, whatever state a failed scenario left: VMs (and so their namespaces, rules, jails),
   * snapshots, the provider, the stand-ins, the namespaces and the work folder. Returns what it could not remove.
   */
  async tearDown(): Promise<string[]> {
    const problems: string[] = [];
    const note = (what: string) => (error: unknown) => problems.push(`${what}: ${String(error)}`);
    // A closed provider answers nothing: a new one on the same state directory adopts what is left.
    const microvms =
      this.#providerClosed && this.#composer && this.#providerOptions
        ? this.#composer.provider(this.#providerOptions)
        : this.#microvms;
    if (microvms) {
      for (const vm of await microvms.provider.list().catch(() => [])) {
        await microvms.provider.destroy(vm.vmId).catch(note(`destroy ${vm.vmId}`));
      }
      for (const snapshot of await microvms.provider.listSnapshots().catch(() => [])) {
        await microvms.provider
          .deleteSnapshot(snapshot.snapshotId)
          .catch(note(`snapshot ${snapshot.snapshotId}`));
      }
      await microvms.close().catch(note('close the provider'));
      this.#microvms = undefined;
    }
    if (this.standIn) problems.push(...(await this.standIn.close()));
    // A VM namespace outlives its VM only if a teardown failed; it still must not outlive the suite.
    const leftovers = (await this.captureHostStateSafe())?.namespaces ?? [];
    for (const namespace of [...leftovers, ...this.#namespaces.splice(0).reverse()]) {
      await mustRun('ip', ['netns', 'del', namespace]).catch(note(`namespace ${namespace}`));
    }
    if (this.#workDir) {
      await rm(this.#workDir, { recursive: true, force: true }).catch(note(`remove ${this.#workDir}`));
      this.#workDir = undefined;
    }
    return problems;
  }

  async captureHostStateSafe(): Promise<HostState | undefined> {
    if (this.#workDir === undefined) return undefined;
    return this.captureHostState().catch(() => undefined);
  }

  async #addNamespace(name: string): Promise<void> {
    await mustRun('ip', ['netns', 'add', name]);
    this.#namespaces.push(name);
    await mustRun('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  }

  /**
   * The simulator opens the kernel and rootfs but never reads them: placeholders do. A real rootfs is copied
   * into the work folder: the guests write to it, a jail hard-links it (and hands it to the jail's user), and a
   * clone shares it with its original, none of which should happen to the caller's image.
   */
  async #guestImages(workDir: string): Promise<{ kernel: string; rootfs: string }> {
    const rootfs = join(workDir, 'rootfs.ext4');
    if (this.target.kernel === undefined || this.target.rootfs === undefined) {
      const kernel = join(workDir, 'vmlinux');
      await writeFile(kernel, 'placeholder kernel: the simulator never reads it\n', { mode: 0o644 });
      await writeFile(rootfs, Buffer.alloc(1024 * 1024), { mode: 0o644 });
      return { kernel, rootfs };
    }
    await copyFile(this.target.rootfs, rootfs, constants.COPYFILE_FICLONE);
    await chmod(rootfs, 0o644);
    // Read-only, so a hard link (or a copy) into each jail serves: only check that it is still there.
    await stat(this.target.kernel);
    return { kernel: this.target.kernel, rootfs };
  }
}
