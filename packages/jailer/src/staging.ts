import { constants as fsConstants, type Stats } from 'node:fs';
import {
  chown,
  copyFile,
  type FileHandle,
  link,
  lstat,
  mkdir,
  open,
  realpath,
  stat,
  unlink,
} from 'node:fs/promises';
import { posix } from 'node:path';
import { ValidationError } from '@microvm/core';

/**
 * How Firecracker uses a file, which decides how it is staged:
 * - `input`: read only (kernel, initrd, read-only drives, snapshot files). Hard-linked only when the jail user can
 *   read it but not write it as it is, so a shared image is never handed to the jail; otherwise copied and chowned.
 * - `writable`: read and written (read-write drives). Linked (else copied) and chowned to the jail user.
 * - `output`: written, may not exist yet (logs, metrics, serial output). Like `writable`. A missing one is created
 *   empty at its host path and linked in when that folder is on the jail's filesystem, so what Firecracker writes
 *   outlives the jail; otherwise it is created in the jail only, and goes with it.
 * - `socket`: a Unix socket Firecracker binds (vsock). Only the path is mapped; nothing is created.
 */
export type StagedFileKind = 'input' | 'writable' | 'output' | 'socket';

export interface StagingRequest {
  /** The spec field the path came from, for error messages, e.g. `drives[1].pathOnHost`. */
  field: string;
  hostPath: string;
  kind: StagedFileKind;
  /** The path Firecracker must see (e.g. what a snapshot recorded); default `/<basename>`. */
  jailPath?: string;
}

/** `create-link`: a missing output created at its host path, then linked into the jail. */
export type StagingMethod = 'link' | 'copy' | 'create' | 'create-link' | 'map';

export interface StagingPlanEntry extends StagingRequest {
  /** The path Firecracker sees, relative to the jail root. */
  jailPath: string;
  /** Where the file is on the host, inside the jail root. */
  hostPathInJail: string;
  /** The file to link or copy (symlinks resolved), when there is one. */
  sourcePath?: string;
  method: StagingMethod;
}

export interface StagingTarget {
  rootDir: string;
  uid: number;
  gid: number;
  /** Names in the jail root the jailer or the provider use: never given to a staged file. */
  reservedNames: ReadonlySet<string>;
}

function escapeError(field: string, value: string, why: string): ValidationError {
  return new ValidationError({ field, rule: `must stay inside the jail: ${why}`, value });
}

/** Checks a jail path: absolute, normalised, no `.`/`..`/empty segment, no NUL. */
export function checkJailPath(jailPath: string, field: string): string {
  if (!jailPath.startsWith('/') || jailPath.includes('\0')) {
    throw escapeError(field, jailPath, 'a jail path is absolute and has no NUL');
  }
  const segments = jailPath.slice(1).split('/');
  if (segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw escapeError(field, jailPath, "no empty, '.' or '..' path segment");
  }
  return jailPath;
}

/** `<stem>-<n><ext>`: the n-th alternative for a name already taken. */
function alternativeName(name: string, n: number): string {
  const dot = name.lastIndexOf('.');
  return dot > 0 ? `${name.slice(0, dot)}-${n}${name.slice(dot)}` : `${name}-${n}`;
}

/**
 * Gives each host file its path in the jail: `/<basename>`, `/<stem>-2<ext>` when that is taken, or the path
 * the request asks for (a snapshot's recorded paths). The same host path asked twice gets the same jail path.
 * Pure: looks at nothing on the host.
 */
