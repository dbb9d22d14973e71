/**
 * Connecting accounts over HTTP, black-box on SQLite and PostgreSQL: `/v1/oauth` against a real
 * OAuth 2.0 provider on loopback (oauth2-mock-server), the credential form of a credential
 * service, the token endpoint in the spellings the SDKs send, per-app settings, and every
 * documented error. The browser runs of the same flows are in test/browser/.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import { makeTempDir, type TempDir } from '@cloudmux/testkit';
import { Validator } from '@seriousme/openapi-schema-validator';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { oauthRouteDocs } from '../src/oauth/route-docs.js';
import { OAuthRecords } from '../src/oauth/states.js';
import { buildOpenApiDocument } from '../src/openapi/document.js';
import { ROUTE_DOCS } from '../src/openapi/routes/index.js';
import {
  CLIENT_ID,
  CLIENT_SECRET,
  type MockProvider,
  mockCredentialConnector,
  mockOauthConnector,
  RIGHT_PASSWORD,
  s256,
  startProvider,
} from './browser/fixtures.js';
import { json, STORE_KINDS, startTestServer, type TestServer } from './harness.js';

const REDIRECT = 'http://127.0.0.1:9/app/callback?from=cloudmux';
const OOB = 'urn:ietf:wg:oauth:2.0:oob';
const TRUSTED = 'http://127.0.0.1:9';

let provider: MockProvider;
let roots: TempDir;

beforeAll(async () => {
  provider = await startProvider();
  roots = await makeTempDir('cloudmux-oauth-');
});
afterAll(async () => {
  await provider?.stop();
  await roots?.remove();
});

const get = (url: string, cookie?: string) =>
  fetch(url, { redirect: 'manual', headers: cookie ? { cookie } : {} });
const cookieOf = (res: Response) => {
  const header = res.headers.get('set-cookie') ?? '';
  const match = /cloudmux_oauth=[A-Za-z0-9_-]+/.exec(header);
  if (!match) throw new Error(`no binding cookie in ${header}`);
  return match[0];
};
const location = (res: Response) => {
  const value = res.headers.get('location');
  if (!value) throw new Error(`no Location (status ${res.status})`);
  return new URL(value);
};
const form = (values: Record<string, string>) => new URLSearchParams(values).toString();

describe.each(STORE_KINDS)('connecting accounts on %s', (store) => {
  let t: TestServer;
  let appId: string;
  let apiKey: string;

  const authorizeUrl = (params: Record<string, string>) =>
    `${t.url}/v1/oauth?${new URLSearchParams({ client_id: appId, ...params })}`;

  /** GET /v1/oauth → provider → our callback; returns the last response and what it took. */
  async function oauthFlow(params: Record<string, string>) {
    const start = await get(
      authorizeUrl({ response_type: 'code', redirect_uri: REDIRECT, scope: 'mockoauth', ...params }),
    );
    expect(start.status).toBe(302);
    const cookie = cookieOf(start);
    const toProvider = location(start);
    const atProvider = await get(toProvider.toString());
    expect(atProvider.status).toBe(302);
    const callbackUrl = location(atProvider).toString();
    const back = await get(callbackUrl, cookie);
    return { start, cookie, toProvider, callbackUrl, back };
  }

  async function codeFor(state = 'app-state') {
    const { back } = await oauthFlow({ state });
    expect(back.status).toBe(302);
    const to = location(back);
    expect(to.searchParams.get('state')).toBe(state);
    return to.searchParams.get('code')!;
  }

  const exchange = (body: string, headers: Record<string, string> = {}, path = '/v1/oauth/token') =>
    fetch(`${t.url}${path}`, { method: 'POST', headers, body });

  beforeAll(async () => {
    t = await startTestServer({
      store,
      connectors: [
        mockOauthConnector(provider, join(roots.path, `${store}-oauth`)),
        mockCredentialConnector(join(roots.path, `${store}-dav`)),
      ],
      env: {
        CLOUDMUX_OAUTH_MOCKOAUTH_CLIENT_ID: CLIENT_ID,
        CLOUDMUX_OAUTH_MOCKOAUTH_CLIENT_SECRET: CLIENT_SECRET,
      },
    });
    appId = t.apps[0]!.appId;
    apiKey = t.apps[0]!.apiKey;
    const res = await t.call(`/v1/applications/${appId}/settings`, {
      method: 'PUT',
      json: { redirect_uris: [REDIRECT], trusted_origins: [TRUSTED] },
    });
    expect(res.status).toBe(200);
  });
  afterAll(async () => t?.close());

  it('manages redirect URIs and trusted origins per app, with the API key only', async () => {
    const res = await t.call(`/v1/applications/${appId}/settings`);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await json(res)).toEqual({
      app_id: appId,
      redirect_uris: [REDIRECT],
      trusted_origins: [TRUSTED],
      api: 'core',
      type: 'application_settings',
    });
    const bad = await t.call(`/v1/applications/${appId}/settings`, {
      method: 'PUT',
      json: { redirect_uris: ['https://app.example/cb#frag'] },
    });
    expect(bad.status).toBe(400);
    expect((await json(bad)).error_code).toBe('invalid_parameters');
    const badOrigin = await t.call(`/v1/applications/${appId}/settings`, {
      method: 'PUT',
      json: { trusted_origins: ['https://app.example/path'] },
    });
    expect((await json(badOrigin)).error_code).toBe('invalid_parameters');
    const other = await t.newApp('Other app');
    const cross = await t.call(`/v1/applications/${appId}/settings`, { auth: `APIKey ${other.apiKey}` });
    expect(cross.status).toBe(404);
    const bearer = await t.call(`/v1/applications/${appId}/settings`, { auth: `Bearer ${t.apps[0]!.token}` });
    expect(bearer.status).toBe(403);
  });

  it('runs the code flow: our state and PKCE S256 at the provider, tokens stored encrypted, one-time code', async () => {
    const { start, toProvider, back } = await oauthFlow({
      state: 'xyz 1',
      'raw[login_hint]': 'alice@example.com',
      'raw[state]': 'evil',
    });
    // The browser-binding cookie: HttpOnly, SameSite=Lax, only for /v1/oauth, not Secure on an http public URL.
    expect(start.headers.get('set-cookie')).toMatch(
      /^cloudmux_oauth=[A-Za-z0-9_-]{43}; Path=\/v1\/oauth; Max-Age=600; HttpOnly; SameSite=Lax$/,
    );
    // The provider saw our client, our callback, our own state (not the app's) and a S256 challenge.
    expect(toProvider.origin).toBe(provider.url);
    const q = provider.authorizeRequests.at(-1)!;
    expect(q.get('client_id')).toBe(CLIENT_ID);
    expect(q.get('redirect_uri')).toBe(`${t.url}/v1/oauth/callback/mockoauth`);
    expect(q.get('response_type')).toBe('code');
    expect(q.get('code_challenge_method')).toBe('S256');
    expect(q.get('login_hint')).toBe('alice@example.com');
    expect(q.get('state')).not.toBe('xyz 1');
    expect(q.get('state')).not.toBe('evil');
    expect(q.get('state')!.length).toBeGreaterThanOrEqual(43);
    expect(q.get('scope')).toBe('files.read offline_access');
    // The code exchange sent the verifier of that challenge and the operator's client credentials.
    const tokenRequest = provider.tokenRequests.at(-1)!;
    expect(s256(tokenRequest.code_verifier!)).toBe(q.get('code_challenge'));
    expect(tokenRequest).toMatchObject({
      grant_type: 'authorization_code',
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
    });

    expect(back.status).toBe(302);
    const to = location(back);
    expect(`${to.origin}${to.pathname}`).toBe('http://127.0.0.1:9/app/callback');
    expect(to.searchParams.get('from')).toBe('cloudmux');
    expect(to.searchParams.get('state')).toBe('xyz 1');
    const code = to.searchParams.get('code')!;

    // py2: APIKey header and the misspelt `application/form-urlencoded`; js: trailing slash.
    const res = await exchange(
      form({
        grant_type: 'authorization_code',
        code,
        redirect_uri: REDIRECT,
        client_id: appId,
        client_secret: apiKey,
      }),
      { authorization: `APIKey ${apiKey}`, 'content-type': 'application/form-urlencoded' },
      '/v1/oauth/token/',
    );
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('cache-control')).toBe('no-store');
    const body = await json<{
      access_token: string;
      token_type: string;
      account_id: number;
      scope: string;
      state: string;
    }>(res);
    expect(body).toMatchObject({ token_type: 'Bearer', scope: 'mockoauth:normal.storage', state: 'xyz 1' });

    const me = await json(await t.call('/v1/accounts/me', { auth: `Bearer ${body.access_token}` }));
    expect(me).toMatchObject({ id: body.account_id, service: 'mockoauth' });
    const verify = await json(await t.call('/v1/oauth/token', { auth: `Bearer ${body.access_token}` }));
    expect(verify).toMatchObject({ client_id: appId, account_id: body.account_id });
    const listing = await t.call('/v1/accounts/me/storage/folders/root/contents', {
      auth: `Bearer ${body.access_token}`,
    });
    expect(listing.status).toBe(200);

    // Stored encrypted, with the fields core's oauth2 strategy reads; the connector uses them.
    const row = await t.server.deps.store.getAccount(appId, body.account_id);
    expect(row!.credentials_enc).not.toContain(tokenRequest.code!);
    const credentials = t.server.deps.store.decryptCredentials(row!);
    expect(typeof credentials.access_token).toBe('string');
    expect(typeof credentials.refresh_token).toBe('string');
    expect(credentials.expires_at).toBeGreaterThan(Date.now());
    const runtime = await t.server.deps.runtime.forAccount(row!);
    await runtime.instance.validate?.();
    expect(provider.userinfoAuth.at(-1)).toBe(`Bearer ${credentials.access_token}`);

    // The code is single use; a replay revokes the token it produced (RFC 6749 §4.1.2).
    const replay = await exchange(
      form({ grant_type: 'authorization_code', code, redirect_uri: REDIRECT, client_secret: apiKey }),
      {
        'content-type': 'application/x-www-form-urlencoded',
      },
    );
    expect(replay.status).toBe(400);
    expect(await json(replay)).toMatchObject({
      error: 'invalid_grant',
      error_code: 'bad_request',
      status_code: 400,
    });
    expect((await t.call('/v1/accounts/me', { auth: `Bearer ${body.access_token}` })).status).toBe(401);
  });

  it('accepts the token request spellings of java2 (secret in body) and no Content-Type', async () => {
    const java = await exchange(
      form({
        grant_type: 'authorization_code',
        code: await codeFor('j'),
        redirect_uri: REDIRECT,
        client_id: appId,
        client_secret: apiKey,
      }),
      { 'content-type': 'application/x-www-form-urlencoded' },
    );
    expect(java.status).toBe(200);
    expect((await json(java)).state).toBe('j');
    const bare = await exchange(
      form({ grant_type: 'authorization_code', code: await codeFor('n'), redirect_uri: REDIRECT }),
      {
        authorization: `ApiKey ${apiKey}`,
      },
    );
    expect(bare.status).toBe(200);
    // A body sent with no Content-Type header at all (fetch would add text/plain).
    const body = form({
      grant_type: 'authorization_code',
      code: await codeFor('raw'),
      redirect_uri: REDIRECT,
      client_secret: apiKey,
    });
    const raw = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = request(
        `${t.url}/v1/oauth/token`,
        { method: 'POST', headers: { 'content-length': Buffer.byteLength(body) } },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (c: string) => {
            text += c;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    expect(raw.status).toBe(200);
    expect(JSON.parse(raw.text).state).toBe('raw');
  });

  it('refuses token requests with the OAuth errors', async () => {
    const code = await codeFor();
    const base = { grant_type: 'authorization_code', code, redirect_uri: REDIRECT };
    const ct = { 'content-type': 'application/x-www-form-urlencoded' };
    const noClient = await exchange(form(base), ct);
    expect(noClient.status).toBe(401);
    expect((await json(noClient)).error).toBe('invalid_client');
    const wrongSecret = await exchange(form({ ...base, client_secret: 'cmk_wrong' }), ct);
    expect((await json(wrongSecret)).error).toBe('invalid_client');
    const other = await t.newApp('Token thief');
    const otherApp = await exchange(form({ ...base, client_secret: other.apiKey }), ct);
    expect(await json(otherApp)).toMatchObject({ error: 'invalid_grant' });
    const wrongRedirect = await exchange(
      form({ ...base, redirect_uri: 'http://127.0.0.1:9/other', client_secret: apiKey }),
      ct,
    );
    expect(await json(wrongRedirect)).toMatchObject({ error: 'invalid_grant' });
    const grant = await exchange(form({ ...base, grant_type: 'password', client_secret: apiKey }), ct);
    expect(await json(grant)).toMatchObject({ error: 'unsupported_grant_type' });
    // None of those used the code up.
    expect((await exchange(form({ ...base, client_secret: apiKey }), ct)).status).toBe(200);
    // An expired code.
    const late = await codeFor();
    await t.server.deps.storeHandle.db
      .updateTable('oauth_states')
      .set({ expires_at: Date.now() - 1000 })
      .where('id', '=', OAuthRecords.rowId('code', late))
      .execute();
    const expired = await exchange(form({ ...base, code: late, client_secret: apiKey }), ct);
    expect(await json(expired)).toMatchObject({
      error: 'invalid_grant',
      error_description: 'The code has expired.',
    });
  });

  it('shows an error page and never redirects for an unknown client or an unregistered redirect_uri', async () => {
    const evil = await get(
      authorizeUrl({
        response_type: 'code',
        redirect_uri: 'https://evil.example/steal',
        scope: 'mockoauth',
        state: 's',
      }),
    );
    expect(evil.status).toBe(400);
    expect(evil.headers.get('location')).toBeNull();
    expect(evil.headers.get('content-type')).toBe('text/html; charset=utf-8');
    const html = await evil.text();
    expect(html).toContain('Redirect URI not registered');
    expect(html).not.toContain('evil.example');
    // A prefix or a variant of a registered URI is not that URI.
    const variant = await get(
      authorizeUrl({ response_type: 'code', redirect_uri: `${REDIRECT}&x=1`, scope: 'mockoauth' }),
    );
    expect(variant.status).toBe(400);
    const unknown = await get(
      `${t.url}/v1/oauth?client_id=nope&response_type=code&redirect_uri=${encodeURIComponent(REDIRECT)}`,
    );
    expect(unknown.status).toBe(400);
    expect(unknown.headers.get('location')).toBeNull();
    const untrusted = await get(
      authorizeUrl({
        response_type: 'token',
        redirect_uri: OOB,
        origin: 'http://127.0.0.1:10',
        scope: 'mockdav',
      }),
    );
    expect(untrusted.status).toBe(400);
    expect(await untrusted.text()).toContain('Origin not trusted');
  });

  it('returns access_denied to the app when the user denies consent at the provider', async () => {
    provider.deny = true;
    try {
      const { back } = await oauthFlow({ state: 'deny-me' });
      expect(back.status).toBe(302);
      const to = location(back);
      expect(to.searchParams.get('error')).toBe('access_denied');
      expect(to.searchParams.get('error_description')).toContain('The user said no');
      expect(to.searchParams.get('state')).toBe('deny-me');
      expect(to.searchParams.get('code')).toBeNull();
    } finally {
      provider.deny = false;
    }
  });

  it('refuses a replayed state, a state from another browser, and returns an expired state as invalid_request', async () => {
    const { back, callbackUrl, cookie } = await oauthFlow({ state: 'once' });
    expect(back.status).toBe(302);
    const replay = await get(callbackUrl, cookie);
    expect(replay.status).toBe(400);
    expect(replay.headers.get('location')).toBeNull();
    expect(await replay.text()).toContain('already been completed');

    const start = await get(
      authorizeUrl({ response_type: 'code', redirect_uri: REDIRECT, scope: 'mockoauth', state: 'csrf' }),
    );
    const atProvider = await get(location(start).toString());
    const stolen = await get(location(atProvider).toString());
    expect(stolen.status).toBe(400);
    expect(await stolen.text()).toContain('another browser');

    const slow = await get(
      authorizeUrl({ response_type: 'code', redirect_uri: REDIRECT, scope: 'mockoauth', state: 'slow' }),
    );
    const ourState = location(slow).searchParams.get('state')!;
    const late = await get(location(slow).toString());
    await t.server.deps.storeHandle.db
      .updateTable('oauth_states')
      .set({ expires_at: Date.now() - 1 })
      .where('id', '=', OAuthRecords.rowId('flow', ourState))
      .execute();
    const expired = await get(location(late).toString(), cookieOf(slow));
    expect(expired.status).toBe(302);
    const to = location(expired);
    expect(to.searchParams.get('error')).toBe('invalid_request');
    expect(to.searchParams.get('error_description')).toContain('expired');
    expect(to.searchParams.get('state')).toBe('slow');
    // Retired: the same state cannot be used afterwards either.
    expect((await get(location(late).toString(), cookieOf(slow))).status).toBe(400);
  });

  it('sends scope and response_type errors back to the app once the redirect URI is valid', async () => {
    const scope = await get(
      authorizeUrl({ response_type: 'code', redirect_uri: REDIRECT, scope: 'dropbox', state: 's' }),
    );
    expect(scope.status).toBe(302);
    expect(Object.fromEntries(location(scope).searchParams)).toMatchObject({
      error: 'invalid_scope',
      state: 's',
    });
    const type = await get(authorizeUrl({ response_type: 'id_token', redirect_uri: REDIRECT, state: 's' }));
    expect(location(type).searchParams.get('error')).toBe('unsupported_response_type');
    const data = await get(
      authorizeUrl({ response_type: 'code', redirect_uri: REDIRECT, scope: 'mockdav', extra_data: '{oops' }),
    );
    expect(location(data).searchParams.get('error')).toBe('invalid_request');
  });

  it('lists the services a broad scope allows', async () => {
    const res = await get(
      authorizeUrl({ response_type: 'code', redirect_uri: REDIRECT, scope: 'any.storage' }),
    );
    expect(res.status).toBe(200);
    const html = await res.text();
    for (const service of ['local', 'mockoauth', 'mockdav'])
      expect(html).toContain(`id="service-${service}"`);
    const admin = await get(
      authorizeUrl({ response_type: 'code', redirect_uri: REDIRECT, scope: 'mockdav:admin.storage local' }),
    );
    const adminHtml = await admin.text();
    expect(adminHtml).toContain('service-mockdav');
    expect(adminHtml).not.toContain('service-mockoauth');
  });

  it('connects a credential service through its generated form, validating against the service', async () => {
    const prefill = JSON.stringify({
      url: 'https://dav.example/files/',
      username: 'alice',
      password: 'prefilled-secret',
      mode: 'digest',
    });
    const start = await get(
      authorizeUrl({
        response_type: 'code',
        redirect_uri: REDIRECT,
        scope: 'mockdav',
        state: 'dav',
        form_data: prefill,
      }),
    );
    expect(start.status).toBe(200);
    const cookie = cookieOf(start);
    const html = await start.text();
    expect(html).toContain('value="https://dav.example/files/"');
    expect(html).toContain('<label for="id_password">Password <span');
    expect(html).toContain('type="password" id="id_password"');
    expect(html).toContain('type="checkbox" id="id_verify_tls" name="verify_tls" value="true" checked');
    expect(html).toContain('<option value="digest" selected>');
    expect(html).toContain('type="number" id="id_port" name="port" value="443"');
    expect(html).not.toContain('prefilled-secret');
    const state = /name="_state" value="([^"]+)"/.exec(html)![1]!;
    const csrf = /name="_csrf" value="([^"]+)"/.exec(html)![1]!;
    const post = (values: Record<string, string>, withCookie = cookie) =>
      fetch(`${t.url}/v1/oauth/connect/mockdav`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: withCookie },
        body: form({
          _state: state,
          _csrf: csrf,
          url: 'https://dav.example/files/',
          username: 'alice',
          verify_tls: 'true',
          ...values,
        }),
      });

    const wrong = await post({ password: 'Wr0ng<script>' });
    expect(wrong.status).toBe(400);
    const wrongHtml = await wrong.text();
    expect(wrongHtml).toContain('Mock DAV refused the connection: Login failed for alice.');
    expect(wrongHtml).not.toContain('Wr0ng');
    expect(wrongHtml).toContain('value="alice"');
    const invalid = await post({ password: RIGHT_PASSWORD, url: 'not a url' });
    expect(invalid.status).toBe(400);
    expect(await invalid.text()).toContain('Server URL:');
    const forged = await post({ password: RIGHT_PASSWORD, _csrf: 'forged' });
    expect(forged.status).toBe(400);
    const otherBrowser = await post(
      { password: RIGHT_PASSWORD },
      'cloudmux_oauth=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA',
    );
    expect(otherBrowser.status).toBe(400);

    const ok = await post({ password: RIGHT_PASSWORD });
    expect(ok.status).toBe(303);
    const to = location(ok);
    expect(to.searchParams.get('state')).toBe('dav');
    const token = await exchange(
      form({
        grant_type: 'authorization_code',
        code: to.searchParams.get('code')!,
        redirect_uri: REDIRECT,
        client_secret: apiKey,
      }),
    );
    const body = await json<{ access_token: string; account_id: number }>(token);
    const me = await json(await t.call('/v1/accounts/me', { auth: `Bearer ${body.access_token}` }));
    expect(me).toMatchObject({ service: 'mockdav', account: 'alice@dav.example' });
    const stored = t.server.deps.store.decryptCredentials(
      (await t.server.deps.store.getAccount(appId, body.account_id))!,
    );
    expect(stored).toEqual({
      url: 'https://dav.example/files/',
      username: 'alice',
      password: RIGHT_PASSWORD,
      port: 443,
      verify_tls: true,
    });
    // The flow is over: submitting again is refused.
    expect((await post({ password: RIGHT_PASSWORD })).status).toBe(400);
  });

  it('returns the token in the fragment for response_type=token with a registered redirect URI', async () => {
    const start = await get(
      authorizeUrl({ response_type: 'token', redirect_uri: REDIRECT, scope: 'mockdav', state: 'frag' }),
    );
    const html = await start.text();
    const res = await fetch(`${t.url}/v1/oauth/connect/mockdav`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookieOf(start) },
      body: form({
        _state: /name="_state" value="([^"]+)"/.exec(html)![1]!,
        _csrf: /name="_csrf" value="([^"]+)"/.exec(html)![1]!,
        url: 'https://dav.example/',
        username: 'carol',
        password: RIGHT_PASSWORD,
      }),
    });
    expect(res.status).toBe(303);
    const to = location(res);
    expect(to.searchParams.get('access_token')).toBeNull();
    const fragment = new URLSearchParams(to.hash.slice(1));
    expect(fragment.get('token_type')).toBe('Bearer');
    expect(fragment.get('state')).toBe('frag');
    const me = await json(
      await t.call('/v1/accounts/me', { auth: `Bearer ${fragment.get('access_token')}` }),
    );
    expect(me).toMatchObject({ id: Number(fragment.get('account_id')), account: 'carol@dav.example' });
  });

  it('keeps local accounts inside CLOUDMUX_LOCAL_ROOTS', async () => {
    const start = await get(
      authorizeUrl({ response_type: 'code', redirect_uri: REDIRECT, scope: 'local', state: 'l' }),
    );
    const html = await start.text();
    expect(html).toContain('Absolute directory on the server that holds this account');
    const state = /name="_state" value="([^"]+)"/.exec(html)![1]!;
    const csrf = /name="_csrf" value="([^"]+)"/.exec(html)![1]!;
    const res = await fetch(`${t.url}/v1/oauth/connect/local`, {
      method: 'POST',
      redirect: 'manual',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: cookieOf(start) },
      body: form({ _state: state, _csrf: csrf, root: '/etc' }),
    });
    expect(res.status).toBe(400);
    expect(await res.text()).toContain('outside the directories this server allows');
  });

  it('shows the token in the out-of-band flow without an opener, and posts it for a trusted origin', async () => {
    const start = await get(
      `${t.url}/v1/oauth?client_id=${appId}&response_type=token&scope=mockdav&state=13373`,
    );
    const html = await start.text();
    const state = /name="_state" value="([^"]+)"/.exec(html)![1]!;
    const csrf = /name="_csrf" value="([^"]+)"/.exec(html)![1]!;
    const submit = (cookie: string, st: string, cs: string) =>
      fetch(`${t.url}/v1/oauth/connect/mockdav`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie },
        body: form({
          _state: st,
          _csrf: cs,
          url: 'https://dav.example/',
          username: 'bob',
          password: RIGHT_PASSWORD,
        }),
      });
    const shown = await submit(cookieOf(start), state, csrf);
    expect(shown.status).toBe(200);
    const token = /id="oob-token">([^<]+)</.exec(await shown.text())![1]!;
    expect((await json(await t.call('/v1/accounts/me', { auth: `Bearer ${token}` }))).service).toBe(
      'mockdav',
    );

    const popup = await get(
      authorizeUrl({
        response_type: 'token',
        redirect_uri: OOB,
        scope: 'mockdav',
        state: '42',
        request_id: '42',
        origin: TRUSTED,
      }),
    );
    const popupHtml = await popup.text();
    const posted = await submit(
      cookieOf(popup),
      /name="_state" value="([^"]+)"/.exec(popupHtml)![1]!,
      /name="_csrf" value="([^"]+)"/.exec(popupHtml)![1]!,
    );
    const page = await posted.text();
    const data = /var d = (\{.*\});/.exec(page)![1]!;
    const { message, origin } = JSON.parse(data) as { message: string; origin: string };
    expect(origin).toBe(TRUSTED);
    expect(message.startsWith('kloudless:')).toBe(true);
    const contents = JSON.parse(message.slice('kloudless:'.length));
    expect(contents).toMatchObject({
      type: 'authentication',
      id: '42',
      data: { token_type: 'Bearer', state: '42', scope: 'mockdav:normal.storage' },
    });
    expect(posted.headers.get('content-security-policy')).toMatch(/script-src 'nonce-[^']+'/);
  });

  it('documents its routes for the OpenAPI document (valid OpenAPI 3.1)', async () => {
    for (const doc of oauthRouteDocs) {
      expect(t.server.app.hasRoute({ method: doc.method, url: doc.path }), `${doc.method} ${doc.path}`).toBe(
        true,
      );
    }
    const document = buildOpenApiDocument({
      publicUrl: t.url,
      version: '0',
      connectors: t.server.deps.registry.all(),
      routes: [
        ...ROUTE_DOCS.filter((r) => !oauthRouteDocs.some((o) => o.method === r.method && o.path === r.path)),
        ...oauthRouteDocs,
      ],
    });
    const result = await new Validator().validate(
      structuredClone(document) as unknown as Record<string, unknown>,
    );
    expect(result.errors ?? []).toEqual([]);
    expect(document.paths?.['/v1/oauth/callback/{service}']?.get?.operationId).toBe('oauthCallback');
  });

  it('serves /static/iexd.html for the widgets, frameable', async () => {
    const res = await fetch(`${t.url}/static/iexd.html?cache=123`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-security-policy')).toContain('frame-ancestors *');
    expect(res.headers.get('x-frame-options')).toBeNull();
    expect(await res.text()).toContain('prepareToOpenAuthenticator');
  });
});

