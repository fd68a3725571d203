import { CleanupStack } from './cleanup-stack.js';
import { runDemo } from './demo.js';
import { SetupError } from './vmm-choice.js';

/** After Ctrl-C the demo stops what it is doing; if that takes longer than this, it cleans up regardless. */
const INTERRUPT_GRACE_MS = 20_000;

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    console.error(
      'microvm demo: needs root. It creates network namespaces, veth pairs, nftables rules and a jail ' +
        '(run it as root, e.g. with sudo).',
    );
    return 1;
  }

  const cleanup = new CleanupStack();
  const controller = new AbortController();
  let interruptedBy: NodeJS.Signals | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interruptedBy !== undefined) {
      // A second Ctrl-C: leave now, and say what may be left.
      const pending = cleanup.pending;
      console.error(
        `\n${signal} again: exiting without finishing the cleanup${pending.length > 0 ? `; may be left: ${pending.join(', ')}` : ''}`,
      );
      process.exit(130);
    }
    interruptedBy = signal;
    console.error(`\n${signal}: stopping and removing everything the demo created…`);
    controller.abort(new Error(`interrupted by ${signal}`));
    // Every wait in the demo honours the signal; this is only for one that does not.
    setTimeout(() => {
      void cleanup.settled().then(() => process.exit(130));
    }, INTERRUPT_GRACE_MS).unref();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  let exitCode = 0;
  try {
    await runDemo({
      env: process.env,
      signal: controller.signal,
      cleanup,
      print: (line) => console.log(line),
    });
  } catch (error) {
    exitCode = interruptedBy !== undefined ? 130 : 1;
    if (interruptedBy !== undefined) console.error(`interrupted by ${interruptedBy}`);
    else console.error(`\nmicrovm demo failed: ${describe(error)}`);
  } finally {
    // Normally the demo's own cleanup phase has run (and reported) this already; after a failure it runs here.
    const reportedByDemo = cleanup.started;
    const failures = await cleanup.settled();
    for (const failure of reportedByDemo ? [] : failures) {
      console.error(`could not remove ${failure.description}: ${describe(failure.error)}`);
      exitCode = exitCode === 0 ? 1 : exitCode;
    }
  }
  return exitCode;
}

function describe(error: unknown): string {
  if (error instanceof SetupError) return error.message;
  if (!(error instanceof Error)) return String(error);
  const code = (error as { code?: unknown }).code;
  // A coded error says what went wrong by itself; a stack only helps with the unexpected ones.
  let text =
    typeof code === 'string'
      ? `${code} ${error.name}: ${error.message}`
      : (error.stack ?? `${error.name}: ${error.message}`);
  // Hook errors wrap the primitive's own error: show the chain.
  for (let cause = error.cause; cause !== undefined; cause = (cause as { cause?: unknown }).cause) {
    text += `\n  caused by: ${cause instanceof Error ? `${cause.name}: ${cause.message}` : String(cause)}`;
    if (!(cause instanceof Error)) break;
  }
  return text;
}

process.exitCode = await main();
