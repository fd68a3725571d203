import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/bin/firecracker.ts', 'src/bin/jailer.ts'],
  format: ['esm'],
  dts: { entry: ['src/index.ts'] },
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
  // Each executable is one self-contained file: the jailer copies it into the jail and runs the copy.
  splitting: false,
});
