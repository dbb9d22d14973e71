/**
 * One strategy per `AuthSpec` type. The HTTP client applies the account's strategy to every
 * attempt of every request (connectors never sign themselves) and, after a 401, asks it whether a
 * second try can succeed (OAuth tokens are refreshed or re-minted; static keys cannot change).
 */
import type { AxiosInstance } from 'axios';
import type { AuthSpec, AuthType, Logger, StaticAuthSpec } from '../connector.js';
import { CloudmuxError } from '../errors.js';
import { appendSas, signAzureSharedKey } from './azure.js';
import type { Clock } from './clock.js';
import {
  type CredentialFields,
  type CredentialSource,
  credentialString,
  optionalCredentialString,
  readCredentialFields,
} from './credentials.js';
import { JWT_BEARER_GRANT, serviceAccountAssertion } from './jwt.js';
import { type OAuthClient, refreshAccessToken, requestToken } from './oauth.js';
import { type PreparedRequest, rfc3986Encode } from './prepared.js';
import type { TokenCache, TokenRefresher } from './refresh.js';
import { signAwsSigV4 } from './sigv4.js';

/** What an attempt was authenticated with, handed back on a 401. */
export interface AppliedAuth {
  accessToken?: string;
}

export interface AuthStrategy {
  readonly type: AuthType;
  /** Header names the strategy sets; raw headers may not set them. */
  readonly ownedHeaders: readonly string[];
  apply(req: PreparedRequest, signal?: AbortSignal): Promise<AppliedAuth>;
  /** After a 401: prepare new credentials; `true` when a second attempt can differ. */
  onUnauthorized?(applied: AppliedAuth, signal?: AbortSignal): Promise<boolean>;
}

export interface AuthStrategyContext {
  service: string;
  accountId: string;
  credentials: CredentialSource;
  /** The Cloudmux app's OAuth client for this service (authorization-code accounts). */
  oauthClient?: OAuthClient;
  /** Used for token endpoints; carries the same network-guard agents as the account's client. */
  tokenHttp: AxiosInstance;
  clock: Clock;
  /** Required for `oauth2` (with a store credential source). */
  refresher?: TokenRefresher;
  tokenCache: TokenCache;
  /** `X-Kloudless-As-User`: the `sub` of service-account JWTs. */
  asUser?: string;
  log: Logger;
}

const bearer = (req: PreparedRequest, token: string) => {
  req.headers.authorization = `Bearer ${token}`;
};

