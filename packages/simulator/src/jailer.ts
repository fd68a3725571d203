import { type ChildProcess, execFile, type SpawnOptions, spawn } from 'node:child_process';
import { once } from 'node:events';
import { constants as fsConstants } from 'node:fs';
import {
  chmod,
  chown,
  type FileHandle,
  lstat,
  mkdir,
  open,
  readFile,
  realpath,
  stat,
  statfs,
  writeFile,
} from 'node:fs/promises';
import { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getSystemErrorMap, promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** The jailer release the simulator imitates. */
export const JAILER_VERSION = '1.16.1';
export const DEFAULT_CHROOT_BASE_DIR = '/srv/jailer';
/** The jailer's default `no-file` limit (the docs say 4096; the code sets 2048). */
export const DEFAULT_NO_FILE_LIMIT = 2048n;
/**
 * Set in the environment of the process the simulated jailer spawns to run Firecracker (with `--netns`,
 * `--new-pid-ns` or `--daemonize`). It carries a {@link JailedExecRequest} as JSON.
 */
export const JAILED_EXEC_ENV = 'MICROVM_SIMULATOR_JAILER_EXEC';
/** Overrides `/proc/mounts` when looking for cgroup hierarchies (tests use a fake hierarchy). */
export const PROC_MOUNTS_ENV = 'MICROVM_SIMULATOR_PROC_MOUNTS';

const PROC_MOUNTS = '/proc/mounts';
const PROC_MISC = '/proc/misc';
const NSFS_MAGIC = 0x6e736673;
const ID_MAX_BYTES = 64;
const FOLDER_HIERARCHY = ['/', '/dev', '/dev/net', '/run'] as const;
const FOLDER_MODE = 0o700;
const ARGUMENT_PREFIX = '--';
/** Signals Firecracker installs no handler for: as PID 1 of a new pid namespace it never receives them. */
const PID_ONE_IGNORED_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGQUIT'] as const;
/** Signals the jailer passes on to a Firecracker it had to spawn instead of becoming it. */
const FORWARDED_SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR2'] as const;

/**
 * A failure of the jailer. `kind` says how the real jailer reports it: argument-parsing errors return
 * from `main` (message, then `Error: <Debug>`, exit 1); every other error panics (`Jailer error: …`, abort).
 */
export class JailerError extends Error {
  readonly kind: 'argument-parsing' | 'panic';
  /** Rust's `Debug` text of the error, printed after `Error: ` for argument-parsing failures. */
  readonly debugText: string | undefined;

  constructor(message: string, options: { kind?: 'argument-parsing' | 'panic'; debugText?: string } = {}) {
    super(message);
    this.name = 'JailerError';
    this.kind = options.kind ?? 'panic';
    this.debugText = options.debugText;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Arguments (Firecracker's utils::arg_parser)
// ---------------------------------------------------------------------------------------------------------

interface ArgumentDefinition {
  name: string;
  takesValue: boolean;
  allowMultiple?: boolean;
  required?: boolean;
  defaultValue?: string;
  help: string;
}

const JAILER_ARGUMENTS: readonly ArgumentDefinition[] = [
  { name: 'id', required: true, takesValue: true, help: 'Jail ID.' },
  { name: 'exec-file', required: true, takesValue: true, help: 'File path to exec into.' },
  {
    name: 'uid',
    required: true,
    takesValue: true,
    help: 'The user identifier the jailer switches to after exec.',
  },
  {
    name: 'gid',
    required: true,
    takesValue: true,
    help: 'The group identifier the jailer switches to after exec.',
  },
  {
    name: 'chroot-base-dir',
    takesValue: true,
    defaultValue: DEFAULT_CHROOT_BASE_DIR,
    help: 'The base folder where chroot jails are located.',
  },
  { name: 'netns', takesValue: true, help: 'Path to the network namespace this microVM should join.' },
  {
    name: 'daemonize',
    takesValue: false,
    help: 'Daemonize the jailer before exec, by invoking setsid(), and redirecting the standard I/O file descriptors to /dev/null.',
  },
  { name: 'new-pid-ns', takesValue: false, help: 'Exec into a new PID namespace.' },
  {
    name: 'cgroup',
    takesValue: true,
    allowMultiple: true,
    help: 'Cgroup and value to be set by the jailer. It must follow this format: <cgroup_file>=<value> (e.g cpu.shares=10). This argument can be used multiple times to add multiple cgroups.',
  },
  {
    name: 'resource-limit',
    takesValue: true,
    allowMultiple: true,
    help: 'Resource limit values to be set by the jailer. It must follow this format: <resource>=<value> (e.g no-file=1024). This argument can be used multiple times to add multiple resource limits. Current available resource values are:\n\t\tfsize: The maximum size in bytes for files created by the process.\n\t\tno-file: Specifies a value one greater than the maximum file descriptor number that can be opened by this process.',
  },
  {
    name: 'cgroup-version',
    takesValue: true,
    defaultValue: '1',
    help: 'Select the cgroup version used by the jailer.',
  },
  {
    name: 'parent-cgroup',
    takesValue: true,
    help: 'Parent cgroup in which the cgroup of this microvm will be placed.',
  },
  { name: 'version', takesValue: false, help: 'Print the binary version number.' },
];

export interface ParsedJailerArguments {
  /** `--help` was given (nothing else is parsed then). */
  help: boolean;
  /** `--version` was given (nothing else is parsed then). */
  version: boolean;
  /** Single values, defaults included. */
  values: ReadonlyMap<string, string>;
  /** Repeatable arguments (`--cgroup`, `--resource-limit`). */
  multipleValues: ReadonlyMap<string, readonly string[]>;
  /** Flags that were given (`--daemonize`, `--new-pid-ns`). */
  flags: ReadonlySet<string>;
  /** Everything after a bare `--`, passed on to Firecracker. */
  extraArgs: readonly string[];
}

function argumentParsingError(
  variant: 'MissingArgument' | 'MissingValue' | 'UnexpectedArgument' | 'DuplicateArgument',
  argument: string,
): JailerError {
  const text = {
    MissingArgument: `Argument '${argument}' required, but not found.`,
    MissingValue: `The argument '${argument}' requires a value, but none was supplied.`,
    UnexpectedArgument: `Found argument '${argument}' which wasn't expected, or isn't valid in this context.`,
    DuplicateArgument: `The argument '${argument}' was provided more than once.`,
  }[variant];
  return new JailerError(`Failed to parse arguments: ${text}`, {
    kind: 'argument-parsing',
    debugText: `ArgumentParsing(${variant}(${JSON.stringify(argument)}))`,
  });
}

/** Parses the jailer's command line (without the program name) the way Firecracker's arg parser does. */
export function parseJailerArguments(argv: readonly string[]): ParsedJailerArguments {
  const separator = argv.indexOf(ARGUMENT_PREFIX);
  const args = separator >= 0 ? argv.slice(0, separator) : [...argv];
  const extraArgs = separator >= 0 ? argv.slice(separator + 1) : [];
  const empty = { values: new Map(), multipleValues: new Map(), flags: new Set<string>(), extraArgs };
  if (args.includes('--help')) return { help: true, version: false, ...empty };
  if (args.includes('--version')) return { help: false, version: true, ...empty };

  const definitions = new Map(JAILER_ARGUMENTS.map((definition) => [definition.name, definition]));
  const values = new Map<string, string>();
  const multipleValues = new Map<string, string[]>();
  const flags = new Set<string>();
  for (let index = 0; index < args.length; index += 1) {
    const arg = args[index] ?? '';
    if (!arg.startsWith(ARGUMENT_PREFIX)) throw argumentParsingError('UnexpectedArgument', arg);
    const name = arg.slice(ARGUMENT_PREFIX.length);
    const definition = definitions.get(name);
    if (!definition) throw argumentParsingError('UnexpectedArgument', name);
    const given = values.has(name) || flags.has(name) || multipleValues.has(name);
    if (given && !definition.allowMultiple) throw argumentParsingError('DuplicateArgument', name);
    if (!definition.takesValue) {
      flags.add(name);
      continue;
    }
    const value = args[index + 1];
    if (value === undefined || value.startsWith(ARGUMENT_PREFIX))
      throw argumentParsingError('MissingValue', name);
    index += 1;
    if (definition.allowMultiple) multipleValues.set(name, [...(multipleValues.get(name) ?? []), value]);
    else values.set(name, value);
  }
  for (const definition of JAILER_ARGUMENTS) {
    const given = values.has(definition.name) || multipleValues.has(definition.name);
    if (definition.required && !given) throw argumentParsingError('MissingArgument', definition.name);
    if (!given && definition.defaultValue !== undefined) values.set(definition.name, definition.defaultValue);
  }
  return { help: false, version: false, values, multipleValues, flags, extraArgs };
}

/** The text `--help` prints. */
export function jailerHelpText(): string {
  const lines = JAILER_ARGUMENTS.map(
    (definition) =>
      `--${definition.name}${definition.takesValue ? ` <${definition.name}>` : ''}: ${definition.help}`,
  );
  return `Jailer v${JAILER_VERSION}\n\n${lines.join('\n')}\n\n\nAny arguments after the -- separator will be supplied to the jailed binary.\n\n`;
}

// ---------------------------------------------------------------------------------------------------------
// Validation (the jailer's Env::new)
// ---------------------------------------------------------------------------------------------------------

/**
 * Checks a Firecracker/jailer instance id: 1–64 bytes of Unicode alphanumerics or `-`, like
 * `validators::validate_instance_id`. Returns the error text, or undefined when the id is valid.
 */
export function instanceIdProblem(id: string): string | undefined {
  const bytes = Buffer.byteLength(id, 'utf8');
  if (bytes < 1 || bytes > ID_MAX_BYTES) {
    return `Invalid len (${bytes}); the length must be between 1 and ${ID_MAX_BYTES}`;
  }
  let position = 0;
  for (const character of id) {
    // Rust's char::is_alphanumeric: Alphabetic or Numeric (Nd, Nl, No).
    if (character !== '-' && !/^[\p{Alphabetic}\p{N}]$/u.test(character)) {
      return `Invalid char (${character}) at position ${position}`;
    }
    position += 1;
  }
  return undefined;
}

type RustUnsigned = { value: bigint } | { error: string };

/** `str::parse::<uN>()`: an optional `+`, then decimal digits. */
function parseRustUnsigned(text: string, bits: 8 | 32 | 64): RustUnsigned {
  if (text.length === 0) return { error: 'cannot parse integer from empty string' };
  const digits = text.startsWith('+') ? text.slice(1) : text;
  if (digits.length === 0 || !/^\d+$/.test(digits)) return { error: 'invalid digit found in string' };
  const value = BigInt(digits);
  if (value >= 1n << BigInt(bits)) return { error: 'number too large to fit in target type' };
  return { value };
}

/** Rust's `Path::components()` holds `.` (leading only), `..` or the root. */
function hasSpecialPathComponent(path: string): boolean {
  if (path.startsWith('/')) return true;
  const parts = path.split('/').filter((part) => part.length > 0);
  return parts[0] === '.' || parts.includes('..');
}

interface CgroupProperty {
  file: string;
  value: string;
}

interface CgroupPlacement {
  /** `<mount>/<parent_cgroup>/<id>`. */
  location: string;
  properties: CgroupProperty[];
  /** v1: how far up `inherit_from_parent` may look for a value. */
  parentDepth: number;
}

interface CgroupPlan {
  version: 1 | 2;
  placements: CgroupPlacement[];
}

interface CgroupMounts {
  v1: Array<{ directory: string; options: string[] }>;
  v2: string | undefined;
}

async function readCgroupMounts(procMountsPath: string): Promise<CgroupMounts> {
  let text: string;
  try {
    text = await readFile(procMountsPath, 'utf8');
  } catch (error) {
    throw new JailerError(`Failed to open file ${procMountsPath}: ${describeIoError(error)}`);
  }
  const mounts: CgroupMounts = { v1: [], v2: undefined };
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    if (fields.length < 6) continue;
    const [, directory = '', type, options = ''] = fields;
    if (type === 'cgroup2' && mounts.v2 === undefined) mounts.v2 = directory;
    if (type === 'cgroup') mounts.v1.push({ directory, options: options.split(',') });
  }
  return mounts;
}

/** `CgroupHierarchies::new`: the mounts of the chosen version, or "No hierarchy found". */
function hierarchiesOf(mounts: CgroupMounts, version: number): CgroupMounts {
  const found: CgroupMounts = {
    v1: version === 1 ? mounts.v1 : [],
    v2: version === 2 ? mounts.v2 : undefined,
  };
  if (found.v1.length === 0 && found.v2 === undefined) {
    throw new JailerError('Hierarchy not found: No hierarchy found for this cgroup version.');
  }
  return found;
}

function controllerOf(file: string): string {
  const parts = file.split('.');
  if (parts.length < 2) throw new JailerError(`Cgroup invalid file: ${file}`);
  return parts[0] ?? '';
}

async function planCgroups(
  cgroupArgs: readonly string[],
  version: number,
  id: string,
  parentCgroup: string,
  procMountsPath: string,
): Promise<CgroupPlan> {
  // Any version but 1 and 2 finds no hierarchy.
  const hierarchies = hierarchiesOf(await readCgroupMounts(procMountsPath), version);
  const parentDepth = parentCgroup.split('/').filter((part) => part.length > 0 && part !== '.').length;
  const placements = new Map<string, CgroupPlacement>();
  let availableV2Controllers: Set<string> | undefined;
  for (const argument of cgroupArgs) {
    const parts = argument.split('=');
    const [file = '', value = ''] = parts;
    if (parts.length !== 2 || value.length === 0)
      throw new JailerError(`Invalid format for cgroups: ${argument}`);
    if (hasSpecialPathComponent(file)) throw new JailerError(`Cgroup invalid file: ${argument}`);
    const controller = controllerOf(file);
    if (version === 1) {
      const mount = hierarchies.v1.find((candidate) => candidate.options.includes(controller));
      if (!mount) throw new JailerError(`Controller ${controller} is unavailable`);
      let placement = placements.get(controller);
      if (!placement) {
        placement = { location: join(mount.directory, parentCgroup, id), properties: [], parentDepth };
        placements.set(controller, placement);
      }
      placement.properties.push({ file, value });
    } else {
      const unified = hierarchies.v2 ?? '';
      availableV2Controllers ??= await readControllers(unified);
      if (!availableV2Controllers.has(controller))
        throw new JailerError(`Controller ${controller} is unavailable`);
      let placement = placements.get('unified');
      if (!placement) {
        placement = { location: join(unified, parentCgroup, id), properties: [], parentDepth };
        placements.set('unified', placement);
      }
      placement.properties.push({ file, value });
    }
  }
  return { version: version === 1 ? 1 : 2, placements: [...placements.values()] };
}

async function readControllers(directory: string): Promise<Set<string>> {
  try {
    const text = await readFile(join(directory, 'cgroup.controllers'), 'utf8');
    return new Set(text.split(/\s+/).filter((controller) => controller.length > 0));
  } catch {
    return new Set();
  }
}

export interface ResourceLimits {
  fileSizeBytes: bigint | undefined;
  noFile: bigint;
}

function parseResourceLimits(args: readonly string[]): ResourceLimits {
  const limits: ResourceLimits = { fileSizeBytes: undefined, noFile: DEFAULT_NO_FILE_LIMIT };
  for (const argument of args) {
    const separator = argument.indexOf('=');
    if (separator < 0) throw new JailerError(`Invalid format for resources limits: ${argument}`);
    const name = argument.slice(0, separator);
    const text = argument.slice(separator + 1);
    const parsed = parseRustUnsigned(text, 64);
    if ('error' in parsed)
      throw new JailerError(`Invalid limit value for resource: ${text}: ${parsed.error}`);
    if (name === 'fsize') limits.fileSizeBytes = parsed.value;
    else if (name === 'no-file') limits.noFile = parsed.value;
    else throw new JailerError(`Invalid resource argument: ${name}`);
  }
  return limits;
}

/** Everything the jailer decided from its arguments, before it touches the host. */
export interface JailPlan {
  id: string;
  /** Canonical path of `--exec-file`. */
  execFilePath: string;
  execFileName: string;
  /** `<chroot_base>/<exec_file_name>/<id>/root`. */
  chrootDir: string;
  uid: number;
  gid: number;
  netns: string | undefined;
  daemonize: boolean;
  newPidNs: boolean;
  cgroups: CgroupPlan | undefined;
  resourceLimits: ResourceLimits;
  userfaultfdMinor: number | undefined;
  extraArgs: readonly string[];
  /** CLOCK_MONOTONIC at start, in µs (`--start-time-us`). */
  startTimeUs: bigint;
}

interface PlanOptions {
  procMountsPath: string;
  startTimeUs: bigint;
}

/** Validates the arguments in the real jailer's order and computes the jail. Writes nothing, except the v2 move. */
export async function planJail(
  argumentsParsed: ParsedJailerArguments,
  options: PlanOptions,
): Promise<JailPlan> {
  const value = (name: string): string => argumentsParsed.values.get(name) ?? '';
  const id = value('id');
  const idProblem = instanceIdProblem(id);
  if (idProblem) throw new JailerError(`Invalid instance ID: ${idProblem}`);

  const execFile = value('exec-file');
  const execFilePath = await canonicalize(execFile);
  if (!(await isKind(execFilePath, 'file'))) throw new JailerError(`${execFilePath} is not a file`);
  const execFileName = basename(execFilePath);
  if (!execFileName.includes('firecracker')) {
    throw new JailerError(
      `Invalid filename. The filename of \`--exec-file\` option must contain "firecracker": ${execFileName}`,
    );
  }

  const chrootBase = await canonicalize(value('chroot-base-dir'));
  if (!(await isKind(chrootBase, 'directory'))) throw new JailerError(`${chrootBase} is not a directory`);
  const chrootDir = join(chrootBase, execFileName, id, 'root');

  const uid = parseRustUnsigned(value('uid'), 32);
  if ('error' in uid) throw new JailerError(`Invalid uid: ${value('uid')}`);
  const gid = parseRustUnsigned(value('gid'), 32);
  if ('error' in gid) throw new JailerError(`Invalid gid: ${value('gid')}`);

  const parentCgroup = argumentsParsed.values.get('parent-cgroup') ?? execFileName;
  if (hasSpecialPathComponent(parentCgroup)) {
    throw new JailerError(
      "Parent cgroup path is invalid. Path should not be absolute or contain '..' or '.'",
    );
  }
  const versionText = value('cgroup-version');
  const version = parseRustUnsigned(versionText, 8);
  if ('error' in version) throw new JailerError(`${versionText} is an invalid cgroup version specifier`);
  const cgroupVersion = Number(version.value);

  const cgroupArgs = argumentsParsed.multipleValues.get('cgroup') ?? [];
  if (cgroupArgs.length === 0 && cgroupVersion === 2) {
    // With v2 and no --cgroup, the jailer moves itself into an existing parent cgroup.
    const unified = hierarchiesOf(await readCgroupMounts(options.procMountsPath), 2).v2 ?? '';
    const parent = join(unified, parentCgroup);
    if (await isKind(parent, 'directory')) {
      await writeFile(join(parent, 'cgroup.procs'), String(process.pid)).catch((error: unknown) => {
        throw new JailerError(`Failed to write to cgroups file: ${describeIoError(error)}`);
      });
    }
  }
  const cgroups =
    cgroupArgs.length > 0
      ? await planCgroups(cgroupArgs, cgroupVersion, id, parentCgroup, options.procMountsPath)
      : undefined;

  const resourceLimits = parseResourceLimits(argumentsParsed.multipleValues.get('resource-limit') ?? []);

  return {
    id,
    execFilePath,
    execFileName,
    chrootDir,
    uid: Number(uid.value),
    gid: Number(gid.value),
    netns: argumentsParsed.values.get('netns'),
    daemonize: argumentsParsed.flags.has('daemonize'),
    newPidNs: argumentsParsed.flags.has('new-pid-ns'),
    cgroups,
    resourceLimits,
    userfaultfdMinor: await userfaultfdMinor(),
    extraArgs: argumentsParsed.extraArgs,
    startTimeUs: options.startTimeUs,
  };
}

async function canonicalize(path: string): Promise<string> {
  try {
    return await realpath(path);
  } catch (error) {
    throw new JailerError(`Failed to canonicalize path ${path}: ${describeIoError(error)}`);
  }
}

async function isKind(path: string, kind: 'file' | 'directory'): Promise<boolean> {
  try {
    const stats = await stat(path);
    return kind === 'file' ? stats.isFile() : stats.isDirectory();
  } catch {
    return false;
  }
}

async function userfaultfdMinor(): Promise<number | undefined> {
  try {
    const text = await readFile(PROC_MISC, 'utf8');
    for (const line of text.split('\n')) {
      const [minor, name] = line.trim().split(/\s+/);
      if (name === 'userfaultfd' && minor !== undefined && /^\d+$/.test(minor)) return Number(minor);
    }
  } catch {
    // No /proc/misc: no /dev/userfaultfd in the jail, as with the real jailer.
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Setting up the jail (the jailer's Env::run)
// ---------------------------------------------------------------------------------------------------------

async function copyExecFile(plan: JailPlan): Promise<string> {
  const destination = join(plan.chrootDir, plan.execFileName);
  const copyError = (error: unknown) =>
    new JailerError(`Failed to copy ${plan.execFilePath} to ${destination}: ${describeIoError(error)}`);
  let content: Buffer;
  let mode: number;
  try {
    content = await readFile(plan.execFilePath);
    mode = (await stat(plan.execFilePath)).mode & 0o7777;
  } catch (error) {
    throw copyError(error);
  }
  let handle: FileHandle;
  try {
    // O_NOFOLLOW: a symlink planted at the destination is never followed.
    handle = await open(
      destination,
      fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_NOFOLLOW,
      mode,
    );
  } catch (error) {
    throw copyError(error);
  }
  try {
    // A hard link would let the jailed process write to a file outside the jail.
    if ((await handle.stat()).nlink > 1) throw new JailerError(`Detected hard link at: ${destination}`);
    await handle.truncate(0);
    await handle.write(content, 0, content.length, 0);
    await handle.chmod(mode);
    await handle.chown(plan.uid, plan.gid).catch((error: unknown) => {
      throw new JailerError(`Failed to change owner for ${destination}: ${describeIoError(error)}`);
    });
  } catch (error) {
    throw error instanceof JailerError ? error : copyError(error);
  } finally {
    await handle.close();
  }
  return destination;
}

async function checkNetworkNamespace(path: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(path, fsConstants.O_RDONLY);
  } catch (error) {
    throw new JailerError(`Failed to open file ${path}: ${describeIoError(error)}`);
  }
  await handle.close();
  // setns(2) on a file that is no namespace handle fails with EINVAL.
  const filesystem = await statfs(path).catch((error: unknown) => {
    throw new JailerError(`Failed to join network namespace: netns: ${describeIoError(error)}`);
  });
  if (filesystem.type !== NSFS_MAGIC) {
    throw new JailerError(
      `Failed to join network namespace: netns: ${describeIoError(errnoError('EINVAL'))}`,
    );
  }
}

/** setrlimit(2) on the jailer itself through util-linux `prlimit`; children inherit the limits. */
async function installResourceLimits(limits: ResourceLimits, warn: (text: string) => void): Promise<void> {
  const args = ['--pid', String(process.pid), `--nofile=${limits.noFile}:${limits.noFile}`];
  if (limits.fileSizeBytes !== undefined)
    args.push(`--fsize=${limits.fileSizeBytes}:${limits.fileSizeBytes}`);
  try {
    await execFileAsync('prlimit', args);
  } catch (error) {
    const failure = error as NodeJS.ErrnoException & { stderr?: string };
    if (failure.code === 'ENOENT') {
      warn(
        'jailer (simulated): `prlimit` (util-linux) is missing; resource limits were validated but not set.',
      );
      return;
    }
    const reason = failure.stderr?.trim().split(': ').pop() ?? failure.message;
    throw new JailerError(`Failed to set limit for resource: ${reason}`);
  }
}

async function readCgroupLine(path: string): Promise<string> {
  try {
    const text = await readFile(path, 'utf8');
    // readln_special drops the last character (the newline).
    return text.slice(0, -1);
  } catch (error) {
    throw new JailerError(`Failed to read file ${path} into a string: ${describeIoError(error)}`);
  }
}

async function writeCgroupLine(path: string, value: string): Promise<void> {
  try {
    await writeFile(path, `${value}\n`);
  } catch (error) {
    throw new JailerError(`Failed to write to ${path}: ${describeIoError(error)}`);
  }
}

/** v1 `inherit_from_parent`: copies the parent's value of `file`, looking further up while it is empty. */
async function inheritFromParent(location: string, file: string, depth: number): Promise<void> {
  const parentFile = join(location, '..', file);
  let line = await readCgroupLine(parentFile);
  if (line.length === 0) {
    if (depth > 0) {
      await inheritFromParent(join(location, '..'), file, depth - 1).catch(() => {});
      line = await readCgroupLine(parentFile);
    }
    if (line.length === 0) {
      throw new JailerError(`Failed to inherit cgroups configurations from file ${file} in path ${location}`);
    }
  }
  await writeCgroupLine(join(location, file), line);
}

/** v2: `+<controller>` in `cgroup.subtree_control` of every ancestor that has one, from the top down. */
async function enableControllerInAncestors(directory: string, controller: string): Promise<void> {
  const subtreeControl = join(directory, 'cgroup.subtree_control');
  try {
    await lstat(subtreeControl);
  } catch {
    return;
  }
  const parent = join(directory, '..');
  if (parent !== directory) await enableControllerInAncestors(parent, controller);
  await writeCgroupLine(subtreeControl, `+${controller}`);
}

async function setUpCgroups(plan: CgroupPlan): Promise<void> {
  for (const placement of plan.placements) {
    try {
      await mkdir(placement.location, { recursive: true });
    } catch (error) {
      throw new JailerError(`Failed to create directory ${placement.location}: ${describeIoError(error)}`);
    }
    const enabled = new Set<string>();
    for (const property of placement.properties) {
      if (plan.version === 1) {
        await inheritFromParent(placement.location, property.file, placement.parentDepth);
      } else {
        const controller = controllerOf(property.file);
        if (!enabled.has(controller)) {
          await enableControllerInAncestors(join(placement.location, '..'), controller);
          enabled.add(controller);
        }
      }
      await writeCgroupLine(join(placement.location, property.file), property.value);
    }
  }
  // All values first: cpuset needs cpus and mems before a task may join.
  for (const placement of plan.placements) {
    await writeCgroupLine(
      join(placement.location, plan.version === 1 ? 'tasks' : 'cgroup.procs'),
      String(process.pid),
    );
  }
}

async function setUpJailedFolders(plan: JailPlan): Promise<void> {
  for (const folder of FOLDER_HIERARCHY) {
    const path = join(plan.chrootDir, folder);
    try {
      await mkdir(path, { recursive: true });
    } catch (error) {
      throw new JailerError(`Failed to create directory ${folder}: ${describeIoError(error)}`);
    }
    try {
      await chmod(path, FOLDER_MODE);
    } catch (error) {
      throw new JailerError(`Failed to change permissions on ${folder}: ${describeIoError(error)}`);
    }
    try {
      await chown(path, plan.uid, plan.gid);
    } catch (error) {
      throw new JailerError(`Failed to change owner for ${folder}: ${describeIoError(error)}`);
    }
  }
}

/**
 * mknod(2) of a character device inside the jail, through coreutils `mknod`. Without the privilege for it,
 * a regular placeholder file stands in (noted on stderr) so the layout stays the same.
 */
async function makeDevice(
  plan: JailPlan,
  device: { path: string; major: number; minor: number },
  warn: (text: string) => void,
): Promise<void> {
  const hostPath = join(plan.chrootDir, device.path);
  const mknodError = (error: unknown) =>
    new JailerError(`Failed to create ${device.path} via mknod inside the jail: ${describeIoError(error)}`);
  try {
    await lstat(hostPath);
    throw mknodError(errnoError('EEXIST'));
  } catch (error) {
    if (error instanceof JailerError) throw error;
  }
  try {
    await execFileAsync('mknod', ['-m', '0600', hostPath, 'c', String(device.major), String(device.minor)]);
  } catch (error) {
    const stderr = (error as { stderr?: string }).stderr ?? '';
    if (/File exists/.test(stderr)) throw mknodError(errnoError('EEXIST'));
    const handle = await open(hostPath, 'wx', 0o600).catch((openError: unknown) => {
      throw mknodError(openError);
    });
    await handle.close();
    warn(
      `jailer (simulated): mknod ${device.path} failed (${stderr.trim() || (error as Error).message}); a regular file stands in for the device.`,
    );
  }
  try {
    await chown(hostPath, plan.uid, plan.gid);
  } catch (error) {
    throw new JailerError(`Failed to change owner for ${device.path}: ${describeIoError(error)}`);
  }
}

async function makeDevices(plan: JailPlan, warn: (text: string) => void, say: (text: string) => void) {
  await makeDevice(plan, { path: '/dev/net/tun', major: 10, minor: 200 }, warn);
  await makeDevice(plan, { path: '/dev/kvm', major: 10, minor: 232 }, warn);
  try {
    await makeDevice(plan, { path: '/dev/urandom', major: 1, minor: 9 }, warn);
  } catch (error) {
    // The real jailer only warns (on stdout): MMDS V2 needs /dev/urandom.
    say(`Warning! Could not create /dev/urandom device inside jailer: ${(error as Error).message}.`);
    say('MMDS version 2 will not be available to use.');
  }
  if (plan.userfaultfdMinor !== undefined) {
    await makeDevice(plan, { path: '/dev/userfaultfd', major: 10, minor: plan.userfaultfdMinor }, warn);
  }
}

/** Creates `<chroot_dir>/<exec_file_name>.pid` exclusively (`create_new`). */
async function createPidFile(plan: JailPlan): Promise<FileHandle> {
  try {
    return await open(join(plan.chrootDir, `${plan.execFileName}.pid`), 'wx', 0o644);
  } catch (error) {
    throw new JailerError(`Failed to open file /${plan.execFileName}.pid: ${describeIoError(error)}`);
  }
}

async function writePid(handle: FileHandle, pid: number, plan: JailPlan): Promise<void> {
  try {
    await handle.write(String(pid));
  } catch (error) {
    throw new JailerError(`Failed to write to /${plan.execFileName}.pid: ${describeIoError(error)}`);
  } finally {
    await handle.close();
  }
}

// ---------------------------------------------------------------------------------------------------------
// Running Firecracker
// ---------------------------------------------------------------------------------------------------------

/** The `runFirecracker` export of the simulator's `firecracker` bundle. */
export type RunFirecracker = (
  argv: string[],
  options?: { rootDir?: string; env?: NodeJS.ProcessEnv },
) => Promise<number>;

/** What a process spawned by the jailer runs (JSON in {@link JAILED_EXEC_ENV}). */
export interface JailedExecRequest {
  /** The copied exec file inside the jail. */
  execPath: string;
  argv: string[];
  rootDir: string;
  uid: number;
  gid: number;
  /** Act as PID 1 of a new pid namespace: SIGTERM and SIGINT are never delivered. */
  pidNamespaceInit: boolean;
  /** fd 3 is a pipe from the jailer; when it closes the jailer died, and Firecracker dies with it. */
  lifeline: boolean;
}

/** The simulator's own `firecracker` bundle exports `runFirecracker`; anything else is exec'd as is. */
async function isSimulatedFirecracker(path: string): Promise<boolean> {
  const content = await readFile(path);
  if (content.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46]))) return false;
  const text = content.toString('utf8');
  if (text.startsWith('#!') && !/node/.test(text.slice(0, text.indexOf('\n')))) return false;
  return text.includes('runFirecracker');
}

function isKeptVariable(name: string): boolean {
  return name === 'PATH' || name.startsWith('MICROVM_SIMULATOR_');
}

/** The environment Firecracker gets: the real jailer clears everything; the simulator keeps its own settings. */
export function jailedEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const kept: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(env)) {
    if (isKeptVariable(name) && name !== JAILED_EXEC_ENV) kept[name] = value;
  }
  return kept;
}

