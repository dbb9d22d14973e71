/**
 * Composition root: configuration → store, keys, codecs, limiter, connectors → Fastify app.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import {
  type AnyConnectorDefinition,
  type Clock,
  type Logger,
  RateLimiter,
  createIdCodec,
  createPageTokens,
  createSecretBox,
} from '@cloudmux/core';
import type { FastifyInstance } from 'fastify';
import pino, { type Logger as PinoLogger } from 'pino';
import type { ServerConfig } from './config.js';
import { ConnectorRegistry, defaultConnectors } from './connectors.js';
import { buildApp } from './http/app.js';
import type { ServerDeps } from './http/deps.js';
import { EventJournal } from './journal.js';
import { loadKeys } from './keys.js';
import { ConnectorRuntime } from './runtime.js';
import { openStore } from './store/db.js';
import { Store } from './store/store.js';
import { extraRoutes } from './routes/index.js';

export interface CreateServerOptions {
  connectors?: readonly AnyConnectorDefinition[];
  /** Injected clock for the rate limiter (tests drive time by hand). */
  clock?: Clock;
  logger?: PinoLogger;
}

export interface CloudmuxServer {
  app: FastifyInstance;
  deps: ServerDeps;
  listen(): Promise<string>;
  close(): Promise<void>;
}

/** Paths and header values that must never reach a log line. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-kloudless-raw-headers"]',
  'headers.authorization',
  '*.password',
  '*.token',
  '*.refresh_token',
  '*.access_token',
  '*.client_secret',
  '*.api_key',
  '*.secret',
];

export function createLogger(level: string): PinoLogger {
  return pino({
    level,
    base: { service: 'cloudmux' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    serializers: {
      req: (req: { method: string; url: string; id: string; ip?: string }) => ({ method: req.method, url: redactUrl(req.url), ip: req.ip }),
    },
  });
}

/** Link and token values in query strings are secrets too. */
function redactUrl(url: string): string {
  return url.replace(/([?&](?:password|token|access_token|code|client_secret|state)=)[^&]*/gi, '$1[redacted]');
}

export async function createServer(config: ServerConfig, options: CreateServerOptions = {}): Promise<CloudmuxServer> {
  const logger = options.logger ?? createLogger(config.logLevel);
  mkdirSync(config.dataDir, { recursive: true });
  mkdirSync(join(config.dataDir, 'tmp'), { recursive: true });
  const keys = loadKeys(config.dataDir, config.secretKey);
  const storeHandle = await openStore(
    config.databaseUrl
      ? { databaseUrl: config.databaseUrl, ...(config.databaseSchema ? { pgSchema: config.databaseSchema } : {}) }
      : { sqlitePath: join(config.dataDir, 'cloudmux.db') },
  );
  const store = new Store(storeHandle.db, createSecretBox({ keys: keys.keyring, purpose: 'credentials' }));
  const registry = new ConnectorRegistry(options.connectors ?? defaultConnectors);
  const log = logger as unknown as Logger;
  const deps: ServerDeps = {
    config,
    storeHandle,
    store,
    registry,
    runtime: new ConnectorRuntime(registry, store, config, log),
    ids: createIdCodec({ keys: keys.keyring, version: keys.idsVersion }),
    pages: createPageTokens({ keys: keys.keyring }),
    limiter: new RateLimiter({ ...config.rateLimit, ...(options.clock ? { clock: options.clock } : {}) }),
    keys,
    journal: new EventJournal(storeHandle.db),
    log,
  };
  const app = buildApp(deps, { logger, plugins: extraRoutes });
  let closed = false;
  return {
    app,
    deps,
    listen: async () => {
      await app.listen({ port: config.port, host: config.host });
      const address = app.server.address();
      return typeof address === 'object' && address ? `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}` : String(address);
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await app.close();
      await deps.runtime.close();
      await storeHandle.close();
    },
  };
}
