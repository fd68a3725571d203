import { MicrovmError } from '@microvm/core';

/**
 * Why a network operation failed. Core has no network codes yet, so each reason maps to the closest core
 * code (see the README); branch on `reason` for the detail.
 */
export type NetworkFailureReason =
  /** Every subnet or address of the pool is leased. Core code: `ERR_MICROVM_INVALID_STATE`. */
  | 'pool-exhausted'
  /** The process lacks CAP_NET_ADMIN (not root). Core code: `ERR_MICROVM_INVALID_STATE`. */
  | 'not-permitted'
  /** A restored clone needs an address another live VM holds. Core code: `ERR_MICROVM_INVALID_STATE`. */
  | 'address-in-use'
  /** `ip`, `nft` or `sysctl` failed. Core code: `ERR_MICROVM_PROCESS_EXITED`. */
  | 'host-command-failed';

type NetworkErrorCode = 'ERR_MICROVM_INVALID_STATE' | 'ERR_MICROVM_PROCESS_EXITED';

const codeOf: Record<NetworkFailureReason, NetworkErrorCode> = {
  'pool-exhausted': 'ERR_MICROVM_INVALID_STATE',
  'not-permitted': 'ERR_MICROVM_INVALID_STATE',
  'address-in-use': 'ERR_MICROVM_INVALID_STATE',
  'host-command-failed': 'ERR_MICROVM_PROCESS_EXITED',
};

export class NetworkError extends MicrovmError<NetworkErrorCode> {
  override readonly name = 'NetworkError';
  readonly reason: NetworkFailureReason;
  /** The argv that failed, for `host-command-failed`. */
  readonly command: readonly string[] | undefined;
  readonly stderr: string | undefined;

  constructor(options: {
    reason: NetworkFailureReason;
    message: string;
    command?: readonly string[];
    stderr?: string;
    cause?: unknown;
  }) {
    const code = codeOf[options.reason];
    super({
      code,
      message: options.message,
      cause: options.cause,
      isUserError: code !== 'ERR_MICROVM_PROCESS_EXITED',
    });
    this.reason = options.reason;
    this.command = options.command;
    this.stderr = options.stderr;
  }
}
