export * from './api-error.js';
export * from './codes.js';
export * from './lifecycle-errors.js';
export * from './microvm-error.js';
export * from './process-exit-error.js';
export * from './timeout-error.js';
export * from './validation-error.js';
