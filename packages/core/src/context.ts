/**
 * Builds the `ctx` a connector's `create()` receives. Placeholder wiring: plain axios and an
 * unrestricted network guard; the policy-enforcing HTTP client and guard replace the internals
 * without changing this signature.
 */
import { lookup as dnsLookup } from 'node:dns';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import axios from 'axios';
import type { AnyConnectorDefinition, ConnectorContext, Logger } from './connector.js';
import { silentLogger } from './connector.js';
import type { NetworkGuard } from './network-types.js';

export interface CreateConnectorContextOptions {
  definition: AnyConnectorDefinition;
  accountId: string;
  /** Already parsed by the definition's credentials schema. */
  credentials: unknown;
  log?: Logger;
  rawHeaders?: Record<string, string>;
  asUser?: string;
  scratchDir?: string;
}

export function createConnectorContext<TCredentials = unknown>(
  options: CreateConnectorContextOptions & { credentials: TCredentials },
): ConnectorContext<TCredentials> {
  const net: NetworkGuard = {
    lookup: dnsLookup,
    async assertAllowed() {},
    connect: (opts) =>
      new Promise<Socket>((resolve, reject) => {
        const socket = netConnect(opts, () => resolve(socket));
        socket.once('error', reject);
      }),
    connectTls: (opts) =>
      new Promise<TLSSocket>((resolve, reject) => {
        const socket = tlsConnect(opts, () => resolve(socket));
        socket.once('error', reject);
      }),
  };
  return {
    service: options.definition.service,
    accountId: options.accountId,
    credentials: options.credentials,
    http: axios.create({ timeout: options.definition.policies.timeoutMs }),
    net,
    policies: options.definition.policies,
    log: options.log ?? silentLogger,
    rawHeaders: options.rawHeaders ?? {},
    ...(options.asUser !== undefined ? { asUser: options.asUser } : {}),
    scratchDir: options.scratchDir ?? tmpdir(),
  };
}
