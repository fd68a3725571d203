import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import {
  chmod,
  link,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  rmdir,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { instanceIdProblem, parseJailerArguments } from './jailer.js';

const execFileAsync = promisify(execFile);
const PACKAGE_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const JAILER_BIN = join(PACKAGE_DIR, 'dist/bin/jailer.js');
const FIRECRACKER_BIN = join(PACKAGE_DIR, 'dist/bin/firecracker.js');
const EXEC_NAME = 'firecracker.js';
const WAIT_MS = 10_000;
const IS_ROOT = process.getuid?.() === 0;
/** A uid/gid the jail is handed to (root can chown to anything). */
const JAIL_UID = IS_ROOT ? 1234 : (process.getuid?.() ?? 0);
const JAIL_GID = IS_ROOT ? 1234 : (process.getgid?.() ?? 0);

interface Finished {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function collect(child: ChildProcess): { output: () => { stdout: string; stderr: string } } {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString('utf8');
  });
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8');
  });
  return { output: () => ({ stdout, stderr }) };
}

async function untilTrue(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function isGone(pid: number): boolean {
  try {
    // A zombie has exited; only its parent has not reaped it yet.
    const state = /\) (\S)/.exec(readFileSync(`/proc/${pid}/stat`, 'utf8'))?.[1];
    return state === 'Z' || state === 'X';
  } catch {
    return true;
  }
}

/** GET / on the API socket; retries while the socket is not listening yet. */
async function apiGet(socketPath: string): Promise<{ statusCode: number; body: Record<string, unknown> }> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    try {
      return await new Promise((resolvePromise, reject) => {
        const call = request({ socketPath, path: '/', method: 'GET' }, (response) => {
          let text = '';
          response.on('data', (chunk: Buffer) => {
            text += chunk.toString('utf8');
          });
          response.on('end', () =>
            resolvePromise({
              statusCode: response.statusCode ?? 0,
              body: JSON.parse(text) as Record<string, unknown>,
            }),
          );
        });
        call.on('error', reject);
        call.end();
      });
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(20);
    }
  }
}

/** The inode of the socket listening on `path`, from the socket table of the network namespace of `pid`. */
async function listeningSocketInode(path: string, pid: number): Promise<string | undefined> {
  const table = await readFile(`/proc/${pid}/net/unix`, 'utf8');
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    // Num RefCount Protocol Flags Type St Inode Path; flag 00010000 = listening.
    if (fields[7] === path && fields[3] === '00010000') return fields[6];
  }
  return undefined;
}

async function holdsSocket(pid: number, inode: string): Promise<boolean> {
  const descriptors = await readdir(`/proc/${pid}/fd`);
  for (const descriptor of descriptors) {
    const target = await readlink(`/proc/${pid}/fd/${descriptor}`).catch(() => '');
    if (target === `socket:[${inode}]`) return true;
  }
  return false;
}

