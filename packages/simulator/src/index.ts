import { fileURLToPath } from 'node:url';

export { SIMULATED_FIRECRACKER_VERSION, SIMULATED_SNAPSHOT_VERSION } from './constants.js';
export {
  DEFAULT_GUEST_READY_MS,
  DEFAULT_READY_LINE,
  DEFAULT_SHUTDOWN_DELAY_MS,
  DEFAULT_VSOCK_ECHO_PORT,
  SIMULATOR_ENVIRONMENT_VARIABLES,
  type SimulatorEnvironmentOptions,
  simulatorEnvironment,
} from './fault-injection.js';
export { type RunFirecrackerOptions, runFirecracker } from './firecracker.js';

/** Absolute path of the built `firecracker` executable of the simulator. */
export const firecrackerSimulatorPath: string = fileURLToPath(
  new URL('./bin/firecracker.js', import.meta.url),
);

/** Absolute path of the built `jailer` executable of the simulator. */
export const jailerSimulatorPath: string = fileURLToPath(new URL('./bin/jailer.js', import.meta.url));
