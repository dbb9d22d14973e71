/**
 * The SQL credential store under two "processes" (two store handles on one database, two
 * refreshers): a single-use refresh token is spent exactly once, on SQLite and on PostgreSQL.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import {
  createKeyring,
  createSecretBox,
  type OAuth2Spec,
  refreshAccessToken,
  TokenRefresher,
} from '@cloudmux/core';
import { makeTempDir } from '@cloudmux/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { SqlCredentialStore } from '../src/store/credentials.js';
import { dropPgSchema, openStore } from '../src/store/db.js';
import { Store } from '../src/store/store.js';
import { PG_URL, STORE_KINDS } from './harness.js';

const cleanups: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
});

async function tokenServer(hold: Promise<void>) {
  const valid = new Set(['r1']);
  const spends: string[] = [];
  let n = 1;
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', async () => {
      const rt = new URLSearchParams(body).get('refresh_token') ?? '';
      spends.push(rt);
      await hold;
      res.setHeader('content-type', 'application/json');
      if (!valid.delete(rt)) {
        res.statusCode = 400;
        res.end(JSON.stringify({ error: 'invalid_grant' }));
        return;
      }
      n += 1;
      valid.add(`r${n}`);
      res.end(JSON.stringify({ access_token: `at${n}`, refresh_token: `r${n}`, expires_in: 3600 }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  cleanups.push(() => new Promise((r) => server.close(() => r())));
  const address = server.address() as { port: number };
  return { url: `http://127.0.0.1:${address.port}/token`, spends };
}

describe.each(STORE_KINDS)('SQL credential store on %s', (kind) => {
  it('two processes racing on one single-use refresh token spend it once', async () => {
    const dir = await makeTempDir();
    cleanups.push(dir.remove);
    const schema = `cm_cred_${randomBytes(4).toString('hex')}`;
    const open = () =>
      kind === 'sqlite'
        ? openStore({ sqlitePath: join(dir.path, 'shared.db') })
        : openStore({ databaseUrl: PG_URL, pgSchema: schema });
    const handleA = await open();
    const handleB = await open();
    cleanups.push(async () => {
      await handleA.close();
      await handleB.close();
      if (kind === 'postgres') await dropPgSchema(PG_URL, schema);
    });
    const box = createSecretBox({
      keys: createKeyring(`1:${randomBytes(32).toString('base64url')}`),
      purpose: 'credentials',
    });
    const storeA = new Store(handleA.db, box);
    const storeB = new Store(handleB.db, box);
    const { app } = await storeA.createApp('oauth');
    const account = await storeA.createAccount({
      appId: app.id,
      service: 'oauthsvc',
      account: 'a',
      credentials: { access_token: 'at1', refresh_token: 'r1', expires_at: Date.now() - 1000 },
    });
    let release!: () => void;
    const hold = new Promise<void>((r) => {
      release = r;
    });
    const token = await tokenServer(hold);
    const spec: OAuth2Spec = {
      type: 'oauth2',
      authorizeUrl: 'https://auth.example/a',
      tokenUrl: token.url,
      scopes: [],
    };
    const exchange = (rt: string) =>
      refreshAccessToken(spec, rt, { client: { clientId: 'id', clientSecret: 's' } });
    const processA = new TokenRefresher({
      store: new SqlCredentialStore(handleA.db, storeA),
      pollIntervalMs: 20,
    });
    const processB = new TokenRefresher({
      store: new SqlCredentialStore(handleB.db, storeB),
      pollIntervalMs: 20,
    });
    const a = processA.getFresh(String(account.id), exchange);
    const b = processB.getFresh(String(account.id), exchange);
    while (token.spends.length === 0) await new Promise((r) => setTimeout(r, 10));
    release();
    const [ra, rb] = await Promise.all([a, b]);
    expect(token.spends).toEqual(['r1']);
    expect(ra.credentials.access_token).toBe('at2');
    expect(rb.credentials.access_token).toBe('at2');
    const stored = await storeB.getAccountById(Number(account.id));
    expect(stored?.credentials_version).toBe(2);
    expect(stored?.refresh_lease_owner).toBeNull();
    expect(storeB.decryptCredentials(stored!).refresh_token).toBe('r2');
  });

  it('a dead refresh grant marks the account inactive with the reason', async () => {
    const schema = `cm_cred_${randomBytes(4).toString('hex')}`;
    const dir = await makeTempDir();
    cleanups.push(dir.remove);
    const handle =
      kind === 'sqlite'
        ? await openStore({ sqlitePath: join(dir.path, 'x.db') })
        : await openStore({ databaseUrl: PG_URL, pgSchema: schema });
    cleanups.push(async () => {
      await handle.close();
      if (kind === 'postgres') await dropPgSchema(PG_URL, schema);
    });
    const box = createSecretBox({
      keys: createKeyring(`1:${randomBytes(32).toString('base64url')}`),
      purpose: 'credentials',
    });
    const store = new Store(handle.db, box);
    const { app } = await store.createApp('oauth');
    const account = await store.createAccount({
      appId: app.id,
      service: 'oauthsvc',
      account: 'a',
      credentials: { access_token: 'at1', refresh_token: 'revoked', expires_at: Date.now() - 1000 },
    });
    const token = await tokenServer(Promise.resolve());
    const spec: OAuth2Spec = {
      type: 'oauth2',
      authorizeUrl: 'https://auth.example/a',
      tokenUrl: token.url,
      scopes: [],
    };
    const refresher = new TokenRefresher({
      store: new SqlCredentialStore(handle.db, store),
      pollIntervalMs: 20,
    });
    await expect(
      refresher.getFresh(String(account.id), (rt) =>
        refreshAccessToken(spec, rt, { client: { clientId: 'id' } }),
      ),
    ).rejects.toMatchObject({
      code: 'service_unauthorized',
    });
    const row = await store.getAccountById(Number(account.id));
    expect(row?.active).toBe(0);
    expect(row?.inactive_reason).toMatch(/invalid_grant|refresh/i);
  });
});
