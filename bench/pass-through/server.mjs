// The Cloudmux server for the pass-through benchmark, in its own process so its memory is
// measured alone. It serves one extra connector whose pass-through target is the account's own
// host (the loopback upstream of the benchmark), and samples its RSS every 20 ms.
import { LocalStorage, local } from '@cloudmux/connector-local';
import { defineConnector } from '@cloudmux/core';
import { createLogger, createServer, loadConfig } from '@cloudmux/server';
import * as z from 'zod';

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
let peak = 0;
const sample = () => {
  peak = Math.max(peak, process.memoryUsage().rss);
};
setInterval(sample, 20).unref();
process.on('message', async (message) => {
  if (message === 'reset') {
    global.gc?.();
    await new Promise((r) => setTimeout(r, 200));
    peak = process.memoryUsage().rss;
    process.send({ type: 'reset', rss: peak });
  } else if (message === 'peak') {
    sample();
    process.send({ type: 'peak', rss: peak });
  } else if (message === 'stop') {
    await server.close();
    process.exit(0);
  }
});
process.send({ type: 'ready', url, apiKey, appId: app.id });
