export * from './errors/index.js';
export type * from './wire.js';
