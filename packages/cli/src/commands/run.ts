import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { ComposedVm, ComposedVmInput, SimpleVmOptions } from '@microvm/composer';
import { type VmEvent, validateVmId } from '@microvm/core';
import { integerOption, JSON_OPTION, type OptionValues, stringOption } from '../args.js';
import type { Command, CommandContext } from '../context.js';
import { EXIT_CODES, formatDuration, toJson, UsageError } from '../output.js';

const VM_FLAGS = ['kernel', 'rootfs', 'initrd', 'vcpus', 'memory-mib', 'boot-args'] as const;

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Relative paths in a spec file mean "next to the spec file", whatever the current folder is. */
function resolveSimplePaths(options: Partial<SimpleVmOptions>, baseDir: string): Partial<SimpleVmOptions> {
  const at = (path: string | undefined) => (typeof path === 'string' ? resolve(baseDir, path) : path);
  return {
    ...options,
    ...(options.kernel !== undefined && { kernel: at(options.kernel)! }),
    ...(options.rootfs !== undefined && { rootfs: at(options.rootfs)! }),
    ...(options.initrd !== undefined && { initrd: at(options.initrd)! }),
    ...(Array.isArray(options.drives) && {
      drives: options.drives.map((drive) => ({ ...drive, path: at(drive.path)! })),
    }),
  };
}

async function readSpecFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    throw new UsageError(`--spec ${path}: ${(error as Error).message}`, 'run');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`--spec ${path} is not valid JSON: ${(error as Error).message}`, 'run');
  }
  if (!isPlainObject(parsed)) throw new UsageError(`--spec ${path} must hold a JSON object`, 'run');
  return parsed;
}

/**
 * The VM to create, from `--spec` (a `VmSpec`, or the short `SimpleVmOptions`) and/or flags. Flags refine a
 * short spec; next to a full `VmSpec` they are ambiguous and refused. Values are validated by core.
 */
export async function vmInputFrom(values: OptionValues): Promise<ComposedVmInput> {
  const specPath = stringOption(values, 'spec');
  const flagsGiven = VM_FLAGS.filter((flag) => values[flag] !== undefined);
  let base: Partial<SimpleVmOptions> = {};
  if (specPath !== undefined) {
    const fromFile = await readSpecFile(specPath);
    if ('bootSource' in fromFile) {
      if (flagsGiven.length > 0) {
        throw new UsageError(
          `--${flagsGiven[0]} cannot be combined with a full VmSpec in --spec; edit the file instead`,
          'run',
        );
      }
      return fromFile as unknown as ComposedVmInput;
    }
    base = resolveSimplePaths(fromFile as Partial<SimpleVmOptions>, dirname(resolve(specPath)));
  }
  const kernel = stringOption(values, 'kernel');
  const rootfs = stringOption(values, 'rootfs');
  const initrd = stringOption(values, 'initrd');
  const bootArgs = stringOption(values, 'boot-args');
  const vcpuCount = integerOption(values, 'vcpus', { min: 1, max: 32 });
  const memSizeMib = integerOption(values, 'memory-mib', { min: 1, max: 1024 * 1024 });
  const input: Partial<SimpleVmOptions> = {
    ...base,
    ...(kernel !== undefined && { kernel: resolve(kernel) }),
    ...(rootfs !== undefined && { rootfs: resolve(rootfs) }),
    ...(initrd !== undefined && { initrd: resolve(initrd) }),
    ...(bootArgs !== undefined && { bootArgs }),
    ...(vcpuCount !== undefined && { vcpuCount }),
    ...(memSizeMib !== undefined && { memSizeMib }),
  };
  for (const field of ['kernel', 'rootfs'] as const) {
    if (input[field] === undefined) {
      throw new UsageError(`run needs --${field} (or a --spec file that names the ${field})`, 'run');
    }
  }
  return input as SimpleVmOptions;
}

function waitForAbort(signal: AbortSignal | undefined): Promise<'interrupted'> {
  return new Promise((resolve) => {
    if (!signal) return;
    if (signal.aborted) resolve('interrupted');
    else signal.addEventListener('abort', () => resolve('interrupted'), { once: true });
  });
}

async function streamConsole(vm: ComposedVm, context: CommandContext, signal: AbortSignal): Promise<void> {
  if (!vm.console) return;
  try {
    for await (const line of vm.console.follow({ signal })) context.io.stdout.write(`${line}\n`);
  } catch (error) {
    if (!signal.aborted) context.progress(`console: ${(error as Error).message}`);
  }
}

