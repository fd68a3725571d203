import type { ComposedProvider } from '@microvm/composer';
import type { VmEvent, VmInfo } from '@microvm/core';
import type { CommandSpec, OptionValues } from './args.js';
import type { CheckResult, DoctorOptions } from './doctor.js';
import type { FirecrackerChoice, SimulatorPaths } from './settings.js';
import type { SupervisorRequest } from './supervisor.js';

/** Where the CLI writes: `process.stdout` in the bin, a string collector in tests. */
export interface CliOutput {
  write(text: string): unknown;
}

/** Everything the CLI takes from its process, so tests can run it in-process. */
export interface CliIo {
  stdout: CliOutput;
  stderr: CliOutput;
  env: NodeJS.ProcessEnv;
  /** Fires on Ctrl-C (SIGINT) or SIGTERM: the running command winds down and returns 130. */
  signal?: AbortSignal;
  /** The command line that starts this CLI again (`node /…/microvm.js`): the detached supervisor uses it. */
  selfCommand?: readonly string[];
}

/** What a provider is opened with. */
export interface ProviderSettings {
  stateDir: string;
  firecracker: FirecrackerChoice;
  /** The environment the composer reads `MICROVM_COMPOSE_*` and each primitive's variables from. */
  env: NodeJS.ProcessEnv;
}

export interface SupervisorStartOptions {
  selfCommand: readonly string[];
  env: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  onEvent(event: VmEvent): void;
}

/** The seams tests replace: the provider, the host probe, the detached supervisor, ids and time. */
export interface CliDependencies {
  openProvider(settings: ProviderSettings): ComposedProvider;
  runDoctor(options: DoctorOptions): Promise<CheckResult[]>;
  /** Starts a detached supervisor that creates or restores the VM; resolves once it is running. */
  startSupervisor(request: SupervisorRequest, options: SupervisorStartOptions): Promise<VmInfo>;
  simulator: SimulatorPaths;
  newVmId(): string;
  nowMs(): number;
}

/** What a command gets: its parsed arguments and lazily opened resources. */
export interface CommandContext {
  readonly io: CliIo;
  readonly values: OptionValues;
  readonly positionals: readonly string[];
  readonly dependencies: CliDependencies;
  readonly stateDir: string;
  readonly json: boolean;
  readonly debug: boolean;
  readonly quiet: boolean;
  /** Opened on first use (and closed when the command returns), with progress on stderr. */
  provider(): Promise<ComposedProvider>;
  /** Where the VMM comes from; says which on stderr the first time. */
  settings(): Promise<ProviderSettings>;
  /** A line on stderr, unless `--quiet`. */
  progress(line: string): void;
  /** Prints a provider event as progress. */
  showEvent(event: VmEvent): void;
}

export interface Command extends CommandSpec {
  run(context: CommandContext): Promise<number>;
}
