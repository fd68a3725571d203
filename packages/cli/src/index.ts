export { COMMANDS, defaultDependencies, openComposedProvider, runCli } from './cli.js';
export type {
  CliDependencies,
  CliIo,
  CliOutput,
  Command,
  CommandContext,
  ProviderSettings,
  SupervisorStartOptions,
} from './context.js';
export {
  type CheckResult,
  type DoctorOptions,
  type HostProbe,
  nextStep,
  realHost,
  runDoctor,
} from './doctor.js';
export { EXIT_CODES, type ExitCode, exitCodeOf, UsageError } from './output.js';
export type { FirecrackerChoice, FirecrackerSource } from './settings.js';
export type { SupervisorRequest } from './supervisor.js';
