export * from './examples.js';
export * from './spec-to-wire.js';
export * from './validate.js';
export type * from './vm-spec.js';
