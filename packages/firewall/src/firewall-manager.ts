import { ProcessExitError, ValidationError } from '@microvm/core';
import { createNftRunner, type NftResult, type NftRunner } from './nft.js';
import {
  applyLines,
  chainsOf,
  type InstalledState,
  parseChainName,
  parseInstalledState,
  removeLines,
  renderScript,
  type ScriptLine,
  type VmChains,
} from './nft-script.js';
import {
  type FirewallPolicy,
  type FirewallTarget,
  type NormalisedPolicy,
  validateFirewallVmId,
  validateNamespace,
  validatePolicy,
  validateTableName,
  validateTarget,
} from './policy.js';

export interface FirewallManagerOptions {
  /** Network namespace (a name under `/run/netns`) whose firewall to manage; default the caller's own. */
  namespace?: string;
  /** Our nftables table, family `inet`. Default `microvm`. */
  tableName?: string;
  /** The `nft` executable. Default `nft` from `PATH`. */
  nftPath?: string;
}

/** What one VM has installed, as read back from the kernel. */
export interface InstalledFirewall {
  vmId: string;
  tapName: string;
  portForwards: Array<{ protocol: 'tcp' | 'udp'; hostPort: number }>;
}

export interface AppliedFirewall extends InstalledFirewall {
  table: string;
  chains: VmChains;
  /** The policy as installed, presets and defaults resolved. */
  policy: NormalisedPolicy;
}

const NOT_FOUND = /No such file or directory/;

/**
 * Per-VM firewall rules in one nftables table of ours. Every change for a VM is one atomic `nft -f -`
 * transaction, so a VM is never half-filtered, and a failed change leaves the previous rules in place.
 * Never touches other tables: the ruleset is never flushed.
 */
export class FirewallManager {
  readonly namespace: string | undefined;
  readonly tableName: string;
  readonly #runNft: NftRunner;
  // Changes for one VM run one after the other (a read, then a transaction); different VMs run in parallel.
  readonly #queues = new Map<string, Promise<unknown>>();
  // VMs this manager installed: only a hint to try a replacement first (the kernel's state is re-read anyway).
  readonly #installedHere = new Set<string>();

  constructor(options: FirewallManagerOptions = {}) {
    this.namespace = validateNamespace(options.namespace, 'namespace');
    this.tableName = validateTableName(options.tableName ?? 'microvm', 'tableName');
    if (options.nftPath !== undefined && (typeof options.nftPath !== 'string' || options.nftPath === '')) {
      throw new ValidationError({
        field: 'nftPath',
        rule: 'must be a non-empty path',
        value: options.nftPath,
      });
    }
    this.#runNft = createNftRunner(options.nftPath ?? 'nft');
  }

  /** The chains a VM's rules live in (whether or not they are installed). */
  chainsOf(vmId: string): VmChains {
    return chainsOf(validateFirewallVmId(vmId));
  }

