/**
 * Fixtures of the connect-flow tests: a real OAuth 2.0 provider on loopback (oauth2-mock-server)
 * standing in for a service, a test-only OAuth connector pointing at it, a test-only credential
 * connector whose `validate()` accepts one password, and a tiny "application" web server on
 * another loopback port (its own origin) that records where the browser was sent.
 */
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { LocalStorage } from '@cloudmux/connector-local';
import { CloudmuxError, defineConnector } from '@cloudmux/core';
import { OAuth2Server } from 'oauth2-mock-server';
import * as z from 'zod';

export const CLIENT_ID = 'mock-client-id';
export const CLIENT_SECRET = 'mock-client-secret';
export const RIGHT_PASSWORD = 'right-password';

export interface MockProvider {
  url: string;
  /** Query of every authorize request. */
  authorizeRequests: URLSearchParams[];
  /** Body of every token request. */
  tokenRequests: Array<Record<string, string>>;
  /** Authorization header of every userinfo call (the connector using the stored token). */
  userinfoAuth: string[];
  /** When set, the next authorize requests are refused as if the user clicked "Deny". */
  deny: boolean;
  stop(): Promise<void>;
}

export async function startProvider(): Promise<MockProvider> {
  const server = new OAuth2Server();
  await server.issuer.keys.generate('RS256');
  await server.start(0, '127.0.0.1');
  const port = (server.address() as AddressInfo).port;
  const provider: MockProvider = {
    url: `http://127.0.0.1:${port}`,
    authorizeRequests: [],
    tokenRequests: [],
    userinfoAuth: [],
    deny: false,
    stop: () => server.stop(),
  };
  server.service.on('beforeAuthorizeRedirect', (redirect: { url: URL }, req: IncomingMessage) => {
    provider.authorizeRequests.push(new URL(req.url ?? '/', provider.url).searchParams);
    if (provider.deny) {
      // RFC 6749 §4.1.2.1: the user refused; no code.
      redirect.url.searchParams.delete('code');
      redirect.url.searchParams.set('error', 'access_denied');
      redirect.url.searchParams.set('error_description', 'The user said no');
    }
  });
  server.service.on(
    'beforeResponse',
    (_response: unknown, req: IncomingMessage & { body: Record<string, string> }) => {
      provider.tokenRequests.push({ ...req.body });
    },
  );
  server.service.on('beforeUserinfo', (_response: unknown, req: IncomingMessage) => {
    provider.userinfoAuth.push(String(req.headers.authorization ?? ''));
  });
  return provider;
}

export const s256 = (verifier: string) => createHash('sha256').update(verifier, 'ascii').digest('base64url');

/** An OAuth connector on the mock provider; its storage is a local folder, `validate()` calls userinfo. */
export function mockOauthConnector(provider: MockProvider, root: string) {
  mkdirSync(root, { recursive: true });
  return defineConnector({
    service: 'mockoauth',
    name: 'Mock OAuth Drive',
    version: '1.0.0',
    category: 'storage',
    apis: ['storage'],
    auth: {
      type: 'oauth2',
      authorizeUrl: `${provider.url}/authorize`,
      tokenUrl: `${provider.url}/token`,
      scopes: ['files.read', 'offline_access'],
      pkce: true,
    },
    // The provider is on loopback, which a SaaS connector may not reach.
    network: 'self_hosted',
    credentials: z.looseObject({
      access_token: z.string().min(1),
      refresh_token: z.string().optional(),
      expires_at: z.number().optional(),
      token_type: z.string().optional(),
    }),
    create: (ctx) => {
      const storage = new LocalStorage(root);
      return {
        storage,
        validate: async () => {
          await ctx.http.get(`${provider.url}/userinfo`);
        },
      };
    },
  });
}

/** A credential connector (like WebDAV): a password field, a boolean, an enum, a number. */
export function mockCredentialConnector(root: string) {
  mkdirSync(root, { recursive: true });
  return defineConnector({
    service: 'mockdav',
    name: 'Mock DAV',
    version: '1.0.0',
    category: 'storage',
    apis: ['storage'],
    auth: { type: 'basic', usernameField: 'username', passwordField: 'password' },
    network: 'self_hosted',
    credentials: z.object({
      url: z.string().url().describe('Server URL'),
      username: z.string().min(1).describe('Username'),
      password: z.string().min(1).describe('Password (secret)'),
      port: z.coerce.number().int().min(1).max(65535).default(443).describe('Port'),
      verify_tls: z.boolean().default(true).describe('Verify the TLS certificate'),
      mode: z.enum(['basic', 'digest']).optional().describe('Authentication scheme'),
    }),
    create: (ctx) => ({
      storage: new LocalStorage(root),
      validate: async () => {
        if (ctx.credentials.password !== RIGHT_PASSWORD) {
          throw new CloudmuxError('service_unauthorized', `Login failed for ${ctx.credentials.username}.`);
        }
      },
    }),
  });
}

export interface AppSite {
  origin: string;
  /** Query strings the browser arrived with at `/callback`. */
  callbacks: URLSearchParams[];
  setPage(html: string): void;
  stop(): Promise<void>;
}

/** The application's own web server: `/` serves the page under test, `/callback` records and answers. */
export async function startAppSite(): Promise<AppSite> {
  let page = '<!DOCTYPE html><title>app</title>';
  const callbacks: URLSearchParams[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (url.pathname === '/callback') {
      callbacks.push(url.searchParams);
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<!DOCTYPE html><title>callback</title><p id="arrived">back at the app</p>');
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(page);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    origin: `http://127.0.0.1:${port}`,
    callbacks,
    setPage: (html) => {
      page = html;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export const tempRoot = (base: string, name: string) => join(base, name);
