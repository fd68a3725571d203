import { once } from 'node:events';
import { constants, existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { type ComposedVm, FirecrackerComposer } from '@microvm/composer';
import type { VmEvent } from '@microvm/core';
import type { FirewallPolicy } from '@microvm/firewall';
import { guestStandIn } from '@microvm/network/testing';
import {
  DEFAULT_READY_LINE,
  DEFAULT_VSOCK_ECHO_PORT,
  firecrackerSimulatorPath,
  jailerSimulatorPath,
} from '@microvm/simulator';
import type { CleanupStack } from './cleanup-stack.js';
import {
  createNamespaces,
  HOST_UPLINK_IP,
  INTERNET_IP,
  type NamespaceNames,
  namespacesIn,
  run,
  startServer,
  tcpProbe,
} from './host-network.js';
import { phaseLine, quotedLine, skippedLine, stepLine } from './report.js';
import { chooseVmm, SetupError, type VmmChoice } from './vmm-choice.js';

export const ALLOWED_PORT = 8080;
export const DENIED_PORT = 9090;
/** How long the denied flow waits for an answer that a dropped SYN never gets. */
const DENIED_WAIT_MS = 1500;
const ALLOWED_WAIT_MS = 10_000;
const VSOCK_ECHO_PORT = DEFAULT_VSOCK_ECHO_PORT;
const SIMULATOR_READY_LINE = DEFAULT_READY_LINE;
const CONSOLE_TAIL_LINES = 5;

export const PHASES = [
  'host setup',
  'create',
  'allowed flow',
  'denied flow',
  'vsock round trip',
  'console tail',
  'graceful shutdown',
  'destroy',
  'cleanup',
] as const;
export type PhaseName = (typeof PHASES)[number];

interface ShutdownStep {
  action: string;
  result: string;
}

export interface DemoOptions {
  env: NodeJS.ProcessEnv;
  /** Ctrl-C: every wait gives up, and the caller cleans up. */
  signal: AbortSignal;
  cleanup: CleanupStack;
  print: (line: string) => void;
}

/** Names unique to this process, short enough for interface names (15 bytes). */
export function namesForRun(pid: number, withGuest: boolean): NamespaceNames & { vmId: string; tag: string } {
  const tag = pid.toString(36);
  return {
    tag,
    vmId: `demo-${tag}`,
    host: `mvd${tag}h`,
    internet: `mvd${tag}i`,
    guest: withGuest ? `mvd${tag}g` : undefined,
  };
}

/**
 * Boots one VM with every primitive in namespaces it creates, shows each primitive at work, and removes it all.
 * Prints one line per phase with its duration; throws on the first thing that does not work.
 */
export async function runDemo(options: DemoOptions): Promise<void> {
  const { env, signal, cleanup, print } = options;
  const demoStarted = performance.now();
  const vmm = await chooseVmm(env, { firecracker: firecrackerSimulatorPath, jailer: jailerSimulatorPath });
  print(vmm.description);
  await requireCommands(['ip', 'nft', 'nsenter'], env);

  const simulated = vmm.kind === 'simulator';
  const names = namesForRun(process.pid, simulated);
  const phase = async <T>(name: PhaseName, work: () => Promise<{ value: T; detail: string }>): Promise<T> => {
    signal.throwIfAborted();
    const started = performance.now();
    try {
      const { value, detail } = await work();
      print(phaseLine(name, performance.now() - started, detail));
      return value;
    } catch (error) {
      print(phaseLine(name, performance.now() - started, signal.aborted ? 'interrupted' : 'FAILED'));
      throw error;
    }
  };

  // ─── host setup ───
  const workDir = await phase('host setup', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'microvm-demo-'));
    cleanup.defer(`temp dir ${dir}`, () => rm(dir, { recursive: true, force: true }));
    // The jailed Firecracker runs as nobody and must be able to walk down to its jail.
    await chmod(dir, 0o755);
    const chrootBaseDir = join(dir, 'jail');
    await mkdir(chrootBaseDir, { mode: 0o755 });
    const images = await guestImages(vmm, join(dir, 'images'));
    await createNamespaces(names, cleanup, signal);
    const server = simulated
      ? await startServer(names.internet, [ALLOWED_PORT, DENIED_PORT], cleanup)
      : undefined;
    const namespaces = [
      `${names.host} (host)`,
      `${names.internet} (internet, ${INTERNET_IP})`,
      ...(names.guest ? [`${names.guest} (guest stand-in)`] : []),
    ];
    return {
      value: { dir, chrootBaseDir, images, server },
      detail: `namespaces ${namespaces.join(', ')}; files in ${dir}`,
    };
  });

  // ─── create ───
  const composer = FirecrackerComposer.bare()
    .with('network', {
      namespace: names.host,
      namePrefix: 'md',
      ...(names.guest !== undefined && { [guestStandIn]: () => names.guest! }),
    })
    .with('firewall', {})
    .with('vsock', {})
    .with('console', {})
    // Generous: an obeying guest ends the wait at once; a loaded host must not turn it into `killed`.
    .with('shutdown', { ctrlAltDelGraceMs: 10_000 })
    .with('jailer', { jailerBinary: vmm.jailerBinary, chrootBaseDir: workDir.chrootBaseDir });
  const microvms = composer.provider({
    stateDir: join(workDir.dir, 'state'),
    firecrackerBinary: vmm.firecrackerBinary,
    // Includes the jailer's and Firecracker's start-up, which takes seconds on a loaded host.
    socketReadyTimeoutMs: 30_000,
  });
  let providerClosed = false;
  cleanup.defer(`VM ${names.vmId}`, async () => {
    if (providerClosed) return;
    try {
      if (await microvms.provider.get(names.vmId)) await microvms.provider.destroy(names.vmId);
    } finally {
      await microvms.close();
    }
  });
  const steps: VmEvent[] = [];
  microvms.provider.onEvent((event) => {
    if (event.type === 'phase' && event.vmId === names.vmId) steps.push(event);
  });
  const printSteps = () => {
    for (const step of steps.splice(0))
      if (step.type === 'phase') print(stepLine(step.phase, step.durationMs));
  };

  const egress: FirewallPolicy = {
    preset: 'deny-all',
    allow: [{ cidr: INTERNET_IP, protocol: 'tcp', port: ALLOWED_PORT }],
  };
  const vm = await phase('create', async () => {
    const created = await microvms.create(
      names.vmId,
      { kernel: workDir.images.kernel, rootfs: workDir.images.rootfs, egress },
      { signal },
    );
    const info = await created.info();
    const network = created.network!;
    const jail = created.facts.jail;
    return {
      value: created,
      detail: [
        `${created.vmId} ${info.state} (pid ${info.pid})`,
        jail ? `jailed in ${jail.rootDir} as ${jail.uid}:${jail.gid}` : undefined,
        `${network.tapName} ${network.gatewayIp} → guest ${network.guestIp}`,
        `egress deny-all + tcp ${INTERNET_IP}:${ALLOWED_PORT}`,
      ]
        .filter(Boolean)
        .join('; '),
    };
  });
  printSteps();

  // ─── the flows ───
  if (names.guest !== undefined && workDir.server !== undefined) {
    const guest = names.guest;
    const server = workDir.server;
    const network = vm.network!;
    print(
      `  (no guest network stack in the simulator: a veth stands in for the guest's NIC, its far end eth0 is ` +
        `the guest ${network.guestIp} in namespace ${guest})`,
    );
    await phase('allowed flow', async () => {
      const probe = await tcpProbe({
        namespace: guest,
        host: INTERNET_IP,
        port: ALLOWED_PORT,
        waitMs: ALLOWED_WAIT_MS,
        signal,
      });
      if (probe.result !== 'connected') {
        throw new Error(`the allowed flow to ${INTERNET_IP}:${ALLOWED_PORT} ended '${probe.result}'`);
      }
      const seen = server.connections.find((connection) => connection.port === ALLOWED_PORT);
      const nat = seen?.from === HOST_UPLINK_IP ? ', NAT at the host uplink' : '';
      return {
        value: undefined,
        detail: `guest → ${INTERNET_IP}:${ALLOWED_PORT}/tcp connected; the server saw ${seen?.from ?? 'nothing'}${nat}`,
      };
    });
    await phase('denied flow', async () => {
      const probe = await tcpProbe({
        namespace: guest,
        host: INTERNET_IP,
        port: DENIED_PORT,
        waitMs: DENIED_WAIT_MS,
        signal,
      });
      const reached = server.connections.some((connection) => connection.port === DENIED_PORT);
      if (probe.result === 'connected' || reached) {
        throw new Error(`the denied flow to ${INTERNET_IP}:${DENIED_PORT} got through the firewall`);
      }
      const outcome =
        probe.result === 'timeout' ? `no answer in ${DENIED_WAIT_MS} ms (dropped)` : `'${probe.result}'`;
      return {
        value: undefined,
        detail: `guest → ${INTERNET_IP}:${DENIED_PORT}/tcp ${outcome}; the server listens there and saw nothing`,
      };
    });
  } else {
    const why = 'a real guest needs an agent to open the connection, and this demo ships none';
    print(skippedLine('allowed flow', why));
    print(skippedLine('denied flow', why));
  }

  // ─── vsock ───
  if (simulated) {
    await phase('vsock round trip', async () => {
      const message = `ping from the host ${Date.now()}`;
      const socket = await vm.vsock!.connect(VSOCK_ECHO_PORT, { timeoutMs: 30_000, signal });
      try {
        const reply = await echo(socket, message, signal);
        if (reply !== message) throw new Error(`vsock echo answered '${reply}' to '${message}'`);
      } finally {
        socket.destroy();
      }
      return {
        value: undefined,
        detail: `port ${VSOCK_ECHO_PORT} of guest CID ${vm.vsock!.guestCid} (the simulated guest's echo service): sent and got back "${message}"`,
      };
    });
  } else {
    print(skippedLine('vsock round trip', `needs a service in the guest on vsock port ${VSOCK_ECHO_PORT}`));
  }

  // ─── console ───
  await phase('console tail', async () => {
    const guestConsole = vm.console!;
    let waited: string;
    if (simulated) {
      await guestConsole.waitForLine(SIMULATOR_READY_LINE, { timeoutMs: 30_000, signal });
      waited = `the line "${SIMULATOR_READY_LINE}" arrived`;
    } else {
      // Guests announce readiness in all sorts of ways: wait for the boot log to go quiet instead.
      waited = await consoleQuiet(guestConsole, signal);
    }
    const tail = guestConsole.tail(CONSOLE_TAIL_LINES);
    return { value: tail, detail: `${waited}; the last ${tail.length} console lines:` };
  }).then((tail) => {
    for (const line of tail) print(quotedLine(line));
  });

  // ─── shutdown, destroy ───
  await phase('graceful shutdown', async () => {
    const outcome = await vm.shutdown();
    // The shutdown primitive's outcome carries its ladder; core's type only promises `how`.
    const ladder = ((outcome as { steps?: ShutdownStep[] }).steps ?? [])
      .filter((step) => step.result !== 'skipped')
      .map((step) => `${step.action} ${step.result}`);
    const exit = outcome.vm.exit;
    // A Firecracker the jailer spawned (the simulated one does with --netns) is not our child: no exit status.
    const ended =
      exit?.exitCode != null
        ? `Firecracker exited ${exit.exitCode}`
        : exit?.signal != null
          ? `Firecracker ended by ${exit.signal}`
          : 'Firecracker gone';
    return { value: undefined, detail: `how: ${outcome.how} (${[...ladder, ended].join(', ')})` };
  });
  steps.splice(0);
  await phase('destroy', async () => {
    await vm.destroy();
    await microvms.close();
    providerClosed = true;
    return { value: undefined, detail: 'jail, firewall rules, TAP, vsock socket, leases and state removed' };
  });
  printSteps();

  // ─── cleanup ───
  await phase('cleanup', async () => {
    const failures = await cleanup.settled();
    if (failures.length > 0) {
      const list = failures.map((failure) => `${failure.description}: ${String(failure.error)}`);
      throw new Error(`could not remove:\n  ${list.join('\n  ')}`);
    }
    const left = await leftovers(names, workDir.dir);
    if (left.length > 0) throw new Error(`left behind: ${left.join(', ')}`);
    const namespaceCount = names.guest === undefined ? 2 : 3;
    return {
      value: undefined,
      detail: `${namespaceCount} namespaces and ${workDir.dir} deleted; nothing left`,
    };
  });
  print(`done in ${(performance.now() - demoStarted).toFixed(0)} ms`);
}