  /**
   * Installs the VM's rules, or replaces them when already installed (also on a running VM: the swap is
   * atomic, established connections the new policy still allows keep flowing). Idempotent.
   * Validates everything first: bad input throws a `ValidationError` and changes nothing.
   */
  async apply(vmId: string, target: FirewallTarget, policy: FirewallPolicy = {}): Promise<AppliedFirewall> {
    validateFirewallVmId(vmId);
    const normalisedTarget = validateTarget(target);
    const normalisedPolicy = validatePolicy(policy, normalisedTarget.dnsServers);
    return this.#serialised(vmId, async () => {
      const what = `apply the firewall of VM ${vmId}`;
      // Optimistic first install (one nft call); when the VM turns out to have rules, read them and replace.
      const installedAlready =
        this.#installedHere.has(vmId) ||
        !(await this.#transaction(
          applyLines(this.tableName, vmId, normalisedTarget, normalisedPolicy, 'none'),
          what,
        ));
      if (installedAlready) {
        const previous = (await this.#readInstalled(vmId))?.state;
        await this.#transaction(
          applyLines(this.tableName, vmId, normalisedTarget, normalisedPolicy, previous),
          what,
        );
      }
      // The next apply for this VM (an update) goes straight to the replace path: one nft call fewer.
      this.#installedHere.add(vmId);
      return {
        vmId,
        table: this.tableName,
        chains: chainsOf(vmId),
        tapName: normalisedTarget.tapName,
        portForwards: normalisedPolicy.portForwards.map(({ protocol, hostPort }) => ({ protocol, hostPort })),
        policy: normalisedPolicy,
      };
    });
  }

  /** Removes the VM's chains, map entries and port forwards. Idempotent: false when nothing was installed. */
  async remove(vmId: string): Promise<boolean> {
    validateFirewallVmId(vmId);
    return this.#serialised(vmId, async () => {
      this.#installedHere.delete(vmId);
      const installed = await this.#readInstalled(vmId);
      if (installed === undefined) return false;
      const lines = removeLines(this.tableName, vmId, installed.state);
      try {
        await this.#transaction(lines, `remove the firewall of VM ${vmId}`);
      } catch (error) {
        // Someone removed one of the VM's map entries by hand: the all-or-nothing delete refuses, so delete
        // what is still there one command at a time.
        if (!(error instanceof ProcessExitError) || !NOT_FOUND.test(error.stderrTail)) throw error;
        for (const line of lines) {
          const result = await this.#run(['-f', '-'], renderScript([line]));
          if (result.exitCode !== 0 && !NOT_FOUND.test(result.stderr)) {
            throw this.#commandError(result, `remove the firewall of VM ${vmId}`);
          }
        }
      }
      return true;
    });
  }

  /** Every VM with rules in our table. */
  async list(): Promise<InstalledFirewall[]> {
    const result = await this.#run(['-j', 'list', 'table', 'inet', this.tableName]);
    if (result.exitCode !== 0) {
      if (NOT_FOUND.test(result.stderr)) return [];
      throw this.#commandError(result, `list table inet ${this.tableName}`);
    }
    return parseTableListing(result.stdout);
  }

  /** Removes the rules of every VM not in `liveVmIds`; returns the VM ids whose rules were removed. */
  async reconcile(liveVmIds: Iterable<string>): Promise<string[]> {
    const live = new Set(liveVmIds);
    const removed: string[] = [];
    for (const installed of await this.list()) {
      if (live.has(installed.vmId)) continue;
      if (await this.remove(installed.vmId)) removed.push(installed.vmId);
    }
    return removed;
  }

  /** Deletes our whole table (every VM's rules with it). Idempotent. Other tables are not touched. */
  async deleteTable(): Promise<void> {
    const result = await this.#run(['delete', 'table', 'inet', this.tableName]);
    if (result.exitCode !== 0 && !NOT_FOUND.test(result.stderr)) {
      throw this.#commandError(result, `delete table inet ${this.tableName}`);
    }
  }

  /** Undefined when the VM has no chains; `state` is what its ingress chain recorded. */
  async #readInstalled(vmId: string): Promise<{ state: InstalledState | undefined } | undefined> {
    const chain = chainsOf(vmId).ingress;
    const result = await this.#run(['list', 'chain', 'inet', this.tableName, chain]);
    if (result.exitCode !== 0) {
      if (NOT_FOUND.test(result.stderr)) return undefined;
      throw this.#commandError(result, `list chain inet ${this.tableName} ${chain}`);
    }
    return { state: parseInstalledState(result.stdout) };
  }

  /** Runs one atomic transaction; false when a line marked `'installed'` found the VM installed already. */
  async #transaction(lines: readonly ScriptLine[], what: string): Promise<boolean> {
    let script = lines;
    for (;;) {
      const result = await this.#run(['-f', '-'], renderScript(script));
      if (result.exitCode === 0) return true;
      // nft names the refused line (`/dev/stdin:12:...`); a key another VM holds is the caller's conflict.
      const lineNumber = Number(/\/dev\/stdin:(\d+):/.exec(result.stderr)?.[1]);
      const refused = script[lineNumber - 1];
      const conflict = refused?.conflict;
      // A key held with other data: EEXIST since Linux 5.9, EBUSY before.
      if (conflict && /File exists|Device or resource busy/.test(result.stderr)) {
        if (conflict === 'installed') return false;
        throw new ValidationError(conflict);
      }
      // Something to delete was gone already (removed by hand): the transaction is redone without it.
      if (refused?.mayBeMissing && NOT_FOUND.test(result.stderr)) {
        script = script.filter((line) => line !== refused);
        continue;
      }
      throw this.#commandError(result, what);
    }
  }

  #run(args: readonly string[], input?: string): Promise<NftResult> {
    return this.#runNft(args, {
      ...(this.namespace ? { namespace: this.namespace } : {}),
      ...(input ? { input } : {}),
    });
  }

  #commandError(result: NftResult, what: string): ProcessExitError {
    return new ProcessExitError({
      exitCode: result.exitCode,
      signal: null,
      stderrTail: result.stderr.slice(-4000),
      context: `nft (to ${what}${this.namespace ? ` in network namespace ${this.namespace}` : ''})`,
    });
  }

  async #serialised<T>(vmId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#queues.get(vmId) ?? Promise.resolve();
    const current = previous.then(work, work);
    const settled = current.catch(() => undefined);
    this.#queues.set(vmId, settled);
    try {
      return await current;
    } finally {
      if (this.#queues.get(vmId) === settled) this.#queues.delete(vmId);
    }
  }
}

interface NftJsonRule {
  chain?: string;
  comment?: string;
}

/** Reads each VM's recorded state from the rule comments of its ingress chain in `nft -j list table`. */
export function parseTableListing(json: string): InstalledFirewall[] {
  const parsed = JSON.parse(json) as { nftables?: Array<Record<string, unknown>> };
  const listings = new Map<string, string[]>();
  for (const entry of parsed.nftables ?? []) {
    const chain = parseChainName((entry.chain as { name?: string } | undefined)?.name ?? '');
    if (chain && !listings.has(chain.vmId)) listings.set(chain.vmId, []);
    const rule = entry.rule as NftJsonRule | undefined;
    const ruleChain = parseChainName(rule?.chain ?? '');
    if (ruleChain?.role === 'ingress' && rule?.comment) {
      listings.get(ruleChain.vmId)?.push(`comment "${rule.comment}"`);
    }
  }
  const installed: InstalledFirewall[] = [];
  for (const [vmId, comments] of listings) {
    const state = parseInstalledState(comments.join('\n'));
    installed.push({ vmId, tapName: state?.tapName ?? '', portForwards: state?.portForwards ?? [] });
  }
  return installed.sort((left, right) => left.vmId.localeCompare(right.vmId));
}
