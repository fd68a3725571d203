/**
 * Where the tests find Firecracker's API description (`firecracker.yaml`), for the conformance checks. Test
 * support only, not exported. The yaml is reference data kept beside the checkout, never copied into it.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface FirecrackerSpecFile {
  path: string;
  found: boolean;
  /** Absence is a failure, not a skip: under CI, or when `MICROVM_REQUIRE_FIRECRACKER_SPEC=1`. */
  required: boolean;
}

const repositoryRoot = fileURLToPath(new URL('../../../../', import.meta.url));

export function firecrackerSpecFile(environment: NodeJS.ProcessEnv = process.env): FirecrackerSpecFile {
  const path =
    environment.MICROVM_FIRECRACKER_SPEC ?? resolve(repositoryRoot, '../shared/firecracker/firecracker.yaml');
  const ci = environment.CI !== undefined && !['', '0', 'false'].includes(environment.CI.toLowerCase());
  return {
    path,
    found: existsSync(path),
    required: ci || environment.MICROVM_REQUIRE_FIRECRACKER_SPEC === '1',
  };
}

/** The message of the test that stands in for the conformance checks when the file is missing. */
export function missingSpecMessage(spec: FirecrackerSpecFile): string {
  return `firecracker.yaml not found at ${spec.path}: set MICROVM_FIRECRACKER_SPEC to its path${
    spec.required ? ' (required under CI and with MICROVM_REQUIRE_FIRECRACKER_SPEC=1)' : ''
  }`;
}
