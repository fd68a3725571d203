/** The Firecracker release the simulator imitates. */
export const SIMULATED_FIRECRACKER_VERSION = '1.16.1';

/** The snapshot data format that Firecracker v1.16.1 reads and writes (`--snapshot-version`). */
export const SIMULATED_SNAPSHOT_VERSION = { major: 10, minor: 0, patch: 0 } as const;

/** `--api-sock` default. */
export const DEFAULT_API_SOCKET_PATH = '/run/firecracker.socket';

/** `--id` default. */
export const DEFAULT_INSTANCE_ID = 'anonymous-instance';

/** micro_http's `HTTP_MAX_PAYLOAD_SIZE`. */
export const DEFAULT_HTTP_MAX_PAYLOAD_BYTES = 51_200;

/** micro_http's `MAX_CONNECTIONS`. */
export const MAX_API_CONNECTIONS = 10;

/** Firecracker's `MAX_SUPPORTED_VCPUS`. */
export const MAX_SUPPORTED_VCPUS = 32;

/** `DEFAULT_MEM_SIZE_MIB`. */
export const DEFAULT_MEM_SIZE_MIB = 128;

/** `WRITE_METRICS_PERIOD_MS`. */
export const METRICS_PERIOD_MS = 60_000;

/** The kernel command line Firecracker uses when `boot_args` is omitted. It disables the serial console. */
export const DEFAULT_KERNEL_CMDLINE =
  'reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux i8042.dumbkbd swiotlb=noforce';

/** Linux's `IFNAMSIZ` (16) minus the terminating NUL. */
export const MAX_TAP_NAME_BYTES = 15;

/** The `FcExitCode` values the simulator can produce. */
export const ExitCode = {
  ok: 0,
  genericError: 1,
  badConfiguration: 152,
  argumentParsing: 153,
  sighup: 156,
} as const;
