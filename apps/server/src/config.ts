/**
 * Server configuration: each setting comes from a CLI flag, else the environment, else a default.
 */
import { resolve } from 'node:path';

export interface ServerConfig {
  port: number;
  host: string;
  dataDir: string;
  /** Base for `href` and link URLs, without a trailing slash. */
  publicUrl: string;
  /** Directories where `local` accounts may live. */
  localRoots: string[];
  databaseUrl?: string;
  /** PostgreSQL schema (tests use a throwaway one). */
  databaseSchema?: string;
  secretKey?: string;
  redisUrl?: string;
  /** Prefix of every Redis key (`CLOUDMUX_REDIS_PREFIX`, default `cloudmux:`). */
  redisPrefix?: string;
  /** CIDR list restricting every connection connectors open (`CLOUDMUX_ALLOWED_NETWORKS`). */
  allowedNetworks?: string[];
  /** JSON bodies above this are refused (uploads stream and have no limit). */
  bodyLimit: number;
  /** Requests per second and burst per connected account. */
  rateLimit: { requestsPerSecond: number; burst: number };
  logLevel: string;
  /** Seconds in-flight requests get to finish on SIGTERM. */
  shutdownGraceSeconds: number;
  /** Milliseconds between young-generation collections while bodies stream; 0 turns pacing off. */
  gcPaceMs: number;
  /** Multipart staging limit per session, bytes. */
  multipartMaxBytes: number;
  /**
   * The operator's OAuth clients per service, from `CLOUDMUX_OAUTH_<SERVICE>_CLIENT_ID` and
   * `CLOUDMUX_OAUTH_<SERVICE>_CLIENT_SECRET` (service id upper-cased, e.g. `GOOGLE_CALENDAR`).
   */
  oauthClients: Record<string, { clientId: string; clientSecret?: string }>;
  /** How long a task's lease lasts without a heartbeat: how soon a crashed instance's task is picked up. */
  taskLeaseSeconds: number;
  /**
   * What uploads from a URL may fetch (`CLOUDMUX_URL_UPLOAD_NETWORK`): `saas` (default) allows public
   * addresses only; `self_hosted` also private ones (an intranet), never cloud metadata; `none` disables it.
   */
  urlUploadNetwork: 'saas' | 'self_hosted' | 'none';
}

export const FLAGS = {
  port: { env: 'PORT', flag: 'port' },
  host: { env: 'HOST', flag: 'host' },
  dataDir: { env: 'CLOUDMUX_DATA_DIR', flag: 'data-dir' },
  publicUrl: { env: 'CLOUDMUX_PUBLIC_URL', flag: 'public-url' },
  localRoots: { env: 'CLOUDMUX_LOCAL_ROOTS', flag: 'local-roots' },
  databaseUrl: { env: 'DATABASE_URL', flag: 'database-url' },
  databaseSchema: { env: 'CLOUDMUX_DATABASE_SCHEMA', flag: 'database-schema' },
  secretKey: { env: 'CLOUDMUX_SECRET_KEY', flag: 'secret-key' },
  redisUrl: { env: 'REDIS_URL', flag: 'redis-url' },
  allowedNetworks: { env: 'CLOUDMUX_ALLOWED_NETWORKS', flag: 'allowed-networks' },
  bodyLimit: { env: 'CLOUDMUX_BODY_LIMIT', flag: 'body-limit' },
  logLevel: { env: 'LOG_LEVEL', flag: 'log-level' },
} as const;

export type FlagValues = Partial<Record<(typeof FLAGS)[keyof typeof FLAGS]['flag'], string>>;

