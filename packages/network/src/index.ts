export { NetworkError, type NetworkFailureReason } from './errors.js';
export {
  ADDRESS_LEASE_POOL,
  type AttachOptions,
  kernelIpArgument,
  type NetworkAttachment,
  NetworkManager,
  type SourceNetwork,
  SUBNET_LEASE_POOL,
  sourceNetworkOf,
} from './network-manager.js';
export { type NetworkPrimitiveOptions, networkPrimitive } from './network-primitive.js';
export type { NetworkManagerOptions, NetworkMode } from './options.js';
