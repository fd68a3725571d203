import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { firecrackerSimulatorPath, jailerSimulatorPath } from '@microvm/simulator';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  DEFAULT_FIRECRACKER_BOOT_TIMEOUT_MS,
  DEFAULT_READY_LINE,
  DEFAULT_SIMULATOR_BOOT_TIMEOUT_MS,
  describeTarget,
  E2eTargetError,
  resolveTarget,
  type TargetProblem,
} from './target.js';

let dir: string;
/** A host where everything a real run needs exists: root, KVM (a plain file here), binaries and images. */
let real: NodeJS.ProcessEnv;
let kvmPath: string;
const root = { euid: 0 };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'e2e-target-'));
  await mkdir(join(dir, 'release'));
  for (const name of ['firecracker', 'jailer']) {
    await writeFile(join(dir, 'release', name), '#!/bin/sh\n', { mode: 0o755 });
  }
  await writeFile(join(dir, 'vmlinux'), 'kernel');
  await writeFile(join(dir, 'rootfs.ext4'), 'rootfs');
  kvmPath = join(dir, 'kvm');
  await writeFile(kvmPath, '', { mode: 0o666 });
  real = {
    MICROVM_FIRECRACKER_BIN: join(dir, 'release', 'firecracker'),
    MICROVM_KERNEL: join(dir, 'vmlinux'),
    MICROVM_ROOTFS: join(dir, 'rootfs.ext4'),
  };
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function problemsOf(promise: Promise<unknown>): Promise<TargetProblem[]> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  expect(error).toBeInstanceOf(E2eTargetError);
  return [...(error as E2eTargetError).problems];
}

