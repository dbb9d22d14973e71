// The Cloudmux server for the pass-through benchmark, in its own process so its memory is
// measured alone. It serves one extra connector whose pass-through target is the account's own
// host (the loopback upstream of the benchmark), and samples its RSS every 20 ms
// (../lib/forked-server.mjs).
import { LocalStorage, local } from '@cloudmux/connector-local';
import { defineConnector } from '@cloudmux/core';
import { createLogger, createServer, loadConfig } from '@cloudmux/server';
import * as z from 'zod';
import { serveRssProbe } from '../lib/forked-server.mjs';

const echo = defineConnector({
  service: 'bench_upstream',
  name: 'Benchmark upstream',
  version: '1.0.0',
  category: 'storage',
  apis: ['storage'],
  auth: { type: 'bearer', field: 'token' },
  network: 'self_hosted',
  credentials: z.object({ url: z.string(), token: z.string(), root: z.string() }),
  passThrough: { kind: 'account_host', baseUrl: (c) => c.url },
  create: (ctx) => ({ storage: new LocalStorage(ctx.credentials.root) }),
});

const config = loadConfig({}, { ...process.env, LOG_LEVEL: 'warn' });
const server = await createServer(config, { connectors: [local, echo], logger: createLogger('warn') });
const { app, apiKey } = await server.deps.store.createApp('bench');
const url = await server.listen();
serveRssProbe(() => server.close());
process.send({ type: 'ready', url, apiKey, appId: app.id });
