import type { Options } from 'tsup';

/** What every package's build starts from: ESM for Node 20, with declarations and source maps. */
export const packageBuild = {
  entry: ['src/index.ts'],
  format: ['esm'],
  dts: true,
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
} satisfies Options;
