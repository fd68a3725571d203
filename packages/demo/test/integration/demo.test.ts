/**
 * Runs the built demo (`dist/main.js`, built by turbo before this task) as a child process, as `pnpm demo` does,
 * and checks that it shows every phase and leaves nothing behind: its namespaces, its temp dir, its processes.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { PHASES, processesWith } from '../../src/demo.js';
import { namespacesIn } from '../../src/host-network.js';

const execFileAsync = promisify(execFile);
const demoProgram = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

interface DemoRun {
  child: ChildProcess;
  stdout: string;
  stderr: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
}

const children: ChildProcess[] = [];
const startedDemos: { tag: string; dir: string | undefined }[] = [];

/** The environment of a run that must use the simulator whatever this host has. */
function simulatorEnvironment(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = { ...process.env, ...extra };
  delete env.MICROVM_FIRECRACKER_BIN;
  // A real firecracker goes off PATH; the simulator's shims in node_modules/.bin stay: the demo must see through them.
  env.PATH = (env.PATH ?? '')
    .split(':')
    .filter((folder) => !existsSync(`${folder}/firecracker`) || folder.includes('node_modules'))
    .join(':');
  return env;
}

/** Starts the demo; `onLine` may act on its output (send Ctrl-C). Resolves once it has exited. */
function runDemo(
  env: NodeJS.ProcessEnv,
  onLine: (line: string, child: ChildProcess) => void = () => {},
  options: { uid?: number } = {},
): Promise<DemoRun> {
  const child = spawn(process.execPath, [demoProgram], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(options.uid !== undefined && { uid: options.uid, gid: options.uid }),
  });
  children.push(child);
  const tag = child.pid!.toString(36);
  const demo = { tag, dir: undefined as string | undefined };
  startedDemos.push(demo);
  const result: DemoRun = { child, stdout: '', stderr: '', exitCode: null, signal: null };
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    result.stdout += chunk;
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      demo.dir ??= /files in (\S+)/.exec(line)?.[1];
      onLine(line, child);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    result.stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (exitCode, signal) => {
      result.exitCode = exitCode;
      result.signal = signal;
      resolve(result);
    });
  });
}

async function namespaceList(): Promise<string[]> {
  return namespacesIn((await execFileAsync('ip', ['netns', 'list'], { encoding: 'utf8' })).stdout);
}

/** What a run of the demo left on the host; its names all derive from its pid. */
async function leftoversOf(run: DemoRun): Promise<string[]> {
  const tag = run.child.pid!.toString(36);
  const demo = startedDemos.find((candidate) => candidate.tag === tag);
  const left = (await namespaceList()).filter((name) => name.startsWith(`mvd${tag}`));
  if (demo?.dir !== undefined && existsSync(demo.dir)) left.push(demo.dir);
  for (const pid of await processesWith(`demo-${tag}`)) left.push(`process ${pid}`);
  return left;
}

afterEach(async () => {
  // Only after a failed test is anything still here: remove it so the host stays clean.
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
  const namespaces = await namespaceList();
  for (const demo of startedDemos.splice(0)) {
    for (const pid of await processesWith(`demo-${demo.tag}`)) process.kill(pid, 'SIGKILL');
    for (const name of namespaces.filter((candidate) => candidate.startsWith(`mvd${demo.tag}`))) {
      await execFileAsync('ip', ['netns', 'del', name]).catch(() => undefined);
    }
    if (demo.dir !== undefined) await rm(demo.dir, { recursive: true, force: true });
  }
});

describe('the demo', () => {
  it('should show every phase with its time against the simulator and leave nothing behind', async () => {
    const run = await runDemo(simulatorEnvironment());

    expect(run.stderr).toBe('');
    expect(run.exitCode).toBe(0);
    const lines = run.stdout.split('\n');
    expect(lines[0]).toMatch(/^using the simulator \(/);
    for (const phase of PHASES) {
      expect(lines.some((line) => new RegExp(`^${phase} +\\d+\\.\\d ms  `).test(line))).toBe(true);
    }
    const line = (phase: string) => lines.find((candidate) => candidate.startsWith(`${phase} `)) ?? '';
    for (const step of ['prepare:network', 'prepare:firewall', 'prepare:jailer', 'instance-start']) {
      expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^  ${step} +\\d+\\.\\d ms$`)));
    }
    expect(run.stdout).toContain("a veth stands in for the guest's NIC");
    expect(line('allowed flow')).toContain('198.51.100.2:8080/tcp connected');
    expect(line('denied flow')).toContain('198.51.100.2:9090/tcp no answer');
    expect(line('vsock round trip')).toContain('sent and got back');
    expect(run.stdout).toContain('    | microvm-simulator: guest ready');
    expect(line('graceful shutdown')).toContain('how: graceful');
    expect(line('cleanup')).toContain('nothing left');
    expect(lines).toContainEqual(expect.stringMatching(/^done in \d+ ms$/));
    expect(await leftoversOf(run)).toEqual([]);
  });

  it('should exit 1 with the error and remove what it had created when the VM cannot be created', async () => {
    const run = await runDemo(simulatorEnvironment({ MICROVM_SIMULATOR_REJECT: 'PUT /vsock' }));

    expect(run.exitCode).toBe(1);
    expect(run.stdout).toMatch(/^create +\d+\.\d ms {2}FAILED$/m);
    expect(run.stderr).toContain('microvm demo failed: ERR_MICROVM_API');
    expect(run.stderr).toContain('Injected failure (MICROVM_SIMULATOR_REJECT): PUT /vsock');
    expect(await leftoversOf(run)).toEqual([]);
  });

  it('should stop on Ctrl-C, remove everything, and exit 130', async () => {
    let interrupted = false;
    const run = await runDemo(simulatorEnvironment(), (line, child) => {
      // The VM exists and runs: the most there is to clean up.
      if (!interrupted && line.startsWith('create ')) {
        interrupted = true;
        child.kill('SIGINT');
      }
    });

    expect(interrupted).toBe(true);
    expect(run.exitCode).toBe(130);
    expect(run.stderr).toContain('SIGINT: stopping and removing everything the demo created');
    expect(run.stdout).not.toContain('done in');
    expect(await leftoversOf(run)).toEqual([]);
  });

  it('should refuse to run without root, saying why', async () => {
    const run = await runDemo(simulatorEnvironment(), undefined, { uid: 65534 });

    expect(run.exitCode).toBe(1);
    expect(run.stderr).toContain('microvm demo: needs root');
    expect(run.stdout).toBe('');
  });
});
