import { randomBytes } from 'node:crypto';
import type { ComposedProvider } from '@microvm/composer';
import { FirecrackerComposer } from '@microvm/composer';
import { type VmEvent, validateVmId } from '@microvm/core';
import { firecrackerSimulatorPath, jailerSimulatorPath } from '@microvm/simulator';
import { commandHelp, mainHelp, parseCommandArguments, splitCommand } from './args.js';
import { doctorCommand } from './commands/doctor.js';
import { logsCommand } from './commands/logs.js';
import { runCommand } from './commands/run.js';
import {
  deleteSnapshotCommand,
  gcCommand,
  inspectCommand,
  killCommand,
  pauseCommand,
  psCommand,
  restoreCommand,
  resumeCommand,
  rmCommand,
  snapshotCommand,
  snapshotsCommand,
  stopCommand,
} from './commands/vm-commands.js';
import type { CliDependencies, CliIo, Command, CommandContext, ProviderSettings } from './context.js';
import { runDoctor } from './doctor.js';
import { EXIT_CODES, exitCodeOf, formatDuration, formatError, UsageError } from './output.js';
import { chooseFirecracker, composeEnvironment, describeFirecracker, stateDirOf } from './settings.js';
import { startSupervisor } from './supervisor.js';

export const COMMANDS: readonly Command[] = [
  runCommand,
  psCommand,
  inspectCommand,
  logsCommand,
  pauseCommand,
  resumeCommand,
  snapshotCommand,
  restoreCommand,
  snapshotsCommand,
  deleteSnapshotCommand,
  stopCommand,
  killCommand,
  rmCommand,
  doctorCommand,
  gcCommand,
];

/** The composer configured from the environment (`MICROVM_COMPOSE_*` toggles and each primitive's variables). */
export function openComposedProvider(settings: ProviderSettings): ComposedProvider {
  return FirecrackerComposer.fromEnv(settings.env).provider({
    stateDir: settings.stateDir,
    firecrackerBinary: settings.firecracker.path,
  });
}

export const defaultDependencies: CliDependencies = {
  openProvider: openComposedProvider,
  runDoctor,
  startSupervisor,
  simulator: { firecracker: firecrackerSimulatorPath, jailer: jailerSimulatorPath },
  newVmId: () => `vm-${randomBytes(4).toString('hex')}`,
  nowMs: () => Date.now(),
};

function formatEvent(event: VmEvent): string | undefined {
  switch (event.type) {
    case 'phase':
      return `  ${event.vmId}  ${`${event.operation} ${event.phase}`.padEnd(28)} ${formatDuration(event.durationMs)}`;
    case 'warning':
      return `warning: ${event.vmId}: ${event.message}`;
    default:
      return undefined;
  }
}

/**
 * The `microvm` command, in-process: parses `argv` (without `node` and the script), runs the command and returns
 * the exit code. Data goes to `io.stdout`, progress and errors to `io.stderr`.
 */
export async function runCli(
  argv: readonly string[],
  io: CliIo,
  dependencies: CliDependencies = defaultDependencies,
): Promise<number> {
  let debug = argv.includes('--debug');
  let opened: ComposedProvider | undefined;
  try {
    const { command: name, rest } = splitCommand(argv);
    if (name === undefined || name === 'help') {
      const topic = name === 'help' ? splitCommand(rest).command : undefined;
      const command = COMMANDS.find((candidate) => candidate.name === topic);
      if (topic !== undefined && !command) throw new UsageError(`unknown command '${topic}'`);
      if (!command && rest.length > 0 && !rest.every((token) => token === '--help' || token === '-h')) {
        throw new UsageError('missing command');
      }
      // `microvm` alone is a usage error: the help goes to stderr, so stdout stays empty for scripts.
      const bare = name === undefined && rest.length === 0;
      (bare ? io.stderr : io.stdout).write(command ? commandHelp(command) : mainHelp(COMMANDS));
      return bare ? EXIT_CODES.usage : EXIT_CODES.ok;
    }
    const command = COMMANDS.find((candidate) => candidate.name === name);
    if (!command) throw new UsageError(`unknown command '${name}'`);
    const { values, positionals } = parseCommandArguments(command, rest);
    debug = values.debug === true;
    // Ids become paths under the state directory: a bad one is refused before anything reads the host (exit 2).
    for (const [index, positional] of command.positionals.entries()) {
      const value = positionals[index];
      if (value === undefined) continue;
      if (positional.name === 'id') validateVmId(value, 'vmId');
      if (positional.name === 'snapshot-id') validateVmId(value, 'snapshotId');
    }
    if (values.help) {
      io.stdout.write(commandHelp(command));
      return EXIT_CODES.ok;
    }
    const quiet = values.quiet === true;
    const stateDir = stateDirOf(values, io.env);
    const progress = (line: string) => {
      if (!quiet) io.stderr.write(`${line}\n`);
    };
    const showEvent = (event: VmEvent) => {
      const line = formatEvent(event);
      if (line) progress(line);
    };
    // Only `run` and `restore` start a VMM, so only they say which binary that is.
    const announces = command === runCommand || command === restoreCommand;
    let settings: Promise<ProviderSettings> | undefined;
    const resolveSettings = () => {
      settings ??= (async () => {
        const firecracker = await chooseFirecracker(values, io.env, dependencies.simulator);
        if (announces) progress(describeFirecracker(firecracker));
        return {
          stateDir,
          firecracker,
          env: await composeEnvironment(io.env, firecracker, dependencies.simulator),
        };
      })();
      return settings;
    };
    const context: CommandContext = {
      io,
      values,
      positionals,
      dependencies,
      stateDir,
      json: values.json === true,
      debug,
      quiet,
      progress,
      showEvent,
      settings: resolveSettings,
      async provider() {
        if (opened) return opened;
        opened = dependencies.openProvider(await resolveSettings());
        opened.provider.onEvent(showEvent);
        return opened;
      },
    };
    return await command.run(context);
  } catch (error) {
    io.stderr.write(formatError(error, debug));
    return exitCodeOf(error, io.signal?.aborted === true);
  } finally {
    await opened?.close().catch((error: unknown) => io.stderr.write(formatError(error, debug)));
  }
}
