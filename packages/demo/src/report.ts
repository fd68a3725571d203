const NAME_WIDTH = 18;
const DURATION_WIDTH = 9;

function milliseconds(durationMs: number): string {
  return `${durationMs.toFixed(1).padStart(DURATION_WIDTH)} ms`;
}

/** `create                 181.2 ms  demo-vm running…`: one line per phase, durations aligned. */
export function phaseLine(name: string, durationMs: number, detail: string): string {
  return `${name.padEnd(NAME_WIDTH)}${milliseconds(durationMs)}  ${detail}`.trimEnd();
}

/** A phase that did not run, with why. */
export function skippedLine(name: string, why: string): string {
  return `${name.padEnd(NAME_WIDTH)}${'skipped'.padStart(DURATION_WIDTH + 3)}  ${why}`;
}

/** A step inside a phase (the provider's own timings), indented under it. */
export function stepLine(name: string, durationMs: number): string {
  return `  ${name.padEnd(NAME_WIDTH - 2)}${milliseconds(durationMs)}`;
}

/** Output the phase's detail cannot hold (console lines), indented under it. */
export function quotedLine(text: string): string {
  return `    | ${text}`;
}
