import { generateKeyPairSync, verify } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AuthSpec,
  createHttpClient,
  InMemoryCredentialStore,
  JWT_BEARER_GRANT,
  ManualClock,
  staticCredentials,
  storedCredentials,
  TokenCache,
  TokenRefresher,
} from '../src/index.js';
import { makeDefinition } from './fixtures/http/definitions.js';
import { rejection } from './fixtures/http/rejection.js';
import { json, startServer, type TestServer } from './fixtures/http/server.js';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});
async function serve(...args: Parameters<typeof startServer>) {
  const s = await startServer(...args);
  servers.push(s);
  return s;
}

const echo = () => serve((_req, res) => json(res, 200, { ok: true }));

function clientFor(
  auth: AuthSpec,
  credentials: Record<string, unknown>,
  extra: Partial<Parameters<typeof createHttpClient>[0]> = {},
) {
  return createHttpClient({
    definition: makeDefinition(auth),
    accountId: 'acc-1',
    credentials: staticCredentials(credentials),
    ...extra,
  });
}

describe('static strategies', () => {
  it('bearer reads its field', async () => {
    const s = await echo();
    await clientFor({ type: 'bearer', field: 'api_token' }, { api_token: 'abc' }).get(s.url);
    expect(s.requests[0]!.headers.authorization).toBe('Bearer abc');
  });

  it('basic encodes UTF-8 user:password', async () => {
    const s = await echo();
    await clientFor(
      { type: 'basic', usernameField: 'user', passwordField: 'pass' },
      { user: 'zoë', pass: 'p:w' },
    ).get(s.url);
    expect(s.requests[0]!.headers.authorization).toBe(
      `Basic ${Buffer.from('zoë:p:w', 'utf8').toString('base64')}`,
    );
  });

  it('api_key in a header with a prefix, and in the query', async () => {
    const s = await echo();
    await clientFor(
      { type: 'api_key', in: 'header', name: 'Authorization', prefix: 'Token token=', field: 'k' },
      { k: 'K1' },
    ).get(s.url);
    expect(s.requests[0]!.headers.authorization).toBe('Token token=K1');
    await clientFor({ type: 'api_key', in: 'query', name: 'api_key', field: 'k' }, { k: 'K/2' }).get(
      `${s.url}/x?a=1`,
    );
    expect(s.requests[1]!.url).toBe('/x?a=1&api_key=K%2F2');
  });

  it('protocol adds nothing', async () => {
    const s = await echo();
    await clientFor({ type: 'protocol' }, {}).get(s.url);
    expect(s.requests[0]!.headers.authorization).toBeUndefined();
  });

  it('a missing credential field is service_unauthorized naming the field, and nothing is sent', async () => {
    const s = await echo();
    const err = await rejection(clientFor({ type: 'bearer', field: 'api_token' }, {}).get(s.url));
    expect(err.code).toBe('service_unauthorized');
    expect(err.message).toContain('api_token');
    expect(s.requests).toHaveLength(0);
  });
});

describe('OAuth client credentials', () => {
  it('caches the token until expiry and re-mints it after a 401', async () => {
    const clock = new ManualClock(1_000_000, { autoAdvance: true });
    let minted = 0;
    const token = await serve((_req, res) => {
      minted++;
      json(res, 200, { access_token: `cc-${minted}`, token_type: 'bearer', expires_in: 3600 });
    });
    const api = await serve((req, res) =>
      req.url === '/reject' && req.headers.authorization === 'Bearer cc-1'
        ? json(res, 401, {})
        : json(res, 200, { auth: req.headers.authorization }),
    );
    const spec: AuthSpec = {
      type: 'oauth2_client_credentials',
      tokenUrl: `${token.url}/token`,
      scopes: ['read', 'write'],
    };
    const tokenCache = new TokenCache({ clock });
    const make = () => clientFor(spec, { client_id: 'cid', client_secret: 'csecret' }, { clock, tokenCache });
    expect((await make().get(api.url)).data.auth).toBe('Bearer cc-1');
    expect((await make().get(api.url)).data.auth).toBe('Bearer cc-1');
    expect(minted).toBe(1);
    expect(Object.fromEntries(new URLSearchParams(token.requests[0]!.body.toString()))).toEqual({
      grant_type: 'client_credentials',
      scope: 'read write',
      client_id: 'cid',
      client_secret: 'csecret',
    });
    // 401 → the cached token is dropped, a new one minted, the request replayed once.
    expect((await make().get(`${api.url}/reject`)).data.auth).toBe('Bearer cc-2');
    expect(minted).toBe(2);
    clock.advance(3600_000);
    expect((await make().get(api.url)).data.auth).toBe('Bearer cc-3');
  });

  it('uses HTTP Basic client authentication when the spec asks for it', async () => {
    const token = await serve((_req, res) => json(res, 200, { access_token: 'b1', expires_in: 60 }));
    const api = await echo();
    const spec: AuthSpec = {
      type: 'oauth2_client_credentials',
      tokenUrl: `${token.url}/t`,
      scopes: [],
      tokenAuthMethod: 'client_secret_basic',
    };
    await clientFor(
      spec,
      {},
      { oauthClient: { clientId: 'app:id', clientSecret: 's&cret' }, tokenCache: new TokenCache() },
    ).get(api.url);
    expect(api.requests[0]!.headers.authorization).toBe('Bearer b1');
    // RFC 6749 §2.3.1: id and secret form-urlencoded, then Basic.
    expect(token.requests[0]!.headers.authorization).toBe(
      `Basic ${Buffer.from('app%3Aid:s%26cret').toString('base64')}`,
    );
    expect(new URLSearchParams(token.requests[0]!.body.toString()).get('client_secret')).toBeNull();
  });
});

