import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/main.ts'],
  format: ['esm'],
  // A program, not a library: nothing imports it, so no declarations.
  dts: false,
  sourcemap: true,
  clean: true,
  target: 'node20',
  platform: 'node',
});
