/**
 * The README's first example, run as written: only where its two packages come from changes (core from source,
 * the simulator by path, as in the other integration tests), so the example cannot drift from the API.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, expect, it, vi } from 'vitest';
import { simulatorFirecracker } from './helpers.js';

let dir: string | undefined;

afterEach(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function exampleDirs(): Promise<string[]> {
  return (await readdir(tmpdir())).filter((name) => name.startsWith('microvm-'));
}

it('should run the README example, and it should leave nothing behind', async () => {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8');
  const example = /```ts\n([\s\S]*?)```/.exec(readme)?.[1] ?? '';
  const coreSource = fileURLToPath(new URL('../../src/index.ts', import.meta.url));
  const runnable = example
    .replace("from '@microvm/core'", `from ${JSON.stringify(coreSource)}`)
    .replace(
      "import { firecrackerSimulatorPath } from '@microvm/simulator';",
      `const firecrackerSimulatorPath = ${JSON.stringify(simulatorFirecracker)};`,
    );
  expect(runnable).not.toContain('@microvm/');

  dir = await mkdtemp(join(tmpdir(), 'mvreadme-'));
  const file = join(dir, 'example.ts');
  await writeFile(file, runnable);
  const before = await exampleDirs();
  const printed: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((...values: unknown[]) => {
    printed.push(
      values.map((value) => (typeof value === 'string' ? value : JSON.stringify(value))).join(' '),
    );
  });
  await import(file);

  expect(printed.some((line) => /^sandbox-42 running pid \d+$/.test(line))).toBe(true);
  expect(printed).toContain('sandbox-43 running');
  expect(printed.some((line) => line.includes('"state":"Running"'))).toBe(true);
  // The phase events: one line per phase, with its duration.
  expect(printed.some((line) => /^[\w:-]+: \d+\.\d ms$/.test(line))).toBe(true);
  // Its own temporary folder (state, snapshot files) is gone.
  expect(await exampleDirs()).toEqual(before);
});