/** The jailer's first step, `clean_env_vars`, except for PATH and `MICROVM_SIMULATOR_*`. */
export function clearJailerEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  for (const name of Object.keys(env)) {
    if (!isKeptVariable(name)) delete env[name];
  }
}

/** Setgroups/setgid/setuid like `Command::uid().gid()` before exec. */
function dropPrivileges(uid: number, gid: number): void {
  const currentUid = process.getuid?.();
  const currentGid = process.getgid?.();
  if (currentUid === uid && currentGid === gid) return;
  try {
    if (currentUid === 0) process.setgroups?.([]);
    if (currentGid !== gid) process.setgid?.(gid);
    if (currentUid !== uid) process.setuid?.(uid);
  } catch (error) {
    throw new JailerError(`Failed to exec into Firecracker: ${describeIoError(error)}`);
  }
}

/**
 * exec(2) of the simulated Firecracker inside this process: argv, environment, working directory and
 * credentials are replaced, then the copy in the jail is loaded. A bin that runs
 * `runFirecracker(process.argv.slice(2))` on load does so and exits; an exported `runFirecracker` is called.
 */
async function execSimulatedFirecracker(request: JailedExecRequest, env: NodeJS.ProcessEnv): Promise<number> {
  const execEnvironment = { ...jailedEnvironment(env), MICROVM_SIMULATOR_ROOT_DIR: request.rootDir };
  for (const name of Object.keys(process.env)) delete process.env[name];
  Object.assign(process.env, execEnvironment);
  // argv[1] stays the jailer's script: a bin that runs main only as the entry point is then called through
  // its `runFirecracker` export instead of running twice; a bin that always runs main reads argv[2..].
  process.argv.splice(2, process.argv.length - 2, ...request.argv);
  process.chdir(request.rootDir);
  // As with execve(2), the program is read with the new credentials.
  dropPrivileges(request.uid, request.gid);
  let module: { runFirecracker?: unknown };
  try {
    module = (await import(pathToFileURL(request.execPath).href)) as { runFirecracker?: unknown };
  } catch (error) {
    throw new JailerError(`Failed to exec into Firecracker: ${describeIoError(error)}`);
  }
  if (typeof module.runFirecracker === 'function') {
    return (module.runFirecracker as RunFirecracker)(request.argv, {
      rootDir: request.rootDir,
      env: process.env,
    });
  }
  // The program ran as main and keeps running on its own handles; end when it does.
  return new Promise((resolve) => process.once('beforeExit', () => resolve(Number(process.exitCode ?? 0))));
}

