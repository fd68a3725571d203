export { type ConnectVsockOptions, connectVsock } from './connect.js';
export {
  listenerPathOf,
  MAX_VSOCK_PORT,
  VsockError,
  type VsockErrorCode,
  type VsockErrorOptions,
  type VsockFailureReason,
  VsockRemoteError,
  validateVsockPort,
} from './errors.js';
export {
  type ListenVsockOptions,
  listenVsock,
  type VsockConnectionHandler,
  type VsockListener,
} from './listen.js';
export {
  GUEST_CID_POOL,
  SHARED_GUEST_CID_POOL,
  type VsockListenerHandler,
  type VsockPrimitive,
  type VsockPrimitiveOptions,
  vsockPrimitive,
} from './primitive.js';
export {
  VsockRpc,
  type VsockRpcCallOptions,
  type VsockRpcHandler,
  type VsockRpcMessage,
  type VsockRpcOptions,
} from './rpc.js';
