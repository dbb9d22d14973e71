export * from './servers.js';
export * from './storage-conformance.js';
export * from './streams.js';
