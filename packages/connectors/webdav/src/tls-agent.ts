/**
 * An https agent whose sockets come from `net.connectTls` with the account's own trust settings (a
 * private CA, or verification off). Core's HTTP client always sends through the guard's shared
 * agents and has no per-account TLS option yet, so accounts with `ca`/`insecure` get a core HTTP
 * client of their own built on this agent: every socket still goes through the same guard.
 * Remove once core's client takes per-account TLS options.
 */
import { type AgentOptions, Agent as HttpsAgent } from 'node:https';
import type { Duplex } from 'node:stream';
import type { NetworkGuard } from '@cloudmux/core';

export interface AccountTls {
  /** PEM certificates to trust instead of the system store. */
  ca?: string;
  rejectUnauthorized: boolean;
}

interface ConnectionOptions {
  host?: string | null;
  hostname?: string | null;
  port?: number | string | null;
  servername?: string;
  timeout?: number;
}

export class GuardedTlsAgent extends HttpsAgent {
  readonly #net: NetworkGuard;
  readonly #tls: AccountTls;
  readonly #connectTimeoutMs: number;

  constructor(net: NetworkGuard, tls: AccountTls, connectTimeoutMs: number, options: AgentOptions = {}) {
    super({ keepAlive: true, maxSockets: 16, ...options });
    this.#net = net;
    this.#tls = tls;
    this.#connectTimeoutMs = connectTimeoutMs;
  }

  // Returning nothing and answering through the callback is the agent protocol for async sockets.
  override createConnection(
    options: ConnectionOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    const host = String(options.host ?? options.hostname ?? 'localhost').replace(/^\[(.*)\]$/, '$1');
    const port = Number(options.port ?? 443);
    this.#net
      .connectTls({
        host,
        port,
        ...(options.servername ? { servername: options.servername } : {}),
        ...(this.#tls.ca ? { ca: this.#tls.ca } : {}),
        rejectUnauthorized: this.#tls.rejectUnauthorized,
        ALPNProtocols: ['http/1.1'],
        timeout: this.#connectTimeoutMs,
      })
      .then(
        (socket) => {
          // The connect timeout must not linger as an idle timeout; the HTTP client sets its own.
          socket.setTimeout(0);
          callback?.(null, socket);
        },
        (error: Error) => callback?.(error, undefined as unknown as Duplex),
      );
    return undefined;
  }
}
