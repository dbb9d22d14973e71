/**
 * OAuth 2.0 client pieces: PKCE (RFC 7636), the authorization URL (RFC 6749 §4.1.1), and token
 * endpoint calls for the authorization-code, refresh, client-credentials and JWT-bearer grants.
 * Token endpoint calls are never retried: a refresh may have rotated the refresh token.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import axios, { type AxiosInstance, type AxiosResponse } from 'axios';
import type { AuthSpec } from '../connector.js';
import {
  CloudmuxError,
  errorFromNetworkError,
  errorFromUpstreamResponse,
  redactUpstreamBody,
} from '../errors.js';
import { type Clock, systemClock } from './clock.js';
import type { OAuthCredentialFields } from './credentials.js';

export type OAuth2Spec = Extract<AuthSpec, { type: 'oauth2' }>;
export type TokenAuthMethod = 'client_secret_post' | 'client_secret_basic';

export interface OAuthClient {
  clientId: string;
  /** Absent for public clients (PKCE only). */
  clientSecret?: string;
}

export interface PkcePair {
  codeVerifier: string;
  codeChallenge: string;
  codeChallengeMethod: 'S256';
}

const base64url = (buf: Buffer): string => buf.toString('base64url');

/** RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))). */
export function pkceChallenge(codeVerifier: string): string {
  return base64url(createHash('sha256').update(codeVerifier, 'ascii').digest());
}

/** RFC 7636 §4.1: a 43-character verifier from 32 random bytes, and its S256 challenge. */
export function createPkcePair(): PkcePair {
  const codeVerifier = base64url(randomBytes(32));
  return { codeVerifier, codeChallenge: pkceChallenge(codeVerifier), codeChallengeMethod: 'S256' };
}

export interface AuthorizeUrlOptions {
  clientId: string;
  redirectUri: string;
  /** Unguessable, single use, bound to the initiating session (RFC 6749 §10.12). */
  state: string;
  /** Required when the spec sets `pkce`. */
  codeChallenge?: string;
  /** Defaults to the spec's scopes. */
  scopes?: string[];
  /** Extra parameters (e.g. `login_hint`); the spec's `authorizeParams` are applied first. */
  params?: Record<string, string>;
}

/** RFC 6749 §4.1.1 authorization request URL (+ RFC 7636 §4.3 PKCE parameters). */
export function buildAuthorizeUrl(spec: OAuth2Spec, options: AuthorizeUrlOptions): string {
  if (spec.pkce && !options.codeChallenge)
    throw new TypeError('this connector requires PKCE: pass codeChallenge');
  const url = new URL(spec.authorizeUrl);
  const q = url.searchParams;
  q.set('response_type', 'code');
  q.set('client_id', options.clientId);
  q.set('redirect_uri', options.redirectUri);
  const scopes = options.scopes ?? spec.scopes;
  if (scopes.length > 0) q.set('scope', scopes.join(spec.scopeSeparator ?? ' '));
  q.set('state', options.state);
  if (options.codeChallenge) {
    q.set('code_challenge', options.codeChallenge);
    q.set('code_challenge_method', 'S256');
  }
  for (const [k, v] of Object.entries(spec.authorizeParams ?? {})) q.set(k, v);
  for (const [k, v] of Object.entries(options.params ?? {})) q.set(k, v);
  return url.toString();
}

/** A plain axios instance for token endpoints: same agents as the account's client, no redirects. */
export function createTokenHttp(
  options: { httpAgent?: HttpAgent; httpsAgent?: HttpsAgent; timeoutMs?: number } = {},
): AxiosInstance {
  return axios.create({
    timeout: options.timeoutMs ?? 30_000,
    maxRedirects: 0,
    proxy: false,
    httpVersion: 1,
    ...(options.httpAgent ? { httpAgent: options.httpAgent } : {}),
    ...(options.httpsAgent ? { httpsAgent: options.httpsAgent } : {}),
    responseType: 'text',
    transformResponse: [(data: unknown) => data],
    validateStatus: () => true,
    headers: { 'User-Agent': 'cloudmux' },
  });
}

export interface TokenRequestOptions {
  tokenUrl: string;
  /** Grant parameters (`grant_type`, `code`, `refresh_token`, `assertion`, …). */
  params: Record<string, string>;
  client?: OAuthClient;
  authMethod?: TokenAuthMethod;
  http?: AxiosInstance;
  clock?: Clock;
  service?: string;
  signal?: AbortSignal;
}

