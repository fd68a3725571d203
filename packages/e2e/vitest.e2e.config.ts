import { defineConfig } from 'vitest/config';
import { describeTarget, type E2eTarget, E2eTargetError, resolveTarget } from './src/target.js';

declare module 'vitest' {
  export interface ProvidedContext {
    e2eTarget: E2eTarget;
  }
}

// Resolved before anything runs: a misconfigured real-Firecracker run fails here, with every problem and its fix.
const target = await resolveTarget(process.env).catch((error: unknown) => {
  if (!(error instanceof E2eTargetError)) throw error;
  process.stderr.write(`\n${error.message}\n\n`);
  throw new Error('The e2e suite cannot run: its environment has the problems listed above.');
});
// The suite's first line says what it runs against.
process.stdout.write(`${describeTarget(target)}\n`);

export default defineConfig({
  test: {
    include: ['test/*.e2e.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    // A scenario may cold-boot twice (a clone's original, then the clone) on a slow host.
    testTimeout: 2 * target.bootTimeoutMs + 120_000,
    // Set-up copies the rootfs; tear-down may have to stop VMs a failed scenario left running.
    hookTimeout: target.bootTimeoutMs + 120_000,
    provide: { e2eTarget: target },
  },
});
