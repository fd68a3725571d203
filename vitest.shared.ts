import type { ViteUserConfig } from 'vitest/config';

/** Settings every package's vitest config starts from. */
export const unitTestConfig: ViteUserConfig = {
  test: {
    include: ['src/**/*.test.ts'],
    restoreMocks: true,
    clearMocks: true,
    unstubEnvs: true,
    // Tests spawn child processes; forks isolate them best.
    pool: 'forks',
    // CI runs every package's suite at once on two cores: a test that starts a few Node processes can take
    // several seconds there. Timeouts catch hangs, not slowness (speed lives in `pnpm bench`).
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // `expect.poll` waits for something another process does: 1 s (vitest's default) is too short there.
    expect: { poll: { timeout: 10_000 } },
  },
};

/** Integration tests touch the host (namespaces, processes): one file at a time, long timeouts. */
export const integrationTestConfig: ViteUserConfig = {
  test: {
    include: ['test/integration/**/*.test.ts'],
    restoreMocks: true,
    clearMocks: true,
    unstubEnvs: true,
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    expect: { poll: { timeout: 10_000 } },
    fileParallelism: false,
    passWithNoTests: true,
  },
};

/**
 * Benchmarks: `bench/**\/*.bench.ts` run as plain tests that measure and print (see `bench/report.ts`),
 * one file at a time so they do not compete for the two cores.
 */
export const benchConfig: ViteUserConfig = {
  test: {
    include: ['bench/**/*.bench.ts'],
    pool: 'forks',
    testTimeout: 600_000,
    hookTimeout: 120_000,
    fileParallelism: false,
    passWithNoTests: true,
  },
};
