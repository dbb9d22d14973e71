import { defineConnector, type NetworkGuard, type RetryPolicy } from '@cloudmux/core';
import * as z from 'zod';
import pkg from '../package.json' with { type: 'json' };
import { FtpSession } from './client.js';
import { ftpCredentials, type ResolvedCredentials, resolveCredentials } from './credentials.js';
import { type PoolOptions, SessionPool } from './pool.js';
import { FtpStorage } from './storage.js';

export { FtpSession, parseEpsv, parsePasv } from './client.js';
export type { FtpCredentials, FtpCredentialsInput, ResolvedCredentials } from './credentials.js';
export { ftpCredentials, parseDomain, resolveCredentials } from './credentials.js';
export { parseList, parseMlsd, parseMlstReply } from './listing.js';
export { UPLOAD_PREFIX } from './paths.js';
export type { PoolOptions, PoolStats } from './pool.js';
export { SessionPool } from './pool.js';
export { FtpStorage } from './storage.js';

/** Pooled control connections per account, and how long an idle one stays open. */
export const POOL_MAX = 4;
export const POOL_IDLE_MS = 60_000;

export interface CreateFtpStorageOptions {
  timeoutMs: number;
  retry?: RetryPolicy;
  pool?: Partial<PoolOptions>;
  /** False: PASV only. */
  epsv?: boolean;
  forceList?: boolean;
}

/** The storage and its session pool for one account (what `create` builds; tests build it directly). */
export function createFtpStorage(
  net: NetworkGuard,
  settings: ResolvedCredentials,
  options: CreateFtpStorageOptions,
): { storage: FtpStorage; pool: SessionPool } {
  const pool = new SessionPool(
    () =>
      FtpSession.open({
        net,
        host: settings.host,
        port: settings.port,
        username: settings.username,
        password: settings.password,
        tls: settings.tls,
        rejectUnauthorized: settings.rejectUnauthorized,
        ca: settings.ca,
        timeoutMs: options.timeoutMs,
        ...(options.epsv === false ? { epsv: false } : {}),
      }),
    { max: POOL_MAX, idleMs: POOL_IDLE_MS, ...options.pool },
  );
  const storage = new FtpStorage({
    basePath: settings.basePath,
    pool,
    ...(options.forceList ? { forceList: true } : {}),
    ...(options.retry ? { retry: options.retry } : {}),
  });
  return { storage, pool };
}

/** FTP and explicit FTPS (AUTH TLS) servers: the user's own, so `self_hosted`. */
export const ftp = defineConnector({
  service: 'ftp',
  name: 'FTP',
  version: pkg.version,
  category: 'storage',
  apis: ['storage'],
  auth: { type: 'protocol' },
  network: 'self_hosted',
  credentials: ftpCredentials,
  // Raw ids are paths from the base path, starting with `/`.
  rawId: {
    attributes: z.object({ id: z.string().startsWith('/') }),
    toRawId: (attributes) => String(attributes.id),
  },
  create: (ctx) => {
    const { storage, pool } = createFtpStorage(ctx.net, resolveCredentials(ctx.credentials), {
      timeoutMs: ctx.policies.timeoutMs,
      retry: ctx.policies.retry,
    });
    return {
      storage,
      validate: () => storage.validate(),
      dispose: () => pool.dispose(),
    };
  },
});

export default ftp;
