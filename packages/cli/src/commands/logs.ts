import { type FSWatcher, watch } from 'node:fs';
import { open } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { isLiveState, MicrovmError } from '@microvm/core';
import { integerOption } from '../args.js';
import type { Command, CommandContext } from '../context.js';
import { EXIT_CODES } from '../output.js';

// How often `-f` checks that the VM is still live (the file's changes wake it up in between).
const liveCheckIntervalMs = 500;
/** After the VM stopped: how long the log must stay unchanged to be complete, and the most we wait for that. */
const finalQuietMs = 300;
const finalDrainMaxMs = 3_000;

/** Reads a growing file from an offset; a file that shrank (the capped log was trimmed) is read again. */
class FileFollower {
  #offset = 0;
  readonly #decoder = new StringDecoder('utf8');
  readonly #path: string;

  constructor(path: string) {
    this.#path = path;
  }

  /** New text since the last call; undefined when the file does not exist (yet). */
  async readNew(): Promise<string | undefined> {
    let handle: Awaited<ReturnType<typeof open>>;
    try {
      handle = await open(this.#path, 'r');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    try {
      const { size } = await handle.stat();
      if (size < this.#offset) this.#offset = 0;
      if (size === this.#offset) return '';
      const buffer = Buffer.alloc(size - this.#offset);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, this.#offset);
      this.#offset += bytesRead;
      return this.#decoder.write(buffer.subarray(0, bytesRead));
    } finally {
      await handle.close();
    }
  }
}

function lastLines(text: string, count: number): string {
  if (count === 0) return '';
  const lines = text.split('\n');
  const trailingNewline = text.endsWith('\n');
  if (trailingNewline) lines.pop();
  return lines.slice(-count).join('\n') + (trailingNewline && count > 0 ? '\n' : '');
}

/** Resolves on a change to the file, after `timeoutMs`, or on abort: whichever comes first. */
function waitForChange(path: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    let watcher: FSWatcher | undefined;
    const done = () => {
      clearTimeout(timer);
      watcher?.close();
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    try {
      watcher = watch(path, done);
      watcher.on('error', done);
    } catch {
      // Not there yet: the timer polls.
    }
    if (signal?.aborted) done();
    else signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * The exit can be recorded before the supervisor has written the guest's last lines: read until nothing new came
 * for a moment, bounded so a log that keeps growing cannot hold the command.
 */
async function drainUntilQuiet(
  follower: FileFollower,
  context: CommandContext,
  signal: AbortSignal | undefined,
) {
  const deadline = Date.now() + finalDrainMaxMs;
  let text = await follower.readNew();
  for (;;) {
    if (text) context.io.stdout.write(text);
    if (Date.now() >= deadline || signal?.aborted) return;
    await sleep(finalQuietMs);
    text = await follower.readNew();
    if (!text) return;
  }
}

async function follow(context: CommandContext, vmId: string, path: string, tail: number | undefined) {
  const follower = new FileFollower(path);
  const { provider } = await context.provider();
  const signal = context.io.signal;
  const first = await follower.readNew();
  if (first) context.io.stdout.write(tail === undefined ? first : lastLines(first, tail));
  while (!signal?.aborted) {
    await waitForChange(path, liveCheckIntervalMs, signal);
    const text = await follower.readNew();
    if (text) context.io.stdout.write(text);
    const info = await provider.get(vmId);
    if (!info || !isLiveState(info.state)) {
      await drainUntilQuiet(follower, context, signal);
      return EXIT_CODES.ok;
    }
  }
  return EXIT_CODES.interrupted;
}

export const logsCommand: Command = {
  name: 'logs',
  summary: "Print a VM's console log (the guest's serial output); -f follows it while the VM lives",
  usage: 'logs [-f] [-n <lines>] <id>',
  options: {
    follow: {
      type: 'boolean',
      short: 'f',
      description: 'keep printing new output until the VM stops or Ctrl-C',
    },
    tail: {
      type: 'string',
      short: 'n',
      valueName: 'lines',
      description: 'start with the last <lines> lines only',
    },
  },
  positionals: [{ name: 'id' }],
  examples: ['microvm logs web-1', 'microvm logs -f -n 20 web-1'],
  async run(context) {
    const vmId = context.positionals[0]!;
    const tail = integerOption(context.values, 'tail', { min: 0, max: 1_000_000 });
    const info = await (await context.provider()).provider.get(vmId);
    if (!info) {
      throw new MicrovmError({ code: 'ERR_MICROVM_VM_NOT_FOUND', message: `No VM with id '${vmId}' exists` });
    }
    const path = info.facts.console?.consoleLogPath;
    if (!path) {
      context.io.stderr.write(
        `microvm: VM '${vmId}' has no console log: it was created with MICROVM_COMPOSE_CONSOLE=0 or MICROVM_CONSOLE_LOG_FILES=0\n`,
      );
      return EXIT_CODES.failed;
    }
    if (context.values.follow) return follow(context, vmId, path, tail);
    const text = await new FileFollower(path).readNew();
    if (text === undefined) {
      context.io.stderr.write(`microvm: VM '${vmId}' has no console output yet (${path} does not exist)\n`);
      return isLiveState(info.state) ? EXIT_CODES.ok : EXIT_CODES.failed;
    }
    context.io.stdout.write(tail === undefined ? text : lastLines(text, tail));
    return EXIT_CODES.ok;
  },
};
