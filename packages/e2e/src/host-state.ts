import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { runCommand } from './commands.js';

/** Where the suite's traces can be: everything it names is its own (unique per run). */
export interface HostStateScope {
  /** The namespace the suite made to play the host. */
  hostNamespace: string;
  /** The network primitive's `namePrefix`: VM namespaces and interfaces start with it. */
  namePrefix: string;
  stateDir: string;
  chrootBaseDir: string;
  /** A process whose command line contains one of these is one of the suite's VMMs (or jailers). */
  processMarkers: readonly string[];
}

/** What the suite could leave behind, each as a sorted list of names. */
export interface HostState {
  /** `ip netns list` entries starting with the prefix (the VMs' namespaces). */
  namespaces: string[];
  /** Interfaces in the host namespace. */
  hostLinks: string[];
  /** nftables tables in the host namespace. */
  hostNftTables: string[];
  /** Interfaces in the root namespace starting with the prefix: the suite must never create any there. */
  rootLinks: string[];
  /** `<chrootBaseDir>/<exec name>/<vm id>` folders. */
  jails: string[];
  /** `<stateDir>/vms/<vm id>` folders. */
  vmFolders: string[];
  /** `<stateDir>/snapshots/<snapshot id>` folders. */
  snapshots: string[];
  /** `<stateDir>/leases/<pool>/<value>`: subnets and CIDs. */
  leases: string[];
  /** `pid: command line` of live processes carrying a marker. */
  processes: string[];
}

async function entries(path: string): Promise<string[]> {
  return readdir(path).catch(() => []);
}

async function linkNames(namespace: string | undefined): Promise<string[]> {
  const result = await runCommand('ip', [...(namespace ? ['-n', namespace] : []), '-j', 'link', 'show']);
  if (result.exitCode !== 0) return [`(ip link failed: ${result.stderr.trim()})`];
  const links = JSON.parse(result.stdout || '[]') as { ifname: string }[];
  return links.map((link) => link.ifname);
}

async function nftTables(namespace: string): Promise<string[]> {
  const result = await runCommand('ip', ['netns', 'exec', namespace, 'nft', 'list', 'tables']);
  if (result.exitCode !== 0) return [`(nft list tables failed: ${result.stderr.trim()})`];
  return result.stdout.split('\n').filter(Boolean);
}

async function namespaceNames(): Promise<string[]> {
  const result = await runCommand('ip', ['-j', 'netns', 'list']);
  if (result.exitCode !== 0 || result.stdout.trim() === '') return [];
  return (JSON.parse(result.stdout) as { name: string }[]).map((namespace) => namespace.name);
}

async function processesWith(markers: readonly string[]): Promise<string[]> {
  const found: string[] = [];
  for (const pid of await entries('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const commandLine = await readFile(join('/proc', pid, 'cmdline'), 'utf8').catch(() => '');
    const text = commandLine.replaceAll('\0', ' ').trim();
    if (text && markers.some((marker) => text.includes(marker))) found.push(`${pid}: ${text.slice(0, 200)}`);
  }
  return found;
}

async function nested(path: string): Promise<string[]> {
  const names: string[] = [];
  for (const first of await entries(path)) {
    if (
      !(await stat(join(path, first)).then(
        (info) => info.isDirectory(),
        () => false,
      ))
    )
      continue;
    for (const second of await entries(join(path, first))) names.push(`${first}/${second}`);
  }
  return names;
}

/** Reads everything the suite could leave behind. Read-only: it changes nothing on the host. */
export async function captureHostState(scope: HostStateScope): Promise<HostState> {
  // The network primitive's names: <prefix><kind><7 base-36 chars>; a bare startsWith would match longer prefixes.
  const ours = (name: string) => new RegExp(`^${scope.namePrefix}[ntbv][0-9a-z]{7}$`).test(name);
  const state: HostState = {
    namespaces: (await namespaceNames()).filter(ours),
    hostLinks: await linkNames(scope.hostNamespace),
    hostNftTables: await nftTables(scope.hostNamespace),
    rootLinks: (await linkNames(undefined)).filter(ours),
    jails: await nested(scope.chrootBaseDir),
    vmFolders: await entries(join(scope.stateDir, 'vms')),
    snapshots: await entries(join(scope.stateDir, 'snapshots')),
    leases: (await nested(join(scope.stateDir, 'leases'))).filter(
      (name) => !name.split('/')[1]?.startsWith('.'),
    ),
    processes: await processesWith(scope.processMarkers),
  };
  for (const list of Object.values(state) as string[][]) list.sort();
  return state;
}

/**
 * Every difference between two states, one line each (`hostLinks: + tap0`), except those `ignored` allows
 * (`{ hostNftTables: ['table ip microvm-nat'] }`: what is kept on purpose). Empty when the host is as it was.
 */
export function compareHostStates(
  before: HostState,
  after: HostState,
  ignored: Partial<Record<keyof HostState, readonly string[]>> = {},
): string[] {
  const differences: string[] = [];
  for (const key of Object.keys(before) as (keyof HostState)[]) {
    const allowed = new Set(ignored[key] ?? []);
    const previous = new Set(before[key]);
    const current = new Set(after[key]);
    for (const name of after[key]) {
      if (!previous.has(name) && !allowed.has(name)) differences.push(`${key}: + ${name}`);
    }
    for (const name of before[key]) {
      if (!current.has(name) && !allowed.has(name)) differences.push(`${key}: - ${name}`);
    }
  }
  return differences;
}
