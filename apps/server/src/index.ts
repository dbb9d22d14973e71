export { bootstrap, main as cli } from './cli.js';
export { loadConfig, type ServerConfig } from './config.js';
export { ConnectorRegistry, defaultConnectors } from './connectors.js';
export { type CloudmuxServer, type CreateServerOptions, createLogger, createServer } from './server.js';
