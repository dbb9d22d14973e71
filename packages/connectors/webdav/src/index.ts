import {
  type AnyConnectorDefinition,
  type ConnectorContext,
  createHttpClient,
  defineConnector,
  staticCredentials,
} from '@cloudmux/core';
import type { AxiosInstance } from 'axios';
import * as z from 'zod';
import pkg from '../package.json' with { type: 'json' };
import { DavClient } from './client.js';
import { type WebDavCredentials, webdavCredentials } from './credentials.js';
import { DavLocation } from './paths.js';
import { WebDavStorage, type WebDavStorageOptions } from './storage.js';
import { GuardedTlsAgent } from './tls-agent.js';

export { DavClient, MAX_MULTISTATUS_BYTES } from './client.js';
export type { WebDavCredentials, WebDavCredentialsInput } from './credentials.js';
export { normalizeRootUrl, webdavCredentials } from './credentials.js';
export { DavLocation, encodeSegment, UPLOAD_PREFIX } from './paths.js';
export { SEARCH_MAX_FOLDERS, WebDavStorage } from './storage.js';
export { GuardedTlsAgent } from './tls-agent.js';
export { type DavResponse, parseMultistatus, parseXml } from './xml.js';

export interface WebDavInstanceParts {
  storage: WebDavStorage;
  http: AxiosInstance;
  /** Set when the account's TLS settings needed an agent of its own (closed by `dispose`). */
  agent: GuardedTlsAgent | null;
}

// `create` needs the definition for its own HTTP client in the TLS case; set right below.
let definitionRef: AnyConnectorDefinition | undefined;

/** The storage for one account (what `create` builds; tests build it directly with options). */
export function createWebDavStorage(
  ctx: ConnectorContext<WebDavCredentials>,
  options: Omit<WebDavStorageOptions, 'client'> = {},
): WebDavInstanceParts {
  const credentials = ctx.credentials;
  const location = new DavLocation(credentials.url, credentials.base_path);
  let http = ctx.http;
  let agent: GuardedTlsAgent | null = null;
  if (credentials.url.startsWith('https:') && (credentials.ca !== undefined || credentials.insecure)) {
    // Core's client has no per-account TLS options yet (see tls-agent.ts): same client, own agent.
    agent = new GuardedTlsAgent(
      ctx.net,
      { ...(credentials.ca ? { ca: credentials.ca } : {}), rejectUnauthorized: !credentials.insecure },
      ctx.policies.timeoutMs,
    );
    http = createHttpClient({
      definition: definitionRef!,
      accountId: ctx.accountId,
      credentials: staticCredentials(credentials as unknown as Record<string, unknown>),
      httpAgent: ctx.net.httpAgent,
      httpsAgent: agent,
      rawHeaders: ctx.rawHeaders,
      ...(ctx.asUser !== undefined ? { asUser: ctx.asUser } : {}),
      log: ctx.log,
    });
  }
  const storage = new WebDavStorage({ client: new DavClient(http, location), ...options });
  return { storage, http, agent };
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
  // Raw ids are paths from the base path, starting with `/`.
  rawId: {
    attributes: z.object({ id: z.string().startsWith('/') }),
    toRawId: (attributes) => String(attributes.id),
  },
  create: (ctx) => {
    const { storage, agent } = createWebDavStorage(ctx);
    let disposed = false;
    return {
      storage,
      validate: () => storage.validate(),
      // HTTP keep-alive sockets are the pool: the guard's agents are shared, an own TLS agent is closed.
      dispose: async () => {
        if (disposed) return;
        disposed = true;
        agent?.destroy();
      },
    };
  },
});
definitionRef = webdav;

export default webdav;
