export { FirecrackerComposer } from './composer.js';
export { ENV_VARIABLES, type EnvVariable, optionsFromEnv } from './env-options.js';
export {
  type ComposerJailerOptions,
  DEFAULT_JAIL_GID,
  DEFAULT_JAIL_UID,
  type EgressPolicy,
  type PrimitiveOptions,
} from './options.js';
export { DEFAULT_BOOT_ARGS, toVmSpec } from './spec.js';
export { enabledFromEnv, toggleVariable } from './toggles.js';
export * from './types.js';
export type { ComposedFirewall, ComposedVsock } from './wiring.js';