describe('connecting accounts behind an https public URL', () => {
  it('marks the binding cookie Secure and registers the https callback at the provider', async () => {
    const t = await startTestServer({
      store: 'sqlite',
      connectors: [mockOauthConnector(provider, join(roots.path, 'https-oauth'))],
      env: {
        CLOUDMUX_PUBLIC_URL: 'https://cloudmux.example',
        CLOUDMUX_OAUTH_MOCKOAUTH_CLIENT_ID: CLIENT_ID,
        CLOUDMUX_OAUTH_MOCKOAUTH_CLIENT_SECRET: CLIENT_SECRET,
      },
    });
    try {
      await t.call(`/v1/applications/${t.apps[0]!.appId}/settings`, {
        method: 'PUT',
        json: { redirect_uris: [REDIRECT] },
      });
      const params = new URLSearchParams({
        client_id: t.apps[0]!.appId,
        response_type: 'code',
        redirect_uri: REDIRECT,
        scope: 'mockoauth',
      });
      const start = await get(`${t.url}/v1/oauth?${params}`);
      expect(start.status).toBe(302);
      expect(start.headers.get('set-cookie')).toMatch(/; HttpOnly; SameSite=Lax; Secure$/);
      expect(location(start).searchParams.get('redirect_uri')).toBe(
        'https://cloudmux.example/v1/oauth/callback/mockoauth',
      );
    } finally {
      await t.close();
    }
  });
});
