import { defineConnector } from '@cloudmux/core';
import * as z from 'zod';
import pkg from '../package.json' with { type: 'json' };
import { FtpSession } from './client.js';
import { ftpCredentials, resolveCredentials } from './credentials.js';
import { SessionPool } from './pool.js';
import { FtpStorage } from './storage.js';

export { FtpSession, parseEpsv, parsePasv } from './client.js';
export { ftpCredentials, parseDomain, resolveCredentials } from './credentials.js';
export type { FtpCredentials, FtpCredentialsInput, ResolvedCredentials } from './credentials.js';
export { SessionPool } from './pool.js';
export type { PoolStats } from './pool.js';
export { FtpStorage } from './storage.js';
export { UPLOAD_PREFIX } from './paths.js';
export { parseList, parseMlsd, parseMlstReply } from './listing.js';

/** Pooled control connections per account, and how long an idle one stays open. */
export const POOL_MAX = 4;
export const POOL_IDLE_MS = 60_000;

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
    const settings = resolveCredentials(ctx.credentials);
    const pool = new SessionPool(
      () =>
        FtpSession.open({
          net: ctx.net,
          host: settings.host,
          port: settings.port,
          username: settings.username,
          password: settings.password,
          tls: settings.tls,
          rejectUnauthorized: settings.rejectUnauthorized,
          ca: settings.ca,
          timeoutMs: ctx.policies.timeoutMs,
        }),
      { max: POOL_MAX, idleMs: POOL_IDLE_MS },
    );
    const storage = new FtpStorage({ basePath: settings.basePath, pool });
    return {
      storage,
      validate: () => storage.validate(),
      dispose: () => pool.dispose(),
    };
  },
});

export default ftp;
