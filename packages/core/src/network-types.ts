import type { LookupFunction, Socket, TcpNetConnectOpts } from 'node:net';
import type { ConnectionOptions as TlsConnectionOptions, TLSSocket } from 'node:tls';

/**
 * The one hook through which every connection a connector opens passes. It resolves the host,
 * checks the address actually connected to against the operator's network policy (and, for SaaS
 * connectors, the private/metadata ban), then connects. DNS rebinding fails because the check is
 * on the resolved address, not the name.
 */
export interface NetworkGuard {
  /** `dns.lookup`-compatible function for HTTP agents and client libraries that accept one. */
  readonly lookup: LookupFunction;
  /** Throws `forbidden` when `host` (name or literal) may not be reached. */
  assertAllowed(host: string, port?: number): Promise<void>;
  connect(options: TcpNetConnectOpts): Promise<Socket>;
  connectTls(options: TlsConnectionOptions & { host: string; port: number }): Promise<TLSSocket>;
}