describe('service-account JWT', () => {
  it('sends an RS256 jwt-bearer assertion with the right claims and caches the token', async () => {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
    const clock = new ManualClock(Date.parse('2026-05-01T10:00:00Z'));
    const assertions: string[] = [];
    const token = await serve((req, res) => {
      const form = new URLSearchParams(req.body.toString());
      if (form.get('grant_type') === JWT_BEARER_GRANT) assertions.push(form.get('assertion')!);
      json(res, 200, { access_token: 'sa-token', expires_in: 3599, token_type: 'Bearer' });
    });
    const api = await echo();
    const spec: AuthSpec = {
      type: 'service_account_jwt',
      tokenUrl: `${token.url}/token`,
      scopes: ['https://www.googleapis.com/auth/drive', 'email'],
    };
    const creds = {
      client_email: 'svc@proj.iam.gserviceaccount.com',
      private_key: pem,
      private_key_id: 'kid-1',
    };
    const make = () =>
      clientFor(spec, creds, { clock, tokenCache: new TokenCache({ clock }), asUser: 'alice@example.com' });
    const http = make();
    await http.get(api.url);
    await http.get(api.url);
    expect(api.requests.map((r) => r.headers.authorization)).toEqual(['Bearer sa-token', 'Bearer sa-token']);
    expect(assertions).toHaveLength(1);

    const [h, p, sig] = assertions[0]!.split('.') as [string, string, string];
    expect(JSON.parse(Buffer.from(h, 'base64url').toString())).toEqual({
      alg: 'RS256',
      typ: 'JWT',
      kid: 'kid-1',
    });
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    const iat = Date.parse('2026-05-01T10:00:00Z') / 1000;
    expect(claims).toEqual({
      iss: 'svc@proj.iam.gserviceaccount.com',
      aud: `${token.url}/token`,
      scope: 'https://www.googleapis.com/auth/drive email',
      sub: 'alice@example.com',
      iat,
      exp: iat + 3600,
    });
    expect(verify('sha256', Buffer.from(`${h}.${p}`), publicKey, Buffer.from(sig, 'base64url'))).toBe(true);
  });
});

describe('OAuth authorization code (bearer + refresh on 401)', () => {
  it('sends the stored access token and, after a 401, refreshes once and replays', async () => {
    const clock = new ManualClock(5_000_000);
    const store = new InMemoryCredentialStore({ clock });
    store.put('acc-1', { access_token: 'old', refresh_token: 'r1', expires_at: 5_000_000 + 3600_000 });
    let refreshes = 0;
    const tokenServer = await serve((_req, res) => {
      refreshes++;
      json(res, 200, {
        access_token: refreshes === 1 ? 'new' : 'newer',
        refresh_token: `r${refreshes + 1}`,
        expires_in: 3600,
      });
    });
    const api = await serve((req, res) =>
      req.headers.authorization === 'Bearer old'
        ? json(res, 401, { error: 'expired' })
        : json(res, 200, { ok: 1 }),
    );
    const spec: AuthSpec = {
      type: 'oauth2',
      authorizeUrl: 'https://auth.example/authorize',
      tokenUrl: `${tokenServer.url}/token`,
      scopes: ['files'],
    };
    const http = createHttpClient({
      definition: makeDefinition(spec),
      accountId: 'acc-1',
      credentials: storedCredentials(store),
      oauthClient: { clientId: 'cid', clientSecret: 'sec' },
      refresher: new TokenRefresher({ store, clock }),
      clock,
    });
    const res = await http.put(`${api.url}/f`, Buffer.from('body'));
    expect(res.data).toEqual({ ok: 1 });
    expect(api.requests.map((r) => [r.headers.authorization, r.body.toString()])).toEqual([
      ['Bearer old', 'body'],
      ['Bearer new', 'body'],
    ]);
    expect(refreshes).toBe(1);
    const form = new URLSearchParams(tokenServer.requests[0]!.body.toString());
    expect(Object.fromEntries(form)).toEqual({
      grant_type: 'refresh_token',
      refresh_token: 'r1',
      client_id: 'cid',
      client_secret: 'sec',
    });
    const stored = await store.load('acc-1');
    expect(stored?.credentials.refresh_token).toBe('r2');
    expect(stored?.version).toBe(2);

    // A second 401 with the new token is an error: one refresh per request, no loop.
    const always401 = await serve((_req, res) => json(res, 401, {}));
    const err = await rejection(http.get(always401.url));
    expect(err.code).toBe('service_unauthorized');
    expect(always401.requests.map((r) => r.headers.authorization)).toEqual(['Bearer new', 'Bearer newer']);
    expect(refreshes).toBe(2);
    expect(new URLSearchParams(tokenServer.requests[1]!.body.toString()).get('refresh_token')).toBe('r2');
  });

  it('refuses to build an oauth2 client over static credentials', () => {
    const spec: AuthSpec = {
      type: 'oauth2',
      authorizeUrl: 'https://a.example/x',
      tokenUrl: 'https://a.example/t',
      scopes: [],
    };
    expect(() => clientFor(spec, { access_token: 'x' })).toThrow(/credential store/);
  });
});