function parseBody(text: string, contentType: string | undefined): Record<string, unknown> | undefined {
  if (contentType?.includes('application/x-www-form-urlencoded'))
    return Object.fromEntries(new URLSearchParams(text));
  try {
    const parsed: unknown = JSON.parse(text);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)
      ? (parsed as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Token-response fields to store: everything the provider returned (extras such as `instance_url`
 * included) except `expires_in`, which becomes `expires_at`. `expires_at` is always present as a key
 * (possibly `undefined`) so merging over older fields cannot keep a stale expiry.
 */
export function parseTokenResponse(body: Record<string, unknown>, now: number): OAuthCredentialFields {
  const { expires_in: expiresIn, ...rest } = body;
  if (typeof rest.access_token !== 'string' || rest.access_token === '') {
    throw new CloudmuxError('bad_gateway', 'The token endpoint answered without an access_token.');
  }
  const seconds =
    typeof expiresIn === 'number'
      ? expiresIn
      : typeof expiresIn === 'string'
        ? Number(expiresIn)
        : Number.NaN;
  const fields: OAuthCredentialFields = {
    ...rest,
    expires_at: Number.isFinite(seconds) && seconds > 0 ? now + seconds * 1000 : undefined,
  };
  if (typeof fields.token_type !== 'string') fields.token_type = 'Bearer';
  return fields;
}

/** Merges a token response over stored fields: a new refresh token replaces the old one (RFC 6749 §6). */
export function mergeTokenFields(
  previous: Readonly<Record<string, unknown>>,
  update: OAuthCredentialFields,
): OAuthCredentialFields {
  const merged: OAuthCredentialFields = { ...previous, ...update };
  for (const key of Object.keys(update)) if (update[key] === undefined) delete merged[key];
  if (update.refresh_token === undefined && typeof previous.refresh_token === 'string')
    merged.refresh_token = previous.refresh_token;
  return merged;
}

/** Calls a token endpoint; returns the parsed fields or throws with `upstream.code` = the OAuth `error`. */
export async function requestToken(options: TokenRequestOptions): Promise<OAuthCredentialFields> {
  const service = options.service ?? 'oauth';
  const http = options.http ?? createTokenHttp();
  const clock = options.clock ?? systemClock;
  const form = new URLSearchParams(options.params);
  const headers: Record<string, string> = {
    'Content-Type': 'application/x-www-form-urlencoded',
    Accept: 'application/json',
  };
  const client = options.client;
  if (client) {
    if (client.clientSecret !== undefined && options.authMethod === 'client_secret_basic') {
      // RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
      const pair = `${encodeURIComponent(client.clientId)}:${encodeURIComponent(client.clientSecret)}`;
      headers.Authorization = `Basic ${Buffer.from(pair).toString('base64')}`;
    } else {
      form.set('client_id', client.clientId);
      if (client.clientSecret !== undefined) form.set('client_secret', client.clientSecret);
    }
  }
  let response: AxiosResponse<string>;
  try {
    // RFC 6749 §3.2 token endpoint: POST application/x-www-form-urlencoded
    response = await http.post<string>(options.tokenUrl, form.toString(), {
      headers,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (error) {
    const code = (error as { code?: string }).code;
    throw errorFromNetworkError(
      service,
      Object.assign(new Error((error as Error).message), code ? { code } : {}),
    );
  }
  const text = typeof response.data === 'string' ? response.data : String(response.data ?? '');
  const contentType =
    typeof response.headers['content-type'] === 'string' ? response.headers['content-type'] : undefined;
  const body = parseBody(text, contentType);
  const oauthError = typeof body?.error === 'string' ? body.error : undefined;
  if (response.status >= 200 && response.status < 300 && body && oauthError === undefined) {
    try {
      return parseTokenResponse(body, clock.now());
    } catch (error) {
      throw new CloudmuxError('bad_gateway', (error as Error).message, {
        service,
        upstream: { service, status: response.status, body: redactUpstreamBody(text) },
      });
    }
  }
  // RFC 6749 §5.2: 400 (or 401 for client authentication) with {error, error_description}.
  if (response.status < 500) {
    throw new CloudmuxError(
      'service_unauthorized',
      `The token endpoint refused the request (${oauthError ?? `HTTP ${response.status}`}).`,
      {
        service,
        upstream: {
          service,
          status: response.status,
          body: redactUpstreamBody(text),
          ...(oauthError ? { code: oauthError } : {}),
        },
      },
    );
  }
  throw errorFromUpstreamResponse(service, response.status, {
    body: text,
    ...(oauthError ? { upstreamCode: oauthError } : {}),
  });
}

export function isInvalidGrant(error: unknown): boolean {
  return error instanceof CloudmuxError && error.upstream?.code === 'invalid_grant';
}

export interface ExchangeCodeOptions {
  code: string;
  redirectUri: string;
  client: OAuthClient;
  /** The PKCE verifier whose challenge went into the authorization URL. */
  codeVerifier?: string;
  http?: AxiosInstance;
  clock?: Clock;
  service?: string;
  signal?: AbortSignal;
}

/** RFC 6749 §4.1.3 access token request; returns the fields to store for the new account. */
export async function exchangeAuthorizationCode(
  spec: OAuth2Spec,
  options: ExchangeCodeOptions,
): Promise<OAuthCredentialFields> {
  if (spec.pkce && !options.codeVerifier)
    throw new TypeError('this connector requires PKCE: pass codeVerifier');
  const params: Record<string, string> = {
    grant_type: 'authorization_code',
    code: options.code,
    redirect_uri: options.redirectUri,
  };
  if (options.codeVerifier) params.code_verifier = options.codeVerifier;
  return requestToken({
    tokenUrl: spec.tokenUrl,
    params,
    client: options.client,
    authMethod: spec.tokenAuthMethod ?? 'client_secret_post',
    ...pick(options),
  });
}

function pick(o: { http?: AxiosInstance; clock?: Clock; service?: string; signal?: AbortSignal }) {
  return {
    ...(o.http ? { http: o.http } : {}),
    ...(o.clock ? { clock: o.clock } : {}),
    ...(o.service ? { service: o.service } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
  };
}

/** RFC 6749 §6 refresh request. */
export async function refreshAccessToken(
  spec: OAuth2Spec,
  refreshToken: string,
  options: {
    client: OAuthClient;
    http?: AxiosInstance;
    clock?: Clock;
    service?: string;
    signal?: AbortSignal;
  },
): Promise<OAuthCredentialFields> {
  return requestToken({
    tokenUrl: spec.tokenUrl,
    params: { grant_type: 'refresh_token', refresh_token: refreshToken },
    client: options.client,
    authMethod: spec.tokenAuthMethod ?? 'client_secret_post',
    ...pick(options),
  });
}
