import { parseArgs } from 'node:util';
import { UsageError } from './output.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  /** Shown in help as `--name <valueName>`. */
  valueName?: string;
  description: string;
}

export interface CommandSpec {
  name: string;
  summary: string;
  /** After `microvm `: `logs [-f] <id>`. */
  usage: string;
  options: Record<string, OptionSpec>;
  /** Positional arguments, by name; `optional` ones may be left out. */
  positionals: { name: string; optional?: boolean }[];
  examples: string[];
  /** Internal commands (the detached supervisor) are not listed in help. */
  hidden?: boolean;
}

export const GLOBAL_OPTIONS = {
  'state-dir': {
    type: 'string',
    valueName: 'dir',
    description: 'where VMs and snapshots are recorded (default $MICROVM_STATE_DIR or /var/lib/microvm)',
  },
  firecracker: {
    type: 'string',
    valueName: 'path',
    description:
      'the firecracker binary (default $MICROVM_FIRECRACKER_BIN, else firecracker on PATH, else the simulator)',
  },
  quiet: { type: 'boolean', short: 'q', description: 'no progress on stderr' },
  debug: { type: 'boolean', description: 'show the cause and stack of errors' },
  help: { type: 'boolean', short: 'h', description: 'show help' },
} as const satisfies Record<string, OptionSpec>;

export const JSON_OPTION = {
  json: { type: 'boolean', description: 'print JSON instead of text' },
} as const satisfies Record<string, OptionSpec>;

export type OptionValues = Record<string, string | boolean | undefined>;

export interface ParsedCommandLine {
  /** The command word, undefined when none was given. */
  command: string | undefined;
  /** Everything but the command word. */
  rest: string[];
}

/** The first word that is neither an option nor the value of a global option that takes one. */
export function splitCommand(argv: readonly string[]): ParsedCommandLine {
  for (let index = 0; index < argv.length; index += 1) {
    const token = argv[index]!;
    if (token === '--') break;
    if (token.startsWith('-')) {
      const name = token.replace(/^--?/, '');
      const spec = (GLOBAL_OPTIONS as Record<string, OptionSpec>)[name];
      if (spec?.type === 'string' && !token.includes('=')) index += 1;
      continue;
    }
    return { command: token, rest: [...argv.slice(0, index), ...argv.slice(index + 1)] };
  }
  return { command: undefined, rest: [...argv] };
}

export interface ParsedArguments {
  values: OptionValues;
  positionals: string[];
}

/** Strict parsing: an unknown flag or a missing value is a usage error (exit code 2). */
export function parseCommandArguments(spec: CommandSpec, args: readonly string[]): ParsedArguments {
  const options: Record<string, OptionSpec> = { ...GLOBAL_OPTIONS, ...spec.options };
  let parsed: { values: Record<string, unknown>; positionals: string[] };
  try {
    parsed = parseArgs({
      args: [...args],
      options: Object.fromEntries(
        Object.entries(options).map(([name, option]) => [
          name,
          { type: option.type, ...(option.short && { short: option.short }) },
        ]),
      ),
      allowPositionals: true,
      strict: true,
    });
  } catch (error) {
    throw new UsageError(error instanceof Error ? error.message : String(error), spec.name);
  }
  const values = parsed.values as OptionValues;
  if (values.help) return { values, positionals: parsed.positionals };
  const required = spec.positionals.filter((positional) => !positional.optional);
  if (parsed.positionals.length < required.length) {
    const missing = required[parsed.positionals.length]!;
    throw new UsageError(`${spec.name}: missing <${missing.name}>`, spec.name);
  }
  if (parsed.positionals.length > spec.positionals.length) {
    const extra = parsed.positionals.slice(spec.positionals.length).join(' ');
    throw new UsageError(`${spec.name}: unexpected argument(s): ${extra}`, spec.name);
  }
  return { values, positionals: parsed.positionals };
}

/** A whole number within bounds, or a usage error naming the flag. */
export function integerOption(
  values: OptionValues,
  name: string,
  bounds: { min: number; max: number },
): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const value = typeof raw === 'string' && /^\d+$/.test(raw.trim()) ? Number(raw.trim()) : Number.NaN;
  if (!Number.isSafeInteger(value) || value < bounds.min || value > bounds.max) {
    throw new UsageError(
      `--${name} must be a whole number from ${bounds.min} to ${bounds.max} (got ${JSON.stringify(raw)})`,
    );
  }
  return value;
}

export function stringOption(values: OptionValues, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

function optionLines(options: Record<string, OptionSpec>): string[] {
  const entries = Object.entries(options).map(([name, option]) => {
    const flag = `${option.short ? `-${option.short}, ` : '    '}--${name}${option.valueName ? ` <${option.valueName}>` : ''}`;
    return [flag, option.description] as const;
  });
  const width = Math.max(...entries.map(([flag]) => flag.length));
  return entries.map(([flag, description]) => `  ${flag.padEnd(width)}  ${description}`);
}

export function commandHelp(spec: CommandSpec): string {
  const lines = [`Usage: microvm ${spec.usage}`, '', spec.summary];
  if (Object.keys(spec.options).length > 0) lines.push('', 'Options:', ...optionLines(spec.options));
  lines.push('', 'Global options:', ...optionLines(GLOBAL_OPTIONS));
  if (spec.examples.length > 0)
    lines.push('', 'Examples:', ...spec.examples.map((example) => `  ${example}`));
  return `${lines.join('\n')}\n`;
}

export function mainHelp(commands: readonly CommandSpec[]): string {
  const visible = commands.filter((command) => !command.hidden);
  const width = Math.max(...visible.map((command) => command.name.length));
  return `${[
    'Usage: microvm <command> [options]',
    '',
    'Run and manage Firecracker microVMs on this host.',
    '',
    'Commands:',
    ...visible.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`),
    '',
    'Global options:',
    ...optionLines(GLOBAL_OPTIONS),
    '',
    "Run 'microvm <command> --help' for a command's options and examples.",
    'Exit codes: 0 ok, 1 failed, 2 usage or invalid input, 3 not found, 4 conflict, 130 interrupted.',
  ].join('\n')}\n`;
}