/** Throw-away images for the simulator; for a real Firecracker, its kernel and a copy of its rootfs. */
async function guestImages(vmm: VmmChoice, dir: string): Promise<{ kernel: string; rootfs: string }> {
  await mkdir(dir, { mode: 0o755 });
  const rootfs = join(dir, 'rootfs.ext4');
  if (vmm.kind === 'simulator') {
    const kernel = join(dir, 'vmlinux');
    // The simulator opens both files but never reads them.
    await writeFile(kernel, 'not a kernel: the simulator only opens it\n', { mode: 0o644 });
    await writeFile(rootfs, Buffer.alloc(64 * 1024), { mode: 0o644 });
    return { kernel, rootfs };
  }
  // The guest writes to its root disk and the jailer hands it to the jail user: never the caller's own image.
  await copyFile(vmm.rootfs, rootfs, constants.COPYFILE_FICLONE);
  return { kernel: vmm.kernel, rootfs };
}

async function requireCommands(commands: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const folders = (env.PATH ?? '').split(delimiter).filter(Boolean);
  const missing = commands.filter((command) => !folders.some((folder) => existsSync(join(folder, command))));
  if (missing.length > 0) {
    throw new SetupError(`the demo needs ${missing.join(', ')} on PATH (iproute2, nftables, util-linux)`);
  }
}