/** Entry of a process the jailer spawned to run Firecracker (with --netns, --new-pid-ns or --daemonize). */
async function runJailedExecRequest(requestText: string, env: NodeJS.ProcessEnv): Promise<number> {
  const request = JSON.parse(requestText) as JailedExecRequest;
  delete process.env[JAILED_EXEC_ENV];
  if (request.pidNamespaceInit) {
    for (const signal of PID_ONE_IGNORED_SIGNALS) process.on(signal, () => {});
  }
  if (request.lifeline) {
    const lifeline = new Socket({ fd: 3, readable: true, writable: false });
    const jailerGone = () => process.kill(process.pid, 'SIGKILL');
    lifeline.on('error', jailerGone);
    lifeline.on('end', jailerGone);
    lifeline.resume();
    lifeline.unref();
  }
  return execSimulatedFirecracker(request, env);
}

function firecrackerArgv(plan: JailPlan): string[] {
  const cpu = process.cpuUsage();
  return [
    '--id',
    plan.id,
    '--start-time-us',
    String(plan.startTimeUs),
    // The jailer resets the process start CPU time to 0 before exec.
    '--start-time-cpu-us',
    '0',
    '--parent-cpu-time-us',
    String(cpu.user + cpu.system),
    ...plan.extraArgs,
  ];
}

