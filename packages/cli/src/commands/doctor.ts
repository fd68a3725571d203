import { JSON_OPTION, stringOption } from '../args.js';
import type { Command } from '../context.js';
import { type CheckResult, nextStep, realHost } from '../doctor.js';
import { EXIT_CODES, toJson } from '../output.js';

export const DEFAULT_CHROOT_BASE_DIR = '/srv/jailer';

const marks: Record<CheckResult['status'], string> = { ok: '✓', warn: '!', fail: '✗' };

export function formatChecks(results: readonly CheckResult[]): string {
  const width = Math.max(...results.map((result) => result.name.length));
  const lines: string[] = [];
  for (const result of results) {
    lines.push(`${marks[result.status]} ${result.name.padEnd(width)}  ${result.detail}`);
    if (result.fix && result.status !== 'ok') lines.push(`  ${' '.repeat(width)}  fix: ${result.fix}`);
  }
  return `${lines.join('\n')}\n`;
}

export const doctorCommand: Command = {
  name: 'doctor',
  summary:
    'Check that this host can run VMs (KVM, binaries, TAP, nftables, cgroups, socket paths) and say what to fix',
  usage: 'doctor [--json]',
  options: { ...JSON_OPTION },
  positionals: [],
  examples: ['microvm doctor', 'microvm doctor --state-dir /run/microvm'],
  async run(context) {
    const env = { ...context.io.env };
    const firecracker = stringOption(context.values, 'firecracker');
    if (firecracker !== undefined) env.MICROVM_FIRECRACKER_BIN = firecracker;
    const results = await context.dependencies.runDoctor({
      stateDir: context.stateDir,
      chrootBaseDir: env.MICROVM_JAILER_CHROOT_BASE_DIR || DEFAULT_CHROOT_BASE_DIR,
      host: { ...realHost, env },
    });
    const failed = results.some((result) => result.status === 'fail');
    const next = nextStep(results);
    if (context.json) {
      context.io.stdout.write(toJson({ ok: !failed, checks: results, ...(next && { nextStep: next }) }));
    } else {
      context.io.stdout.write(formatChecks(results));
      const warnings = results.filter((result) => result.status === 'warn').length;
      const failures = results.filter((result) => result.status === 'fail').length;
      context.io.stdout.write(
        `\n${failures === 0 ? 'No problems' : `${failures} problem(s)`} found${warnings ? `, ${warnings} warning(s)` : ''}.\n`,
      );
      if (next) context.io.stdout.write(`${next}\n`);
    }
    return failed ? EXIT_CODES.failed : EXIT_CODES.ok;
  },
};
