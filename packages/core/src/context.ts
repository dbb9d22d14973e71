/**
 * Builds the `ctx` a connector's `create()` receives: the network guard for its declared network
 * mode (narrowed by the operator's `CLOUDMUX_ALLOWED_NETWORKS`), and core's HTTP client (auth,
 * refresh, retries, error mapping) whose sockets all go through that guard.
 */
import { tmpdir } from 'node:os';
import type { AccountTls, AnyConnectorDefinition, ConnectorContext, Logger } from './connector.js';
import { networkModeFor, silentLogger } from './connector.js';
import { createHttpClient, type HttpClientOptions } from './http/client.js';
import type { Clock } from './http/clock.js';
import { type CredentialStore, staticCredentials, storedCredentials } from './http/credentials.js';
import type { OAuthClient } from './http/oauth.js';
import { createNetworkGuard, networkPolicyFromEnv } from './net/index.js';
import type { ConnectEvent, NetworkGuard, NetworkPolicy } from './network-types.js';
import type { RateLimiter } from './rate-limit.js';

export interface CreateConnectorContextOptions {
  definition: AnyConnectorDefinition;
  accountId: string;
  /** Already parsed by the definition's credentials schema. */
  credentials: unknown;
  log?: Logger;
  rawHeaders?: Record<string, string>;
  asUser?: string;
  scratchDir?: string;
  /** Overrides the policy derived from the definition's `network` and the environment. */
  networkPolicy?: NetworkPolicy;
  /** A guard to share (tests inject one with a fake resolver or a connect hook). */
  net?: NetworkGuard;
  onConnect?: (event: ConnectEvent) => void;
  /**
   * Where the HTTP client reads (and, for OAuth, refreshes) credentials. Without it the parsed
   * `credentials` are used as fixed fields, which suits every strategy except `oauth2`.
   */
  credentialStore?: CredentialStore;
  /** The operator's OAuth client for this service. */
  oauthClient?: OAuthClient;
  /** Paces upstream calls per account (the connector's `policies.rateLimit`). */
  upstreamLimiter?: RateLimiter;
  clock?: Clock;
  /** Sees every upstream HTTP attempt (metrics). */
  onUpstreamAttempt?: HttpClientOptions['onAttempt'];
}

export function createConnectorContext<TCredentials = unknown>(
  options: CreateConnectorContextOptions & { credentials: TCredentials },
): ConnectorContext<TCredentials> {
  const tls = options.definition.tls?.(options.credentials);
  const net =
    options.net ??
    createNetworkGuard({
      policy:
        options.networkPolicy ??
        networkPolicyFromEnv(networkModeFor(options.definition, options.credentials)),
      ...(options.onConnect ? { onConnect: options.onConnect } : {}),
      // The account's TLS trust rides on the guard's agents (https.Agent merges it into every connect).
      ...(tls ? { agentOptions: tlsAgentOptions(tls) } : {}),
    });
  return {
    service: options.definition.service,
    accountId: options.accountId,
    credentials: options.credentials,
    http: createHttpClient({
      definition: options.definition,
      accountId: options.accountId,
      credentials: options.credentialStore
        ? storedCredentials(options.credentialStore)
        : staticCredentials((options.credentials ?? {}) as Record<string, unknown>),
      httpAgent: net.httpAgent,
      httpsAgent: net.httpsAgent,
      ...(options.oauthClient ? { oauthClient: options.oauthClient } : {}),
      ...(options.rawHeaders ? { rawHeaders: options.rawHeaders } : {}),
      ...(options.asUser !== undefined ? { asUser: options.asUser } : {}),
      ...(options.log ? { log: options.log } : {}),
      ...(options.upstreamLimiter ? { rateLimiter: options.upstreamLimiter } : {}),
      ...(options.clock ? { clock: options.clock } : {}),
      ...(options.onUpstreamAttempt ? { onAttempt: options.onUpstreamAttempt } : {}),
    }),
    net,
    policies: options.definition.policies,
    log: options.log ?? silentLogger,
    rawHeaders: options.rawHeaders ?? {},
    ...(options.asUser !== undefined ? { asUser: options.asUser } : {}),
    scratchDir: options.scratchDir ?? tmpdir(),
  };
}

function tlsAgentOptions(tls: AccountTls): { ca?: string | string[]; rejectUnauthorized?: boolean } {
  return {
    ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
    ...(tls.rejectUnauthorized !== undefined ? { rejectUnauthorized: tls.rejectUnauthorized } : {}),
  };
}
