// `pnpm bench`: every package's benchmarks, one package at a time so they do not compete for the cores, then
// the summary. Records how long the whole run took and when it started, so the committed results say whether
// they come from one run, and whether that run stayed under the 10 minutes we allow it.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const startedAt = new Date();
const benchmarks = spawnSync('turbo', ['run', 'bench', '--concurrency=1'], { stdio: 'inherit' });
if (benchmarks.error) throw benchmarks.error;
const wallSeconds = Math.round((Date.now() - startedAt.getTime()) / 1000);
// Summarised even when a package's benchmark failed: the summary then says whose results are left from before.
const summary = spawnSync(
  process.execPath,
  [
    fileURLToPath(new URL('./aggregate.mjs', import.meta.url)),
    `--started-at=${startedAt.toISOString()}`,
    `--wall-seconds=${wallSeconds}`,
  ],
  { stdio: 'inherit' },
);
process.exit(benchmarks.status === 0 ? (summary.status ?? 1) : (benchmarks.status ?? 1));
