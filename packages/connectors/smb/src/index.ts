import type { Socket } from 'node:net';
import { CloudmuxError, type ConnectorContext, defineConnector } from '@cloudmux/core';
import * as z from 'zod';
import pkg from '../package.json' with { type: 'json' };
import { toCloudmuxError } from './errors.js';
import { parseBasePath } from './paths.js';
import { type Scheduler, SessionPool } from './pool.js';
import { SmbClient } from './smb2/client.js';
import { SmbStorage } from './storage.js';

export { STAGING_DIR } from './paths.js';
export { type Scheduler, SessionPool } from './pool.js';
export { SmbStorage } from './storage.js';

/** No `/`, `\\` or control characters. */
const noSeparators = (v: string) => ![...v].some((c) => c === '/' || c === '\\' || c.charCodeAt(0) < 0x20);

export const smbCredentials = z.object({
  host: z
    .string()
    .trim()
    .min(1)
    .max(253)
    .refine((v) => noSeparators(v) && !/\s/.test(v), 'host must be a host name or IP address')
    .describe('SMB server host name or IP address'),
  port: z.coerce
    .number()
    .int()
    .min(1)
    .max(65535)
    .default(445)
    .describe('TCP port (SMB over TCP, default 445)'),
  share: z
    .string()
    .trim()
    .min(1)
    .max(80)
    .refine(noSeparators, 'share is a share name, without slashes')
    .describe('Share name, e.g. "projects"'),
  username: z.string().min(1).max(256).describe('User name'),
  password: z.string().max(1024).describe('Password (secret)'),
  domain: z.string().max(256).default('').describe('Domain or workgroup (optional)'),
  base_path: z
    .string()
    .max(4096)
    .default('/')
    .refine((p) => {
      try {
        parseBasePath(p);
        return true;
      } catch {
        return false;
      }
    }, 'base_path must be a folder path inside the share')
    .describe('Folder inside the share used as the account root (optional, default the share root)'),
});

export type SmbCredentials = z.output<typeof smbCredentials>;

export interface SmbConnectorOptions {
  /** Sessions per account (TCP + SMB session + tree). Default 4. */
  maxSessions?: number;
  /** Idle sessions are logged off after this long. Default 60 s. */
  idleMs?: number;
  scheduler?: Scheduler;
  /** Dialects to offer (tests pin one). Default SMB 2.0.2 up to 3.1.1. */
  dialects?: number[];
}

/** Builds the storage and its session pool for one account; the connector's `create` with defaults. */
export function createSmbInstance(ctx: ConnectorContext<SmbCredentials>, options: SmbConnectorOptions = {}) {
  const credentials = ctx.credentials;
  const base = parseBasePath(credentials.base_path);
  const timeoutMs = ctx.policies.timeoutMs;
  const connectTimeoutMs = Math.min(timeoutMs, 20_000);

  const connect = async (): Promise<SmbClient> => {
    // The guard resolves and checks the host and pins the socket to the checked address.
    const connecting = ctx.net.connect({ host: credentials.host, port: credentials.port });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new CloudmuxError(
              'gateway_timeout',
              `No TCP connection to the SMB server within ${connectTimeoutMs} ms.`,
              { service: 'smb' },
            ),
          ),
        connectTimeoutMs,
      );
    });
    let socket: Socket;
    try {
      socket = await Promise.race([connecting, timeout]);
    } catch (err) {
      // A connect that finishes after the timeout must not leak its socket.
      connecting.then(
        (s) => s.destroy(),
        () => undefined,
      );
      throw toCloudmuxError(err);
    } finally {
      clearTimeout(timer);
    }
    try {
      return await SmbClient.open(socket, {
        host: credentials.host,
        share: credentials.share,
        username: credentials.username,
        password: credentials.password,
        domain: credentials.domain,
        timeoutMs,
        ...(options.dialects ? { dialects: options.dialects } : {}),
      });
    } catch (err) {
      socket.destroy();
      throw toCloudmuxError(err);
    }
  };

  const pool = new SessionPool({
    connect,
    maxSessions: options.maxSessions ?? 4,
    idleMs: options.idleMs ?? 60_000,
    ...(options.scheduler ? { scheduler: options.scheduler } : {}),
  });
  const storage = new SmbStorage(pool, base);
  return {
    storage,
    pool,
    validate: () => storage.validate(),
    dispose: () => pool.closeAll(),
  };
}

/** SMB 2/3 file shares (Samba, Windows, NAS), authenticated with NTLMv2. */
export const smb = defineConnector({
  service: 'smb',
  name: 'SMB',
  version: pkg.version,
  category: 'storage',
  apis: ['storage'],
  auth: { type: 'protocol' },
  network: 'self_hosted',
  credentials: smbCredentials,
  // API overview, encode_raw_id for smb: `share_name` and `id` (object path). Native raw ids are
  // paths from the account's base path, starting with `/`.
  rawId: {
    attributes: z.object({ share_name: z.string().min(1), id: z.string().startsWith('/') }),
    toRawId: (attributes) => String(attributes.id),
  },
  create: (ctx) => {
    const { storage, validate, dispose } = createSmbInstance(ctx);
    return { storage, validate, dispose };
  },
});

export default smb;