export function assignJailPaths(
  requests: readonly StagingRequest[],
  reservedNames: ReadonlySet<string>,
): Array<StagingRequest & { jailPath: string }> {
  const taken = new Set<string>();
  const byHostPath = new Map<string, string>();
  const topLevelTaken = (jailPath: string) => reservedNames.has(jailPath.slice(1).split('/')[0] ?? '');
  // Requested paths first: they must be honoured exactly, the others adapt.
  const assigned = new Map<StagingRequest, string>();
  for (const request of requests) {
    if (request.jailPath === undefined) continue;
    const jailPath = checkJailPath(posix.normalize(request.jailPath), request.field);
    if (jailPath !== request.jailPath) throw escapeError(request.field, request.jailPath, 'not normalised');
    if (topLevelTaken(jailPath)) {
      throw escapeError(request.field, jailPath, 'the name is used by the jailer');
    }
    const previous = byHostPath.get(request.hostPath);
    if (taken.has(jailPath) && previous !== jailPath) {
      throw escapeError(request.field, jailPath, 'another file already has this jail path');
    }
    taken.add(jailPath);
    byHostPath.set(request.hostPath, jailPath);
    assigned.set(request, jailPath);
  }
  for (const request of requests) {
    if (assigned.has(request)) continue;
    const previous = byHostPath.get(request.hostPath);
    if (previous !== undefined) {
      assigned.set(request, previous);
      continue;
    }
    const name = posix.basename(request.hostPath);
    if (name === '' || name === '.' || name === '..' || request.hostPath.endsWith('/')) {
      throw escapeError(request.field, request.hostPath, 'the path must end in a file name');
    }
    if (request.hostPath.includes('\0')) throw escapeError(request.field, request.hostPath, 'no NUL');
    let candidate = name;
    for (let n = 2; taken.has(`/${candidate}`) || reservedNames.has(candidate); n += 1) {
      candidate = alternativeName(name, n);
    }
    const jailPath = `/${candidate}`;
    taken.add(jailPath);
    byHostPath.set(request.hostPath, jailPath);
    assigned.set(request, jailPath);
  }
  return requests.map((request) => ({ ...request, jailPath: assigned.get(request) as string }));
}

/** Whether a uid/gid (no supplementary groups: the jailer drops them) may read, and may write, a file. */
function accessOf(stats: Stats, uid: number, gid: number): { readable: boolean; writable: boolean } {
  if (uid === 0) return { readable: true, writable: true };
  const shift = stats.uid === uid ? 6 : stats.gid === gid ? 3 : 0;
  const bits = (stats.mode >> shift) & 0o7;
  return { readable: (bits & 0o4) !== 0, writable: (bits & 0o2) !== 0 };
}

