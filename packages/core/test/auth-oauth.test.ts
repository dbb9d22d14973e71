import { afterEach, describe, expect, it } from 'vitest';
import {
  buildAuthorizeUrl,
  createPkcePair,
  exchangeAuthorizationCode,
  ManualClock,
  mergeTokenFields,
  type OAuth2Spec,
  pkceChallenge,
} from '../src/index.js';
import { rejection } from './fixtures/http/rejection.js';
import { json, startServer, type TestServer } from './fixtures/http/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const spec = (tokenUrl = 'https://login.example.com/token'): OAuth2Spec => ({
  type: 'oauth2',
  authorizeUrl: 'https://login.example.com/authorize?tenant=common',
  tokenUrl,
  scopes: ['files.read', 'offline_access'],
  pkce: true,
  authorizeParams: { access_type: 'offline', prompt: 'consent' },
});

describe('PKCE', () => {
  it('matches the RFC 7636 Appendix B example', () => {
    expect(pkceChallenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')).toBe(
      'E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM',
    );
  });

  it('creates 43-character unreserved verifiers with their S256 challenge', () => {
    const a = createPkcePair();
    const b = createPkcePair();
    expect(a.codeVerifier).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(a.codeChallenge).toBe(pkceChallenge(a.codeVerifier));
    expect(a.codeChallengeMethod).toBe('S256');
    expect(a.codeVerifier).not.toBe(b.codeVerifier);
  });
});

describe('buildAuthorizeUrl', () => {
  it('builds the RFC 6749 §4.1.1 request with PKCE, keeping the base query and the spec params', () => {
    const url = new URL(
      buildAuthorizeUrl(spec(), {
        clientId: 'cid',
        redirectUri: 'https://app.example/cb',
        state: 'st4te',
        codeChallenge: 'chal',
        params: { login_hint: 'a@b' },
      }),
    );
    expect(url.origin + url.pathname).toBe('https://login.example.com/authorize');
    expect(Object.fromEntries(url.searchParams)).toEqual({
      tenant: 'common',
      response_type: 'code',
      client_id: 'cid',
      redirect_uri: 'https://app.example/cb',
      scope: 'files.read offline_access',
      state: 'st4te',
      code_challenge: 'chal',
      code_challenge_method: 'S256',
      access_type: 'offline',
      prompt: 'consent',
      login_hint: 'a@b',
    });
  });

  it('joins scopes with the spec separator and refuses to skip PKCE when the spec requires it', () => {
    const s = { ...spec(), scopeSeparator: ',', pkce: false };
    expect(
      new URL(
        buildAuthorizeUrl(s, { clientId: 'c', redirectUri: 'https://x/cb', state: 's' }),
      ).searchParams.get('scope'),
    ).toBe('files.read,offline_access');
    expect(() =>
      buildAuthorizeUrl(spec(), { clientId: 'c', redirectUri: 'https://x/cb', state: 's' }),
    ).toThrow(/PKCE/);
  });
});

describe('exchangeAuthorizationCode', () => {
  it('posts the code and verifier and returns storable fields (expires_at, extras)', async () => {
    server = await startServer((_req, res) =>
      json(res, 200, {
        access_token: 'at',
        refresh_token: 'rt',
        expires_in: '3600',
        instance_url: 'https://na1.example.com',
        token_type: 'bearer',
      }),
    );
    const clock = new ManualClock(1_700_000_000_000);
    const fields = await exchangeAuthorizationCode(spec(`${server.url}/token`), {
      code: 'the-code',
      redirectUri: 'https://app.example/cb',
      codeVerifier: 'verifier-1',
      client: { clientId: 'cid', clientSecret: 'csec' },
      clock,
    });
    expect(fields).toEqual({
      access_token: 'at',
      refresh_token: 'rt',
      expires_at: 1_700_000_000_000 + 3_600_000,
      instance_url: 'https://na1.example.com',
      token_type: 'bearer',
    });
    const req = server.requests[0]!;
    expect(req.method).toBe('POST');
    expect(req.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(Object.fromEntries(new URLSearchParams(req.body.toString()))).toEqual({
      grant_type: 'authorization_code',
      code: 'the-code',
      redirect_uri: 'https://app.example/cb',
      code_verifier: 'verifier-1',
      client_id: 'cid',
      client_secret: 'csec',
    });
  });

  it('maps an RFC 6749 §5.2 error to service_unauthorized with its OAuth code, body not echoed', async () => {
    server = await startServer((_req, res) =>
      json(res, 400, { error: 'invalid_grant', error_description: 'code already used; secret=abc' }),
    );
    const err = await rejection(
      exchangeAuthorizationCode(spec(`${server.url}/token`), {
        code: 'c',
        redirectUri: 'https://app.example/cb',
        codeVerifier: 'v',
        client: { clientId: 'cid' },
      }),
    );
    expect(err.code).toBe('service_unauthorized');
    expect(err.upstream?.code).toBe('invalid_grant');
    expect(err.upstream?.status).toBe(400);
    expect(err.message).not.toContain('already used');
    expect(err.upstream?.body).not.toContain('abc');
    expect(new URLSearchParams(server.requests[0]!.body.toString()).get('client_secret')).toBeNull();
  });

  it('treats a 200 carrying an error as an error and reads form-encoded answers', async () => {
    server = await startServer((_req, res, i) => {
      if (i === 0) return json(res, 200, { error: 'bad_verification_code' });
      res.writeHead(200, { 'content-type': 'application/x-www-form-urlencoded' });
      res.end('access_token=form-at&token_type=bearer&scope=repo');
    });
    const opts = {
      code: 'c',
      redirectUri: 'https://app.example/cb',
      codeVerifier: 'v',
      client: { clientId: 'cid', clientSecret: 's' },
    };
    await expect(exchangeAuthorizationCode(spec(`${server.url}/t`), opts)).rejects.toMatchObject({
      upstream: { code: 'bad_verification_code' },
    });
    const fields = await exchangeAuthorizationCode(spec(`${server.url}/t`), opts);
    expect(fields).toMatchObject({ access_token: 'form-at', scope: 'repo', expires_at: undefined });
  });

  it('a token endpoint 5xx is a gateway error, not an authorization failure', async () => {
    server = await startServer((_req, res) => json(res, 503, {}));
    await expect(
      exchangeAuthorizationCode(spec(`${server.url}/t`), {
        code: 'c',
        redirectUri: 'https://x/cb',
        codeVerifier: 'v',
        client: { clientId: 'c' },
      }),
    ).rejects.toMatchObject({ code: 'service_not_available' });
    expect(server.requests).toHaveLength(1);
  });
});

describe('mergeTokenFields', () => {
  it('a new refresh token replaces the old; none keeps the old; no expiry clears the stale one', () => {
    const old = { access_token: 'a1', refresh_token: 'r1', expires_at: 10, subdomain: 'acme' };
    expect(mergeTokenFields(old, { access_token: 'a2', refresh_token: 'r2', expires_at: 20 })).toEqual({
      access_token: 'a2',
      refresh_token: 'r2',
      expires_at: 20,
      subdomain: 'acme',
    });
    expect(mergeTokenFields(old, { access_token: 'a2', expires_at: undefined })).toEqual({
      access_token: 'a2',
      refresh_token: 'r1',
      subdomain: 'acme',
    });
  });
});