export function createAuthStrategy(spec: AuthSpec, ctx: AuthStrategyContext): AuthStrategy {
  const { service, accountId } = ctx;
  const fields = () => readCredentialFields(ctx.credentials, accountId, service);

  switch (spec.type) {
    case 'protocol':
      return { type: 'protocol', ownedHeaders: [], apply: async () => ({}) };

    case 'one_of': {
      const alternatives = spec.strategies.map((s) => ({
        fields: requiredFields(s),
        strategy: createAuthStrategy(s, ctx),
      }));
      const pick = async () => {
        const f = await fields();
        const present = (name: string) => typeof f[name] === 'string' && f[name] !== '';
        const chosen = alternatives.find((a) => a.fields.every(present));
        if (!chosen) {
          throw new CloudmuxError(
            'service_unauthorized',
            `The account has none of the credentials ${service} accepts.`,
            { service },
          );
        }
        return chosen.strategy;
      };
      return {
        type: 'one_of',
        ownedHeaders: [...new Set(alternatives.flatMap((a) => a.strategy.ownedHeaders))],
        apply: async (req, signal) => (await pick()).apply(req, signal),
        onUnauthorized: async (applied, signal) => (await pick()).onUnauthorized?.(applied, signal) ?? false,
      };
    }

    case 'bearer':
      return {
        type: 'bearer',
        ownedHeaders: ['authorization'],
        async apply(req) {
          bearer(req, credentialString(await fields(), spec.field, service));
          return {};
        },
      };

    case 'basic':
      return {
        type: 'basic',
        ownedHeaders: ['authorization'],
        async apply(req) {
          const f = await fields();
          const user = credentialString(f, spec.usernameField, service);
          const password = typeof f[spec.passwordField] === 'string' ? (f[spec.passwordField] as string) : '';
          // RFC 7617 §2: base64 of UTF-8 "user:password".
          const encoded = Buffer.from(`${user}:${password}`, 'utf8').toString('base64');
          req.headers.authorization = `Basic ${encoded}`;
          return {};
        },
      };

    case 'api_key':
      return {
        type: 'api_key',
        ownedHeaders: spec.in === 'header' ? [spec.name.toLowerCase()] : [],
        async apply(req) {
          const value = `${spec.prefix ?? ''}${credentialString(await fields(), spec.field, service)}`;
          if (spec.in === 'header') req.headers[spec.name.toLowerCase()] = value;
          else {
            // Appended by hand: URLSearchParams would re-encode the whole existing query.
            const pair = `${rfc3986Encode(spec.name)}=${rfc3986Encode(value)}`;
            req.url.search =
              req.url.search && req.url.search !== '?' ? `${req.url.search}&${pair}` : `?${pair}`;
          }
          return {};
        },
      };

    case 'aws_sigv4':
      return {
        type: 'aws_sigv4',
        ownedHeaders: ['authorization', 'x-amz-date', 'x-amz-security-token', 'x-amz-content-sha256'],
        async apply(req) {
          const f = await fields();
          const sessionToken = optionalCredentialString(f, spec.sessionTokenField);
          await signAwsSigV4(req, {
            credentials: {
              accessKeyId: credentialString(f, spec.accessKeyIdField, service),
              secretAccessKey: credentialString(f, spec.secretAccessKeyField, service),
              ...(sessionToken ? { sessionToken } : {}),
            },
            region: credentialString(f, spec.regionField, service),
            service: spec.signingService,
            date: new Date(ctx.clock.now()),
          });
          return {};
        },
      };

    case 'azure_shared_key':
      return {
        type: 'azure_shared_key',
        ownedHeaders: ['authorization', 'x-ms-date'],
        async apply(req) {
          const f = await fields();
          signAzureSharedKey(req, {
            accountName: credentialString(f, spec.accountNameField, service),
            accountKey: credentialString(f, spec.accountKeyField, service),
            date: new Date(ctx.clock.now()),
          });
          return {};
        },
      };

    case 'azure_sas':
      return {
        type: 'azure_sas',
        ownedHeaders: [],
        async apply(req) {
          appendSas(req.url, credentialString(await fields(), spec.sasTokenField, service));
          return {};
        },
      };

    case 'oauth2': {
      const source = ctx.credentials;
      const refresher = ctx.refresher;
      if (source.kind !== 'store' || !refresher) {
        throw new TypeError(
          `[cloudmux] [${service}] oauth2 accounts need a credential store and a refresher`,
        );
      }
      const exchange = (refreshToken: string) => {
        if (!ctx.oauthClient) {
          throw new TypeError(`[cloudmux] [${service}] no OAuth client is configured for refreshing tokens`);
        }
        return refreshAccessToken(spec, refreshToken, {
          client: ctx.oauthClient,
          http: ctx.tokenHttp,
          clock: ctx.clock,
          service,
        });
      };
      return {
        type: 'oauth2',
        ownedHeaders: ['authorization'],
        async apply(req, signal) {
          const record = await refresher.getFresh(accountId, exchange, {
            service,
            ...(signal ? { signal } : {}),
          });
          const token = record.credentials.access_token as string;
          bearer(req, token);
          return { accessToken: token };
        },
        async onUnauthorized(applied, signal) {
          if (applied.accessToken === undefined) return false;
          await refresher.getFresh(accountId, exchange, {
            service,
            rejectedAccessToken: applied.accessToken,
            ...(signal ? { signal } : {}),
          });
          return true;
        },
      };
    }

    case 'oauth2_client_credentials':
    case 'service_account_jwt': {
      const mint = async (f: CredentialFields, signal?: AbortSignal) => {
        if (spec.type === 'oauth2_client_credentials') {
          const client = clientFromFields(f, ctx.oauthClient, service);
          const scope = spec.scopes.join(' ');
          const key = `cc|${spec.tokenUrl}|${client.clientId}|${scope}`;
          // RFC 6749 §4.4.2 client credentials grant
          const fetch = () =>
            requestToken({
              tokenUrl: spec.tokenUrl,
              params: { grant_type: 'client_credentials', ...(scope ? { scope } : {}) },
              client,
              authMethod: spec.tokenAuthMethod ?? 'client_secret_post',
              http: ctx.tokenHttp,
              clock: ctx.clock,
              service,
              ...(signal ? { signal } : {}),
            });
          return { key, fetch };
        }
        const issuer = credentialString(f, 'client_email', service);
        const subject = ctx.asUser ?? optionalCredentialString(f, 'subject');
        const key = `jwt|${spec.tokenUrl}|${issuer}|${spec.scopes.join(' ')}|${subject ?? ''}`;
        // RFC 7523 §2.1 JWT bearer grant
        const fetch = () =>
          requestToken({
            tokenUrl: spec.tokenUrl,
            params: {
              grant_type: JWT_BEARER_GRANT,
              assertion: serviceAccountAssertion({
                issuer,
                audience: spec.audience ?? spec.tokenUrl,
                scopes: spec.scopes,
                privateKeyPem: credentialString(f, 'private_key', service),
                ...(optionalCredentialString(f, 'private_key_id')
                  ? { keyId: optionalCredentialString(f, 'private_key_id') as string }
                  : {}),
                ...(subject ? { subject } : {}),
                nowMs: ctx.clock.now(),
              }),
            },
            http: ctx.tokenHttp,
            clock: ctx.clock,
            service,
            ...(signal ? { signal } : {}),
          });
        return { key, fetch };
      };
      return {
        type: spec.type,
        ownedHeaders: ['authorization'],
        async apply(req, signal) {
          const { key, fetch } = await mint(await fields(), signal);
          const token = await ctx.tokenCache.get(key, fetch);
          bearer(req, token);
          return { accessToken: token };
        },
        async onUnauthorized(applied) {
          if (applied.accessToken === undefined) return false;
          const { key } = await mint(await fields());
          ctx.tokenCache.invalidate(key, applied.accessToken);
          return true;
        },
      };
    }
  }
}

/** Client-credentials accounts may carry their own `client_id`/`client_secret`; else the app's client. */
function clientFromFields(
  f: CredentialFields,
  fallback: OAuthClient | undefined,
  service: string,
): OAuthClient {
  const clientId = optionalCredentialString(f, 'client_id');
  if (clientId) {
    const clientSecret = optionalCredentialString(f, 'client_secret');
    return { clientId, ...(clientSecret ? { clientSecret } : {}) };
  }
  if (fallback) return fallback;
  return { clientId: credentialString(f, 'client_id', service) };
}

/** The credential fields a fixed-credential strategy cannot work without (for `one_of` selection). */
export function requiredFields(spec: StaticAuthSpec): string[] {
  switch (spec.type) {
    case 'bearer':
    case 'api_key':
      return [spec.field];
    case 'basic':
      return [spec.usernameField];
    case 'aws_sigv4':
      return [spec.accessKeyIdField, spec.secretAccessKeyField];
    case 'azure_shared_key':
      return [spec.accountNameField, spec.accountKeyField];
    case 'azure_sas':
      return [spec.sasTokenField];
    case 'service_account_jwt':
      return ['client_email', 'private_key'];
    case 'oauth2_client_credentials':
      return [];
    default:
      return [];
  }
}