async function spawnAndWaitForStart(
  command: string,
  args: string[],
  options: SpawnOptions,
): Promise<ChildProcess> {
  const child = spawn(command, args, options);
  try {
    await once(child, 'spawn');
  } catch (error) {
    throw new JailerError(`Failed to exec into Firecracker: ${describeIoError(error)}`);
  }
  return child;
}

/** Waits for `child`, forwarding signals to it, and returns its exit code; a signal death is mirrored. */
async function superviseChild(child: ChildProcess): Promise<number> {
  const forwarders = FORWARDED_SIGNALS.map((signal) => {
    const forward = () => child.kill(signal);
    process.on(signal, forward);
    return () => process.off(signal, forward);
  });
  const [code, signal] = (await once(child, 'exit')) as [number | null, NodeJS.Signals | null];
  for (const remove of forwarders) remove();
  if (signal !== null) {
    // Die the same way, so whoever waits for the jailer sees what happened to Firecracker.
    process.kill(process.pid, signal);
    return 128 + (osConstants.signals[signal] ?? 0);
  }
  return code ?? 1;
}

export interface RunJailerOptions {
  /** The environment the jailer was started with (default `process.env`). */
  env?: NodeJS.ProcessEnv;
  /** Path of the script whose `main` calls `runJailer` (default `process.argv[1]`), re-run for spawned modes. */
  jailerScript?: string;
  /** Where `--help`/`--version`/warnings go (default process.stdout). */
  stdout?: (text: string) => void;
  /** Where notes about simulation limits go (default process.stderr). */
  stderr?: (text: string) => void;
}

