import { defineConfig } from 'tsup';
import { packageBuild } from '../../tsup.shared.js';

// A program, not a library: nothing imports it, so no declarations.
export default defineConfig({ ...packageBuild, entry: ['src/main.ts'], dts: false });
