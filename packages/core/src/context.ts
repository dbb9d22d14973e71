/**
 * Builds the `ctx` a connector's `create()` receives: the network guard for its declared network
 * mode (narrowed by the operator's `CLOUDMUX_ALLOWED_NETWORKS`), and an HTTP client whose sockets
 * all go through that guard.
 */
import { tmpdir } from 'node:os';
import axios from 'axios';
import type { AnyConnectorDefinition, ConnectorContext, Logger } from './connector.js';
import { silentLogger } from './connector.js';
import { createNetworkGuard, networkPolicyFromEnv } from './net/index.js';
import type { ConnectEvent, NetworkGuard, NetworkPolicy } from './network-types.js';

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
}

export function createConnectorContext<TCredentials = unknown>(
  options: CreateConnectorContextOptions & { credentials: TCredentials },
): ConnectorContext<TCredentials> {
  const net =
    options.net ??
    createNetworkGuard({
      policy: options.networkPolicy ?? networkPolicyFromEnv(options.definition.network),
      ...(options.onConnect ? { onConnect: options.onConnect } : {}),
    });
  return {
    service: options.definition.service,
    accountId: options.accountId,
    credentials: options.credentials,
    http: axios.create({
      timeout: options.definition.policies.timeoutMs,
      httpAgent: net.httpAgent,
      httpsAgent: net.httpsAgent,
      // Never a proxy from HTTP_PROXY: the guard must see the real target.
      proxy: false,
      maxRedirects: 0,
      maxBodyLength: Number.POSITIVE_INFINITY,
      maxContentLength: Number.POSITIVE_INFINITY,
    }),
    net,
    policies: options.definition.policies,
    log: options.log ?? silentLogger,
    rawHeaders: options.rawHeaders ?? {},
    ...(options.asUser !== undefined ? { asUser: options.asUser } : {}),
    scratchDir: options.scratchDir ?? tmpdir(),
  };
}