/**
 * The simulated `jailer` program. Validates like the real one, builds the jail, then runs Firecracker: in this
 * process (plain mode), or in a spawned process (`--new-pid-ns`, `--daemonize`, `--netns`).
 * Resolves with the exit code; throws {@link JailerError} for the failures the real jailer reports.
 */
export async function runJailer(argv: readonly string[], options: RunJailerOptions = {}): Promise<number> {
  const env = options.env ?? process.env;
  const say = options.stdout ?? ((text: string) => process.stdout.write(`${text}\n`));
  const warn = options.stderr ?? ((text: string) => process.stderr.write(`${text}\n`));
  const execRequest = env[JAILED_EXEC_ENV];
  if (execRequest !== undefined) return runJailedExecRequest(execRequest, env);

  const startTimeUs = process.hrtime.bigint() / 1000n;
  const parsed = parseJailerArguments(argv);
  if (parsed.help) {
    say(jailerHelpText().replace(/\n$/, ''));
    return 0;
  }
  if (parsed.version) {
    say(`Jailer v${JAILER_VERSION}\n`);
    return 0;
  }
  const plan = await planJail(parsed, { procMountsPath: env[PROC_MOUNTS_ENV] ?? PROC_MOUNTS, startTimeUs });
  try {
    await mkdir(plan.chrootDir, { recursive: true });
  } catch (error) {
    throw new JailerError(`Failed to create directory ${plan.chrootDir}: ${describeIoError(error)}`);
  }
  const execPath = await copyExecFile(plan);
  if (plan.netns !== undefined) await checkNetworkNamespace(plan.netns);
  await installResourceLimits(plan.resourceLimits, warn);
  if (plan.cgroups) await setUpCgroups(plan.cgroups);
  // The real jailer chroots here (pivot_root); the simulator keeps the host root and passes the jail as rootDir.
  await setUpJailedFolders(plan);
  await makeDevices(plan, warn, say);

  const argvForFirecracker = firecrackerArgv(plan);
  const simulated = await isSimulatedFirecracker(execPath);
  const request: JailedExecRequest = {
    execPath,
    argv: argvForFirecracker,
    rootDir: plan.chrootDir,
    uid: plan.uid,
    gid: plan.gid,
    pidNamespaceInit: plan.newPidNs,
    lifeline: !plan.newPidNs && !plan.daemonize,
  };
  const inPlace = !plan.newPidNs && !plan.daemonize && plan.netns === undefined;
  const pidFile = await createPidFile(plan);

  if (inPlace && simulated) {
    // exec in place: the jailer's pid is Firecracker's pid.
    await writePid(pidFile, process.pid, plan);
    return execSimulatedFirecracker(request, env);
  }

  const childEnv = jailedEnvironment(env);
  let command: string;
  let args: string[];
  if (simulated) {
    command = process.execPath;
    args = [options.jailerScript ?? process.argv[1] ?? '', ...argv];
    childEnv[JAILED_EXEC_ENV] = JSON.stringify(request);
  } else {
    command = execPath;
    args = argvForFirecracker;
    childEnv.MICROVM_SIMULATOR_ROOT_DIR = plan.chrootDir;
  }
  if (plan.netns !== undefined) {
    // Node cannot setns(2) itself: util-linux nsenter joins the namespace and execs (same pid).
    args = [`--net=${plan.netns}`, '--', command, ...args];
    command = 'nsenter';
  }
  const spawnOptions: SpawnOptions = {
    cwd: plan.chrootDir,
    env: childEnv,
    detached: plan.daemonize,
    stdio: plan.daemonize
      ? 'ignore'
      : request.lifeline && simulated
        ? ['inherit', 'inherit', 'inherit', 'pipe']
        : 'inherit',
  };
  // A foreign binary cannot drop privileges itself; the spawn does it as Command::uid/gid would.
  if (!simulated) Object.assign(spawnOptions, { uid: plan.uid, gid: plan.gid });
  let child: ChildProcess;
  try {
    child = await spawnAndWaitForStart(command, args, spawnOptions);
  } catch (error) {
    await pidFile.close();
    throw error;
  }
  await writePid(pidFile, child.pid ?? 0, plan);
  if (plan.newPidNs || plan.daemonize) {
    // The jailer's parent exits; Firecracker lives on.
    child.unref();
    return 0;
  }
  return superviseChild(child);
}

