import { defineConfig } from 'vitest/config';
import { integrationTestConfig } from '../../vitest.shared.js';

export default defineConfig(integrationTestConfig);
