import { type ConnectorContext, defineConnector } from '@cloudmux/core';
import type { AxiosInstance } from 'axios';
import * as z from 'zod';
import pkg from '../package.json' with { type: 'json' };
import { DavClient } from './client.js';
import { type WebDavCredentials, webdavCredentials } from './credentials.js';
import { DavLocation } from './paths.js';
import { WebDavStorage, type WebDavStorageOptions } from './storage.js';

export { DavClient, MAX_MULTISTATUS_BYTES } from './client.js';
export type { WebDavCredentials, WebDavCredentialsInput } from './credentials.js';
export { normalizeRootUrl, webdavCredentials } from './credentials.js';
export { DavLocation, encodeSegment, UPLOAD_PREFIX } from './paths.js';
export { SEARCH_MAX_FOLDERS, WebDavStorage } from './storage.js';
export { type DavResponse, parseMultistatus, parseXml } from './xml.js';

export interface WebDavInstanceParts {
  storage: WebDavStorage;
  http: AxiosInstance;
}

/** The storage for one account (what `create` builds; tests build it directly with options). */
export function createWebDavStorage(
  ctx: ConnectorContext<WebDavCredentials>,
  options: Omit<WebDavStorageOptions, 'client'> = {},
): WebDavInstanceParts {
  const location = new DavLocation(ctx.credentials.url, ctx.credentials.base_path);
  const storage = new WebDavStorage({ client: new DavClient(ctx.http, location), ...options });
  return { storage, http: ctx.http };
}

/** WebDAV servers (RFC 4918): the user's own, so `self_hosted`. */
export const webdav = defineConnector({
  service: 'webdav',
  name: 'WebDAV',
  version: pkg.version,
  category: 'storage',
  apis: ['storage'],
  auth: { type: 'basic', usernameField: 'username', passwordField: 'password' },
  network: 'self_hosted',
  credentials: webdavCredentials,
  // Pass-through goes to the account's own server, under its WebDAV root.
  passThrough: { kind: 'account_host', baseUrl: (c) => c.url },
  // A private CA or `insecure` applies to every HTTPS connection of the account (core's agents).
  tls: (c) =>
    c.url.startsWith('https:') && (c.ca !== undefined || c.insecure)
      ? { ...(c.ca ? { ca: c.ca } : {}), rejectUnauthorized: !c.insecure }
      : undefined,
  // Raw ids are paths from the base path, starting with `/`.
  rawId: {
    attributes: z.object({ id: z.string().startsWith('/') }),
    toRawId: (attributes) => String(attributes.id),
  },
  create: (ctx) => {
    const { storage } = createWebDavStorage(ctx);
    let disposed = false;
    return {
      storage,
      validate: () => storage.validate(),
      // HTTP keep-alive sockets are the pool; they belong to this account's guard.
      dispose: async () => {
        if (disposed) return;
        disposed = true;
        ctx.net.destroy();
      },
    };
  },
});

export default webdav;
