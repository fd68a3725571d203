import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const packageDir = fileURLToPath(new URL('..', import.meta.url));

describe('vitest.e2e.config.ts', () => {
  it('should fail the run, saying what to fix, when the variables point at missing files', () => {
    // The config resolves the target before any test file is collected: this run ends at that point.
    const run = spawnSync(
      process.execPath,
      [join(packageDir, 'node_modules', 'vitest', 'vitest.mjs'), 'run', '--config', 'vitest.e2e.config.ts'],
      {
        cwd: packageDir,
        encoding: 'utf8',
        timeout: 120_000,
        env: {
          ...process.env,
          MICROVM_FIRECRACKER_BIN: '/nonexistent/firecracker',
          MICROVM_JAILER_BIN: '/nonexistent/jailer',
          MICROVM_KERNEL: '/nonexistent/vmlinux',
          MICROVM_ROOTFS: '/nonexistent/rootfs.ext4',
        },
      },
    );
    expect(run.status).toBe(1);
    expect(run.stderr).toContain('The e2e suite cannot run against a real Firecracker as configured');
    for (const file of ['firecracker', 'jailer', 'vmlinux', 'rootfs.ext4']) {
      expect(run.stderr).toContain(`=/nonexistent/${file}: no such file`);
    }
    expect(`${run.stdout}${run.stderr}`).not.toContain('running against');
  }, 120_000);
});
