#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runFirecracker } from '../firecracker.js';

// The simulated jailer imports this file (its copy inside the jail) to "exec" Firecracker in process.
export { runFirecracker };

function isEntryPoint(): boolean {
  const script = process.argv[1];
  if (script === undefined) return false;
  try {
    return realpathSync(script) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isEntryPoint()) {
  // The simulated Firecracker process: exit with the code the VMM stops with.
  const exitCode = await runFirecracker(process.argv.slice(2));
  process.exit(exitCode);
}