describe('resolveTarget', () => {
  it('should choose the simulator when no VMM variable is set, with the defaults', async () => {
    const target = await resolveTarget({ PATH: '/usr/bin', MICROVM_FIRECRACKER_BIN: '  ' }, root);
    expect(target).toEqual({
      vmm: 'simulator',
      firecrackerBinary: firecrackerSimulatorPath,
      jailerBinary: jailerSimulatorPath,
      kernel: undefined,
      rootfs: undefined,
      bootArgs: undefined,
      readyLine: DEFAULT_READY_LINE,
      vsockEchoPort: 5000,
      guestTcpPort: 7000,
      bootTimeoutMs: DEFAULT_SIMULATOR_BOOT_TIMEOUT_MS,
      restoreClones: false,
    });
    expect(describeTarget(target)).toMatch(/^e2e: running against @microvm\/simulator/);
    expect(describeTarget(target)).toContain('MICROVM_FIRECRACKER_BIN');
  });

  it('should read the guest and timing variables', async () => {
    const target = await resolveTarget(
      {
        MICROVM_E2E_READY_LINE: 'login:',
        MICROVM_E2E_VSOCK_ECHO_PORT: '1234',
        MICROVM_E2E_GUEST_TCP_PORT: '8080',
        MICROVM_E2E_BOOT_TIMEOUT_MS: '600000',
        MICROVM_E2E_RESTORE_CLONES: 'Yes',
        MICROVM_E2E_BOOT_ARGS: 'init=/sbin/e2e-init',
      },
      root,
    );
    expect(target).toMatchObject({
      readyLine: 'login:',
      vsockEchoPort: 1234,
      guestTcpPort: 8080,
      bootTimeoutMs: 600_000,
      restoreClones: true,
      bootArgs: 'init=/sbin/e2e-init',
    });
    expect(describeTarget(target)).toContain('restored clones');
  });

  it('should use a real Firecracker when the variables point at one, with the jailer beside it', async () => {
    const target = await resolveTarget(real, { ...root, kvmPath });
    expect(target).toMatchObject({
      vmm: 'firecracker',
      firecrackerBinary: join(dir, 'release', 'firecracker'),
      jailerBinary: join(dir, 'release', 'jailer'),
      kernel: join(dir, 'vmlinux'),
      rootfs: join(dir, 'rootfs.ext4'),
      bootTimeoutMs: DEFAULT_FIRECRACKER_BOOT_TIMEOUT_MS,
    });
    expect(describeTarget(target)).toContain(`against Firecracker ${join(dir, 'release', 'firecracker')}`);
  });

  it('should find the jailer of a release beside its firecracker, by the release file names', async () => {
    const firecracker = join(dir, 'release', 'firecracker-v1.16.1-x86_64');
    await writeFile(firecracker, '#!/bin/sh\n', { mode: 0o755 });
    await writeFile(join(dir, 'release', 'jailer-v1.16.1-x86_64'), '#!/bin/sh\n', { mode: 0o755 });
    const target = await resolveTarget(
      { ...real, MICROVM_FIRECRACKER_BIN: firecracker },
      { ...root, kvmPath },
    );
    expect(target.jailerBinary).toBe(join(dir, 'release', 'jailer-v1.16.1-x86_64'));
  });

  it('should fail, naming every variable and its fix, when the variables point at missing files', async () => {
    const env = {
      MICROVM_FIRECRACKER_BIN: join(dir, 'missing', 'firecracker'),
      MICROVM_KERNEL: join(dir, 'missing', 'vmlinux'),
      MICROVM_ROOTFS: join(dir, 'missing', 'rootfs.ext4'),
    };
    const error = await resolveTarget(env, { ...root, kvmPath }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(E2eTargetError);
    const message = (error as Error).message;
    for (const [name, path] of Object.entries(env))
      expect(message).toContain(`${name}=${path}: no such file`);
    expect(message).toContain('MICROVM_JAILER_BIN: is not set');
    expect(message).toContain('fix: set MICROVM_KERNEL to an uncompressed guest kernel');
    expect(message).toContain(
      'unset MICROVM_FIRECRACKER_BIN, MICROVM_JAILER_BIN, MICROVM_KERNEL, MICROVM_ROOTFS',
    );
    expect(message).toContain('docs/guides/real-firecracker.md');
  });

  it('should treat any one VMM variable as asking for a real Firecracker, and say what else is missing', async () => {
    const problems = await problemsOf(
      resolveTarget({ MICROVM_KERNEL: real.MICROVM_KERNEL }, { ...root, kvmPath }),
    );
    expect(problems.map((problem) => `${problem.subject}: ${problem.problem}`)).toEqual([
      'MICROVM_FIRECRACKER_BIN: is not set',
      'MICROVM_JAILER_BIN: is not set',
      'MICROVM_ROOTFS: is not set',
    ]);
  });

  it.each([
    ['no /dev/kvm', { kvmPath: '/nonexistent/kvm' }, '/nonexistent/kvm', 'missing'],
    ['not root', { euid: 1000 }, 'root', 'running as uid 1000'],
  ])('should fail on a host with %s', async (_case, probe, subject, problem) => {
    const problems = await problemsOf(resolveTarget(real, { ...root, kvmPath, ...probe }));
    expect(problems).toEqual([expect.objectContaining({ subject, problem, fix: expect.any(String) })]);
  });

  it('should fail when a file is not usable as what it stands for', async () => {
    await chmod(join(dir, 'release', 'firecracker'), 0o644);
    await rm(join(dir, 'release', 'jailer'));
    const problems = await problemsOf(
      resolveTarget(
        { ...real, MICROVM_JAILER_BIN: dir, MICROVM_KERNEL: join(dir, 'release') },
        { ...root, kvmPath },
      ),
    );
    expect(problems.map((problem) => `${problem.subject}: ${problem.problem}`)).toEqual([
      `MICROVM_FIRECRACKER_BIN=${join(dir, 'release', 'firecracker')}: is not executable`,
      `MICROVM_JAILER_BIN=${dir}: is not a regular file`,
      `MICROVM_KERNEL=${join(dir, 'release')}: is not a regular file`,
    ]);
  });

  it('should fail when the firecracker file name would be refused by the jailer, or no jailer is beside it', async () => {
    await writeFile(join(dir, 'release', 'vmm'), '#!/bin/sh\n', { mode: 0o755 });
    await rm(join(dir, 'release', 'jailer'));
    const problems = await problemsOf(
      resolveTarget({ ...real, MICROVM_FIRECRACKER_BIN: join(dir, 'release', 'vmm') }, { ...root, kvmPath }),
    );
    expect(problems.map((problem) => problem.subject)).toEqual([
      `MICROVM_FIRECRACKER_BIN=${join(dir, 'release', 'vmm')}`,
      'MICROVM_JAILER_BIN',
    ]);
    expect(problems[0]?.problem).toContain("does not contain 'firecracker'");
  });

  it.each([
    ['MICROVM_E2E_BOOT_TIMEOUT_MS', 'soon'],
    ['MICROVM_E2E_BOOT_TIMEOUT_MS', '0'],
    ['MICROVM_E2E_GUEST_TCP_PORT', '70000'],
    ['MICROVM_E2E_VSOCK_ECHO_PORT', '-1'],
    ['MICROVM_E2E_RESTORE_CLONES', 'maybe'],
  ])('should fail on %s=%s, also against the simulator', async (name, value) => {
    const problems = await problemsOf(resolveTarget({ [name]: value }, root));
    expect(problems).toEqual([expect.objectContaining({ subject: `${name}=${value}` })]);
  });
});
