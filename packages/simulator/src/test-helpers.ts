/**
 * Test helpers: spawn the BUILT simulator as a real child process in a short temp dir, talk to its API over
 * the Unix socket with plain node:http, and reap everything afterwards.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The built bin (tests run against what users run: `pnpm --filter @microvm/simulator build` first). */
export const builtFirecrackerPath = fileURLToPath(new URL('../dist/bin/firecracker.js', import.meta.url));

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SimulatorHandle {
  child: ChildProcess;
  /** A fresh temp dir (short, for socket paths) that is removed on cleanup. */
  dir: string;
  apiSocketPath: string;
  stdout(): string;
  stderr(): string;
  exited: Promise<ExitStatus>;
  /** Resolves when stdout contains `text`. */
  waitForStdout(text: string, timeoutMs?: number): Promise<void>;
  request(method: string, path: string, body?: unknown, options?: RequestOptions): Promise<ApiReply>;
  /** Kills (SIGKILL) and reaps this simulator; its dir stays until cleanup. */
  kill(): Promise<ExitStatus>;
  /** Kills and reaps this simulator and removes its temp dir (for concurrent tests). */
  dispose(): Promise<void>;
}

export interface StartOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Wait until the API socket accepts connections (default true). */
  waitForSocket?: boolean;
  /** Use this dir instead of a new one (it is not removed). */
  dir?: string;
  /** Socket path; default `<dir>/api.sock`. */
  apiSocketPath?: string;
  /** Do not pass `--api-sock` (jail tests resolve the default inside the root). */
  omitApiSock?: boolean;
}

export interface ApiReply {
  status: number;
  headers: IncomingHttpHeaders;
  text: string;
  json(): Record<string, unknown>;
}

export interface RequestOptions {
  headers?: Record<string, string>;
  /** Send the body with `Transfer-Encoding: chunked` instead of `Content-Length`. */
  chunked?: boolean;
  timeoutMs?: number;
}

/**
 * Default deadline for waits that expect success (an answer, a bound socket, a stdout line, an exit). Generous
 * because it is timed from the spawn, which includes Node's start-up on a loaded CI host; tests that expect a
 * wait to time out pass their own short deadline.
 */
const DEFAULT_WAIT_MS = 20_000;

const running = new Set<{ child: ChildProcess; exited: Promise<ExitStatus> }>();
const temporaryDirs = new Set<string>();

export function makeTempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fcsim-'));
  temporaryDirs.add(dir);
  return dir;
}

