import { ValidationError } from '@microvm/core';
import { PRIMITIVE_NAMES, type PrimitiveName } from './types.js';

/** The words every boolean variable of the composer accepts, in any case. */
export const TRUE_WORDS: ReadonlySet<string> = new Set(['1', 'true', 'yes', 'on']);
export const FALSE_WORDS: ReadonlySet<string> = new Set(['0', 'false', 'no', 'off']);

/** `MICROVM_COMPOSE_NETWORK`, … — the variable that switches one primitive. */
export function toggleVariable(name: PrimitiveName): string {
  return `MICROVM_COMPOSE_${name.toUpperCase()}`;
}

/**
 * Which primitives the environment switches on. As in the seed, an absent variable means on, and `0`, `false`
 * or `no` in any case mean off; `1`, `true`, `yes`, `on` mean on. Anything else is a mistake worth an error:
 * a typo must not silently switch the firewall on or off.
 */
export function enabledFromEnv(env: NodeJS.ProcessEnv): PrimitiveName[] {
  return PRIMITIVE_NAMES.filter((name) => {
    const variable = toggleVariable(name);
    const raw = env[variable];
    if (raw === undefined) return true;
    const value = raw.trim().toLowerCase();
    if (FALSE_WORDS.has(value)) return false;
    if (TRUE_WORDS.has(value) || value === '') return true;
    throw new ValidationError({
      field: variable,
      rule: 'must be one of 1, true, yes, on, 0, false, no, off (any case), or unset for on',
      value: raw,
    });
  });
}
