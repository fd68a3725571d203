#!/usr/bin/env node
import { fileURLToPath } from 'node:url';
import { defaultDependencies, runCli } from '../cli.js';
import { processChannel, runSupervisor, SUPERVISE_COMMAND, waitForProcessExit } from '../supervisor.js';

const argv = process.argv.slice(2);

if (argv[0] === SUPERVISE_COMMAND) {
  // The detached supervisor of `run -d` and `restore`: no terminal, no signals from it (own session).
  process.exitCode = await runSupervisor(processChannel(), {
    openProvider: defaultDependencies.openProvider,
    env: process.env,
    waitForProcessExit: (pid) => waitForProcessExit(pid),
  });
} else {
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    if (!controller.signal.aborted) {
      controller.abort(new Error(`Interrupted by ${signal}`));
      return;
    }
    // A second Ctrl-C while the VM shuts down: leave now, and say how to clean up.
    // The VMM is detached and may still run: gc keeps live VMs, only rm -f stops and removes one.
    process.stderr.write(
      'microvm: interrupted again; the VM may still be running: `microvm ps` lists it, `microvm rm -f <id>` removes it\n',
    );
    process.exit(130);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.exitCode = await runCli(argv, {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    signal: controller.signal,
    selfCommand: [process.execPath, fileURLToPath(import.meta.url)],
  });
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
}
