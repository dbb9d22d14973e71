/**
 * Composition root: configuration → store, keys, codecs, limiter, connectors → Fastify app.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AnyConnectorDefinition,
  type Clock,
  type CreateConnectorContextOptions,
  createIdCodec,
  createPageTokens,
  createSecretBox,
  type Logger,
  RateLimiter,
} from '@cloudmux/core';
import type { FastifyInstance } from 'fastify';
import type { Logger as PinoLogger } from 'pino';
import type { ServerConfig } from './config.js';
import { ConnectorRegistry, defaultConnectors } from './connectors.js';
import { buildApp } from './http/app.js';
import type { ServerDeps } from './http/deps.js';
import { EventJournal } from './journal.js';
import { loadKeys } from './keys.js';
import { createLogger } from './ops/logging.js';
import { RedisBucketStore } from './ops/redis-buckets.js';
import { extraRoutes } from './routes/index.js';
import { registerStorageTasks } from './routes/storage.js';
import { ConnectorRuntime } from './runtime.js';
import { openStore } from './store/db.js';
import { Store } from './store/store.js';
import { TaskRunner } from './tasks.js';
import { ChangeWatchers } from './watchers.js';
import { attachWebhooks } from './webhooks/index.js';

export interface CreateServerOptions {
  connectors?: readonly AnyConnectorDefinition[];
  /** Injected clock for the rate limiter (tests drive time by hand). */
  clock?: Clock;
  logger?: PinoLogger;
  /** Per-connector overrides of the connector context (tests: a guard with a fake resolver). */
  contextOverrides?: (
    definition: AnyConnectorDefinition,
  ) => Partial<CreateConnectorContextOptions> | undefined;
}

export interface CloudmuxServer {
  app: FastifyInstance;
  deps: ServerDeps;
  listen(): Promise<string>;
  close(): Promise<void>;
}

export { createLogger, REDACT_PATHS } from './ops/logging.js';

export async function createServer(
  config: ServerConfig,
  options: CreateServerOptions = {},
): Promise<CloudmuxServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  mkdirSync(config.dataDir, { recursive: true });
  mkdirSync(join(config.dataDir, 'tmp'), { recursive: true });
  const keys = loadKeys(config.dataDir, config.secretKey);
  const storeHandle = await openStore(
    config.databaseUrl
      ? {
          databaseUrl: config.databaseUrl,
          ...(config.databaseSchema ? { pgSchema: config.databaseSchema } : {}),
        }
      : { sqlitePath: join(config.dataDir, 'cloudmux.db') },
  );
  const store = new Store(storeHandle.db, createSecretBox({ keys: keys.keyring, purpose: 'credentials' }));
  const registry = new ConnectorRegistry(options.connectors ?? defaultConnectors);
  const log = logger as unknown as Logger;
  const runtime = new ConnectorRuntime(registry, store, config, log, options.contextOverrides);
  const journal = new EventJournal(storeHandle.db);
  // REDIS_URL: one bucket per account across every instance; otherwise buckets are per process.
  const buckets = config.redisUrl
    ? new RedisBucketStore({
        url: config.redisUrl,
        ...(config.redisPrefix ? { prefix: config.redisPrefix } : {}),
        ...(options.clock ? { clock: options.clock } : {}),
        log,
      })
    : undefined;
  const deps: ServerDeps = {
    config,
    storeHandle,
    store,
    registry,
    runtime,
    ids: createIdCodec({ keys: keys.keyring, version: keys.idsVersion }),
    pages: createPageTokens({ keys: keys.keyring }),
    limiter: new RateLimiter({
      ...config.rateLimit,
      ...(options.clock ? { clock: options.clock } : {}),
      ...(buckets ? { store: buckets } : {}),
    }),
    keys,
    journal,
    watchers: new ChangeWatchers(store, runtime, journal, log),
    tasks: new TaskRunner(storeHandle.db, storeHandle.dialect, log, {
      leaseMs: config.taskLeaseSeconds * 1000,
    }),
    log,
  };
  registerStorageTasks(deps);
  const webhooks = attachWebhooks(deps, options.clock ? { clock: options.clock } : {});
  const app = buildApp(deps, { logger, plugins: extraRoutes });
  let closed = false;
  return {
    app,
    deps,
    listen: async () => {
      await app.listen({ port: config.port, host: config.host });
      // Tasks interrupted by a previous crash are picked up here (resumed or failed).
      deps.tasks.start();
      // Outbox rows left by a previous process are delivered from here on.
      webhooks.start();
      // Watchers start in the background: a big local tree must not delay serving.
      void deps.watchers
        .startAll()
        .catch((err: unknown) => log.warn({ err }, 'starting change watchers failed'));
      const address = app.server.address();
      return typeof address === 'object' && address
        ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`
        : String(address);
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
      await deps.tasks.stop();
      await deps.watchers.close();
      await webhooks.stop();
      await deps.runtime.close();
      await buckets?.close();
      await storeHandle.close();
    },
  };
}
