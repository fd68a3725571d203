// `pnpm bench`: every package's benchmarks, one package at a time so they do not compete for the cores, then
// the summary. Records how long the whole run took and when it started, so the committed results say whether
// they come from one run, and whether that run stayed under the 10 minutes we allow it.
import { spawnSync } from 'node:child_process';

const startedAt = new Date();
const benchmarks = spawnSync('turbo', ['run', 'bench', '--concurrency=1'], { stdio: 'inherit' });
if (benchmarks.error) throw benchmarks.error;
if (benchmarks.status !== 0) process.exit(benchmarks.status ?? 1);
const wallSeconds = Math.round((Date.now() - startedAt.getTime()) / 1000);
const summary = spawnSync(
  process.execPath,
  [
    new URL('./aggregate.mjs', import.meta.url).pathname,
    `--started-at=${startedAt.toISOString()}`,
    `--wall-seconds=${wallSeconds}`,
  ],
  { stdio: 'inherit' },
);
process.exit(summary.status ?? 1);
