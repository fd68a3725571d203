/**
 * Time to install, update and remove one VM's firewall with 0, 100 and 1,000 other VMs installed, inside a
 * namespace of its own. Verdict maps make the per-VM cost independent of the VM count: the curve should be flat.
 */
import { execa } from 'execa';
import { afterAll, beforeAll, it } from 'vitest';
import { type BenchRow, measure, report, summarize } from '../../../bench/report.js';
import { FirewallManager } from '../src/index.js';
import { applyLines, baseLines, renderScript } from '../src/nft-script.js';
import { validatePolicy, validateTarget } from '../src/policy.js';

const namespace = `fwbench${process.pid}`;
const policy = {
  preset: 'internet-only' as const,
  allow: [{ cidr: '10.9.0.0/16', protocol: 'tcp' as const, port: 5432 }],
};
const updatedPolicy = { preset: 'internet-only' as const, portForwards: [{ hostPort: 40000 }] };

function target(index: number) {
  return {
    tapName: `mv${index}`,
    guestIp: `10.${100 + Math.floor(index / 16384)}.${Math.floor(index / 64) % 256}.${(index % 64) * 4 + 2}`,
    guestMac: '06:00:0a:00:00:02',
    dnsServers: ['10.0.0.1'],
  };
}

/** Installs VMs `from`..`to` in one big transaction, so building the 1,000-VM state stays quick. */
async function preinstall(from: number, to: number): Promise<void> {
  const base = new Set(baseLines('microvm').map((line) => line.text));
  const lines = baseLines('microvm').map((line) => line.text);
  const normalisedPolicy = validatePolicy(policy);
  for (let index = from; index < to; index += 1) {
    for (const line of applyLines(
      'microvm',
      `other-${index}`,
      validateTarget(target(index)),
      normalisedPolicy,
      undefined,
    )) {
      if (!base.has(line.text)) lines.push(line.text);
    }
  }
  await execa('ip', ['netns', 'exec', namespace, 'nft', '-f', '-'], {
    input: renderScript(lines.map((text) => ({ text }))),
  });
}

beforeAll(async () => {
  await execa('ip', ['netns', 'add', namespace]);
});

afterAll(async () => {
  await execa('ip', ['netns', 'del', namespace], { reject: false });
});

it('measures install, update and remove against the number of installed VMs', async () => {
  const firewall = new FirewallManager({ namespace });
  const rows: BenchRow[] = [];
  let installed = 0;
  let next = 100_000;
  for (const others of [0, 100, 1000]) {
    await preinstall(installed, others);
    installed = others;
    const vmIds: string[] = [];
    const install = await measure(
      20,
      async () => {
        const vmId = `bench-${next}`;
        await firewall.apply(vmId, target(next), policy);
        vmIds.push(vmId);
        next += 1;
      },
      { warmup: 2 },
    );
    let flip = 0;
    const update = await measure(20, async () => {
      flip += 1;
      const vmId = vmIds[0]!;
      const index = Number(vmId.slice('bench-'.length));
      await firewall.apply(vmId, target(index), flip % 2 === 0 ? policy : updatedPolicy);
    });
    const remove = await measure(vmIds.length, async (iteration) => {
      await firewall.remove(vmIds[iteration]!);
    });
    rows.push({ name: `install (${others} other VMs)`, figures: summarize(install) });
    rows.push({ name: `update (${others} other VMs)`, figures: summarize(update) });
    rows.push({ name: `remove (${others} other VMs)`, figures: summarize(remove) });
  }
  report(
    'firewall',
    '@microvm/firewall: one VM’s rules vs the number of installed VMs (nft -f -, per call)',
    rows,
  );
});
