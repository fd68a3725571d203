import { SIMULATED_FIRECRACKER_VERSION } from './constants.js';

/**
 * Firecracker's command line, parsed the way its own `ArgParser` does: `--name value` as two argv entries,
 * no `--name=value`, no repeats, values may not start with `--`, everything after a bare `--` is extra.
 */

interface ArgumentDefinition {
  name: string;
  takesValue: boolean;
  help: string;
  requires?: string;
  forbids?: string;
}

const ARGUMENTS: readonly ArgumentDefinition[] = [
  {
    name: 'api-sock',
    takesValue: true,
    help: 'Path to unix domain socket used by the API. [default: "/run/firecracker.socket"]',
  },
  { name: 'id', takesValue: true, help: 'MicroVM unique identifier. [default: "anonymous-instance"]' },
  {
    name: 'seccomp-filter',
    takesValue: true,
    forbids: 'no-seccomp',
    help: 'Optional parameter which allows specifying the path to a custom seccomp filter. For advanced users.',
  },
  {
    name: 'no-seccomp',
    takesValue: false,
    forbids: 'seccomp-filter',
    help: 'Optional parameter which allows starting and using a microVM without seccomp filtering. Not recommended.',
  },
  { name: 'start-time-us', takesValue: true, help: 'Process start time (wall clock, microseconds).' },
  { name: 'start-time-cpu-us', takesValue: true, help: 'Process start CPU time (wall clock, microseconds).' },
  {
    name: 'parent-cpu-time-us',
    takesValue: true,
    help: 'Parent process CPU time (wall clock, microseconds).',
  },
  {
    name: 'config-file',
    takesValue: true,
    help: 'Path to a file that contains the microVM configuration in JSON format.',
  },
  {
    name: 'no-api',
    takesValue: false,
    requires: 'config-file',
    help: 'Optional parameter which allows starting and using a microVM without an active API socket.',
  },
  {
    name: 'log-path',
    takesValue: true,
    help: 'Path to a fifo or a file used for configuring the logger on startup.',
  },
  { name: 'level', takesValue: true, help: 'Set the logger level.' },
  { name: 'module', takesValue: true, help: 'Set the logger module filter.' },
  { name: 'show-level', takesValue: false, help: 'Whether or not to output the level in the logs.' },
  {
    name: 'show-log-origin',
    takesValue: false,
    help: "Whether or not to include the file path and line number of the log's origin.",
  },
  {
    name: 'metrics-path',
    takesValue: true,
    help: 'Path to a fifo or a file used for configuring the metrics on startup.',
  },
  {
    name: 'boot-timer',
    takesValue: false,
    help: 'Whether or not to load boot timer device for logging elapsed time since InstanceStart command.',
  },
  { name: 'version', takesValue: false, help: 'Print the binary version number.' },
  { name: 'snapshot-version', takesValue: false, help: 'Print the supported data format version.' },
  {
    name: 'describe-snapshot',
    takesValue: true,
    help: 'Print the data format version of the provided snapshot state file.',
  },
  {
    name: 'http-api-max-payload-size',
    takesValue: true,
    help: 'Http API request payload max size, in bytes. [default: "51200"]',
  },
  { name: 'mmds-size-limit', takesValue: true, help: 'Mmds data store limit, in bytes.' },
  {
    name: 'metadata',
    takesValue: true,
    help: 'Path to a file that contains metadata in JSON format to add to the mmds.',
  },
  { name: 'enable-pci', takesValue: false, help: 'Enables PCIe support.' },
  { name: 'help', takesValue: false, help: 'Show the help message.' },
];

/** `ArgParser` errors, displayed as Firecracker displays them. */
export type ArgumentError =
  | { kind: 'DuplicateArgument'; name: string }
  | { kind: 'ForbiddenArgument'; name: string; forbidden: string }
  | { kind: 'MissingArgument'; name: string }
  | { kind: 'MissingValue'; name: string }
  | { kind: 'UnexpectedArgument'; name: string }
  | { kind: 'InvalidValue'; name: string; value: string };

export function describeArgumentError(error: ArgumentError): string {
  switch (error.kind) {
    case 'DuplicateArgument':
      return `The argument '${error.name}' was provided more than once.`;
    case 'ForbiddenArgument':
      return `Argument '${error.name}' cannot be used together with argument '${error.forbidden}'.`;
    case 'MissingArgument':
      return `Argument '${error.name}' required, but not found.`;
    case 'MissingValue':
      return `The argument '${error.name}' requires a value, but none was supplied.`;
    case 'UnexpectedArgument':
      return `Found argument '${error.name}' which wasn't expected, or isn't valid in this context.`;
    case 'InvalidValue':
      return `Invalid value '${error.value}' for argument '${error.name}'.`;
  }
}

