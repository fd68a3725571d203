import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The longest Unix socket path the kernel accepts (sun_path is 108 bytes with the NUL). */
const SOCKET_PATH_MAX_BYTES = 107;
/** The longest VM id a jailer accepts; socket paths are checked for it. */
const LONGEST_VM_ID = 'x'.repeat(64);
const MINIMUM_NODE = [20, 18, 1] as const;
/** Below this many characters for a VM id, a socket folder is unusable in practice. */
const MINIMUM_USEFUL_ID = 16;

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do about a warning or a failure. */
  fix?: string;
  /** The executable a binary check found. */
  path?: string;
}

/** Everything doctor reads from the host, so tests can stand in for a host. */
export interface HostProbe {
  platform: NodeJS.Platform;
  arch: string;
  nodeVersion: string;
  euid: number | undefined;
  env: NodeJS.ProcessEnv;
  /** True when `path` exists and allows `mode` (fs.constants). */
  canAccess(path: string, mode: number): Promise<boolean>;
  readText(path: string): Promise<string | undefined>;
  /** Runs `executable args…`; undefined when it cannot run. */
  run(executable: string, args: string[]): Promise<string | undefined>;
}

export const realHost: HostProbe = {
  platform: process.platform,
  arch: process.arch,
  nodeVersion: process.versions.node,
  euid: process.geteuid?.(),
  env: process.env,
  async canAccess(path, mode) {
    try {
      await access(path, mode);
      return true;
    } catch {
      return false;
    }
  },
  async readText(path) {
    try {
      return await readFile(path, 'utf8');
    } catch {
      return undefined;
    }
  },
  async run(executable, args) {
    try {
      const { stdout, stderr } = await execFileAsync(executable, args, { timeout: 5_000 });
      return `${stdout}${stderr}`;
    } catch {
      return undefined;
    }
  },
};

export interface DoctorOptions {
  stateDir: string;
  chrootBaseDir: string;
  host?: HostProbe;
}

