import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, readFile, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { hostPathOf } from '@microvm/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  planStaging,
  type StagingMethod,
  type StagingRequest,
  type StagingTarget,
  stageFile,
} from '../../src/index.js';
import { createJailSandbox, type JailSandbox, jailGid, jailUid } from './helpers.js';

const execFileAsync = promisify(execFile);

let sandbox: JailSandbox;
let tmpfsDir: string;
let rootDir: string;
let target: StagingTarget & { jailDevice: number };

beforeEach(async () => {
  sandbox = await createJailSandbox();
  // Another filesystem for the sources: hard links across it are impossible.
  tmpfsDir = join(sandbox.dir, 'tmpfs');
  await mkdir(tmpfsDir);
  await execFileAsync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'tmpfs', tmpfsDir]);
  rootDir = join(sandbox.chrootBaseDir, 'root');
  await mkdir(rootDir);
  target = {
    rootDir,
    uid: jailUid,
    gid: jailGid,
    reservedNames: new Set(['dev', 'run']),
    jailDevice: (await stat(sandbox.chrootBaseDir)).dev,
  };
});

afterEach(async () => {
  await execFileAsync('umount', [tmpfsDir]).catch(() => undefined);
  await sandbox.cleanup();
});

async function stageAll(requests: StagingRequest[]) {
  const plan = await planStaging(requests, target);
  const methods: StagingMethod[] = [];
  for (const entry of plan) methods.push(await stageFile(entry, target));
  return plan.map((entry, index) => ({ ...entry, used: methods[index] }));
}