/** One HTTP request over the Unix socket, on its own connection, with an explicit Content-Length. */
export function apiRequest(
  socketPath: string,
  method: string,
  path: string,
  body?: unknown,
  options: RequestOptions = {},
): Promise<ApiReply> {
  const text = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...options.headers };
    if (text !== undefined && !options.chunked) headers['Content-Length'] = String(Buffer.byteLength(text));
    const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_MS;
    const request = httpRequest({ socketPath, method, path, headers, agent: false });
    const timer = setTimeout(() => {
      request.destroy(new Error(`${method} ${path}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    request.on('response', (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => {
        clearTimeout(timer);
        const responseText = Buffer.concat(chunks).toString('utf8');
        resolve({
          status: response.statusCode ?? 0,
          headers: response.headers,
          text: responseText,
          json: () => JSON.parse(responseText) as Record<string, unknown>,
        });
      });
    });
    request.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    if (text !== undefined && options.chunked) {
      request.write(text);
      request.end();
    } else {
      request.end(text);
    }
  });
}

/** Resolves once a connection to `path` succeeds; rejects when `exited` settles first or on timeout. */
export async function waitForSocket(
  path: string,
  exited: Promise<ExitStatus>,
  timeoutMs = DEFAULT_WAIT_MS,
): Promise<void> {
  let processExited: ExitStatus | undefined;
  void exited.then((status) => {
    processExited = status;
  });
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (processExited !== undefined) {
      throw new Error(
        `simulator exited (code ${processExited.code}, signal ${processExited.signal}) before its socket was ready`,
      );
    }
    const connected = await new Promise<boolean>((resolve) => {
      const socket = createConnection(path);
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (connected) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`socket ${path} not ready within ${timeoutMs} ms`);
}

/** Spawns the built simulator with stdin ignored and stdout/stderr collected. */
export async function startSimulator(options: StartOptions = {}): Promise<SimulatorHandle> {
  const ownsDir = options.dir === undefined;
  const dir = options.dir ?? makeTempDir();
  const apiSocketPath = options.apiSocketPath ?? join(dir, 'api.sock');
  const args = [...(options.omitApiSock ? [] : ['--api-sock', apiSocketPath]), ...(options.args ?? [])];
  const child = spawn(process.execPath, [builtFirecrackerPath, ...args], {
    cwd: dir,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const stdoutWaiters = new Set<() => void>();
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
    for (const waiter of stdoutWaiters) waiter();
  });
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    stderr += chunk;
  });
  const exited = new Promise<ExitStatus>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const entry = { child, exited };
  running.add(entry);
  void exited.then(() => running.delete(entry));

  const handle: SimulatorHandle = {
    child,
    dir,
    apiSocketPath,
    stdout: () => stdout,
    stderr: () => stderr,
    exited,
    waitForStdout: (text, timeoutMs = DEFAULT_WAIT_MS) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (!stdout.includes(text)) return;
          clearTimeout(timer);
          stdoutWaiters.delete(check);
          resolve();
        };
        const timer = setTimeout(() => {
          stdoutWaiters.delete(check);
          reject(
            new Error(
              `stdout did not show ${JSON.stringify(text)} within ${timeoutMs} ms; got:\n${stdout.slice(-2000)}`,
            ),
          );
        }, timeoutMs);
        stdoutWaiters.add(check);
        check();
      }),
    request: (method, path, body, requestOptions) =>
      apiRequest(apiSocketPath, method, path, body, requestOptions),
    kill: async () => {
      child.kill('SIGKILL');
      return exited;
    },
    dispose: async () => {
      child.kill('SIGKILL');
      await exited;
      if (ownsDir) {
        rmSync(dir, { recursive: true, force: true });
        temporaryDirs.delete(dir);
      }
    },
  };
  if (options.waitForSocket !== false) {
    try {
      await waitForSocket(apiSocketPath, exited);
    } catch (error) {
      throw new Error(`${(error as Error).message}\nstderr: ${stderr}\nstdout: ${stdout}`);
    }
  }
  return handle;
}

/** Kills and reaps every simulator still running, then removes the temp dirs. Call it in `afterEach`. */
export async function cleanupSimulators(): Promise<void> {
  const entries = [...running];
  for (const entry of entries) entry.child.kill('SIGKILL');
  await Promise.all(entries.map((entry) => entry.exited));
  for (const dir of temporaryDirs) rmSync(dir, { recursive: true, force: true });
  temporaryDirs.clear();
}

/** Waits for `exited` with a deadline (a test must not hang on a process that does not exit). */
export function exitWithin(handle: SimulatorHandle, timeoutMs = DEFAULT_WAIT_MS): Promise<ExitStatus> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`simulator did not exit within ${timeoutMs} ms`)),
      timeoutMs,
    );
    void handle.exited.then((status) => {
      clearTimeout(timer);
      resolve(status);
    });
  });
}

/** Files every cold boot needs: a kernel and a root filesystem image (contents do not matter). */
export function bootFiles(dir: string): { kernel: string; rootfs: string } {
  const kernel = join(dir, 'vmlinux');
  const rootfs = join(dir, 'rootfs.ext4');
  // Small sparse files are enough: the simulator only opens them.
  writeEmpty(kernel);
  writeEmpty(rootfs);
  return { kernel, rootfs };
}

function writeEmpty(path: string): void {
  // A 1 MiB sparse file.
  const descriptor = openSync(path, 'w');
  ftruncateSync(descriptor, 1024 * 1024);
  closeSync(descriptor);
}

/** Configures the minimal cold boot: kernel with the serial console, a root drive. */
export async function configureColdBoot(
  handle: SimulatorHandle,
  options: { bootArgs?: string } = {},
): Promise<{ kernel: string; rootfs: string }> {
  const files = bootFiles(handle.dir);
  const bootSource = await handle.request('PUT', '/boot-source', {
    kernel_image_path: files.kernel,
    boot_args: options.bootArgs ?? 'console=ttyS0 reboot=k panic=1',
  });
  if (bootSource.status !== 204) throw new Error(`PUT /boot-source: ${bootSource.status} ${bootSource.text}`);
  const drive = await handle.request('PUT', '/drives/rootfs', {
    drive_id: 'rootfs',
    path_on_host: files.rootfs,
    is_root_device: true,
    is_read_only: false,
  });
  if (drive.status !== 204) throw new Error(`PUT /drives/rootfs: ${drive.status} ${drive.text}`);
  return files;
}