/** Foreground: the VM lives as long as this command; Ctrl-C shuts it down and removes it. */
async function runForeground(context: CommandContext, vmId: string, input: ComposedVmInput): Promise<number> {
  const composed = await context.provider();
  const started = performance.now();
  let exited: ((event: Extract<VmEvent, { type: 'exit' }>) => void) | undefined;
  const exit = new Promise<Extract<VmEvent, { type: 'exit' }>>((resolve) => {
    exited = resolve;
  });
  const unsubscribe = composed.provider.onEvent((event) => {
    if (event.type === 'exit' && event.vmId === vmId) exited?.(event);
  });
  try {
    const vm = await composed.create(vmId, input, context.io.signal ? { signal: context.io.signal } : {});
    context.progress(`VM ${vmId} running (${formatDuration(performance.now() - started)})`);
    if (vm.network) context.progress(`guest IP ${vm.network.guestIp} via ${vm.network.tapName}`);
    if (!vm.console) {
      context.progress('no console stream: the console primitive is off (MICROVM_COMPOSE_CONSOLE=0)');
    }
    context.progress('Ctrl-C stops the VM and removes it');
    const stopConsole = new AbortController();
    const consoleDone = streamConsole(vm, context, stopConsole.signal);
    const outcome = await Promise.race([exit, waitForAbort(context.io.signal)]);
    stopConsole.abort();
    await consoleDone;
    if (outcome === 'interrupted') {
      context.progress(`stopping VM ${vmId}…`);
      const result = await vm.shutdown();
      context.progress(`VM ${vmId} stopped (${result.how}, ${formatDuration(result.durationMs)})`);
      await vm.destroy();
      context.progress(`VM ${vmId} removed`);
      return EXIT_CODES.interrupted;
    }
    const how = outcome.signal ? `signal ${outcome.signal}` : `exit code ${outcome.exitCode}`;
    context.progress(`VM ${vmId} ended on its own (${how})`);
    if (outcome.stderrTail.trim()) context.progress(outcome.stderrTail.trimEnd());
    await vm.destroy();
    context.progress(`VM ${vmId} removed`);
    return outcome.exitCode === 0 ? EXIT_CODES.ok : EXIT_CODES.failed;
  } finally {
    unsubscribe();
  }
}

export const runCommand: Command = {
  name: 'run',
  summary: 'Create and start a VM; in the foreground until Ctrl-C, or detached with -d',
  usage: 'run (--kernel <path> --rootfs <path> | --spec <file>) [options]',
  options: {
    kernel: { type: 'string', valueName: 'path', description: 'guest kernel (uncompressed vmlinux)' },
    rootfs: { type: 'string', valueName: 'path', description: 'root filesystem image, attached read-write' },
    initrd: { type: 'string', valueName: 'path', description: 'initial ramdisk' },
    vcpus: { type: 'string', valueName: 'count', description: 'virtual CPUs (default 1)' },
    'memory-mib': { type: 'string', valueName: 'mib', description: 'guest memory in MiB (default 256)' },
    'boot-args': {
      type: 'string',
      valueName: 'args',
      description: 'appended to the kernel command line "console=ttyS0 reboot=k panic=1 pci=off"',
    },
    spec: {
      type: 'string',
      valueName: 'file',
      description:
        'JSON file holding a VmSpec, or { kernel, rootfs, vcpuCount, memSizeMib, bootArgs, egress }',
    },
    name: {
      type: 'string',
      valueName: 'id',
      description: 'the VM id ([A-Za-z0-9-]{1,64}; default vm-<random>)',
    },
    detach: {
      type: 'boolean',
      short: 'd',
      description: 'print the id and leave the VM running in the background',
    },
    ...JSON_OPTION,
  },
  positionals: [],
  examples: [
    'microvm run --kernel vmlinux --rootfs rootfs.ext4 --vcpus 2 --memory-mib 512',
    'microvm run -d --name web-1 --spec web.json',
    'id=$(microvm run -d --kernel vmlinux --rootfs rootfs.ext4) && microvm logs -f "$id"',
  ],
  async run(context) {
    const input = await vmInputFrom(context.values);
    const vmId = validateVmId(stringOption(context.values, 'name') ?? context.dependencies.newVmId(), 'name');
    const settings = await context.settings();
    if (!context.values.detach) return runForeground(context, vmId, input);
    const { selfCommand } = context.io;
    if (!selfCommand) throw new Error('run -d needs io.selfCommand to start the supervisor');
    const info = await context.dependencies.startSupervisor(
      { kind: 'create', vmId, input, stateDir: settings.stateDir, firecracker: settings.firecracker },
      {
        selfCommand,
        env: settings.env,
        ...(context.io.signal && { signal: context.io.signal }),
        onEvent: (event) => context.showEvent(event),
      },
    );
    context.io.stdout.write(context.json ? toJson(info) : `${info.vmId}\n`);
    return EXIT_CODES.ok;
  },
};
