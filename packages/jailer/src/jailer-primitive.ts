import { constants as fsConstants } from 'node:fs';
import {
  access,
  chown,
  lstat,
  mkdir,
  readdir,
  readFile,
  realpath,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { basename, delimiter, dirname, join, resolve } from 'node:path';
import {
  type JailFacts,
  MicrovmError,
  type PrepareContext,
  type ReconcileContext,
  type ReconcileResult,
  type TeardownContext,
  UNIX_SOCKET_PATH_MAX_BYTES,
  ValidationError,
  type VmPrimitive,
  type VmSpec,
} from '@microvm/core';
import {
  buildJailerArguments,
  FIRECRACKER_INPUT_FLAGS,
  FIRECRACKER_OUTPUT_FLAGS,
  type FirecrackerArgument,
  parseFirecrackerArguments,
} from './arguments.js';
import {
  type CgroupMounts,
  isVmCgroupDir,
  planCgroupDirs,
  readCgroupMounts,
  removeCgroupDirs,
} from './cgroups.js';
import { type JailerOptions, type ResolvedJailerOptions, resolveJailerOptions } from './options.js';
import { isVmmOf, killLeftoverVmm, readPidFile } from './process.js';
import { planStaging, type StagingRequest, stageFile } from './staging.js';

/** Written in `<chroot base>/<exec name>/<id>/` (outside what Firecracker sees): proves a jail is ours. */
export const JAIL_MARKER_FILE = 'microvm-jail.json';
/** Where Firecracker binds its API socket, as it sees it: short, so the host path stays within 107 bytes. */
export const JAILED_API_SOCKET_PATH = '/api.sock';
// The jailer's own ids rule (same as Firecracker's --id), ASCII only.
const JAILER_ID_PATTERN = /^[A-Za-z0-9-]{1,64}$/;

interface JailMarker {
  schemaVersion: 1;
  stateDir: string;
  vmId: string;
  cgroupDirs: string[];
  createdAt: string;
}

/** The jail of one VM: `<base>/<exec name>/<id>` and its `root`. */
export interface JailLayout {
  chrootBaseDir: string;
  execFileName: string;
  jailDir: string;
  rootDir: string;
  /** `<root>/<exec name>.pid`: the jailer writes Firecracker's pid here. */
  pidFilePath: string;
  apiSocketHostPath: string;
}

export function jailLayout(chrootBaseDir: string, execFileName: string, vmId: string): JailLayout {
  const jailDir = join(chrootBaseDir, execFileName, vmId);
  const rootDir = join(jailDir, 'root');
  return {
    chrootBaseDir,
    execFileName,
    jailDir,
    rootDir,
    pidFilePath: join(rootDir, `${execFileName}.pid`),
    apiSocketHostPath: `${rootDir}${JAILED_API_SOCKET_PATH}`,
  };
}

/** Resolves a command name on PATH (or a path) to the canonical path of an executable regular file. */
async function resolveExecutable(command: string, field: string): Promise<string> {
  const candidates = command.includes('/')
    ? [resolve(command)]
    : (process.env.PATH ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((dir) => join(dir, command));
  for (const candidate of candidates) {
    try {
      const canonical = await realpath(candidate);
      if (!(await stat(canonical)).isFile()) continue;
      await access(canonical, fsConstants.X_OK);
      return canonical;
    } catch {
      // Not this one.
    }
  }
  throw new ValidationError({
    field,
    rule: command.includes('/')
      ? 'must name an existing, executable regular file'
      : 'must name an executable found on PATH (or give its path)',
    value: command,
  });
}

async function canonicalDirectory(path: string, field: string): Promise<string> {
  try {
    const canonical = await realpath(path);
    if ((await stat(canonical)).isDirectory()) return canonical;
  } catch {
    // Reported below.
  }
  throw new ValidationError({
    field,
    rule: 'must be an existing directory (the jailer does not create it)',
    value: path,
  });
}

function checkSocketPath(hostPath: string, field: string, chrootBaseDir: string): void {
  const bytes = Buffer.byteLength(hostPath);
  if (bytes <= UNIX_SOCKET_PATH_MAX_BYTES) return;
  throw new ValidationError({
    field,
    rule: `its host path in the jail must be at most ${UNIX_SOCKET_PATH_MAX_BYTES} bytes, not ${bytes}; choose a shorter chrootBaseDir (now ${chrootBaseDir}) or a shorter VM id or file name`,
    value: hostPath,
  });
}

/** A path to stage plus what to do with its jail path once known. */
interface StagingItem {
  request: StagingRequest;
  apply(jailPath: string): void;
}

/** Every host file the VM uses, and the setter that rewrites it to its jail path. */
function collectStagingItems(
  spec: VmSpec,
  context: PrepareContext,
  firecrackerArguments: FirecrackerArgument[],
): StagingItem[] {
  const items: StagingItem[] = [];
  const add = (request: StagingRequest, apply: (jailPath: string) => void) => items.push({ request, apply });
  const boot = spec.bootSource;
  add({ field: 'bootSource.kernelImagePath', hostPath: boot.kernelImagePath, kind: 'input' }, (path) => {
    boot.kernelImagePath = path;
  });
  if (boot.initrdPath !== undefined) {
    add({ field: 'bootSource.initrdPath', hostPath: boot.initrdPath, kind: 'input' }, (path) => {
      boot.initrdPath = path;
    });
  }
  const source = context.restore?.sourceSpec;
  // A restored VM must find its drives where the snapshot recorded them, as the source VM saw them.
  const recordedPath = (path: string | undefined) => (path?.startsWith('/') ? path : undefined);
  (spec.drives ?? []).forEach((drive, index) => {
    if (drive.socket !== undefined) {
      add({ field: `drives[${index}].socket`, hostPath: drive.socket, kind: 'input' }, () => {});
      return;
    }
    const recorded = recordedPath(
      source?.drives?.find((candidate) => candidate.driveId === drive.driveId)?.pathOnHost,
    );
    add(
      {
        field: `drives[${index}].pathOnHost`,
        hostPath: drive.pathOnHost,
        kind: drive.isReadOnly ? 'input' : 'writable',
        ...(recorded !== undefined && { jailPath: recorded }),
      },
      (path) => {
        drive.pathOnHost = path;
      },
    );
  });
  (spec.pmem ?? []).forEach((device, index) => {
    const recorded = recordedPath(source?.pmem?.find((candidate) => candidate.id === device.id)?.pathOnHost);
    add(
      {
        field: `pmem[${index}].pathOnHost`,
        hostPath: device.pathOnHost,
        kind: device.readOnly ? 'input' : 'writable',
        ...(recorded !== undefined && { jailPath: recorded }),
      },
      (path) => {
        device.pathOnHost = path;
      },
    );
  });
  const logger = spec.logger;
  if (logger?.logPath !== undefined) {
    add({ field: 'logger.logPath', hostPath: logger.logPath, kind: 'output' }, (path) => {
      logger.logPath = path;
    });
  }
  const metrics = spec.metrics;
  if (metrics) {
    add({ field: 'metrics.metricsPath', hostPath: metrics.metricsPath, kind: 'output' }, (path) => {
      metrics.metricsPath = path;
    });
  }
  const serial = spec.serial;
  if (serial?.serialOutPath !== undefined) {
    add({ field: 'serial.serialOutPath', hostPath: serial.serialOutPath, kind: 'output' }, (path) => {
      serial.serialOutPath = path;
    });
  }
  const vsock = spec.vsock;
  if (vsock) {
    add({ field: 'vsock.udsPath', hostPath: vsock.udsPath, kind: 'socket' }, (path) => {
      vsock.udsPath = path;
    });
  }
  const restore = context.restore;
  if (restore) {
    add({ field: 'restore.snapshotPath', hostPath: restore.snapshotPath, kind: 'input' }, (path) => {
      restore.snapshotPath = path;
    });
    add({ field: 'restore.memFilePath', hostPath: restore.memFilePath, kind: 'input' }, (path) => {
      restore.memFilePath = path;
    });
  }
  firecrackerArguments.forEach((argument, index) => {
    const kind = FIRECRACKER_INPUT_FLAGS.has(argument.flag)
      ? 'input'
      : FIRECRACKER_OUTPUT_FLAGS.has(argument.flag)
        ? 'output'
        : undefined;
    if (kind === undefined || argument.value === undefined) return;
    add({ field: `launch.args[${argument.flag}]`, hostPath: argument.value, kind }, (path) => {
      (firecrackerArguments[index] as FirecrackerArgument).value = path;
    });
  });
  return items;
}

async function readMarker(jailDir: string): Promise<JailMarker | undefined> {
  try {
    const marker = JSON.parse(await readFile(join(jailDir, JAIL_MARKER_FILE), 'utf8')) as JailMarker;
    return marker.schemaVersion === 1 && typeof marker.vmId === 'string' ? marker : undefined;
  } catch {
    return undefined;
  }
}

async function isSymlinkOrMissing(path: string): Promise<'missing' | 'symlink' | 'directory' | 'other'> {
  try {
    const stats = await lstat(path);
    return stats.isSymbolicLink() ? 'symlink' : stats.isDirectory() ? 'directory' : 'other';
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return 'missing';
    throw error;
  }
}

/**
 * Removes `<base>/<exec name>/<vmId>` and nothing else: the path must have exactly that shape under the canonical
 * chroot base, no component may be a symlink, and the folder must carry our marker (or be empty). Symlinks
 * inside are removed, never followed.
 */
async function removeJailDir(
  jail: Pick<JailFacts, 'jailDir' | 'rootDir'>,
  vmId: string,
  chrootBaseDir: string,
  stateDir: string,
): Promise<boolean> {
  const execDir = dirname(jail.jailDir);
  const refuse = (why: string) =>
    new MicrovmError({
      code: 'ERR_MICROVM_STATE_STORE',
      message: `Refusing to remove the jail ${jail.jailDir} of VM '${vmId}': ${why}`,
    });
  if (
    basename(jail.jailDir) !== vmId ||
    dirname(execDir) !== chrootBaseDir ||
    jail.rootDir !== join(jail.jailDir, 'root') ||
    basename(execDir) === '..' ||
    basename(execDir) === '.'
  ) {
    throw refuse(`it is not <${chrootBaseDir}>/<exec file name>/${vmId}`);
  }
  const execDirKind = await isSymlinkOrMissing(execDir);
  if (execDirKind === 'missing') return false;
  if (execDirKind !== 'directory') throw refuse(`${execDir} is not a plain directory`);
  const jailKind = await isSymlinkOrMissing(jail.jailDir);
  if (jailKind === 'missing') return false;
  if (jailKind !== 'directory') throw refuse('it is not a plain directory');
  const marker = await readMarker(jail.jailDir);
  if (marker) {
    if (marker.vmId !== vmId || resolve(marker.stateDir) !== resolve(stateDir)) {
      throw refuse(`its marker names VM '${marker.vmId}' of ${marker.stateDir}`);
    }
  } else if ((await readdir(jail.jailDir)).length > 0) {
    throw refuse(`it has no ${JAIL_MARKER_FILE}, so it is not provably ours`);
  }
  await rm(jail.jailDir, { recursive: true, force: true });
  return true;
}

/**
 * The jailer primitive: runs Firecracker under Firecracker's `jailer`. Add it LAST to the provider's primitives:
 * it stages every file the others put in the spec, rewrites the spec to jail paths, and wraps the launch.
 */
export function jailerPrimitive(options: JailerOptions): VmPrimitive {
  const resolved: ResolvedJailerOptions = resolveJailerOptions(options);
  let canonicalBase: string | undefined;
  const baseDir = async () => {
    canonicalBase ??= await canonicalDirectory(resolved.chrootBaseDir, 'chrootBaseDir');
    return canonicalBase;
  };

  async function removeCgroups(dirs: readonly string[], vmId: string, mounts?: CgroupMounts): Promise<void> {
    if (dirs.length === 0) return;
    const known = mounts ?? (await readCgroupMounts());
    const ours = dirs.filter((dir) => isVmCgroupDir(known, dir, vmId));
    if (ours.length !== dirs.length) {
      throw new MicrovmError({
        code: 'ERR_MICROVM_STATE_STORE',
        message: `Refusing to remove cgroup directories that are not <cgroup mount>/<parent>/${vmId}: ${dirs
          .filter((dir) => !ours.includes(dir))
          .join(', ')}`,
      });
    }
    await removeCgroupDirs(ours);
  }

  return {
    name: 'jailer',

    async prepare(context: PrepareContext): Promise<void> {
      // Every check first: nothing on the host changes until all of them pass.
      const { vmId, launch } = context;
      if (!JAILER_ID_PATTERN.test(vmId)) {
        throw new ValidationError({
          field: 'vmId',
          rule: 'must be 1 to 64 ASCII letters, digits or hyphens for the jailer ([A-Za-z0-9-]{1,64})',
          value: vmId,
        });
      }
      const jailerBinary = await resolveExecutable(resolved.jailerBinary, 'jailerBinary');
      const execFile = await resolveExecutable(launch.executable, 'firecrackerBinary');
      const execFileName = basename(execFile);
      if (!execFileName.includes('firecracker')) {
        throw new ValidationError({
          field: 'firecrackerBinary',
          rule: 'its file name (after resolving symlinks) must contain "firecracker": the jailer refuses others',
          value: execFile,
        });
      }
      const chrootBaseDir = await baseDir();
      const layout = jailLayout(chrootBaseDir, execFileName, vmId);
      if ((await isSymlinkOrMissing(layout.jailDir)) !== 'missing') {
        throw new MicrovmError({
          code: 'ERR_MICROVM_VM_EXISTS',
          message: `A jail for VM '${vmId}' already exists at ${layout.jailDir}; destroy the VM or run reconcile()`,
        });
      }
      const cgroupDirs =
        resolved.cgroups.length > 0 || resolved.cgroupVersion !== undefined
          ? await planCgroupDirs({
              mounts: await readCgroupMounts(),
              version: resolved.cgroupVersion,
              cgroups: resolved.cgroups,
              parentCgroup: resolved.parentCgroup ?? execFileName,
              vmId,
            })
          : [];
      const networkNamespacePath = launch.networkNamespacePath;
      if (networkNamespacePath !== undefined) {
        await access(networkNamespacePath).catch(() => {
          throw new ValidationError({
            field: 'launch.networkNamespacePath',
            rule: 'must name an existing network namespace file',
            value: networkNamespacePath,
          });
        });
      }
      const firecrackerArguments = parseFirecrackerArguments(launch.args);
      checkSocketPath(layout.apiSocketHostPath, 'API socket', chrootBaseDir);

      const spec = structuredClone(context.spec);
      const restore = context.restore ? { ...context.restore } : undefined;
      const items = collectStagingItems(
        spec,
        { ...context, ...(restore && { restore }) },
        firecrackerArguments,
      );
      const target = {
        rootDir: layout.rootDir,
        uid: resolved.uid,
        gid: resolved.gid,
        reservedNames: new Set([
          execFileName,
          `${execFileName}.pid`,
          'dev',
          'run',
          'old_root',
          'snapshots',
          JAILED_API_SOCKET_PATH.slice(1),
        ]),
      };
      const plan = await planStaging(
        items.map((item) => item.request),
        { ...target, jailDevice: (await stat(chrootBaseDir)).dev },
      );
      for (const entry of plan) {
        if (entry.kind === 'socket') checkSocketPath(entry.hostPathInJail, entry.field, chrootBaseDir);
      }

      // Recorded before it exists, so reconcile() finds it after a crash.
      const stagedFiles: Record<string, string> = {};
      for (const entry of plan) stagedFiles[entry.jailPath] = entry.hostPathInJail;
      const jail: JailFacts = {
        rootDir: layout.rootDir,
        jailDir: layout.jailDir,
        uid: resolved.uid,
        gid: resolved.gid,
        stagedFiles,
        ...(cgroupDirs.length > 0 && { cgroupDirs }),
      };
      context.facts.jail = jail;
      await context.persist();

      await mkdir(dirname(layout.jailDir), { recursive: true, mode: 0o755 });
      // Not recursive: a concurrent create of the same id loses here instead of sharing the jail.
      await mkdir(layout.jailDir, { mode: 0o755 });
      const marker: JailMarker = {
        schemaVersion: 1,
        stateDir: resolve(context.stateDir),
        vmId,
        cgroupDirs,
        createdAt: new Date().toISOString(),
      };
      await writeFile(join(layout.jailDir, JAIL_MARKER_FILE), `${JSON.stringify(marker, null, 2)}\n`, {
        flag: 'wx',
      });
      await mkdir(layout.rootDir, { mode: 0o700 });
      await chown(layout.rootDir, resolved.uid, resolved.gid);
      for (const entry of plan) await stageFile(entry, target);
      // The provider writes snapshots here (then moves them out); Firecracker runs as uid:gid and must write.
      const snapshotsDir = join(layout.rootDir, 'snapshots');
      await mkdir(snapshotsDir, { mode: 0o700 });
      await chown(snapshotsDir, resolved.uid, resolved.gid);

      plan.forEach((entry, index) => {
        items[index]?.apply(entry.jailPath);
      });
      const originalVsockPath = context.spec.vsock?.udsPath;
      if (context.facts.vsock && spec.vsock && context.facts.vsock.hostUdsPath === originalVsockPath) {
        // The socket now lives in the jail: the vsock fact must say where the host connects.
        context.facts.vsock.hostUdsPath = stagedFiles[spec.vsock.udsPath] ?? context.facts.vsock.hostUdsPath;
      }
      context.spec = spec;
      if (restore) context.restore = restore;

      const firecrackerArgs: string[] = ['--api-sock', JAILED_API_SOCKET_PATH];
      for (const argument of firecrackerArguments) {
        if (argument.flag === '--api-sock') continue;
        firecrackerArgs.push(argument.flag, ...(argument.value === undefined ? [] : [argument.value]));
      }
      context.launch = {
        ...launch,
        executable: jailerBinary,
        args: buildJailerArguments(resolved, {
          vmId,
          execFile,
          chrootBaseDir,
          ...(networkNamespacePath !== undefined && { networkNamespacePath }),
          firecrackerArgs,
        }),
        apiSocketPath: layout.apiSocketHostPath,
        pidFilePath: layout.pidFilePath,
      };
      delete context.launch.networkNamespacePath;
      await context.persist();
    },

    async teardown(context: TeardownContext): Promise<void> {
      const jail = context.facts.jail;
      if (!jail) return;
      const errors: unknown[] = [];
      // Normally the VMM is gone already; one whose supervisor died is stopped here so nothing outlives its jail.
      await killLeftoverVmm(join(jail.rootDir, `${basename(dirname(jail.jailDir))}.pid`), context.vmId).catch(
        (error: unknown) => errors.push(error),
      );
      await removeCgroups(jail.cgroupDirs ?? [], context.vmId).catch((error: unknown) => errors.push(error));
      let chrootBaseDir: string | undefined;
      try {
        chrootBaseDir = await baseDir();
      } catch {
        // No chroot base: no jail can be left in it.
      }
      // A VMM or cgroup still alive could swap symlinks into the jail while it is removed: leave it to reconcile().
      if (chrootBaseDir !== undefined && errors.length === 0) {
        await removeJailDir(jail, context.vmId, chrootBaseDir, context.stateDir).catch((error: unknown) =>
          errors.push(error),
        );
      }
      if (errors.length === 1) throw errors[0];
      if (errors.length > 1) throw new AggregateError(errors, `Jail teardown of VM '${context.vmId}' failed`);
    },

    async reconcile(context: ReconcileContext): Promise<ReconcileResult> {
      const removed: string[] = [];
      let chrootBaseDir: string;
      try {
        chrootBaseDir = await baseDir();
      } catch {
        return { removed };
      }
      const mounts = await readCgroupMounts();
      for (const execEntry of await readdir(chrootBaseDir, { withFileTypes: true })) {
        if (!execEntry.isDirectory()) continue;
        const execDir = join(chrootBaseDir, execEntry.name);
        for (const jailEntry of await readdir(execDir, { withFileTypes: true }).catch(() => [])) {
          if (!jailEntry.isDirectory()) continue;
          const vmId = jailEntry.name;
          const jailDir = join(execDir, vmId);
          const marker = await readMarker(jailDir);
          // Only jails this state directory made, of VMs it no longer has.
          if (!marker || marker.vmId !== vmId || resolve(marker.stateDir) !== resolve(context.stateDir))
            continue;
          if (context.liveVmIds.has(vmId) || context.knownVmIds.has(vmId)) continue;
          const rootDir = join(jailDir, 'root');
          const pid = await readPidFile(join(rootDir, `${execEntry.name}.pid`));
          if (pid !== undefined && (await isVmmOf(pid, vmId))) continue; // still running: not ours to end
          await removeCgroups(marker.cgroupDirs, vmId, mounts);
          if (marker.cgroupDirs.length > 0) removed.push(`cgroups ${marker.cgroupDirs.join(', ')}`);
          if (await removeJailDir({ jailDir, rootDir }, vmId, chrootBaseDir, context.stateDir)) {
            removed.push(`jail ${jailDir}`);
          }
        }
      }
      return { removed };
    },
  };
}