// ---------------------------------------------------------------------------------------------------------
// Reporting, as the real jailer does
// ---------------------------------------------------------------------------------------------------------

/**
 * Prints a failure the way the real jailer does and ends the process: argument-parsing errors exit 1; other
 * errors print a Rust panic and abort (SIGABRT, with core dumps switched off first).
 */
export function exitWithJailerFailure(error: unknown): never {
  if (error instanceof JailerError && error.kind === 'argument-parsing') {
    process.stderr.write(`${error.message}\nError: ${error.debugText ?? error.message}\n`);
    process.exit(1);
  }
  const message = error instanceof JailerError ? error.message : String((error as Error)?.stack ?? error);
  process.stderr.write(
    `thread 'main' panicked at src/jailer/src/main.rs:339:6:\nJailer error: ${message}\nnote: run with \`RUST_BACKTRACE=1\` environment variable to display a backtrace\n`,
  );
  abortWithoutCoreDump();
}

function abortWithoutCoreDump(): never {
  // panic = "abort": the jailer dies by SIGABRT. A core file of a Node process helps nobody.
  execFile('prlimit', ['--pid', String(process.pid), '--core=0'], (error) => {
    if (error) process.exit(134);
    process.kill(process.pid, 'SIGABRT');
  });
  // Keep the event loop busy until the signal arrives.
  setInterval(() => {}, 1_000);
  return undefined as never;
}

const GLIBC_ERROR_TEXT: Readonly<Record<string, string>> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  ESRCH: 'No such process',
  EBADF: 'Bad file descriptor',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  EXDEV: 'Invalid cross-device link',
  ENODEV: 'No such device',
  ENOTDIR: 'Not a directory',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  EMFILE: 'Too many open files',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  ENAMETOOLONG: 'File name too long',
  ENOTEMPTY: 'Directory not empty',
  ELOOP: 'Too many levels of symbolic links',
};

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(code), { code });
}

/** Rust's `io::Error` display: `<strerror> (os error <n>)`. */
function describeIoError(error: unknown): string {
  const code = (error as NodeJS.ErrnoException)?.code;
  const errno = code ? (osConstants.errno as Record<string, number | undefined>)[code] : undefined;
  if (!code || errno === undefined) return (error as Error)?.message ?? String(error);
  const fallback = getSystemErrorMap().get(-errno)?.[1] ?? code;
  const text = GLIBC_ERROR_TEXT[code] ?? fallback.charAt(0).toUpperCase() + fallback.slice(1);
  return `${text} (os error ${errno})`;
}