const CONSOLE_QUIET_MS = 2000;
const CONSOLE_WAIT_MS = 60_000;

/** Waits for the first console line, then until no line came for `CONSOLE_QUIET_MS` (at most `CONSOLE_WAIT_MS`). */
async function consoleQuiet(
  guestConsole: NonNullable<ComposedVm['console']>,
  signal: AbortSignal,
): Promise<string> {
  const deadline = performance.now() + CONSOLE_WAIT_MS;
  const anyLine = () => true;
  try {
    await guestConsole.waitForLine(anyLine, { timeoutMs: CONSOLE_WAIT_MS, signal });
  } catch (error) {
    if (signal.aborted) throw error;
    return `no console output within ${CONSOLE_WAIT_MS / 1000} s (is console=ttyS0 honoured?)`;
  }
  while (performance.now() < deadline) {
    try {
      await guestConsole.waitForLine(anyLine, { fromTail: 0, timeoutMs: CONSOLE_QUIET_MS, signal });
    } catch (error) {
      if (signal.aborted) throw error;
      return `the boot log went quiet (no line for ${CONSOLE_QUIET_MS / 1000} s)`;
    }
  }
  return `the guest was still printing after ${CONSOLE_WAIT_MS / 1000} s`;
}

/** Writes a line and resolves with the first line that comes back. */
async function echo(socket: Socket, message: string, signal: AbortSignal): Promise<string> {
  socket.setEncoding('utf8');
  socket.write(`${message}\n`);
  let received = '';
  while (!received.includes('\n')) {
    const [chunk] = (await once(socket, 'data', { signal })) as [string];
    received += chunk;
  }
  return received.slice(0, received.indexOf('\n'));
}

/** What of this run is still on the host: namespaces, the temp dir, a process carrying the VM id. */
export async function leftovers(names: NamespaceNames & { vmId: string }, dir: string): Promise<string[]> {
  const left: string[] = [];
  const namespaces = namespacesIn(await run('ip', ['netns', 'list']));
  for (const name of [names.host, names.internet, names.guest]) {
    if (name !== undefined && namespaces.includes(name)) left.push(`namespace ${name}`);
  }
  if (existsSync(dir)) left.push(dir);
  for (const pid of await processesWith(names.vmId)) left.push(`process ${pid}`);
  return left;
}

/** Pids whose command line has `argument` as one of its words. */
export async function processesWith(argument: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const commandLine = await readFile(join('/proc', entry, 'cmdline'), 'utf8').catch(() => '');
    if (commandLine.split('\0').includes(argument)) pids.push(Number(entry));
  }
  return pids;
}
