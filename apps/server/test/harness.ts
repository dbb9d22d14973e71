/**
 * Black-box harness: a real server on a random loopback port, on SQLite (temp data dir) or on the
 * machine's PostgreSQL in a throwaway schema, with one app, its API key and a `local` account.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { local } from '@cloudmux/connector-local';
import type { AnyConnectorDefinition, Clock } from '@cloudmux/core';
import { freePort, makeTempDir, type TempDir } from '@cloudmux/testkit';
import pino from 'pino';
import { loadConfig } from '../src/config.js';
import { type CloudmuxServer, type CreateServerOptions, createServer } from '../src/server.js';
import { dropPgSchema } from '../src/store/db.js';

export type StoreKind = 'sqlite' | 'postgres';
export const STORE_KINDS: StoreKind[] = ['sqlite', 'postgres'];
export const PG_URL = process.env.CLOUDMUX_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

export interface TestApp {
  appId: string;
  apiKey: string;
  accountId: number;
  accountRoot: string;
  token: string;
}

export interface TestServer {
  url: string;
  base: string;
  server: CloudmuxServer;
  dataDir: TempDir;
  apps: TestApp[];
  /** fetch relative to the server URL with an Authorization header. */
  call(path: string, init?: RequestInit & { auth?: string | null; json?: unknown }): Promise<Response>;
  newApp(name?: string): Promise<TestApp>;
  newLocalAccount(app: TestApp, name?: string): Promise<{ accountId: number; root: string; token: string }>;
  close(): Promise<void>;
}

export interface StartOptions {
  store: StoreKind;
  clock?: Clock;
  connectors?: readonly AnyConnectorDefinition[];
  env?: Record<string, string>;
  contextOverrides?: CreateServerOptions['contextOverrides'];
}

export async function startTestServer(options: StartOptions): Promise<TestServer> {
  const dataDir = await makeTempDir('cloudmux-server-');
  const port = await freePort();
  const schema = `cm_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const env: Record<string, string> = {
    PORT: String(port),
    HOST: '127.0.0.1',
    CLOUDMUX_DATA_DIR: dataDir.path,
    CLOUDMUX_LOCAL_ROOTS: join(dataDir.path, 'files'),
    // Tests other than the limiter's own run without it; that one uses the default 10/s with a fake clock.
    CLOUDMUX_RATE_LIMIT: options.clock ? '10:10' : '100000:100000',
    ...(options.store === 'postgres' ? { DATABASE_URL: PG_URL, CLOUDMUX_DATABASE_SCHEMA: schema } : {}),
    ...options.env,
  };
  const config = loadConfig({}, env);
  const server = await createServer(config, {
    ...(options.clock ? { clock: options.clock } : {}),
    // The harness's own accounts are `local` ones: it is always installed.
    ...(options.connectors
      ? { connectors: [local, ...options.connectors.filter((c) => c.service !== 'local')] }
      : {}),
    ...(options.contextOverrides ? { contextOverrides: options.contextOverrides } : {}),
    logger: pino({ level: process.env.CLOUDMUX_TEST_LOG ?? 'silent' }),
  });
  const url = await server.listen();
  const apps: TestApp[] = [];

  const call: TestServer['call'] = (path, init = {}) => {
    const headers = new Headers(init.headers);
    const auth = init.auth === undefined ? (apps[0] ? `APIKey ${apps[0].apiKey}` : null) : init.auth;
    if (auth) headers.set('authorization', auth);
    let body = init.body;
    if (init.json !== undefined) {
      headers.set('content-type', 'application/json');
      body = JSON.stringify(init.json);
    }
    const { auth: _a, json: _j, ...rest } = init;
    return fetch(`${url}${path}`, {
      ...rest,
      headers,
      ...(body !== undefined ? { body, duplex: 'half' } : {}),
    } as RequestInit);
  };

  const newLocalAccount: TestServer['newLocalAccount'] = async (app, name = 'Local test') => {
    const root = join(dataDir.path, 'files', randomBytes(6).toString('hex'));
    mkdirSync(root, { recursive: true });
    const res = await call('/v1/accounts', {
      method: 'POST',
      auth: `APIKey ${app.apiKey}`,
      json: { service: 'local', account: name, root },
    });
    if (res.status !== 201) throw new Error(`account import failed: ${res.status} ${await res.text()}`);
    const account = (await res.json()) as { id: number };
    const tokenRes = await call(`/v1/accounts/${account.id}/tokens`, {
      method: 'POST',
      auth: `APIKey ${app.apiKey}`,
      json: {},
    });
    const token = ((await tokenRes.json()) as { access_token: string }).access_token;
    return { accountId: account.id, root, token };
  };

  const newApp: TestServer['newApp'] = async (name = 'Test app') => {
    const { app, apiKey } = await server.deps.store.createApp(name);
    const partial = { appId: app.id, apiKey, accountId: 0, accountRoot: '', token: '' };
    const local = await newLocalAccount(partial);
    const testApp = { ...partial, accountId: local.accountId, accountRoot: local.root, token: local.token };
    apps.push(testApp);
    return testApp;
  };

  await newApp();
  return {
    url,
    base: `/v1/accounts/${apps[0]!.accountId}`,
    server,
    dataDir,
    apps,
    call,
    newApp,
    newLocalAccount,
    close: async () => {
      await server.close();
      if (options.store === 'postgres') await dropPgSchema(PG_URL, schema);
      await dataDir.remove();
    },
  };
}

/** Uploads bytes the Kloudless way and returns the File object. */
export async function upload(
  t: TestServer,
  base: string,
  name: string,
  data: string | Uint8Array,
  parentId = 'root',
  query = '',
  auth?: string,
) {
  const res = await t.call(`${base}/storage/files${query}`, {
    method: 'POST',
    ...(auth ? { auth } : {}),
    headers: {
      'content-type': 'application/octet-stream',
      'x-kloudless-metadata': JSON.stringify({ name, parent_id: parentId }),
    },
    body: typeof data === 'string' ? data : Buffer.from(data),
  });
  if (res.status !== 201) throw new Error(`upload ${name} failed: ${res.status} ${await res.text()}`);
  return (await res.json()) as Record<string, unknown> & { id: string; name: string; size: number };
}

export async function json<T = Record<string, unknown>>(res: Response): Promise<T> {
  const text = await res.text();
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new Error(`not JSON (${res.status}): ${text.slice(0, 200)}`);
  }
}
