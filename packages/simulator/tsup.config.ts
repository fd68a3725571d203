import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared.js';

export default defineConfig({
  ...packageBuild,
  entry: ['src/index.ts', 'src/bin/firecracker.ts', 'src/bin/jailer.ts'],
  dts: { entry: ['src/index.ts'] },
  // Each executable is one self-contained file: the jailer copies it into the jail and runs the copy.
  splitting: false,
});
