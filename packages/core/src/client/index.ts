export { ApiSocketError, UnsupportedByVersionError } from './client-errors.js';
export type { FirecrackerEndpoint, FirecrackerEndpointName, FirecrackerHttpMethod } from './endpoints.js';
export { firecrackerEndpoints } from './endpoints.js';
export type {
  DeprecationEvent,
  FirecrackerClientOptions,
  FirecrackerRequestOptions,
} from './firecracker-client.js';
export { FirecrackerClient } from './firecracker-client.js';
export type { FirecrackerVersionNumber } from './version.js';
export { compareVersions, parseFirecrackerVersion } from './version.js';
