#!/usr/bin/env node
import { clearJailerEnvironment, exitWithJailerFailure, runJailer } from '../jailer.js';

clearJailerEnvironment(process.env);
try {
  process.exit(await runJailer(process.argv.slice(2), { env: process.env }));
} catch (error) {
  exitWithJailerFailure(error);
}
