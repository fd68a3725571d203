import {
  closeSync,
  constants,
  fsyncSync,
  ftruncateSync,
  openSync,
  readFileSync,
  statSync,
  writeSync,
} from 'node:fs';
import type {
  Balloon,
  Drive,
  EntropyDevice,
  MemoryHotplugConfig,
  MmdsConfig,
  NetworkInterface,
  Pmem,
  Vsock,
} from '@microvm/core';
import { SIMULATED_SNAPSHOT_VERSION } from './constants.js';
import { describeOsError } from './paths.js';
import type { MachineState } from './validation.js';

/** `SNAPSHOT_MAGIC_ID` of x86_64 snapshots. */
export const X86_64_SNAPSHOT_MAGIC = 0x0710_1984_8664_0000n;

const HEADER_BYTES = 8 + 3 * 2 + 4;
const CRC_BYTES = 8;
const MIB = 1024 * 1024;

/** Everything the simulated VMM needs to come back from a snapshot. */
export interface SimulatedVmState {
  instanceId: string;
  snapshotType: 'Full' | 'Diff';
  createdAtUnixMs: number;
  machineConfig: MachineState;
  /** The guest's kernel command line (the restored guest keeps its console settings). */
  kernelCommandLine: string;
  drives: Drive[];
  networkInterfaces: NetworkInterface[];
  pmem: Pmem[];
  vsock: Vsock | undefined;
  balloon: Balloon | undefined;
  entropy: EntropyDevice | undefined;
  mmdsConfig: MmdsConfig | undefined;
  memoryHotplug: Required<MemoryHotplugConfig> | undefined;
  /** Size of the memory file the snapshot needs. */
  memorySizeBytes: number;
  /** Guest uptime when the snapshot was taken. */
  guestUptimeMs: number;
}

export interface SnapshotFormatVersion {
  major: number;
  minor: number;
  patch: number;
}

/** A vmstate file that cannot be used; the message is the reason, as Firecracker words it. */
export class SnapshotFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SnapshotFileError';
  }
}

// CRC-64/XZ (ECMA-182 polynomial, reflected), the checksum appended to every vmstate file.
const CRC64_TABLE = (() => {
  const polynomial = 0xc96c5795d7870f42n;
  const table: bigint[] = [];
  for (let byte = 0n; byte < 256n; byte += 1n) {
    let crc = byte;
    for (let bit = 0; bit < 8; bit += 1) crc = crc & 1n ? (crc >> 1n) ^ polynomial : crc >> 1n;
    table.push(crc);
  }
  return table;
})();

export function crc64(data: Uint8Array): bigint {
  let crc = 0xffffffffffffffffn;
  for (const byte of data) {
    crc = (CRC64_TABLE[Number((crc ^ BigInt(byte)) & 0xffn)] as bigint) ^ (crc >> 8n);
  }
  return crc ^ 0xffffffffffffffffn;
}

export function formatSnapshotVersion(version: SnapshotFormatVersion): string {
  return `v${version.major}.${version.minor}.${version.patch}`;
}

/** Serializes the state: magic, format version, JSON state, CRC64 of all that. */
export function encodeVmState(state: SimulatedVmState): Buffer {
  const payload = Buffer.from(JSON.stringify(state), 'utf8');
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeBigUInt64LE(X86_64_SNAPSHOT_MAGIC, 0);
  header.writeUInt16LE(SIMULATED_SNAPSHOT_VERSION.major, 8);
  header.writeUInt16LE(SIMULATED_SNAPSHOT_VERSION.minor, 10);
  header.writeUInt16LE(SIMULATED_SNAPSHOT_VERSION.patch, 12);
  header.writeUInt32LE(payload.length, 14);
  const body = Buffer.concat([header, payload]);
  const trailer = Buffer.alloc(CRC_BYTES);
  trailer.writeBigUInt64LE(crc64(body), 0);
  return Buffer.concat([body, trailer]);
}

/** Reads only the header: `--describe-snapshot`. */
export function decodeSnapshotVersion(data: Buffer): SnapshotFormatVersion {
  if (data.length < HEADER_BYTES)
    throw new SnapshotFileError('Snapshot I/O error: failed to fill whole buffer');
  const magic = data.readBigUInt64LE(0);
  if (magic !== X86_64_SNAPSHOT_MAGIC) {
    throw new SnapshotFileError(`Magic value does not match arch: 0x${magic.toString(16).padStart(16, '0')}`);
  }
  return { major: data.readUInt16LE(8), minor: data.readUInt16LE(10), patch: data.readUInt16LE(12) };
}

