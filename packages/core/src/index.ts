export * from './errors.js';
export * from './storage.js';
export * from './connector.js';
export type * from './network-types.js';
export * from './context.js';
