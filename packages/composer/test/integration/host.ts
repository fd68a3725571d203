import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, rmdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FirewallManager } from '@microvm/firewall';

const execFileAsync = promisify(execFile);

export async function run(file: string, args: string[]): Promise<string> {
  return (await execFileAsync(file, args, { encoding: 'utf8' })).stdout;
}

/**
 * What the tests build on the host: a "host" namespace whose default route leaves through a veth to an
 * "internet" namespace, a state directory, a jail base the unprivileged jail uid can traverse, a fake kernel
 * and rootfs, and a parent cgroup of its own. `cleanup()` removes all of it.
 */
export interface TestHost {
  namespace: string;
  internetNamespace: string;
  dir: string;
  stateDir: string;
  chrootBaseDir: string;
  parentCgroup: string;
  kernel: string;
  rootfs: string;
  tableName: string;
  cleanup(): Promise<void>;
}

export async function createTestHost(tag: string): Promise<TestHost> {
  const suffix = `${tag}${process.pid.toString(36)}`;
  const namespace = `mch${suffix}`;
  const internetNamespace = `mci${suffix}`;
  const dir = await mkdtemp(join(tmpdir(), 'mvc-'));
  // mkdtemp gives 0700: the jailed Firecracker (uid 65534) must be able to reach its chroot below it.
  await chmod(dir, 0o755);
  const host: TestHost = {
    namespace,
    internetNamespace,
    dir,
    stateDir: join(dir, 'state'),
    chrootBaseDir: join(dir, 'jail'),
    parentCgroup: `mvc-${suffix}`,
    kernel: join(dir, 'vmlinux'),
    rootfs: join(dir, 'rootfs.ext4'),
    tableName: 'microvmtest',
    cleanup: async () => {
      await run('ip', ['netns', 'del', namespace]).catch(() => undefined);
      await run('ip', ['netns', 'del', internetNamespace]).catch(() => undefined);
      await removeCgroups(host.parentCgroup);
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await mkdir(host.chrootBaseDir);
    await writeFile(host.kernel, 'not a real kernel');
    await writeFile(host.rootfs, Buffer.alloc(4096));
    await run('ip', ['netns', 'add', namespace]);
    await run('ip', ['netns', 'add', internetNamespace]);
    await run('ip', ['-n', namespace, 'link', 'set', 'lo', 'up']);
    await run('ip', [
      '-n',
      namespace,
      'link',
      'add',
      'up0',
      'type',
      'veth',
      'peer',
      'name',
      'up0',
      'netns',
      internetNamespace,
    ]);
    await run('ip', ['-n', namespace, 'addr', 'add', '198.51.100.1/24', 'dev', 'up0']);
    await run('ip', ['-n', namespace, 'link', 'set', 'up0', 'up']);
    await run('ip', ['-n', namespace, 'route', 'add', 'default', 'via', '198.51.100.2']);
    await run('ip', ['-n', internetNamespace, 'addr', 'add', '198.51.100.2/24', 'dev', 'up0']);
    await run('ip', ['-n', internetNamespace, 'link', 'set', 'up0', 'up']);
  } catch (error) {
    await host.cleanup();
    throw error;
  }
  return host;
}

async function removeCgroups(parentCgroup: string): Promise<void> {
  for (const mount of await cgroupMounts()) {
    const parent = join(mount, parentCgroup);
    for (const child of await readdir(parent, { withFileTypes: true }).catch(() => [])) {
      if (child.isDirectory()) await rmdir(join(parent, child.name)).catch(() => undefined);
    }
    await rmdir(parent).catch(() => undefined);
  }
}

async function cgroupMounts(): Promise<string[]> {
  return (await readFile('/proc/mounts', 'utf8'))
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields[2] === 'cgroup' || fields[2] === 'cgroup2')
    .map((fields) => fields[1] ?? '');
}

/** Every trace a VM could leave on the host, described in words; empty when the host is clean. */
export async function leftoversOf(host: TestHost, vmId: string): Promise<string[]> {
  const found: string[] = [];
  const links = (await run('ip', ['-n', host.namespace, '-o', 'link', 'show']))
    .split('\n')
    .filter(Boolean)
    .map((line) => line.split(':')[1]?.trim().split('@')[0] ?? '');
  for (const link of links) if (link !== 'lo' && link !== 'up0') found.push(`interface ${link}`);
  for (const namespace of (await run('ip', ['netns', 'list'])).split('\n')) {
    if (namespace.includes(vmId)) found.push(`namespace ${namespace}`);
  }
  const firewall = new FirewallManager({ namespace: host.namespace, tableName: host.tableName });
  for (const installed of await firewall.list()) found.push(`firewall chains of ${installed.vmId}`);
  for (const entry of await walk(host.chrootBaseDir))
    if (entry.includes(vmId)) found.push(`jail path ${entry}`);
  for (const mount of await cgroupMounts()) {
    for (const entry of await readdir(join(mount, host.parentCgroup)).catch(() => [])) {
      if (entry === vmId) found.push(`cgroup ${join(mount, host.parentCgroup, entry)}`);
    }
  }
  for (const entry of await readdir(join(host.stateDir, 'vms')).catch(() => []))
    found.push(`state folder ${entry}`);
  const leases = join(host.stateDir, 'leases');
  for (const pool of await readdir(leases).catch(() => [])) {
    for (const lease of await readdir(join(leases, pool)).catch(() => []))
      found.push(`lease ${pool}/${lease}`);
  }
  for (const pid of await processesMentioning(vmId)) found.push(`process ${pid}`);
  return found;
}

async function walk(dir: string): Promise<string[]> {
  const entries: string[] = [];
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    const path = join(dir, entry.name);
    entries.push(path);
    if (entry.isDirectory()) entries.push(...(await walk(path)));
  }
  return entries;
}

/** Live (non-zombie) processes whose command line names the VM. */
async function processesMentioning(vmId: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    try {
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z')) continue;
      const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (argv.some((argument) => argument.includes(vmId))) pids.push(Number(entry));
    } catch {
      // Gone while we looked.
    }
  }
  return pids;
}