async function statOrUndefined(path: string): Promise<Stats | undefined> {
  try {
    return await stat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

/**
 * Decides, for every request, its jail path and how it is staged. Reads the host (stat, realpath) but changes
 * nothing. `jailDevice` is the st_dev of the directory the jail will be created in (hard links need the same).
 */
export async function planStaging(
  requests: readonly StagingRequest[],
  target: StagingTarget & { jailDevice: number },
): Promise<StagingPlanEntry[]> {
  const entries: StagingPlanEntry[] = [];
  for (const request of assignJailPaths(requests, target.reservedNames)) {
    const hostPathInJail = `${target.rootDir}${request.jailPath}`;
    if (request.kind === 'socket') {
      entries.push({ ...request, hostPathInJail, method: 'map' });
      continue;
    }
    const stats = await statOrUndefined(request.hostPath);
    if (!stats) {
      if (request.kind === 'output') {
        const folder = posix.dirname(request.hostPath);
        const folderStats = await statOrUndefined(folder);
        // A dangling symlink is not followed: the output is then created in the jail only, as it always was.
        const dangling = (await lstat(request.hostPath).catch(() => undefined)) !== undefined;
        const linkable =
          !dangling && folderStats?.isDirectory() === true && folderStats.dev === target.jailDevice;
        entries.push(
          linkable
            ? {
                ...request,
                hostPathInJail,
                sourcePath: posix.join(await realpath(folder), posix.basename(request.hostPath)),
                method: 'create-link',
              }
            : { ...request, hostPathInJail, method: 'create' },
        );
        continue;
      }
      throw new ValidationError({
        field: request.field,
        rule: 'must name an existing file',
        value: request.hostPath,
      });
    }
    const isFifo = stats.isFIFO();
    if (!stats.isFile() && !(isFifo && request.kind === 'output')) {
      throw new ValidationError({
        field: request.field,
        rule: `must be a regular file${request.kind === 'output' ? ' or a FIFO' : ''} to be staged into the jail (block devices and directories are not supported)`,
        value: request.hostPath,
      });
    }
    const sameFilesystem = stats.dev === target.jailDevice;
    if (isFifo && !sameFilesystem) {
      throw new ValidationError({
        field: request.field,
        rule: 'is a FIFO, which can only be hard-linked: it must be on the same filesystem as chrootBaseDir',
        value: request.hostPath,
      });
    }
    const sourcePath = await realpath(request.hostPath);
    let method: StagingMethod = sameFilesystem ? 'link' : 'copy';
    if (request.kind === 'input') {
      const access = accessOf(stats, target.uid, target.gid);
      // Linking shares the inode: only when the jail user can read it and cannot change it. An owner can chmod
      // its file whatever the mode says, so a file the jail user owns is copied too.
      const ownedByJail = target.uid !== 0 && stats.uid === target.uid;
      if (!access.readable || ownedByJail || (access.writable && target.uid !== 0)) method = 'copy';
    }
    entries.push({ ...request, hostPathInJail, sourcePath, method });
  }
  return entries;
}

/** Creates an empty file the jail user owns; fails if anything is at `path` already. */
async function createOwnedFile(path: string, target: StagingTarget): Promise<void> {
  const handle = await open(path, 'wx', 0o640);
  await handle.chown(target.uid, target.gid).finally(() => handle.close());
}

/**
 * Creates the output at its host path and hard-links it into the jail. Only a file this call created is linked,
 * and the link is checked to be that very file (a swap in between is undone), so no file of anyone else is ever
 * handed to the jail user. False when that is not possible (something appeared at the path, a read-only or
 * other mount): the caller then creates the output in the jail only, and nothing is left at the host path.
 */
async function createAndLinkOutput(
  source: string,
  hostPathInJail: string,
  target: StagingTarget,
): Promise<boolean> {
  let handle: FileHandle;
  try {
    handle = await open(source, 'wx', 0o640);
  } catch (error) {
    if (['EEXIST', 'EROFS', 'EACCES', 'EPERM'].includes((error as NodeJS.ErrnoException).code ?? ''))
      return false;
    throw error;
  }
  try {
    const created = await handle.stat();
    // Ours, and empty: on any failure it goes, so no log is left at the caller's path that nothing writes to.
    const undo = () => unlinkIfSame(source, created);
    try {
      await handle.chown(target.uid, target.gid);
      await link(source, hostPathInJail);
    } catch (error) {
      await undo();
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EXDEV' || code === 'EPERM') return false;
      throw error;
    }
    const inJail = await lstat(hostPathInJail);
    if (inJail.dev !== created.dev || inJail.ino !== created.ino) {
      // Replaced between create and link: what was linked is not ours to give to the jail user.
      await unlink(hostPathInJail);
      await undo();
      return false;
    }
    return true;
  } finally {
    await handle.close();
  }
}

async function unlinkIfSame(path: string, file: Stats): Promise<void> {
  const current = await lstat(path).catch(() => undefined);
  if (current && current.dev === file.dev && current.ino === file.ino)
    await unlink(path).catch(() => undefined);
}

/** Creates the parent folders of `path` inside `rootDir` (root-owned, traversable). */
async function ensureParent(rootDir: string, hostPathInJail: string): Promise<void> {
  const parent = posix.dirname(hostPathInJail);
  if (parent === rootDir) return;
  await mkdir(parent, { recursive: true, mode: 0o755 });
}

/**
 * Stages one planned file into the jail. A hard link that the kernel refuses (another mount of the same
 * filesystem gives EXDEV) falls back to a copy. Returns the method actually used.
 */
export async function stageFile(entry: StagingPlanEntry, target: StagingTarget): Promise<StagingMethod> {
  const { hostPathInJail } = entry;
  if (!hostPathInJail.startsWith(`${target.rootDir}/`)) {
    throw escapeError(entry.field, hostPathInJail, 'outside the jail root');
  }
  await ensureParent(target.rootDir, hostPathInJail);
  if (entry.method === 'map') return 'map';
  const owned = entry.kind !== 'input';
  if (entry.method === 'create') {
    await createOwnedFile(hostPathInJail, target);
    return 'create';
  }
  const source = entry.sourcePath as string;
  if (entry.method === 'create-link') {
    if (await createAndLinkOutput(source, hostPathInJail, target)) return 'create-link';
    await createOwnedFile(hostPathInJail, target);
    return 'create';
  }
  let method = entry.method;
  if (method === 'link') {
    try {
      await link(source, hostPathInJail);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EXDEV' && code !== 'EPERM') throw error;
      method = 'copy';
    }
  }
  if (method === 'copy') {
    if ((await lstat(source)).isFIFO()) {
      throw new ValidationError({
        field: entry.field,
        rule: 'is a FIFO that cannot be linked',
        value: source,
      });
    }
    // A reflink where the filesystem has them, a plain copy otherwise; never over an existing file.
    await copyFile(source, hostPathInJail, fsConstants.COPYFILE_EXCL | fsConstants.COPYFILE_FICLONE);
  }
  if (owned || method === 'copy') await chown(hostPathInJail, target.uid, target.gid);
  return method;
}
