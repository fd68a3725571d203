import { UnsupportedByVersionError } from './client-errors.js';
import type { FirecrackerEndpoint } from './endpoints.js';

/** A Firecracker release as `GET /version` reports it. */
export interface FirecrackerVersionNumber {
  readonly major: number;
  readonly minor: number;
  readonly patch: number;
  /** As reported, e.g. `1.16.1` or `1.17.0-dev`. */
  readonly text: string;
}

/**
 * Parses `1.16.1`, `v1.16.1`, `1.17.0-dev`. A pre-release or build suffix is ignored on purpose:
 * a `1.17.0-dev` build already has every 1.16 feature, and refusing it would be the worse mistake.
 */
export function parseFirecrackerVersion(text: string): FirecrackerVersionNumber | undefined {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(text.trim());
  if (match === null) return undefined;
  return { major: Number(match[1]), minor: Number(match[2]), patch: Number(match[3]), text: text.trim() };
}

export function compareVersions(left: FirecrackerVersionNumber, right: FirecrackerVersionNumber): number {
  return left.major - right.major || left.minor - right.minor || left.patch - right.patch;
}

export function isAtLeast(running: FirecrackerVersionNumber, required: string): boolean {
  const requiredVersion = parseFirecrackerVersion(required);
  if (requiredVersion === undefined) throw new Error(`Bad version in the endpoint table: ${required}`);
  return compareVersions(running, requiredVersion) >= 0;
}

/** The version requirements a request hits: the endpoint's own and those of the fields the body contains. */
export function versionRequirements(
  endpoint: FirecrackerEndpoint,
  body: unknown,
): { feature: string; requiredVersion: string }[] {
  const requirements: { feature: string; requiredVersion: string }[] = [];
  const label = `${endpoint.method} ${endpoint.path}`;
  if (endpoint.sinceVersion !== undefined) {
    requirements.push({ feature: label, requiredVersion: endpoint.sinceVersion });
  }
  if (endpoint.fieldsSinceVersion !== undefined && isRecord(body)) {
    for (const [field, requiredVersion] of Object.entries(endpoint.fieldsSinceVersion)) {
      // JSON.stringify drops `undefined`, so such a field is not sent and needs no gate.
      if (body[field] !== undefined) {
        requirements.push({ feature: `field "${field}" of ${label}`, requiredVersion });
      }
    }
  }
  return requirements;
}

/** Throws `UnsupportedByVersionError` for the first requirement the running version does not meet. */
export function assertSupported(
  requirements: readonly { feature: string; requiredVersion: string }[],
  running: FirecrackerVersionNumber,
): void {
  for (const requirement of requirements) {
    if (!isAtLeast(running, requirement.requiredVersion)) {
      throw new UnsupportedByVersionError({ ...requirement, runningVersion: running.text });
    }
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