export function loadConfig(flags: FlagValues = {}, env: NodeJS.ProcessEnv = process.env): ServerConfig {
  const get = (key: keyof typeof FLAGS): string | undefined => {
    const { env: name, flag } = FLAGS[key];
    const value = flags[flag] ?? env[name];
    return value === '' ? undefined : value;
  };
  const port = Number(get('port') ?? 8080);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid PORT: ${get('port')}`);
  const host = get('host') ?? '127.0.0.1';
  const dataDir = resolve(get('dataDir') ?? './data');
  const publicUrl = (get('publicUrl') ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`).replace(
    /\/+$/,
    '',
  );
  try {
    const url = new URL(publicUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('scheme');
  } catch {
    throw new Error(`invalid CLOUDMUX_PUBLIC_URL: ${publicUrl}`);
  }
  const localRoots = (get('localRoots') ?? resolve(dataDir, 'files'))
    .split(':')
    .filter(Boolean)
    .map((p) => resolve(p));
  const allowed = get('allowedNetworks');
  const bodyLimit = Number(get('bodyLimit') ?? 1024 * 1024);
  const config: ServerConfig = {
    port,
    host,
    dataDir,
    publicUrl,
    localRoots,
    bodyLimit,
    rateLimit: parseRateLimit(env.CLOUDMUX_RATE_LIMIT),
    logLevel: get('logLevel') ?? 'info',
    shutdownGraceSeconds: Number(env.CLOUDMUX_SHUTDOWN_GRACE_SECONDS ?? 20),
    gcPaceMs: Number(env.CLOUDMUX_GC_PACE_MS ?? 10),
    multipartMaxBytes: Number(env.CLOUDMUX_MULTIPART_MAX_BYTES ?? 50 * 1024 * 1024 * 1024),
    oauthClients: oauthClientsFrom(env),
    taskLeaseSeconds: Number(env.CLOUDMUX_TASK_LEASE_SECONDS ?? 30),
    urlUploadNetwork: urlUploadNetwork(env.CLOUDMUX_URL_UPLOAD_NETWORK),
  };
  const optional: Array<[keyof ServerConfig, string | undefined]> = [
    ['databaseUrl', get('databaseUrl')],
    ['databaseSchema', get('databaseSchema')],
    ['secretKey', get('secretKey')],
    ['redisUrl', get('redisUrl')],
    ['redisPrefix', env.CLOUDMUX_REDIS_PREFIX],
  ];
  for (const [key, value] of optional)
    if (value !== undefined) (config as unknown as Record<string, unknown>)[key] = value;
  if (allowed !== undefined) config.allowedNetworks = allowed.split(/[\s,]+/).filter(Boolean);
  return config;
}

/** `CLOUDMUX_RATE_LIMIT=<requests per second>[:<burst>]`; Kloudless' default is 10 per second per account. */
function parseRateLimit(value: string | undefined): { requestsPerSecond: number; burst: number } {
  if (!value) return { requestsPerSecond: 10, burst: 10 };
  const match = /^(\d+(?:\.\d+)?)(?::(\d+))?$/.exec(value.trim());
  if (!match || Number(match[1]) <= 0)
    throw new Error(`invalid CLOUDMUX_RATE_LIMIT: ${value} (expected <per second>[:<burst>])`);
  const requestsPerSecond = Number(match[1]);
  return {
    requestsPerSecond,
    burst: match[2] ? Number(match[2]) : Math.max(1, Math.ceil(requestsPerSecond)),
  };
}

function oauthClientsFrom(
  env: NodeJS.ProcessEnv,
): Record<string, { clientId: string; clientSecret?: string }> {
  const clients: Record<string, { clientId: string; clientSecret?: string }> = {};
  for (const [name, value] of Object.entries(env)) {
    const match = /^CLOUDMUX_OAUTH_([A-Z0-9_]+)_CLIENT_ID$/.exec(name);
    if (!match || !value) continue;
    const service = match[1]!.toLowerCase();
    const secret = env[`CLOUDMUX_OAUTH_${match[1]}_CLIENT_SECRET`];
    clients[service] = { clientId: value, ...(secret ? { clientSecret: secret } : {}) };
  }
  return clients;
}

function urlUploadNetwork(value: string | undefined): 'saas' | 'self_hosted' | 'none' {
  if (!value) return 'saas';
  if (value === 'saas' || value === 'self_hosted' || value === 'none') return value;
  throw new Error(`invalid CLOUDMUX_URL_UPLOAD_NETWORK: ${value} (saas, self_hosted or none)`);
}
