export * from './client/index.js';
export * from './errors/index.js';
export * from './model/index.js';
export * from './provider/index.js';
export type * from './wire.js';
