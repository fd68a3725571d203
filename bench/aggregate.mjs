// Gathers every package's benchmark results (bench/results/*.json, written by bench/report.ts) into one
// table on stdout, bench/results/summary.json and a bar chart of p50/p95 timings in bench/results/summary.svg.
// Plain JavaScript so that `pnpm bench` needs no TypeScript loader for this last step.
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const resultsDir = join(dirname(fileURLToPath(import.meta.url)), 'results');
// Given by bench/run.mjs: when the run began and how long it took (absent when this script runs alone).
const argument = (name) => process.argv.find((value) => value.startsWith(`--${name}=`))?.split('=')[1];
const startedAt = argument('started-at');
const wallSeconds = argument('wall-seconds') === undefined ? undefined : Number(argument('wall-seconds'));
const wallLimitSeconds = 600;
const summaryFiles = new Set(['summary.json']);

const results = readdirSync(resultsDir)
  .filter((name) => name.endsWith('.json') && !summaryFiles.has(name))
  .sort()
  .map((name) => ({
    file: name.replace(/\.json$/, ''),
    ...JSON.parse(readFileSync(join(resultsDir, name), 'utf8')),
  }));

if (results.length === 0) {
  console.error(`No benchmark results in ${resultsDir}`);
  process.exit(1);
}

const timed = [];
for (const result of results) {
  console.log(`\n${result.title}  (${result.file}, ${result.at})`);
  for (const row of result.rows) {
    const figures = Object.entries(row.figures)
      .map(([key, value]) => `${key}=${value}`)
      .join('  ');
    console.log(`  ${row.name.padEnd(48)} ${figures}`);
    if (typeof row.figures.p50Ms === 'number' && typeof row.figures.p95Ms === 'number') {
      timed.push({ group: result.title, name: row.name, p50: row.figures.p50Ms, p95: row.figures.p95Ms });
    }
  }
}

// Results older than this run are left from an earlier one (a package whose bench was skipped or failed).
const stale = startedAt ? results.filter((result) => result.at < startedAt).map((result) => result.file) : [];
if (stale.length > 0) console.warn(`\nNot from this run (older than ${startedAt}): ${stale.join(', ')}`);
if (wallSeconds !== undefined) {
  const verdict = wallSeconds <= wallLimitSeconds ? 'within' : 'OVER';
  console.log(`\nWhole run: ${wallSeconds} s (${verdict} the ${wallLimitSeconds / 60}-minute budget)`);
}

const run = startedAt ? { startedAt, wallSeconds, staleResults: stale } : undefined;
writeFileSync(
  join(resultsDir, 'summary.json'),
  `${JSON.stringify({ at: new Date().toISOString(), node: process.version, run, results }, null, 2)}\n`,
);

function escapeXml(text) {
  return String(text).replace(/[<>&"']/g, (character) => `&#${character.charCodeAt(0)};`);
}

// One chart, one row per timed figure, bars on a log scale so 0.1 ms and 1 s both stay readable.
const rowHeight = 22;
const labelWidth = 520;
const chartWidth = 560;
const top = 40;
const height = top + timed.length * rowHeight + 40;
const maxValue = Math.max(...timed.map((row) => row.p95), 1);
const minValue = Math.max(Math.min(...timed.map((row) => row.p50)), 0.01);
const scale = (value) => {
  const span = Math.log10(maxValue) - Math.log10(minValue) || 1;
  return 4 + ((Math.log10(Math.max(value, minValue)) - Math.log10(minValue)) / span) * (chartWidth - 4);
};
const bars = timed
  .map((row, index) => {
    const y = top + index * rowHeight;
    const label = `${row.group.split(':')[0]} — ${row.name}`;
    return [
      `<text x="${labelWidth - 8}" y="${y + 14}" text-anchor="end">${escapeXml(label.slice(0, 80))}</text>`,
      `<rect x="${labelWidth}" y="${y + 3}" width="${scale(row.p95).toFixed(1)}" height="16" fill="#f4b183"/>`,
      `<rect x="${labelWidth}" y="${y + 3}" width="${scale(row.p50).toFixed(1)}" height="16" fill="#2f6fb0"/>`,
      `<text x="${labelWidth + scale(row.p95) + 6}" y="${y + 14}">${row.p50} / ${row.p95} ms</text>`,
    ].join('');
  })
  .join('\n');
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + chartWidth + 160}" height="${height}" font-family="sans-serif" font-size="12">
<text x="10" y="20" font-size="15" font-weight="bold">microvm benchmarks — p50 (blue) and p95 (orange), ms, log scale</text>
${bars}
<text x="10" y="${height - 12}" fill="#666">${escapeXml(`${new Date().toISOString()} · Node ${process.version}`)}</text>
</svg>
`;
writeFileSync(join(resultsDir, 'summary.svg'), svg);
console.log(`\nWrote ${join(resultsDir, 'summary.json')} and summary.svg (${timed.length} timed rows)`);