async function findExecutable(host: HostProbe, name: string, override: string | undefined) {
  if (override) return (await host.canAccess(override, constants.X_OK)) ? override : undefined;
  for (const folder of (host.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(folder, name);
    if (await host.canAccess(candidate, constants.X_OK)) return candidate;
  }
  return undefined;
}

function versionAtLeast(version: string, minimum: readonly number[]): boolean {
  const parts = version.split('.').map((part) => Number.parseInt(part, 10));
  for (let index = 0; index < minimum.length; index += 1) {
    const have = parts[index] ?? 0;
    const want = minimum[index] ?? 0;
    if (have !== want) return have > want;
  }
  return true;
}

async function checkVmmBinary(
  host: HostProbe,
  name: 'firecracker' | 'jailer',
  variable: string,
): Promise<CheckResult> {
  const path = await findExecutable(host, name, host.env[variable]);
  const fix = `download the official release (https://github.com/firecracker-microvm/firecracker/releases), then put ${name} on PATH or set ${variable}`;
  if (!path) {
    return {
      name: `${name} binary`,
      status: 'warn',
      detail: host.env[variable]
        ? `${host.env[variable]} (from ${variable}${name === 'firecracker' ? ' or --firecracker' : ''}) is not an executable file`
        : `no ${name} on PATH; the demo and tests use @microvm/simulator instead`,
      fix,
    };
  }
  const output = await host.run(path, ['--version']);
  const version = /v(\d+\.\d+\.\d+)/.exec(output ?? '')?.[1];
  if (!version) {
    return { name: `${name} binary`, status: 'fail', detail: `${path} --version gave no version`, fix };
  }
  return { name: `${name} binary`, status: 'ok', detail: `${path} (v${version})`, path };
}

async function checkCommand(host: HostProbe, name: string, args: string[], packageName: string, why: string) {
  const output = await host.run(name, args);
  if (output === undefined) {
    return {
      name,
      status: 'fail' as const,
      detail: `${name} is missing (${why})`,
      fix: `apt-get install -y ${packageName}`,
    };
  }
  return { name, status: 'ok' as const, detail: output.trim().split('\n')[0] ?? name };
}

/** The socket path for a VM id of `LONGEST_VM_ID`, reported as the longest id that still fits. */
function checkSocketPath(name: string, path: string, shorter: string): CheckResult {
  const longestId = SOCKET_PATH_MAX_BYTES - (Buffer.byteLength(path) - LONGEST_VM_ID.length);
  if (longestId >= LONGEST_VM_ID.length) {
    return { name, status: 'ok', detail: `fits any VM id (64 characters: ${Buffer.byteLength(path)} bytes)` };
  }
  const fix = `keep VM ids within ${Math.max(longestId, 0)} characters, or choose a shorter ${shorter}`;
  if (longestId >= MINIMUM_USEFUL_ID) {
    return {
      name,
      status: 'warn',
      detail: `VM ids longer than ${longestId} characters exceed the ${SOCKET_PATH_MAX_BYTES}-byte socket path limit`,
      fix,
    };
  }
  return {
    name,
    status: 'fail',
    detail: `${path.replace(LONGEST_VM_ID, '<id>')} leaves room for VM ids of only ${Math.max(longestId, 0)} characters`,
    fix,
  };
}

/** Checks what a host needs to run Firecracker VMs with every primitive, and says what to fix. */
export async function runDoctor(options: DoctorOptions): Promise<CheckResult[]> {
  const host = options.host ?? realHost;
  const results: CheckResult[] = [];

  results.push(
    host.platform === 'linux' && (host.arch === 'x64' || host.arch === 'arm64')
      ? { name: 'platform', status: 'ok', detail: `${host.platform} ${host.arch}` }
      : {
          name: 'platform',
          status: 'fail',
          detail: `${host.platform} ${host.arch}`,
          fix: 'Firecracker runs on Linux x86_64 or aarch64 only',
        },
  );
  results.push(
    versionAtLeast(host.nodeVersion, MINIMUM_NODE)
      ? { name: 'node', status: 'ok', detail: `v${host.nodeVersion}` }
      : {
          name: 'node',
          status: 'fail',
          detail: `v${host.nodeVersion}`,
          fix: `install Node.js ${MINIMUM_NODE.join('.')} or newer`,
        },
  );
  results.push(
    host.euid === 0
      ? { name: 'root', status: 'ok', detail: 'running as root' }
      : {
          name: 'root',
          status: 'warn',
          detail: `running as uid ${host.euid ?? 'unknown'}`,
          fix: 'network, firewall and jailer need root (or CAP_NET_ADMIN, CAP_SYS_ADMIN); run with sudo',
        },
  );
  results.push(
    (await host.canAccess('/dev/kvm', constants.R_OK | constants.W_OK))
      ? { name: '/dev/kvm', status: 'ok', detail: 'readable and writable' }
      : {
          name: '/dev/kvm',
          status: 'fail',
          detail: 'missing or not accessible',
          fix: 'enable virtualization (VT-x/AMD-V, or nested virtualization on a cloud VM), load kvm_intel or kvm_amd, and grant access (setfacl -m u:$USER:rw /dev/kvm)',
        },
  );
  results.push(await checkVmmBinary(host, 'firecracker', 'MICROVM_FIRECRACKER_BIN'));
  results.push(await checkVmmBinary(host, 'jailer', 'MICROVM_JAILER_BIN'));
  results.push(
    (await host.canAccess('/dev/net/tun', constants.R_OK | constants.W_OK))
      ? { name: '/dev/net/tun', status: 'ok', detail: 'present' }
      : {
          name: '/dev/net/tun',
          status: 'fail',
          detail: 'missing: no TAP devices',
          fix: 'modprobe tun',
        },
  );
  results.push(await checkCommand(host, 'ip', ['-V'], 'iproute2', 'TAPs, namespaces, routes'));
  results.push(await checkCommand(host, 'nft', ['--version'], 'nftables', 'the egress firewall'));
  results.push(
    await checkCommand(host, 'nsenter', ['--version'], 'util-linux', 'VMs in a network namespace'),
  );

  const mounts = (await host.readText('/proc/mounts')) ?? '';
  const cgroupV1 = mounts.split('\n').filter((line) => line.split(' ')[2] === 'cgroup');
  const cgroupV2 = mounts.split('\n').find((line) => line.split(' ')[2] === 'cgroup2');
  results.push(
    cgroupV1.length > 0 || cgroupV2
      ? {
          name: 'cgroups',
          status: 'ok',
          detail: [
            cgroupV1.length > 0 ? `v1 (${cgroupV1.length} controllers)` : undefined,
            cgroupV2 ? `v2 at ${cgroupV2.split(' ')[1]}` : undefined,
          ]
            .filter(Boolean)
            .join(', '),
        }
      : {
          name: 'cgroups',
          status: 'warn',
          detail: 'no cgroup hierarchy mounted',
          fix: 'the jailer cannot apply CPU or memory limits; mount cgroup2 at /sys/fs/cgroup',
        },
  );
  const forwarding = (await host.readText('/proc/sys/net/ipv4/ip_forward'))?.trim();
  results.push(
    forwarding === '1'
      ? { name: 'ip forwarding', status: 'ok', detail: 'enabled' }
      : {
          name: 'ip forwarding',
          status: 'warn',
          detail: 'disabled in this network namespace',
          fix: '@microvm/network enables it when it sets up the host; or: sysctl -w net.ipv4.ip_forward=1',
        },
  );
  results.push(
    checkSocketPath(
      'API socket path',
      join(options.stateDir, 'vms', LONGEST_VM_ID, 'api.sock'),
      '--state-dir',
    ),
  );
  results.push(
    checkSocketPath(
      'jailed socket path',
      // The jailer primitive puts the API socket at /api.sock inside the jail (JAILED_API_SOCKET_PATH).
      join(options.chrootBaseDir, 'firecracker', LONGEST_VM_ID, 'root', 'api.sock'),
      'chroot base (MICROVM_JAILER_CHROOT_BASE_DIR)',
    ),
  );
  return results;
}

/** The checks a run of the e2e suite against a real Firecracker depends on, beyond having no failure. */
const E2E_NEEDS = ['firecracker binary', 'jailer binary', 'root'];

/** A value as one shell word: quoted only when it has to be. */
function shellWord(value: string): string {
  return /^[\w./:=@%+-]+$/.test(value) ? value : `'${value.replaceAll("'", `'\\''`)}'`;
}

/**
 * When every check the e2e suite needs passes (nothing fails; firecracker, jailer and root are ok), the command
 * that runs it against this host's Firecracker, with the binaries doctor found; the guest kernel and rootfs are
 * the user's to choose (docs/guides/real-firecracker.md). Undefined otherwise.
 */
export function nextStep(results: readonly CheckResult[]): string | undefined {
  if (results.some((result) => result.status === 'fail')) return undefined;
  const byName = new Map(results.map((result) => [result.name, result]));
  if (!byName.has('firecracker binary')) return undefined;
  if (E2E_NEEDS.some((name) => byName.has(name) && byName.get(name)?.status !== 'ok')) return undefined;
  const variables = [
    `MICROVM_FIRECRACKER_BIN=${shellWord(byName.get('firecracker binary')?.path ?? '/path/to/firecracker')}`,
    `MICROVM_JAILER_BIN=${shellWord(byName.get('jailer binary')?.path ?? '/path/to/jailer')}`,
    'MICROVM_KERNEL=/path/to/vmlinux',
    'MICROVM_ROOTFS=/path/to/rootfs.ext4',
  ];
  return [
    'Every check the e2e suite needs passed. Run it against this Firecracker (kernel and rootfs: docs/guides/real-firecracker.md):',
    `  ${variables.join(' ')} pnpm test:e2e`,
  ].join('\n');
}
