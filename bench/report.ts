import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where every package's benchmark writes its JSON (`pnpm bench` aggregates them). */
export const benchResultsDir: string = join(dirname(fileURLToPath(import.meta.url)), 'results');

export interface Summary {
  samples: number;
  minMs: number;
  p50Ms: number;
  p95Ms: number;
  maxMs: number;
  meanMs: number;
}

/** Percentiles by nearest rank over durations in milliseconds. */
export function summarize(durationsMs: readonly number[]): Summary {
  if (durationsMs.length === 0) throw new Error('summarize() needs at least one sample');
  const sorted = [...durationsMs].sort((left, right) => left - right);
  const rank = (fraction: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil(fraction * sorted.length) - 1)]!;
  const round = (value: number) => Math.round(value * 1000) / 1000;
  return {
    samples: sorted.length,
    minMs: round(sorted[0]!),
    p50Ms: round(rank(0.5)),
    p95Ms: round(rank(0.95)),
    maxMs: round(sorted[sorted.length - 1]!),
    meanMs: round(sorted.reduce((sum, value) => sum + value, 0) / sorted.length),
  };
}

/** Times `run` `iterations` times (after `warmup` untimed runs) and returns each duration in ms. */
export async function measure(
  iterations: number,
  run: (iteration: number) => Promise<void>,
  options: { warmup?: number } = {},
): Promise<number[]> {
  for (let index = 0; index < (options.warmup ?? 0); index += 1) await run(-1 - index);
  const durations: number[] = [];
  for (let index = 0; index < iterations; index += 1) {
    const started = performance.now();
    await run(index);
    durations.push(performance.now() - started);
  }
  return durations;
}

export interface BenchRow {
  name: string;
  /** Either timing figures or any other figures (throughput, bytes), printed as given. */
  figures: Summary | Record<string, number | string>;
}

/** Prints a table to stdout and writes `bench/results/<file>.json`. */
export function report(file: string, title: string, rows: BenchRow[]): void {
  const columns = [...new Set(rows.flatMap((row) => Object.keys(row.figures)))];
  const header = ['name', ...columns];
  const lines = rows.map((row) => [
    row.name,
    ...columns.map((column) => String((row.figures as Record<string, unknown>)[column] ?? '')),
  ]);
  const widths = header.map((cell, index) =>
    Math.max(cell.length, ...lines.map((line) => line[index]!.length)),
  );
  const format = (cells: string[]) => cells.map((cell, index) => cell.padEnd(widths[index]!)).join('  ');
  process.stdout.write(
    `\n${title}\n${format(header)}\n${widths.map((width) => '-'.repeat(width)).join('  ')}\n${lines.map(format).join('\n')}\n`,
  );
  mkdirSync(benchResultsDir, { recursive: true });
  writeFileSync(
    join(benchResultsDir, `${file}.json`),
    `${JSON.stringify({ title, at: new Date().toISOString(), node: process.version, rows }, null, 2)}\n`,
  );
}