/** Checks magic, format version and CRC, then returns the state. */
export function decodeVmState(data: Buffer): SimulatedVmState {
  const version = decodeSnapshotVersion(data);
  if (
    version.major !== SIMULATED_SNAPSHOT_VERSION.major ||
    version.minor > SIMULATED_SNAPSHOT_VERSION.minor
  ) {
    throw new SnapshotFileError(
      `Snapshot data version ${formatSnapshotVersion(version).slice(1)} is not supported by this Firecracker (supports ${formatSnapshotVersion(SIMULATED_SNAPSHOT_VERSION).slice(1)})`,
    );
  }
  const payloadLength = data.readUInt32LE(14);
  const bodyLength = HEADER_BYTES + payloadLength;
  if (data.length !== bodyLength + CRC_BYTES) {
    throw new SnapshotFileError('Snapshot I/O error: failed to fill whole buffer');
  }
  const body = data.subarray(0, bodyLength);
  const stored = data.readBigUInt64LE(bodyLength);
  const computed = crc64(body);
  if (stored !== computed) throw new SnapshotFileError(`CRC64 validation failed: ${computed}`);
  try {
    return JSON.parse(body.subarray(HEADER_BYTES).toString('utf8')) as SimulatedVmState;
  } catch (error) {
    throw new SnapshotFileError(`Snapshot serialization error: ${(error as Error).message}`);
  }
}

/** Writes the vmstate file: truncating an existing one, then fsync, like Firecracker. */
export function writeVmStateFile(hostPath: string, state: SimulatedVmState): void {
  const fileDescriptor = openSync(
    hostPath,
    constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC,
    0o600,
  );
  try {
    writeSync(fileDescriptor, encodeVmState(state));
    fsyncSync(fileDescriptor);
  } finally {
    closeSync(fileDescriptor);
  }
}

/** Reads and verifies a vmstate file; errors read like Firecracker's `SnapshotStateFromFile` errors. */
export function readVmStateFile(hostPath: string): SimulatedVmState {
  let data: Buffer;
  try {
    data = readFileSync(hostPath);
  } catch (error) {
    throw new SnapshotFileError(`Failed to open snapshot file: ${describeOsError(error)}`);
  }
  try {
    return decodeVmState(data);
  } catch (error) {
    throw new SnapshotFileError(`Failed to load snapshot state from file: ${(error as Error).message}`);
  }
}

/**
 * Writes the guest memory file: exactly the guest's size, sparse (the simulated guest's pages are all zero,
 * so nothing but the length is written).
 */
export function writeMemoryFile(hostPath: string, sizeBytes: number): void {
  const fileDescriptor = openSync(hostPath, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC, 0o600);
  try {
    ftruncateSync(fileDescriptor, sizeBytes);
  } finally {
    closeSync(fileDescriptor);
  }
}

/** The memory a VM needs: its RAM plus the hotpluggable region. */
export function guestMemoryBytes(memSizeMib: number, hotplugTotalMib = 0): number {
  return (memSizeMib + hotplugTotalMib) * MIB;
}

/** Checks that a `File` memory backend can back the restored guest. */
export function checkMemoryFile(hostPath: string, expectedBytes: number): void {
  let size: number;
  try {
    size = statSync(hostPath).size;
    // Firecracker maps the file; it must be readable.
    closeSync(openSync(hostPath, constants.O_RDONLY));
  } catch (error) {
    throw new SnapshotFileError(`Failed to load guest memory: ${describeOsError(error)}`);
  }
  if (size !== expectedBytes) {
    throw new SnapshotFileError(
      `Failed to load guest memory: the memory file is ${size} bytes, but the snapshot's guest memory regions need ${expectedBytes} bytes`,
    );
  }
}

/** Reads the format version of a vmstate file: `--describe-snapshot`. */
export function describeSnapshotFile(hostPath: string): string {
  let data: Buffer;
  try {
    data = readFileSync(hostPath);
  } catch (error) {
    throw new SnapshotFileError(`Failed to open snapshot file: ${describeOsError(error)}`);
  }
  return formatSnapshotVersion(decodeSnapshotVersion(data));
}