describe('simulated jailer', () => {
  let base: string;
  const children: ChildProcess[] = [];
  const pids: number[] = [];
  const cleanups: Array<() => Promise<void>> = [];

  beforeAll(() => {
    for (const bin of [JAILER_BIN, FIRECRACKER_BIN]) {
      if (!existsSync(bin))
        throw new Error(`${bin} is missing: run \`pnpm --filter @microvm/simulator build\` first`);
    }
  });

  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'jl-'));
    // Lets the jail's unprivileged uid reach its root, which a real chroot would not need.
    await chmod(base, 0o755);
  });

  afterEach(async () => {
    for (const child of children.splice(0)) child.kill('SIGKILL');
    for (const pid of pids.splice(0)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
      await untilTrue(() => isGone(pid), `pid ${pid} to exit`);
    }
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
    await rm(base, { recursive: true, force: true });
  });

  function jailerArgs(id: string, extra: string[] = [], execFile = FIRECRACKER_BIN): string[] {
    return [
      '--id',
      id,
      '--exec-file',
      execFile,
      '--uid',
      String(JAIL_UID),
      '--gid',
      String(JAIL_GID),
      '--chroot-base-dir',
      base,
      ...extra,
    ];
  }

  function rootOf(id: string): string {
    return join(base, EXEC_NAME, id, 'root');
  }

  function startJailer(args: string[], env: NodeJS.ProcessEnv = process.env) {
    const child = spawn(process.execPath, [JAILER_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    const output = collect(child);
    const finished = (async (): Promise<Finished> => {
      const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
      return { code, signal, ...output.output() };
    })();
    return { child, finished, output: output.output };
  }

  async function runToEnd(args: string[], env?: NodeJS.ProcessEnv): Promise<Finished> {
    return startJailer(args, env).finished;
  }

  async function pidFromFile(id: string): Promise<number> {
    const path = join(rootOf(id), `${EXEC_NAME}.pid`);
    await untilTrue(async () => (await readFile(path, 'utf8').catch(() => '')).length > 0, 'the pid file');
    const pid = Number(await readFile(path, 'utf8'));
    pids.push(pid);
    return pid;
  }

  async function expectApiServedBy(id: string, pid: number): Promise<void> {
    const socketPath = join(rootOf(id), 'run/firecracker.socket');
    const response = await apiGet(socketPath);
    expect(response.statusCode).toBe(200);
    expect(response.body.id).toBe(id);
    const inode = await listeningSocketInode(socketPath, pid);
    expect(inode).toBeDefined();
    expect(await holdsSocket(pid, inode ?? '')).toBe(true);
  }

  describe('arguments', () => {
    it.each([
      [
        ['--id'],
        { kind: 'MissingValue', text: "The argument 'id' requires a value, but none was supplied." },
      ],
      [['--id', '--uid'], { kind: 'MissingValue', text: "The argument 'id' requires a value" }],
      [['--id=a'], { kind: 'UnexpectedArgument', text: "Found argument 'id=a' which wasn't expected" }],
      [['stray'], { kind: 'UnexpectedArgument', text: "Found argument 'stray' which wasn't expected" }],
      [
        ['--id', 'a', '--id', 'b'],
        { kind: 'DuplicateArgument', text: "The argument 'id' was provided more than once." },
      ],
      [['--daemonize', '--daemonize'], { kind: 'DuplicateArgument', text: "The argument 'daemonize'" }],
    ])('should reject %j', (argv, expected) => {
      expect(() => parseJailerArguments(argv)).toThrow(expected.text);
    });

    it('should collect repeatable arguments, defaults and everything after --', () => {
      const parsed = parseJailerArguments([
        '--id',
        'a',
        '--exec-file',
        '/x/firecracker',
        '--uid',
        '1',
        '--gid',
        '2',
        '--cgroup',
        'cpu.shares=10',
        '--cgroup',
        'memory.max=1',
        '--',
        '--api-sock',
        '/fc.sock',
        '--',
      ]);

      expect(parsed.multipleValues.get('cgroup')).toEqual(['cpu.shares=10', 'memory.max=1']);
      expect(parsed.values.get('chroot-base-dir')).toBe('/srv/jailer');
      expect(parsed.values.get('cgroup-version')).toBe('1');
      expect(parsed.extraArgs).toEqual(['--api-sock', '/fc.sock', '--']);
    });

    it.each([
      ['a-b-C-9', undefined],
      ['', 'Invalid len (0); the length must be between 1 and 64'],
      ['a'.repeat(65), 'Invalid len (65); the length must be between 1 and 64'],
      ['a_b', 'Invalid char (_) at position 1'],
      ['ab.c', 'Invalid char (.) at position 2'],
    ])('should judge the instance id %j', (id, problem) => {
      expect(instanceIdProblem(id)).toBe(problem);
    });
  });

  describe('validation', () => {
    it.each([
      ['a missing --id', (args: string[]) => args.slice(2), 1, "Argument 'id' required, but not found."],
      ['--id=value', (args: string[]) => ['--id=vm1', ...args.slice(2)], 1, "Found argument 'id=vm1'"],
      [
        'a repeated --uid',
        (args: string[]) => [...args, '--uid', '0'],
        1,
        "The argument 'uid' was provided more than once.",
      ],
      [
        'a value starting with --',
        (args: string[]) => [...args, '--netns', '--daemonize'],
        1,
        "The argument 'netns' requires a value",
      ],
      ['an unknown flag', (args: string[]) => [...args, '--bogus'], 1, "Found argument 'bogus'"],
      [
        'an id with _',
        (args: string[]) => ['--id', 'v_m', ...args.slice(2)],
        'SIGABRT',
        'Invalid instance ID: Invalid char (_) at position 1',
      ],
      [
        'a 65-byte id',
        (args: string[]) => ['--id', 'v'.repeat(65), ...args.slice(2)],
        'SIGABRT',
        'Invalid instance ID: Invalid len (65); the length must be between 1 and 64',
      ],
      [
        'a missing exec file',
        (args: string[]) => [
          ...args.slice(0, 2),
          '--exec-file',
          '/nonexistent/firecracker',
          ...args.slice(4),
        ],
        'SIGABRT',
        'Failed to canonicalize path /nonexistent/firecracker: No such file or directory (os error 2)',
      ],
      [
        'an exec file name without "firecracker"',
        (args: string[]) => [...args.slice(0, 2), '--exec-file', process.execPath, ...args.slice(4)],
        'SIGABRT',
        'Invalid filename. The filename of `--exec-file` option must contain "firecracker": node',
      ],
      [
        'a repeated --chroot-base-dir',
        (args: string[]) => [...args, '--chroot-base-dir', '/x'],
        1,
        "'chroot-base-dir' was provided more than once",
      ],
      [
        'a uid that is not a u32',
        (args: string[]) => replace(args, '--uid', '-1'),
        'SIGABRT',
        'Invalid uid: -1',
      ],
      [
        'a gid above u32',
        (args: string[]) => replace(args, '--gid', '4294967296'),
        'SIGABRT',
        'Invalid gid: 4294967296',
      ],
      [
        'a parent cgroup with ..',
        (args: string[]) => [...args, '--parent-cgroup', 'a/../b'],
        'SIGABRT',
        "Parent cgroup path is invalid. Path should not be absolute or contain '..' or '.'",
      ],
      [
        'a bad cgroup version',
        (args: string[]) => [...args, '--cgroup-version', 'two'],
        'SIGABRT',
        'two is an invalid cgroup version specifier',
      ],
      [
        'a cgroup without =',
        (args: string[]) => [...args, '--cgroup', 'cpu.shares'],
        'SIGABRT',
        'Invalid format for cgroups: cpu.shares',
      ],
      [
        'a cgroup file without a controller',
        (args: string[]) => [...args, '--cgroup', 'shares=1'],
        'SIGABRT',
        'Cgroup invalid file: shares',
      ],
      [
        'a cgroup file with /',
        (args: string[]) => [...args, '--cgroup', '/cpu.shares=1'],
        'SIGABRT',
        'Cgroup invalid file: /cpu.shares=1',
      ],
      [
        'an unknown resource',
        (args: string[]) => [...args, '--resource-limit', 'nofile=10'],
        'SIGABRT',
        'Invalid resource argument: nofile',
      ],
      [
        'a resource limit without =',
        (args: string[]) => [...args, '--resource-limit', 'fsize'],
        'SIGABRT',
        'Invalid format for resources limits: fsize',
      ],
      [
        'a resource limit that is no number',
        (args: string[]) => [...args, '--resource-limit', 'fsize=big'],
        'SIGABRT',
        'Invalid limit value for resource: big: invalid digit found in string',
      ],
    ])('should fail on %s and leave the host untouched', async (_name, mutate, exit, message) => {
      const finished = await runToEnd(mutate(jailerArgs('vm1')));

      if (exit === 'SIGABRT') {
        expect(finished.signal).toBe('SIGABRT');
        expect(finished.stderr).toContain(`Jailer error: ${message}`);
      } else {
        expect(finished.code).toBe(exit);
        expect(finished.stderr).toContain(`Failed to parse arguments: `);
        expect(finished.stderr).toContain(message);
      }
      expect(await readdir(base)).toEqual([]);
    });

    it('should fail when the chroot base does not exist', async () => {
      const finished = await runToEnd(replace(jailerArgs('vm1'), '--chroot-base-dir', join(base, 'missing')));

      expect(finished.signal).toBe('SIGABRT');
      expect(finished.stderr).toContain(
        `Failed to canonicalize path ${join(base, 'missing')}: No such file or directory`,
      );
    });

    it('should fail when the chroot base is a file, or the exec file a directory', async () => {
      await writeFile(join(base, 'file'), '');
      await mkdir(join(base, 'firecracker-dir'));

      const baseIsFile = await runToEnd(replace(jailerArgs('vm1'), '--chroot-base-dir', join(base, 'file')));
      const execIsDirectory = await runToEnd(jailerArgs('vm1', [], join(base, 'firecracker-dir')));

      expect(baseIsFile.stderr).toContain(`Jailer error: ${join(base, 'file')} is not a directory`);
      expect(execIsDirectory.stderr).toContain(
        `Jailer error: ${join(base, 'firecracker-dir')} is not a file`,
      );
    });

    it('should print its version and help', async () => {
      const version = await runToEnd(['--version']);
      const help = await runToEnd(['--id', 'x', '--help']);

      expect(version).toMatchObject({ code: 0, stdout: 'Jailer v1.16.1\n\n' });
      expect(help.code).toBe(0);
      expect(help.stdout).toContain('--exec-file <exec-file>: File path to exec into.');
      expect(help.stdout).toContain(
        'Any arguments after the -- separator will be supplied to the jailed binary.',
      );
    });
  });

  describe('cgroups in a fake hierarchy', () => {
    async function fakeHierarchy(controllers: string): Promise<{ env: NodeJS.ProcessEnv; unified: string }> {
      const unified = join(base, 'cgroup2');
      await mkdir(join(unified, 'fcparent'), { recursive: true });
      await writeFile(join(unified, 'cgroup.controllers'), `${controllers}\n`);
      await writeFile(join(unified, 'cgroup.subtree_control'), '');
      await writeFile(join(unified, 'fcparent', 'cgroup.subtree_control'), '');
      const mounts = join(base, 'mounts');
      await writeFile(mounts, `proc /proc proc rw 0 0\ncgroup2 ${unified} cgroup2 rw,nosuid 0 0\n`);
      return { env: { ...process.env, MICROVM_SIMULATOR_PROC_MOUNTS: mounts }, unified };
    }

    it('should create the v2 cgroup, enable the controller in the ancestors and join it', async () => {
      const { env, unified } = await fakeHierarchy('cpu memory');
      const args = jailerArgs('vm2', [
        '--cgroup-version',
        '2',
        '--parent-cgroup',
        'fcparent',
        '--cgroup',
        'memory.max=1073741824',
        '--',
        '--version',
      ]);

      const run = startJailer(args, env);
      const finished = await run.finished;

      expect(finished.code).toBe(0);
      expect(await readFile(join(unified, 'fcparent/vm2/memory.max'), 'utf8')).toBe('1073741824\n');
      expect(await readFile(join(unified, 'fcparent/vm2/cgroup.procs'), 'utf8')).toBe(`${run.child.pid}\n`);
      expect(await readFile(join(unified, 'cgroup.subtree_control'), 'utf8')).toBe('+memory\n');
      expect(await readFile(join(unified, 'fcparent/cgroup.subtree_control'), 'utf8')).toBe('+memory\n');
    });

    it('should move itself into an existing v2 parent cgroup when no --cgroup is given', async () => {
      const { env, unified } = await fakeHierarchy('memory');

      const run = startJailer(
        jailerArgs('vm3', ['--cgroup-version', '2', '--parent-cgroup', 'fcparent', '--', '--version']),
        env,
      );
      const finished = await run.finished;

      expect(finished.code).toBe(0);
      expect(await readFile(join(unified, 'fcparent/cgroup.procs'), 'utf8')).toBe(String(run.child.pid));
    });

    it.each([
      [
        'a controller the hierarchy lacks',
        ['--cgroup-version', '2', '--cgroup', 'cpu.max=max'],
        'Controller cpu is unavailable',
      ],
      [
        'a version without a mounted hierarchy',
        ['--cgroup', 'cpu.shares=10'],
        'Hierarchy not found: No hierarchy found for this cgroup version.',
      ],
    ])('should fail on %s', async (_name, extra, message) => {
      const { env } = await fakeHierarchy('memory');

      const finished = await runToEnd(jailerArgs('vm4', extra), env);

      expect(finished.signal).toBe('SIGABRT');
      expect(finished.stderr).toContain(`Jailer error: ${message}`);
      expect(existsSync(join(base, EXEC_NAME))).toBe(false);
    });
  });

  describe('jail', () => {
    it('should build the jail, exec Firecracker in place and serve the API from the jail', async () => {
      const run = startJailer(jailerArgs('vm5', ['--resource-limit', 'fsize=1048576']));
      const pid = await pidFromFile('vm5');
      const root = rootOf('vm5');

      expect(pid).toBe(run.child.pid);
      await expectApiServedBy('vm5', pid);
      const copied = await stat(join(root, EXEC_NAME));
      const original = await stat(FIRECRACKER_BIN);
      expect(await readFile(join(root, EXEC_NAME))).toEqual(await readFile(FIRECRACKER_BIN));
      expect(copied.ino).not.toBe(original.ino);
      expect({ mode: copied.mode & 0o7777, uid: copied.uid, gid: copied.gid }).toEqual({
        mode: original.mode & 0o7777,
        uid: JAIL_UID,
        gid: JAIL_GID,
      });
      for (const folder of ['', 'dev', 'dev/net', 'run']) {
        const folderStat = await stat(join(root, folder));
        expect({ folder, mode: folderStat.mode & 0o7777, uid: folderStat.uid }).toEqual({
          folder,
          mode: 0o700,
          uid: JAIL_UID,
        });
      }
      if (IS_ROOT) {
        for (const [device, major, minor] of [
          ['dev/kvm', 10, 232],
          ['dev/net/tun', 10, 200],
          ['dev/urandom', 1, 9],
        ] as const) {
          const deviceStat = await stat(join(root, device));
          expect({
            device,
            isCharacterDevice: deviceStat.isCharacterDevice(),
            mode: deviceStat.mode & 0o7777,
            major: (deviceStat.rdev >> 8) & 0xfff,
            minor: (deviceStat.rdev & 0xff) | ((deviceStat.rdev >> 12) & 0xfff00),
            uid: deviceStat.uid,
          }).toEqual({ device, isCharacterDevice: true, mode: 0o600, major, minor, uid: JAIL_UID });
        }
      }
      const status = await readFile(`/proc/${pid}/status`, 'utf8');
      expect(status).toMatch(new RegExp(`^Uid:\\t${JAIL_UID}\\t`, 'm'));
      const limits = await readFile(`/proc/${pid}/limits`, 'utf8');
      expect(limits).toMatch(/^Max open files\s+2048\s+2048\s/m);
      expect(limits).toMatch(/^Max file size\s+1048576\s+1048576\s/m);
    });

    it('should run Firecracker as a different pid and exit 0 with --new-pid-ns', async () => {
      const run = startJailer(jailerArgs('vm6', ['--new-pid-ns']));
      const finished = await run.finished;
      const pid = await pidFromFile('vm6');

      expect(finished.code).toBe(0);
      expect(pid).not.toBe(run.child.pid);
      await expectApiServedBy('vm6', pid);
    });

    it('should ignore SIGTERM and SIGINT in the --new-pid-ns child, like PID 1 of a namespace, but die on SIGKILL', async () => {
      await startJailer(jailerArgs('vm7', ['--new-pid-ns'])).finished;
      const pid = await pidFromFile('vm7');
      await expectApiServedBy('vm7', pid);

      process.kill(pid, 'SIGTERM');
      process.kill(pid, 'SIGINT');
      await sleep(200);
      expect(isGone(pid)).toBe(false);
      expect((await apiGet(join(rootOf('vm7'), 'run/firecracker.socket'))).statusCode).toBe(200);

      process.kill(pid, 'SIGKILL');
      await untilTrue(() => isGone(pid), 'the SIGKILLed Firecracker to exit');
    });

    it('should daemonize: a new session, stdio on /dev/null, the jailer exits 0', async () => {
      const run = startJailer(jailerArgs('vm8', ['--daemonize']));
      const finished = await run.finished;
      const pid = await pidFromFile('vm8');

      expect(finished).toMatchObject({ code: 0, stdout: '', stderr: '' });
      expect(pid).not.toBe(run.child.pid);
      await expectApiServedBy('vm8', pid);
      const processStat = await readFile(`/proc/${pid}/stat`, 'utf8');
      const session = Number(processStat.slice(processStat.lastIndexOf(')') + 2).split(' ')[3]);
      expect(session).toBe(pid);
      for (const descriptor of [0, 1, 2])
        expect(await readlink(`/proc/${pid}/fd/${descriptor}`)).toBe('/dev/null');
    });

    it.each(['--id', '--start-time-us', '--start-time-cpu-us', '--parent-cpu-time-us'])(
      'should fail like Firecracker when %s is forwarded after --',
      async (flag) => {
        const finished = await runToEnd(jailerArgs('vm9', ['--', flag, '1']));

        expect(finished.code).toBe(153);
        expect(finished.stderr).toContain(`The argument '${flag.slice(2)}' was provided more than once.`);
      },
    );

    it('should refuse to reuse a stale jail', async () => {
      const first = await runToEnd(jailerArgs('vm10', ['--', '--version']));
      expect(first.code).toBe(0);

      const second = await runToEnd(jailerArgs('vm10', ['--', '--version']));
      for (const device of ['dev/net/tun', 'dev/kvm', 'dev/urandom', 'dev/userfaultfd']) {
        await unlink(join(rootOf('vm10'), device)).catch(() => {});
      }
      const third = await runToEnd(jailerArgs('vm10', ['--', '--version']));

      expect(second.signal).toBe('SIGABRT');
      expect(second.stderr).toContain(
        'Jailer error: Failed to create /dev/net/tun via mknod inside the jail: File exists (os error 17)',
      );
      expect(third.signal).toBe('SIGABRT');
      expect(third.stderr).toContain(
        `Jailer error: Failed to open file /${EXEC_NAME}.pid: File exists (os error 17)`,
      );
    });

    it('should refuse a hard-linked exec file destination', async () => {
      const root = rootOf('vm11');
      await mkdir(root, { recursive: true });
      await writeFile(join(base, 'outside'), 'precious');
      await link(join(base, 'outside'), join(root, EXEC_NAME));

      const finished = await runToEnd(jailerArgs('vm11'));

      expect(finished.signal).toBe('SIGABRT');
      expect(finished.stderr).toContain(`Jailer error: Detected hard link at: ${join(root, EXEC_NAME)}`);
      expect(await readFile(join(base, 'outside'), 'utf8')).toBe('precious');
    });

    it('should exec a foreign exec file in the jail with a cleared environment', async () => {
      await mkdir(join(base, 'bin'));
      const script = join(base, 'bin', 'firecracker-script');
      await writeFile(script, '#!/bin/sh\necho "cwd=$(pwd)"\necho "args=$*"\nenv | sort\nexit 7\n', {
        mode: 0o755,
      });
      const env = { ...process.env, UNRELATED: 'secret', MICROVM_SIMULATOR_KEEP: 'kept' };

      const finished = await runToEnd(jailerArgs('vm12', ['--', '--api-sock', '/a.sock'], script), env);

      const root = join(base, 'firecracker-script', 'vm12', 'root');
      expect(finished.code).toBe(7);
      expect(finished.stdout).toContain(`cwd=${root}\n`);
      expect(finished.stdout).toMatch(
        /args=--id vm12 --start-time-us \d+ --start-time-cpu-us 0 --parent-cpu-time-us \d+ --api-sock \/a\.sock\n/,
      );
      expect(finished.stdout).toContain(`MICROVM_SIMULATOR_ROOT_DIR=${root}\n`);
      expect(finished.stdout).toContain('MICROVM_SIMULATOR_KEEP=kept\n');
      expect(finished.stdout).not.toContain('UNRELATED');
    });
  });

  describe.skipIf(!IS_ROOT)('as root', () => {
    it('should create v1 cgroups, write the values and put Firecracker in them', async () => {
      const mounts = await readFile('/proc/mounts', 'utf8');
      const mountOf = (controller: string) =>
        mounts
          .split('\n')
          .map((line) => line.split(' '))
          .find((fields) => fields[2] === 'cgroup' && (fields[3] ?? '').split(',').includes(controller))?.[1];
      const cpuMount = mountOf('cpu');
      const memoryMount = mountOf('memory');
      if (!cpuMount || !memoryMount) {
        console.warn('skipped: this host has no cgroup v1 cpu and memory hierarchies');
        return;
      }
      const parent = `microvm-jailer-test-${process.pid}-${Date.now()}`;
      cleanups.push(async () => {
        for (const mount of [cpuMount, memoryMount]) {
          await removeCgroup(join(mount, parent, 'vm13'));
          await removeCgroup(join(mount, parent));
        }
      });

      startJailer(
        jailerArgs('vm13', [
          '--parent-cgroup',
          parent,
          '--cgroup',
          'cpu.shares=512',
          '--cgroup',
          'memory.limit_in_bytes=268435456',
        ]),
      );
      const pid = await pidFromFile('vm13');
      await expectApiServedBy('vm13', pid);

      expect(await readFile(join(cpuMount, parent, 'vm13/cpu.shares'), 'utf8')).toBe('512\n');
      expect(await readFile(join(memoryMount, parent, 'vm13/memory.limit_in_bytes'), 'utf8')).toBe(
        '268435456\n',
      );
      expect((await readFile(join(cpuMount, parent, 'vm13/tasks'), 'utf8')).split('\n')).toContain(
        String(pid),
      );
      const membership = (await readFile(`/proc/${pid}/cgroup`, 'utf8')).split('\n');
      expect(membership.some((line) => line.endsWith(`:cpu:/${parent}/vm13`))).toBe(true);
      expect(membership.some((line) => line.endsWith(`:memory:/${parent}/vm13`))).toBe(true);
    });

    it('should run Firecracker inside --netns and take it down with the jailer', async () => {
      const name = `mvjt${process.pid % 100000}${Date.now() % 100000}`;
      await execFileAsync('ip', ['netns', 'add', name]);
      cleanups.push(async () => {
        await execFileAsync('ip', ['netns', 'delete', name]).catch(() => {});
      });
      const netnsPath = `/var/run/netns/${name}`;

      const run = startJailer(jailerArgs('vm14', ['--netns', netnsPath]));
      const pid = await pidFromFile('vm14');
      await expectApiServedBy('vm14', pid);

      expect(await readlink(`/proc/${pid}/ns/net`)).toBe(`net:[${(await stat(netnsPath)).ino}]`);
      run.child.kill('SIGKILL');
      await untilTrue(() => isGone(pid), 'Firecracker to die with its jailer');
    });

    it('should fail to join a file that is no network namespace', async () => {
      const finished = await runToEnd(jailerArgs('vm15', ['--netns', base]));

      expect(finished.signal).toBe('SIGABRT');
      expect(finished.stderr).toContain(
        'Jailer error: Failed to join network namespace: netns: Invalid argument (os error 22)',
      );
    });
  });
});

function replace(args: string[], flag: string, value: string): string[] {
  const index = args.indexOf(flag);
  return [...args.slice(0, index + 1), value, ...args.slice(index + 2)];
}

async function removeCgroup(path: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    try {
      await rmdir(path);
      return;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      // EBUSY until the last task of the cgroup is gone.
      if (code !== 'EBUSY' || Date.now() > deadline) throw error;
      await sleep(20);
    }
  }
}
