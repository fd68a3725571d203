import { access, readFile, rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ValidationError } from '@microvm/core';

/** The cgroup hierarchies mounted on this host, as the jailer finds them in /proc/mounts. */
export interface CgroupMounts {
  /** v1 hierarchies: mount point and the controllers in its mount options. */
  v1: Array<{ directory: string; controllers: string[] }>;
  /** The first cgroup2 mount, if any. */
  v2: string | undefined;
}

/** Parses /proc/mounts text (fields separated by spaces; octal escapes in paths are decoded). */
export function parseCgroupMounts(procMounts: string): CgroupMounts {
  const mounts: CgroupMounts = { v1: [], v2: undefined };
  for (const line of procMounts.split('\n')) {
    const [, rawDirectory, type, options = ''] = line.split(' ');
    if (rawDirectory === undefined) continue;
    const directory = rawDirectory.replace(/\\([0-7]{3})/g, (_, octal: string) =>
      String.fromCharCode(Number.parseInt(octal, 8)),
    );
    if (type === 'cgroup2' && mounts.v2 === undefined) mounts.v2 = directory;
    if (type === 'cgroup') mounts.v1.push({ directory, controllers: options.split(',') });
  }
  return mounts;
}

export async function readCgroupMounts(procMountsPath = '/proc/mounts'): Promise<CgroupMounts> {
  return parseCgroupMounts(await readFile(procMountsPath, 'utf8'));
}

function controllerOf(file: string): string {
  return file.slice(0, file.indexOf('.'));
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

/**
 * Checks, before anything is created, that the jailer will find every requested controller in the chosen
 * cgroup version, and returns the directories it will create (`<mount>/<parent>/<id>`), which teardown removes.
 */
export async function planCgroupDirs(request: {
  mounts: CgroupMounts;
  version: 1 | 2 | undefined;
  cgroups: ReadonlyArray<readonly [string, string]>;
  parentCgroup: string;
  vmId: string;
}): Promise<string[]> {
  const version = request.version ?? 1;
  const { mounts } = request;
  if (version === 2 && mounts.v2 === undefined) {
    throw new ValidationError({
      field: 'cgroupVersion',
      rule: 'cgroup v2 is not mounted on this host (no cgroup2 entry in /proc/mounts); use cgroupVersion 1',
      value: 2,
    });
  }
  if (version === 1 && request.cgroups.length > 0 && mounts.v1.length === 0) {
    throw new ValidationError({
      field: 'cgroupVersion',
      rule: 'cgroup v1 is not mounted on this host (no cgroup entry in /proc/mounts); use cgroupVersion 2',
      value: request.version,
    });
  }
  const dirs = new Set<string>();
  let v2Controllers: Set<string> | undefined;
  for (const [file] of request.cgroups) {
    const field = `cgroups['${file}']`;
    const controller = controllerOf(file);
    if (version === 1) {
      const mount = mounts.v1.find((candidate) => candidate.controllers.includes(controller));
      if (!mount) {
        throw new ValidationError({
          field,
          rule: `needs the ${controller} controller, which no cgroup v1 hierarchy on this host has`,
          value: file,
        });
      }
      // A v1 file missing at the root is usually a v2 name (memory.max instead of memory.limit_in_bytes).
      if (!(await exists(join(mount.directory, file)))) {
        throw new ValidationError({
          field,
          rule: `is not a cgroup v1 file of ${mount.directory} (a v2 name? v1 uses e.g. memory.limit_in_bytes, cpu.cfs_quota_us)`,
          value: file,
        });
      }
      dirs.add(join(mount.directory, request.parentCgroup, request.vmId));
    } else {
      const unified = mounts.v2 as string;
      v2Controllers ??= new Set(
        (await readFile(join(unified, 'cgroup.controllers'), 'utf8').catch(() => '')).split(/\s+/),
      );
      if (!v2Controllers.has(controller)) {
        throw new ValidationError({
          field,
          rule: `needs the ${controller} controller, which the cgroup v2 hierarchy at ${unified} does not have`,
          value: file,
        });
      }
      dirs.add(join(unified, request.parentCgroup, request.vmId));
    }
  }
  return [...dirs];
}

/** True when `dir` is `<a cgroup mount>/<something>/<vmId>`: the only shape teardown may remove. */
export function isVmCgroupDir(mounts: CgroupMounts, dir: string, vmId: string): boolean {
  const roots = [...mounts.v1.map((mount) => mount.directory), ...(mounts.v2 ? [mounts.v2] : [])];
  const parts = dir.split('/');
  return (
    parts.at(-1) === vmId &&
    !parts.includes('..') &&
    !parts.includes('.') &&
    roots.some((root) => dir.startsWith(`${root}/`) && dir.length > root.length + vmId.length + 2)
  );
}

/**
 * Removes cgroup directories with rmdir (the kernel refuses while tasks remain, so it retries while they drain).
 * A directory already gone counts as removed. Returns the ones it removed.
 */
export async function removeCgroupDirs(
  dirs: readonly string[],
  options: { timeoutMs?: number } = {},
): Promise<string[]> {
  const removed: string[] = [];
  const deadline = performance.now() + (options.timeoutMs ?? 2_000);
  for (const dir of dirs) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        await rmdir(dir);
        removed.push(dir);
        break;
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') break;
        if (code !== 'EBUSY' || performance.now() > deadline) throw error;
        await sleep(Math.min(10 * 2 ** attempt, 100));
      }
    }
  }
  return removed;
}
