export * from './servers.js';
export * from './streams.js';
export * from './storage-conformance.js';
