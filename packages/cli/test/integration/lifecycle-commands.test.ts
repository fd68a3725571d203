import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { constants, existsSync, readFileSync } from 'node:fs';
import { access, chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { firecrackerSimulatorPath, jailerSimulatorPath } from '@microvm/simulator';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';

/**
 * `kill`, `logs -f`, `gc` and `doctor` against the built bin, the real composer and the simulator (the unit tests
 * cover them against a fake provider and a fake host only).
 */

const execFileAsync = promisify(execFile);

/** The built bin, as a user runs it (`pnpm --filter @microvm/cli build` first). */
const bin = fileURLToPath(new URL('../../dist/bin/microvm.js', import.meta.url));

const PRIMITIVES = ['NETWORK', 'FIREWALL', 'VSOCK', 'CONSOLE', 'SHUTDOWN', 'JAILER'] as const;

/** Only `on` primitives are composed: the rest are switched off, so no root or namespace is needed for them. */
function composition(...on: Array<(typeof PRIMITIVES)[number]>): NodeJS.ProcessEnv {
  return Object.fromEntries(
    PRIMITIVES.map((name) => [`MICROVM_COMPOSE_${name}`, on.includes(name) ? '1' : '0']),
  );
}

const READY_LINE = 'microvm-simulator: guest ready';
/** Polls wait for other processes on a loaded two-core host: generous, never a fixed sleep. */
const POLL = { timeout: 30_000, interval: 100 };
/** How the CLI prints a duration: `49 ms`, or `1.06 s` from a second on (a loaded host gets there). */
const DURATION = String.raw`\d+(\.\d+)? m?s`;

interface Result {
  exitCode: number | null;
  stdout: string;
  stderr: string;
}

let dir: string;
let stateDir: string;
let env: NodeJS.ProcessEnv;
let kernel: string;
let rootfs: string;
let children: ChildProcess[];
let cleanups: Array<() => Promise<unknown>>;

function microvm(...args: string[]): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { env, timeout: 60_000 }, (error, stdout, stderr) => {
      resolve({ exitCode: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

async function ok(...args: string[]): Promise<string> {
  const result = await microvm(...args);
  expect(result.exitCode, `microvm ${args.join(' ')}: ${result.stderr}`).toBe(0);
  return result.stdout;
}

async function okJson<T>(...args: string[]): Promise<T> {
  return JSON.parse(await ok(...args)) as T;
}

/** A long-running `microvm` (logs -f) whose output the test reads while it runs. */
function startMicrovm(...args: string[]) {
  const child = spawn(process.execPath, [bin, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  const output = { stdout: '', stderr: '' };
  child.stdout.on('data', (chunk: Buffer) => {
    output.stdout += chunk.toString();
  });
  child.stderr.on('data', (chunk: Buffer) => {
    output.stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output, exited };
}

function processStat(pid: number): { state: string; parentPid: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may contain spaces and parentheses: the state follows the last ')'.
    const [state, parentPid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: state ?? '', parentPid: Number(parentPid) };
  } catch {
    return undefined;
  }
}

/** Alive: it exists and is not a zombie (a zombie VMM is dead; only its parent has not reaped it yet). */
function isAlive(pid: number | undefined): boolean {
  if (pid === undefined) return false;
  const state = processStat(pid)?.state;
  return state !== undefined && state !== 'Z' && state !== 'X';
}

/** The supervisor of a detached VM: the `microvm __supervise` process above its VMM (above the jailer too). */
function supervisorOf(vmmPid: number): number {
  let pid = processStat(vmmPid)?.parentPid;
  while (pid !== undefined && pid > 1) {
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    if (commandLine.includes('__supervise')) return pid;
    pid = processStat(pid)?.parentPid;
  }
  throw new Error(`VMM ${vmmPid} has no supervisor`);
}

/** Supervisors, VMMs, jailers and followers started for this test (by state directory or temp folder). */
async function processesOfTest(): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const commandLine = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const environment = await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '');
    if (commandLine.includes(dir) || environment.includes(`MICROVM_STATE_DIR=${stateDir}\0`)) {
      if (isAlive(Number(entry))) pids.push(Number(entry));
    }
  }
  return pids;
}

function sigkill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // Gone already.
  }
}

async function runDetached(name: string): Promise<{ pid: number }> {
  expect(await ok('run', '-d', '-q', '--name', name, '--kernel', kernel, '--rootfs', rootfs)).toBe(
    `${name}\n`,
  );
  const info = await okJson<{ state: string; pid: number }>('inspect', name);
  expect(info.state).toBe('running');
  expect(isAlive(info.pid)).toBe(true);
  return info;
}

interface ListedVm {
  vmId: string;
  state: string;
  exit?: { at: string };
}

beforeEach(async () => {
  expect(existsSync(bin), `${bin} is missing: build the package first`).toBe(true);
  children = [];
  cleanups = [];
  // Short: API socket paths must stay within 107 bytes.
  dir = await mkdtemp(join(tmpdir(), 'mvl-'));
  stateDir = join(dir, 'state');
  kernel = join(dir, 'vmlinux');
  rootfs = join(dir, 'rootfs.ext4');
  await writeFile(kernel, 'not a real kernel');
  await writeFile(rootfs, Buffer.alloc(4096));
  env = { ...process.env, ...composition(), MICROVM_STATE_DIR: stateDir };
  for (const name of Object.keys(env)) if (name.startsWith('MICROVM_SIMULATOR_')) delete env[name];
  delete env.MICROVM_FIRECRACKER_BIN;
  delete env.MICROVM_JAILER_BIN;
});

afterEach(async () => {
  for (const child of children) child.kill('SIGKILL');
  // A second pass: a supervisor or jailer caught mid-spawn may have started a process after the first one.
  for (let round = 0; round < 2; round += 1) {
    for (const pid of await processesOfTest()) sigkill(pid);
  }
  for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  await rm(dir, { recursive: true, force: true });
});

describe('microvm kill (simulator, bare composer)', () => {
  it('should SIGKILL a detached VM, keep it listed as stopped until rm, and then remove it', async () => {
    const { pid } = await runDetached('k-1');
    const supervisor = supervisorOf(pid);

    const killed = await microvm('kill', 'k-1');
    expect(killed.exitCode, killed.stderr).toBe(0);
    expect(killed.stdout).toMatch(new RegExp(`^k-1 stopped \\(killed, ${DURATION}\\)\n$`));
    // kill returns once the VMM is gone (a zombie until its supervisor reaps it counts as gone).
    expect(isAlive(pid)).toBe(false);

    // Documented: stopped VMs leave `ps` and stay in `ps -a` until rm.
    expect(await okJson<ListedVm[]>('ps', '--json')).toEqual([]);
    const all = await okJson<ListedVm[]>('ps', '-a', '--json');
    expect(all).toHaveLength(1);
    expect(all[0]).toMatchObject({ vmId: 'k-1', state: 'stopped', exit: { at: expect.any(String) } });
    expect(await ok('ps', '-a')).toMatch(/k-1\s+stopped\s+-\s/);
    // The supervisor lives exactly as long as its VMM.
    await expect.poll(() => isAlive(supervisor), POLL).toBe(false);

    const unknown = await microvm('kill', 'no-such-vm');
    expect(unknown.exitCode).toBe(3);
    expect(unknown.stderr).toContain('ERR_MICROVM_VM_NOT_FOUND');

    expect(await ok('rm', 'k-1')).toBe('k-1\n');
    expect(await okJson<ListedVm[]>('ps', '-a', '--json')).toEqual([]);
    expect(await readdir(join(stateDir, 'vms'))).toEqual([]);
    expect(await ok('gc')).toBe('nothing to clean up\n');
    await expect.poll(processesOfTest, POLL).toEqual([]);
  }, 120_000);

  it('should kill a paused VM (which cannot take a Ctrl-Alt-Del) the same way', async () => {
    const { pid } = await runDetached('k-2');
    expect(await ok('pause', 'k-2')).toBe('k-2 paused\n');
    const killed = await okJson<{ how: string; vm: ListedVm }>('kill', '--json', 'k-2');
    expect(killed).toMatchObject({ how: 'killed', vm: { vmId: 'k-2', state: 'stopped' } });
    expect(isAlive(pid)).toBe(false);
    expect(await ok('rm', 'k-2')).toBe('k-2\n');
    await expect.poll(processesOfTest, POLL).toEqual([]);
  }, 120_000);
});

describe('microvm logs -f (simulator, console and shutdown primitives)', () => {
  beforeEach(() => {
    Object.assign(env, composition('CONSOLE', 'SHUTDOWN'));
  });

  it('should follow the console of a running VM and exit 0 by itself once the VM is stopped', async () => {
    // The supervisor appends the guest's last lines to the log while the VMM exits: `logs -f` keeps reading until
    // the log has stayed quiet a moment after it sees the VM stopped, so even a VMM that exits at once (no shutdown
    // delay) has its reboot lines printed.
    env.MICROVM_SIMULATOR_SHUTDOWN_DELAY_MS = '0';
    await runDetached('l-1');
    const follower = startMicrovm('logs', '-f', 'l-1');
    await expect.poll(() => follower.output.stdout, POLL).toContain(READY_LINE);
    // Still following: the VM runs and nobody interrupted it.
    expect(follower.child.exitCode).toBeNull();
    expect(follower.output.stdout).not.toContain('reboot: Restarting system');

    expect(await ok('stop', 'l-1')).toMatch(new RegExp(`^l-1 stopped \\(graceful, ${DURATION}\\)\n$`));
    await expect.poll(() => follower.child.exitCode, POLL).not.toBeNull();
    expect(await follower.exited, follower.output.stderr).toBe(0);
    // Printed while following: the guest's reboot after the Ctrl-Alt-Del `stop` sent.
    expect(follower.output.stdout).toContain('reboot: Restarting system');
    // Each line once: following never prints a part of the log twice.
    expect(follower.output.stdout.split(READY_LINE)).toHaveLength(2);
    expect(await ok('rm', 'l-1')).toBe('l-1\n');
  }, 120_000);

  it('should exit 0 by itself when the VMM dies on its own, and the VM is then failed', async () => {
    // The simulated vCPU fails this long after boot: long enough for `logs -f` to start on a loaded host.
    env.MICROVM_SIMULATOR_EXIT_AFTER_BOOT_MS = '8000';
    const { pid } = await runDetached('l-2');
    const follower = startMicrovm('logs', '-f', 'l-2');
    await expect.poll(() => follower.output.stdout, POLL).toContain(READY_LINE);
    await expect.poll(() => follower.child.exitCode, { ...POLL, timeout: 60_000 }).not.toBeNull();
    expect(await follower.exited, follower.output.stderr).toBe(0);
    expect(isAlive(pid)).toBe(false);
    // Documented: a VMM that dies on its own is marked failed by the next command that looks.
    expect(await okJson<ListedVm[]>('ps', '-a', '--json')).toMatchObject([{ vmId: 'l-2', state: 'failed' }]);
    expect(await ok('rm', 'l-2')).toBe('l-2\n');
  }, 120_000);

  it('should stop following on SIGINT with exit code 130 and leave the VM running', async () => {
    const { pid } = await runDetached('l-3');
    const follower = startMicrovm('logs', '-f', 'l-3');
    await expect.poll(() => follower.output.stdout, POLL).toContain(READY_LINE);
    follower.child.kill('SIGINT');
    await expect.poll(() => follower.child.exitCode, POLL).not.toBeNull();
    expect(await follower.exited).toBe(130);
    expect(isAlive(pid)).toBe(true);
    expect(await okJson<ListedVm[]>('ps', '--json')).toMatchObject([{ vmId: 'l-3', state: 'running' }]);
    expect(await ok('rm', '-f', 'l-3')).toBe('l-3\n');
  }, 120_000);
});

describe('microvm gc after a crashed supervisor', () => {
  it('should remove a VM whose supervisor and VMM were SIGKILLed (bare composer), then find nothing', async () => {
    const { pid } = await runDetached('g-1');
    const supervisor = supervisorOf(pid);
    sigkill(supervisor);
    sigkill(pid);
    await expect.poll(() => isAlive(pid) || isAlive(supervisor), POLL).toBe(false);

    // The record still says running: the next command sees the VMM is gone and marks the VM failed.
    expect(await okJson<ListedVm[]>('ps', '-a', '--json')).toMatchObject([{ vmId: 'g-1', state: 'failed' }]);
    expect(await ok('gc')).toBe('removed VM g-1\n');
    expect(await readdir(join(stateDir, 'vms'))).toEqual([]);
    expect(await ok('gc')).toBe('nothing to clean up\n');
    expect(await okJson('gc', '--json')).toEqual({ destroyedVmIds: [], removed: [] });
  }, 120_000);

  it('should keep a VM whose VMM outlived its supervisor, then remove it and every host resource once the VMM is gone', async () => {
    // Every primitive on, inside a namespace this test creates and deletes (as composed.test.ts does).
    const namespace = `mvlc${process.pid.toString(36)}`;
    const tableName = 'microvmlctest';
    const ip = async (...args: string[]) => (await execFileAsync('ip', args, { encoding: 'utf8' })).stdout;
    await ip('netns', 'add', namespace);
    cleanups.push(() => ip('netns', 'del', namespace));
    await ip('-n', namespace, 'link', 'set', 'lo', 'up');
    await ip('-n', namespace, 'link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up0peer');
    await ip('-n', namespace, 'addr', 'add', '198.51.100.1/24', 'dev', 'up0');
    await ip('-n', namespace, 'link', 'set', 'up0', 'up');
    await ip('-n', namespace, 'route', 'add', 'default', 'via', '198.51.100.2');
    // The jailed Firecracker runs as uid 65534 and must reach its chroot below this folder.
    await chmod(dir, 0o755);
    await mkdir(join(dir, 'jail'));
    for (const name of PRIMITIVES) delete env[`MICROVM_COMPOSE_${name}`];
    Object.assign(env, {
      MICROVM_NETWORK_NAMESPACE: namespace,
      MICROVM_FIREWALL_TABLE: tableName,
      MICROVM_JAILER_CHROOT_BASE_DIR: join(dir, 'jail'),
    });
    const firewallRules = async () =>
      (await execFileAsync('ip', ['netns', 'exec', namespace, 'nft', 'list', 'table', 'inet', tableName]))
        .stdout;
    const links = () => ip('-n', namespace, '-o', 'link', 'show');

    interface ComposedInfo {
      pid: number;
      facts: { network: { tapName: string }; jail: { jailDir: string }; vsock: { guestCid: number } };
    }
    await runDetached('g-2');
    await runDetached('g-3');
    const kept = await okJson<ComposedInfo>('inspect', 'g-2');
    const lost = await okJson<ComposedInfo>('inspect', 'g-3');
    for (const vm of [kept, lost]) {
      expect(await links()).toContain(vm.facts.network.tapName);
      expect(existsSync(vm.facts.jail.jailDir)).toBe(true);
    }
    expect(await firewallRules()).toMatch(/vm-g-2-/);

    // A supervisor crash alone is no leftover: the VMM runs on, and gc keeps live VMs.
    const keptSupervisor = supervisorOf(kept.pid);
    sigkill(keptSupervisor);
    await expect.poll(() => isAlive(keptSupervisor), POLL).toBe(false);
    expect(isAlive(kept.pid)).toBe(true);
    expect(await ok('gc')).toBe('nothing to clean up\n');
    expect((await okJson<ListedVm[]>('ps', '--json')).map((vm) => [vm.vmId, vm.state])).toEqual([
      ['g-2', 'running'],
      ['g-3', 'running'],
    ]);
    sigkill(kept.pid);
    await expect.poll(() => isAlive(kept.pid), POLL).toBe(false);

    // g-3 loses its record as well (its folder deleted): only its host resources are left for gc to find.
    const lostSupervisor = supervisorOf(lost.pid);
    sigkill(lostSupervisor);
    sigkill(lost.pid);
    await expect.poll(() => isAlive(lost.pid) || isAlive(lostSupervisor), POLL).toBe(false);
    await rm(join(stateDir, 'vms', 'g-3'), { recursive: true, force: true });

    expect(await okJson<ListedVm[]>('ps', '-a', '--json')).toMatchObject([{ vmId: 'g-2', state: 'failed' }]);
    const collected = await okJson<{ destroyedVmIds: string[]; removed: string[] }>('gc', '--json');
    expect(collected.destroyedVmIds).toEqual(['g-2']);
    const removed = collected.removed.join('\n');
    expect(removed).toContain(lost.facts.network.tapName);
    expect(removed).toContain('firewall chains of g-3');
    expect(removed).toContain(`vsock cid ${lost.facts.vsock.guestCid} of VM 'g-3'`);
    expect(removed).toContain(`jail ${lost.facts.jail.jailDir}`);
    expect(removed).not.toContain('g-2');

    for (const vm of [kept, lost]) {
      expect(await links()).not.toContain(vm.facts.network.tapName);
      expect(existsSync(vm.facts.jail.jailDir)).toBe(false);
    }
    expect(await firewallRules()).not.toMatch(/vm-g-[23]-/);
    expect(await readdir(join(stateDir, 'vms'))).toEqual([]);
    for (const pool of await readdir(join(stateDir, 'leases'))) {
      expect(await readdir(join(stateDir, 'leases', pool)), `leases of ${pool}`).toEqual([]);
    }
    expect(await ok('gc')).toBe('nothing to clean up\n');
    expect(await okJson('gc', '--json')).toEqual({ destroyedVmIds: [], removed: [] });
    await expect.poll(processesOfTest, POLL).toEqual([]);
  }, 120_000);

  // Once the reader of its stdout/stderr (the supervisor) is gone, a write fails with EPIPE. Firecracker ignores
  // SIGPIPE and drops output it cannot write, so the VM must stay manageable (the simulator once looped here).
  it('should keep a VM manageable after its supervisor dies', async () => {
    Object.assign(env, composition('CONSOLE', 'SHUTDOWN'));
    const { pid } = await runDetached('g-4');
    const supervisor = supervisorOf(pid);
    sigkill(supervisor);
    await expect.poll(() => isAlive(supervisor), POLL).toBe(false);
    expect(await ok('pause', 'g-4')).toBe('g-4 paused\n');
    // The resume makes the VMM write (its log line) to the pipes the dead supervisor held.
    expect(await ok('resume', 'g-4')).toBe('g-4 running\n');
    expect(await ok('stop', 'g-4')).toMatch(new RegExp(`^g-4 stopped \\(graceful, ${DURATION}\\)\n$`));
  }, 120_000);
});

interface DoctorReport {
  ok: boolean;
  checks: Array<{ name: string; status: string; detail: string; fix?: string; path?: string }>;
  nextStep?: string;
}

const DOCUMENTED_CHECKS = [
  'platform',
  'node',
  'root',
  '/dev/kvm',
  'firecracker binary',
  'jailer binary',
  '/dev/net/tun',
  'ip',
  'nft',
  'nsenter',
  'cgroups',
  'ip forwarding',
  'API socket path',
  'jailed socket path',
];

async function isAccessible(path: string, mode: number): Promise<boolean> {
  return access(path, mode).then(
    () => true,
    () => false,
  );
}

/** The PATH without node_modules/.bin folders: `npx vitest` puts the simulator's `firecracker` shim there. */
function pathWithoutNodeModules(): string {
  return (process.env.PATH ?? '')
    .split(delimiter)
    .filter((folder) => !folder.includes('node_modules'))
    .join(delimiter);
}

const realFirecrackerOnPath = pathWithoutNodeModules()
  .split(delimiter)
  .some((folder) => folder !== '' && existsSync(join(folder, 'firecracker')));

async function onPath(name: string, path: string): Promise<boolean> {
  for (const folder of path.split(delimiter).filter(Boolean)) {
    if (await isAccessible(join(folder, name), constants.X_OK)) return true;
  }
  return false;
}

/** Runs `doctor --json` and checks what every report must hold, whatever the host. */
async function doctor(...args: string[]): Promise<DoctorReport> {
  const result = await microvm('doctor', '--json', ...args);
  const report = JSON.parse(result.stdout) as DoctorReport;
  const names = report.checks.map((check) => check.name);
  expect(names).toEqual(expect.arrayContaining(DOCUMENTED_CHECKS));
  expect(new Set(names).size).toBe(names.length);
  for (const check of report.checks) {
    expect(check.name).toMatch(/\S/);
    expect(['ok', 'warn', 'fail']).toContain(check.status);
    expect(check.detail, check.name).toMatch(/\S/);
    // Every warning and failure says what to do about it.
    if (check.status !== 'ok') expect(check.fix, `fix of ${check.name}`).toMatch(/\S/);
  }
  // Documented: exit 1 when a check fails (warnings do not count), and `ok` says the same.
  const failed = report.checks.some((check) => check.status === 'fail');
  expect(result.exitCode, result.stderr).toBe(failed ? 1 : 0);
  expect(report.ok).toBe(!failed);
  return report;
}

function check(report: DoctorReport, name: string) {
  const found = report.checks.find((candidate) => candidate.name === name);
  expect(found, name).toBeDefined();
  return found!;
}

describe('microvm doctor on this host', () => {
  beforeEach(() => {
    env.PATH = pathWithoutNodeModules();
  });

  it('should report every check with a status, a fix where not ok, and the exit code the failures decide', async () => {
    const report = await doctor();
    expect(check(report, 'root').status).toBe(process.geteuid?.() === 0 ? 'ok' : 'warn');
    expect(check(report, '/dev/kvm').status).toBe(
      (await isAccessible('/dev/kvm', constants.R_OK | constants.W_OK)) ? 'ok' : 'fail',
    );
    expect(check(report, '/dev/net/tun').status).toBe(
      (await isAccessible('/dev/net/tun', constants.R_OK | constants.W_OK)) ? 'ok' : 'fail',
    );
    for (const command of ['ip', 'nft', 'nsenter']) {
      expect(check(report, command).status).toBe((await onPath(command, env.PATH!)) ? 'ok' : 'fail');
    }
    // The state folder of this test is short: any VM id fits its socket paths.
    expect(check(report, 'API socket path').status).toBe('ok');

    // The human form: the same verdict, a mark per check and the fix under what is not ok.
    const text = await microvm('doctor');
    expect(text.exitCode).toBe(report.ok ? 0 : 1);
    for (const entry of report.checks) {
      expect(text.stdout).toContain(`${{ ok: '✓', warn: '!', fail: '✗' }[entry.status]} ${entry.name}`);
      if (entry.fix && entry.status !== 'ok') expect(text.stdout).toContain(`fix: ${entry.fix}`);
    }
    expect(text.stdout).toMatch(/(No problems|\d+ problem\(s\)) found/);
  }, 120_000);

  // The brief's host has no real Firecracker; one that does gets the binary check's ok instead (tested below).
  it.runIf(!realFirecrackerOnPath)(
    'should name the missing firecracker binary and say where to get it, without failing for it',
    async () => {
      const report = await doctor();
      const firecracker = check(report, 'firecracker binary');
      expect(firecracker.status).toBe('warn');
      expect(firecracker.detail).toContain('no firecracker on PATH');
      expect(firecracker.fix).toContain('https://github.com/firecracker-microvm/firecracker/releases');
      expect(firecracker.fix).toContain('MICROVM_FIRECRACKER_BIN');
      // No next step without a Firecracker to run the e2e suite against.
      expect(report.nextStep).toBeUndefined();

      const named = await doctor('--firecracker', join(dir, 'no-such-firecracker'));
      expect(check(named, 'firecracker binary')).toMatchObject({ status: 'warn' });
      expect(check(named, 'firecracker binary').detail).toContain(join(dir, 'no-such-firecracker'));
    },
    120_000,
  );

  it('should pass the binary checks with --firecracker or MICROVM_FIRECRACKER_BIN naming the simulator', async () => {
    env.MICROVM_JAILER_BIN = jailerSimulatorPath;
    const byFlag = await doctor('--firecracker', firecrackerSimulatorPath);
    expect(check(byFlag, 'firecracker binary')).toMatchObject({
      status: 'ok',
      path: firecrackerSimulatorPath,
      detail: expect.stringContaining('(v1.16.1)'),
    });
    expect(check(byFlag, 'jailer binary')).toMatchObject({ status: 'ok', path: jailerSimulatorPath });

    env.MICROVM_FIRECRACKER_BIN = firecrackerSimulatorPath;
    const byEnvironment = await doctor();
    expect(check(byEnvironment, 'firecracker binary')).toMatchObject({
      status: 'ok',
      path: firecrackerSimulatorPath,
    });
    // With both binaries and root ok and nothing failing, doctor says how to run the e2e suite with them.
    const e2eReady = byEnvironment.ok && check(byEnvironment, 'root').status === 'ok';
    if (e2eReady) {
      expect(byEnvironment.nextStep).toContain(`MICROVM_FIRECRACKER_BIN=${firecrackerSimulatorPath}`);
      expect(byEnvironment.nextStep).toContain(`MICROVM_JAILER_BIN=${jailerSimulatorPath}`);
    } else {
      expect(byEnvironment.nextStep).toBeUndefined();
    }
  }, 120_000);
});
