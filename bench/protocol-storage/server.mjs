// The Cloudmux server for the protocol-storage benchmark: the server's own connector list
// (`defaultConnectors`), in its own process so its RSS is measured alone (../lib/forked-server.mjs).
import { createLogger, createServer, defaultConnectors, loadConfig } from '@cloudmux/server';
import { serveRssProbe } from '../lib/forked-server.mjs';

const config = loadConfig({}, { ...process.env, LOG_LEVEL: 'warn' });
const server = await createServer(config, { connectors: defaultConnectors, logger: createLogger('warn') });
const { apiKey } = await server.deps.store.createApp('bench');
const url = await server.listen();
serveRssProbe(() => server.close());
process.send({ type: 'ready', url, apiKey, services: defaultConnectors.map((c) => c.service) });