export interface FirecrackerArguments {
  apiSock: string | undefined;
  id: string | undefined;
  seccompFilter: string | undefined;
  noSeccomp: boolean;
  startTimeUs: number | undefined;
  startTimeCpuUs: number | undefined;
  parentCpuTimeUs: number | undefined;
  configFile: string | undefined;
  noApi: boolean;
  logPath: string | undefined;
  level: string | undefined;
  module: string | undefined;
  showLevel: boolean;
  showLogOrigin: boolean;
  metricsPath: string | undefined;
  bootTimer: boolean;
  version: boolean;
  snapshotVersion: boolean;
  describeSnapshot: string | undefined;
  httpApiMaxPayloadSize: number | undefined;
  mmdsSizeLimit: number | undefined;
  metadata: string | undefined;
  enablePci: boolean;
  help: boolean;
  /** Arguments after a bare `--`. */
  extraArgs: string[];
}

export type ParseResult = { ok: true; arguments: FirecrackerArguments } | { ok: false; error: ArgumentError };

function parseUnsigned(name: string, value: string): number | ArgumentError {
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value)))
    return { kind: 'InvalidValue', name, value };
  return Number(value);
}

/** Parses argv (without the program name) exactly as Firecracker's `ArgParser` would accept or refuse it. */
export function parseFirecrackerArguments(argv: readonly string[]): ParseResult {
  const values = new Map<string, string | true>();
  const extraArgs: string[] = [];
  for (let index = 0; index < argv.length; index += 1) {
    const argument = argv[index] as string;
    if (argument === '--') {
      extraArgs.push(...argv.slice(index + 1));
      break;
    }
    const name = argument === '-h' ? 'help' : argument.startsWith('--') ? argument.slice(2) : undefined;
    const definition =
      name === undefined ? undefined : ARGUMENTS.find((candidate) => candidate.name === name);
    if (name === undefined || definition === undefined) {
      return { ok: false, error: { kind: 'UnexpectedArgument', name: name ?? argument } };
    }
    if (values.has(name)) return { ok: false, error: { kind: 'DuplicateArgument', name } };
    if (!definition.takesValue) {
      values.set(name, true);
      continue;
    }
    const value = argv[index + 1];
    if (value === undefined || value.startsWith('--'))
      return { ok: false, error: { kind: 'MissingValue', name } };
    values.set(name, value);
    index += 1;
  }

  // `--help` and `--version` win over every other check, as in Firecracker.
  if (!values.has('help') && !values.has('version')) {
    for (const definition of ARGUMENTS) {
      if (!values.has(definition.name)) continue;
      if (definition.requires !== undefined && !values.has(definition.requires)) {
        return { ok: false, error: { kind: 'MissingArgument', name: definition.requires } };
      }
      if (definition.forbids !== undefined && values.has(definition.forbids)) {
        return {
          ok: false,
          error: { kind: 'ForbiddenArgument', name: definition.name, forbidden: definition.forbids },
        };
      }
    }
  }

  const text = (name: string) => {
    const value = values.get(name);
    return typeof value === 'string' ? value : undefined;
  };
  const flag = (name: string) => values.get(name) === true;
  const numbers: Record<string, number | undefined> = {};
  for (const name of [
    'start-time-us',
    'start-time-cpu-us',
    'parent-cpu-time-us',
    'http-api-max-payload-size',
    'mmds-size-limit',
  ]) {
    const value = text(name);
    if (value === undefined) continue;
    const parsed = parseUnsigned(name, value);
    if (typeof parsed !== 'number') return { ok: false, error: parsed };
    numbers[name] = parsed;
  }

  return {
    ok: true,
    arguments: {
      apiSock: text('api-sock'),
      id: text('id'),
      seccompFilter: text('seccomp-filter'),
      noSeccomp: flag('no-seccomp'),
      startTimeUs: numbers['start-time-us'],
      startTimeCpuUs: numbers['start-time-cpu-us'],
      parentCpuTimeUs: numbers['parent-cpu-time-us'],
      configFile: text('config-file'),
      noApi: flag('no-api'),
      logPath: text('log-path'),
      level: text('level'),
      module: text('module'),
      showLevel: flag('show-level'),
      showLogOrigin: flag('show-log-origin'),
      metricsPath: text('metrics-path'),
      bootTimer: flag('boot-timer'),
      version: flag('version'),
      snapshotVersion: flag('snapshot-version'),
      describeSnapshot: text('describe-snapshot'),
      httpApiMaxPayloadSize: numbers['http-api-max-payload-size'],
      mmdsSizeLimit: numbers['mmds-size-limit'],
      metadata: text('metadata'),
      enablePci: flag('enable-pci'),
      help: flag('help'),
      extraArgs,
    },
  };
}

/** `firecracker --help`, headed by the version the simulator reports. */
export function firecrackerHelpText(version: string = SIMULATED_FIRECRACKER_VERSION): string {
  const lines = [
    `Firecracker v${version} (microvm-simulator)`,
    '',
    'Usage: firecracker [ARGUMENTS]',
    '',
    'Arguments:',
  ];
  for (const definition of ARGUMENTS) {
    const usage = definition.takesValue
      ? `--${definition.name} <${definition.name}>`
      : `--${definition.name}`;
    lines.push(`  ${usage}`, `      ${definition.help}`);
  }
  return `${lines.join('\n')}\n`;
}
