export * from './facts.js';
export * from './firecracker-vm-provider.js';
export type * from './hooks.js';
export * from './in-memory-vm-provider.js';
export * from './lease-store.js';
export * from './lifecycle.js';
export type { SnapshotRecord, VmRecord } from './state-store.js';
export * from './types.js';