describe('staging real files into a jail', () => {
  it('should hard-link on the same filesystem and copy across filesystems, owning what the VM writes', async () => {
    const sameDisk = join(sandbox.dir, 'disk.img');
    const otherDisk = join(tmpfsDir, 'other.img');
    await writeFile(sameDisk, 'same filesystem');
    await writeFile(otherDisk, 'on a tmpfs');
    const [same, other] = await stageAll([
      { field: 'drives[0].pathOnHost', hostPath: sameDisk, kind: 'writable' },
      { field: 'drives[1].pathOnHost', hostPath: otherDisk, kind: 'writable' },
    ]);
    expect(same?.used).toBe('link');
    expect((await stat(join(rootDir, 'disk.img'))).ino).toBe((await stat(sameDisk)).ino);
    expect((await stat(join(rootDir, 'disk.img'))).uid).toBe(jailUid);
    expect(other?.used).toBe('copy');
    expect((await stat(join(rootDir, 'other.img'))).ino).not.toBe((await stat(otherDisk)).ino);
    expect(await readFile(join(rootDir, 'other.img'), 'utf8')).toBe('on a tmpfs');
    expect((await stat(join(rootDir, 'other.img'))).uid).toBe(jailUid);
    expect((await stat(join(rootDir, 'other.img'))).gid).toBe(jailGid);
    // A copy leaves the source's owner alone.
    expect((await stat(otherDisk)).uid).toBe(0);
  });

  it('should share a read-only file only when the jail user can read it and not change it', async () => {
    const readable = join(sandbox.dir, 'readable');
    const secret = join(sandbox.dir, 'secret');
    const worldWritable = join(sandbox.dir, 'world-writable');
    await writeFile(readable, 'r', { mode: 0o644 });
    await writeFile(secret, 's', { mode: 0o600 });
    await writeFile(worldWritable, 'w');
    await chmod(worldWritable, 0o666);
    // Read-only by its mode, but the jail user owns it and could chmod it back: not shareable either.
    const ownedByJail = join(sandbox.dir, 'owned-by-jail');
    await writeFile(ownedByJail, 'o', { mode: 0o444 });
    await chown(ownedByJail, jailUid, jailGid);
    const staged = await stageAll([
      { field: 'a', hostPath: readable, kind: 'input' },
      { field: 'b', hostPath: secret, kind: 'input' },
      { field: 'c', hostPath: worldWritable, kind: 'input' },
      { field: 'd', hostPath: ownedByJail, kind: 'input' },
    ]);
    expect(staged.map((entry) => entry.used)).toEqual(['link', 'copy', 'copy', 'copy']);
    // Shared: still root's, so the jailed VMM cannot rewrite an image other VMs use.
    expect((await stat(join(rootDir, 'readable'))).uid).toBe(0);
    // Copied: the jail user's own copy, readable by it.
    expect((await stat(join(rootDir, 'secret'))).uid).toBe(jailUid);
    expect((await stat(secret)).uid).toBe(0);
  });

  it('should create missing outputs, link FIFOs, map sockets and follow symlinks to the real file', async () => {
    const fifo = join(sandbox.dir, 'metrics.fifo');
    await execFileAsync('mkfifo', [fifo]);
    const real = join(tmpfsDir, 'real-kernel');
    await writeFile(real, 'kernel', { mode: 0o644 });
    const link = join(sandbox.dir, 'kernel-link');
    await symlink(real, link);
    const dangling = join(sandbox.dir, 'dangling.log');
    await symlink('/nonexistent/target.log', dangling);
    const staged = await stageAll([
      { field: 'logger.logPath', hostPath: join(sandbox.dir, 'missing.log'), kind: 'output' },
      { field: 'serial.serialOutPath', hostPath: join(tmpfsDir, 'serial.log'), kind: 'output' },
      { field: 'metrics.metricsPath', hostPath: dangling, kind: 'output' },
      { field: 'metrics.metricsPath', hostPath: fifo, kind: 'output' },
      { field: 'vsock.udsPath', hostPath: join(sandbox.dir, 'v.sock'), kind: 'socket' },
      { field: 'bootSource.kernelImagePath', hostPath: link, kind: 'input' },
    ]);
    expect(staged.map((entry) => entry.used)).toEqual([
      'create-link',
      'create',
      'create',
      'link',
      'map',
      'copy',
    ]);
    // Created where the caller asked for it and linked in, so it outlives the jail; owned by the jail user.
    const logInJail = await stat(join(rootDir, 'missing.log'));
    expect(logInJail.uid).toBe(jailUid);
    expect(logInJail.ino).toBe((await stat(join(sandbox.dir, 'missing.log'))).ino);
    // On another filesystem no link is possible: the output lives in the jail only.
    expect((await stat(join(rootDir, 'serial.log'))).uid).toBe(jailUid);
    expect(existsSync(join(tmpfsDir, 'serial.log'))).toBe(false);
    // A dangling symlink is never followed: the output lives in the jail, the link is left as it was.
    expect((await stat(join(rootDir, 'dangling.log'))).uid).toBe(jailUid);
    expect((await lstat(dangling)).isSymbolicLink()).toBe(true);
    expect(existsSync('/nonexistent/target.log')).toBe(false);
    expect((await stat(join(rootDir, 'metrics.fifo'))).isFIFO()).toBe(true);
    await expect(stat(join(rootDir, 'v.sock'))).rejects.toThrow(/ENOENT/);
    const kernel = join(rootDir, 'kernel-link');
    expect((await stat(kernel)).isFile()).toBe(true);
    expect(await readFile(kernel, 'utf8')).toBe('kernel');
  });

  it('should refuse a FIFO on another filesystem and paths that escape, before creating anything', async () => {
    const fifo = join(tmpfsDir, 'metrics.fifo');
    await execFileAsync('mkfifo', [fifo]);
    const file = join(sandbox.dir, 'file');
    await writeFile(file, 'x');
    const attempts: StagingRequest[] = [
      { field: 'metrics.metricsPath', hostPath: fifo, kind: 'output' },
      { field: 'drive', hostPath: `${sandbox.dir}/..`, kind: 'input' },
      { field: 'drive', hostPath: file, kind: 'input', jailPath: '/../../etc/passwd' },
      { field: 'drive', hostPath: file, kind: 'input', jailPath: '/a/../../x' },
      { field: 'drive', hostPath: file, kind: 'input', jailPath: 'relative' },
      { field: 'drive', hostPath: file, kind: 'input', jailPath: '/dev/kvm' },
    ];
    for (const attempt of attempts) {
      await expect(planStaging([attempt], target)).rejects.toMatchObject({
        code: 'ERR_MICROVM_INVALID_INPUT',
        field: attempt.field,
      });
    }
    expect(await execFileAsync('ls', ['-A', rootDir]).then((result) => result.stdout)).toBe('');
  });

  it('should give a jailed VM a copy of a kernel only root can read, and the simulated VMM reads it', async () => {
    await chmod(sandbox.kernel, 0o600);
    const otherRootfs = join(tmpfsDir, 'rootfs.ext4');
    await writeFile(otherRootfs, Buffer.alloc(4096));
    const provider = sandbox.provider();
    const vm = await provider.create(
      'staged',
      sandbox.spec({
        drives: [
          { driveId: 'rootfs', pathOnHost: sandbox.rootfs, isRootDevice: true, isReadOnly: false },
          { driveId: 'data', pathOnHost: otherRootfs, isRootDevice: false, isReadOnly: false },
        ],
      }),
    );
    expect(vm.state).toBe('running');
    // Same basename twice: the second gets its own name.
    expect(vm.spec.drives?.map((drive) => drive.pathOnHost)).toEqual(['/rootfs.ext4', '/rootfs-2.ext4']);
    const kernel = await stat(hostPathOf(vm.facts, '/vmlinux'));
    expect(kernel.uid).toBe(jailUid);
    expect(kernel.ino).not.toBe((await stat(sandbox.kernel)).ino);
    expect((await stat(hostPathOf(vm.facts, '/rootfs-2.ext4'))).ino).not.toBe((await stat(otherRootfs)).ino);
    await provider.destroy('staged');
  });
});
