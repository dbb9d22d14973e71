import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { LookupFunction, Socket, TcpNetConnectOpts } from 'node:net';
import type { TLSSocket, ConnectionOptions as TlsConnectionOptions } from 'node:tls';

/** A connector's `network` declaration (`ConnectorDefinition.network`). */
export type NetworkMode = 'saas' | 'self_hosted' | 'none';

/**
 * What a connector may connect to. `saas`: public unicast addresses only. `self_hosted`: the
 * user's own servers, private ones included, but never cloud metadata or unspecified addresses.
 * `none`: no connection at all. `allowedNetworks` (operator's `CLOUDMUX_ALLOWED_NETWORKS`, CIDR
 * list) narrows any mode further: the connected address must lie inside one of them; an empty
 * list allows nothing.
 */
export interface NetworkPolicy {
  mode: NetworkMode;
  allowedNetworks?: readonly string[];
}

export type AddressClass =
  | 'public'
  | 'private'
  | 'loopback'
  | 'link_local'
  | 'cgnat'
  | 'multicast'
  | 'broadcast'
  | 'reserved'
  | 'unspecified'
  | 'metadata'
  | 'documentation';

export type AddressVerdict =
  | { allowed: true; address: string; family: 4 | 6; class: AddressClass }
  | { allowed: false; address: string; family?: 4 | 6; class?: AddressClass; reason: string };

/** A host resolved and checked by `assertAllowed`: connect to `address` (pin it) to stay checked. */
export interface CheckedAddress {
  host: string;
  /** The first allowed address; pin the connection (e.g. smbclient `-I`) to it. */
  address: string;
  family: 4 | 6;
  /** Every address of the answer; all were checked. */
  addresses: { address: string; family: 4 | 6 }[];
  port?: number;
}

/** One socket actually opened through the guard (fired on TCP connect, before any byte is sent). */
export interface ConnectEvent {
  host: string;
  address: string;
  port: number;
  family: 4 | 6;
  tls: boolean;
  /** False when the post-connect check on `remoteAddress` refused it; the socket is then destroyed. */
  allowed: boolean;
  reason?: string;
}

/** `connectTls` either opens a new connection (`host` + `port`) or upgrades a guarded socket (STARTTLS). */
export type GuardTlsConnectOptions = Omit<TlsConnectionOptions, 'lookup' | 'socket'> &
  ({ host: string; port: number; socket?: undefined } | { socket: Socket; host?: string; port?: number });

/**
 * The one hook through which every connection a connector opens passes. It resolves the host,
 * checks every address of the answer against the network policy inside the lookup used at connect
 * time, and checks `remoteAddress` again once connected, so DNS rebinding fails: the address
 * checked is the address connected to.
 */
export interface NetworkGuard {
  readonly policy: Readonly<NetworkPolicy>;
  /** `dns.lookup`-compatible function that refuses disallowed answers (`forbidden`). */
  readonly lookup: LookupFunction;
  /** Resolves and checks `host`; throws `forbidden` when it may not be reached. */
  assertAllowed(host: string, port?: number): Promise<CheckedAddress>;
  /** Pure policy check of one IP literal (any notation); no DNS. */
  checkAddress(address: string): AddressVerdict;
  /** TCP connection for protocol clients (FTP control/data, SMB); resolves once connected and checked. */
  connect(options: TcpNetConnectOpts): Promise<Socket>;
  /** TLS connection, resolved after the handshake; the TCP connect is checked before it starts. */
  connectTls(options: GuardTlsConnectOptions): Promise<TLSSocket>;
  /** For axios `httpAgent`: every socket it opens goes through the same check. */
  readonly httpAgent: HttpAgent;
  /** For axios `httpsAgent`; set both, or a cross-protocol redirect escapes the guard. */
  readonly httpsAgent: HttpsAgent;
  /** Closes the agents' pooled sockets. */
  destroy(): void;
}
