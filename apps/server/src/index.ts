export { createServer, createLogger, type CloudmuxServer, type CreateServerOptions } from './server.js';
export { loadConfig, type ServerConfig } from './config.js';
export { main as cli, bootstrap } from './cli.js';
export { ConnectorRegistry, defaultConnectors } from './connectors.js';
