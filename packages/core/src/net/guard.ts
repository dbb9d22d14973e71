/**
 * `createNetworkGuard`: the one place connections are opened. The check runs inside the lookup used
 * at connect time (every address of the answer), before connecting to IP literals (which Node does
 * not look up), and again on `remoteAddress` once the TCP connection is up, before any byte is sent.
 */
import { lookup as dnsLookup, type LookupAddress, type LookupOptions } from 'node:dns';
import { type ClientRequestArgs, Agent as HttpAgent, type AgentOptions as HttpAgentOptions } from 'node:http';
import {
  Agent as HttpsAgent,
  type AgentOptions as HttpsAgentOptions,
  type RequestOptions as HttpsRequestOptions,
} from 'node:https';
import {
  isIP,
  type LookupFunction,
  connect as netConnect,
  type Socket,
  type TcpNetConnectOpts,
} from 'node:net';
import type { Duplex } from 'node:stream';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { CloudmuxError } from '../errors.js';
import type {
  AddressVerdict,
  CheckedAddress,
  ConnectEvent,
  GuardTlsConnectOptions,
  NetworkGuard,
  NetworkPolicy,
} from '../network-types.js';
import { parseIp } from './ip.js';
import { type CompiledPolicy, compilePolicy, evaluateAddress, refuseHostName } from './policy.js';

export interface NetworkGuardOptions {
  policy: NetworkPolicy;
  /** `dns.lookup`-compatible resolver checked on every answer (default `dns.lookup`); tests inject fakes. */
  lookup?: LookupFunction;
  /** Called for every socket actually opened (TCP connected), allowed or not; its errors are ignored. */
  onConnect?: (event: ConnectEvent) => void;
  /** Options for the http/https agents (default `{ keepAlive: true }`). */
  agentOptions?: HttpAgentOptions & HttpsAgentOptions;
}

const refusals = new WeakSet<object>();

function describeHost(host: string): string {
  const shown = host.length > 100 ? `${host.slice(0, 100)}…` : host;
  return /^[\w.:%[\]-]+$/.test(shown) ? shown : JSON.stringify(shown);
}

function refusal(host: string, reason: string, address?: string): CloudmuxError {
  const target = address === undefined ? describeHost(host) : `${describeHost(host)} (${address})`;
  const error = new CloudmuxError('forbidden', `Connection to ${target} refused: ${reason}.`);
  refusals.add(error);
  return error;
}

/**
 * The guard's refusal behind an error from a client library (axios wraps it as `cause`), or
 * undefined. The HTTP layer rethrows it as is instead of mapping it to a network error.
 */
export function networkRefusalFrom(error: unknown): CloudmuxError | undefined {
  let current: unknown = error;
  for (let depth = 0; depth < 6 && current != null && typeof current === 'object'; depth++) {
    if (refusals.has(current)) return current as CloudmuxError;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

function stripBrackets(host: string): string {
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

type Precheck = { ok: true; connectHost: string } | { ok: false; error: CloudmuxError };

/** What can be decided without DNS: IP literals (normalized from any notation) and refused names. */
function precheck(compiled: CompiledPolicy, rawHost: string): Precheck {
  const host = stripBrackets(rawHost);
  if (parseIp(host)) {
    const verdict = evaluateAddress(compiled, host);
    if (!verdict.allowed) return { ok: false, error: refusal(rawHost, verdict.reason) };
    return { ok: true, connectHost: verdict.address };
  }
  const reason = refuseHostName(compiled, host);
  if (reason !== undefined) return { ok: false, error: refusal(rawHost, reason) };
  return { ok: true, connectHost: host };
}

function familyOf(value: string | undefined): 4 | 6 {
  return value === 'IPv6' ? 6 : 4;
}

type LookupCallback = (
  err: NodeJS.ErrnoException | null,
  address: string | LookupAddress[],
  family?: number,
) => void;

function notFound(host: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), {
    code: 'ENOTFOUND',
    hostname: host,
    syscall: 'getaddrinfo',
  });
}

class GuardCore {
  readonly compiled: CompiledPolicy;
  readonly baseLookup: LookupFunction;
  readonly onConnect: ((event: ConnectEvent) => void) | undefined;

  constructor(options: NetworkGuardOptions) {
    this.compiled = compilePolicy(options.policy);
    this.baseLookup = options.lookup ?? (dnsLookup as LookupFunction);
    this.onConnect = options.onConnect;
  }

  private queryAll(host: string, options: LookupOptions): Promise<LookupAddress[]> {
    return new Promise((resolve, reject) => {
      const query: LookupOptions = { ...options, all: true };
      this.baseLookup(host, query as LookupOptions & { all: true }, (err, address, family) => {
        if (err) return reject(err);
        if (Array.isArray(address)) return resolve(address);
        // A resolver that ignores `all` answers with one address.
        return resolve(
          typeof address === 'string' ? [{ address, family: family ?? (isIP(address) || 4) }] : [],
        );
      });
    });
  }

  /** Resolves `rawHost` and checks every address of the answer; connect only to the addresses returned. */
  async resolve(rawHost: string, options: LookupOptions = {}): Promise<{ address: string; family: 4 | 6 }[]> {
    const pre = precheck(this.compiled, rawHost);
    if (!pre.ok) throw pre.error;
    const host = stripBrackets(rawHost);
    if (parseIp(host)) {
      const family = isIP(pre.connectHost) as 4 | 6;
      if (options.family && options.family !== family && options.family !== 0) throw notFound(host);
      return [{ address: pre.connectHost, family }];
    }
    const answers = await this.queryAll(host, options);
    if (answers.length === 0) throw notFound(host);
    const checked: { address: string; family: 4 | 6 }[] = [];
    for (const answer of answers) {
      const verdict: AddressVerdict = evaluateAddress(this.compiled, String(answer.address));
      if (!verdict.allowed) throw refusal(rawHost, verdict.reason, verdict.address);
      if (!checked.some((c) => c.address === verdict.address))
        checked.push({ address: verdict.address, family: verdict.family });
    }
    return checked;
  }

  readonly lookup: LookupFunction = ((hostname: string, options: unknown, callback?: unknown) => {
    let opts: LookupOptions = {};
    let cb = callback as LookupCallback;
    if (typeof options === 'function') cb = options as LookupCallback;
    else if (typeof options === 'number') opts = { family: options };
    else if (options && typeof options === 'object') opts = options as LookupOptions;
    this.resolve(hostname, opts).then(
      (list) => (opts.all ? cb(null, list) : cb(null, list[0]!.address, list[0]!.family)),
      (error: NodeJS.ErrnoException) => cb(error, opts.all ? [] : ''),
    );
  }) as LookupFunction;

  /** The post-connect check: runs before any other `connect` listener, so nothing is written first. */
  watch(socket: Socket, host: string, tls: boolean): void {
    socket.prependOnceListener('connect', () => {
      const address = socket.remoteAddress;
      const verdict: AddressVerdict =
        address === undefined
          ? { allowed: false, address: '', reason: 'the peer address is unknown' }
          : evaluateAddress(this.compiled, address);
      const event: ConnectEvent = {
        host,
        address: address ?? '',
        port: socket.remotePort ?? 0,
        family: familyOf(socket.remoteFamily),
        tls,
        allowed: verdict.allowed,
      };
      if (!verdict.allowed) event.reason = verdict.reason;
      try {
        this.onConnect?.(event);
      } catch {
        // An observer must not change what the guard decides.
      }
      if (!verdict.allowed) socket.destroy(refusal(host, verdict.reason));
    });
  }

  /** Socket factory behind both agents. Returns undefined after reporting a refusal through `callback`. */
  agentSocket(
    options: ClientRequestArgs,
    callback: ((err: Error | null, stream: Duplex) => void) | undefined,
    tls: boolean,
    create: (options: ClientRequestArgs) => Duplex | null | undefined,
  ): Duplex | null | undefined {
    const fail = (error: Error): undefined => {
      // The agent's callback is the only error channel when no socket is returned.
      if (callback) callback(error, undefined as unknown as Duplex);
      else throw error;
      return undefined;
    };
    const host = options.host ?? options.hostname ?? 'localhost';
    const path = (options as { path?: unknown }).path;
    if (options.socketPath || (typeof path === 'string' && path !== '')) {
      return fail(refusal(host, 'unix socket connections are not allowed'));
    }
    const pre = precheck(this.compiled, host);
    if (!pre.ok) return fail(pre.error);
    const socket = create({ ...options, host: pre.connectHost, lookup: this.lookup } as ClientRequestArgs);
    if (socket) this.watch(socket as Socket, host, tls);
    return socket;
  }
}

class GuardedHttpAgent extends HttpAgent {
  readonly #core: GuardCore;

  constructor(core: GuardCore, options?: HttpAgentOptions) {
    super(options);
    this.#core = core;
  }

  override createConnection(
    options: ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    return this.#core.agentSocket(options, callback, false, (opts) => super.createConnection(opts, callback));
  }
}

class GuardedHttpsAgent extends HttpsAgent {
  readonly #core: GuardCore;

  constructor(core: GuardCore, options?: HttpsAgentOptions) {
    super(options);
    this.#core = core;
  }

  override createConnection(
    options: HttpsRequestOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    return this.#core.agentSocket(options, callback, true, (opts) =>
      super.createConnection(opts as HttpsRequestOptions, callback),
    );
  }
}

/** Settles once `socket` is connected (`event`) and passed the check, or fails with its first error. */
function whenConnected<T extends Socket>(
  socket: T,
  event: 'connect' | 'secureConnect',
  timeoutMs?: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cleanup = () => {
      socket.off(event, onReady);
      socket.off('error', onError);
      socket.off('close', onClose);
      socket.off('timeout', onTimeout);
    };
    const onReady = () => {
      if (socket.destroyed) return;
      cleanup();
      resolve(socket);
    };
    const onError = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onClose = () => {
      cleanup();
      reject(Object.assign(new Error('socket closed before it was ready'), { code: 'ECONNRESET' }));
    };
    const onTimeout = () => {
      socket.destroy(
        Object.assign(new Error(`connection timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' }),
      );
    };
    socket.on(event, onReady);
    socket.on('error', onError);
    socket.on('close', onClose);
    if (timeoutMs !== undefined) socket.on('timeout', onTimeout);
  });
}

/**
 * Builds the guard for one connector's network policy. Throws `NetworkPolicyError` for an invalid
 * policy (unknown mode, bad CIDR) so misconfiguration fails at startup.
 */
export function createNetworkGuard(options: NetworkGuardOptions): NetworkGuard {
  const core = new GuardCore(options);
  const agentOptions = { keepAlive: true, ...options.agentOptions };
  delete (agentOptions as { lookup?: unknown }).lookup;
  const httpAgent = new GuardedHttpAgent(core, agentOptions);
  const httpsAgent = new GuardedHttpsAgent(core, agentOptions);

  return Object.freeze({
    policy: core.compiled.policy,
    lookup: core.lookup,
    httpAgent,
    httpsAgent,

    checkAddress: (address: string) => evaluateAddress(core.compiled, address),

    async assertAllowed(host: string, port?: number): Promise<CheckedAddress> {
      if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
        throw new CloudmuxError('bad_request', `Invalid port ${String(port)}.`);
      }
      const addresses = await core.resolve(host);
      const first = addresses[0]!;
      const checked: CheckedAddress = { host, address: first.address, family: first.family, addresses };
      if (port !== undefined) checked.port = port;
      return checked;
    },

    async connect(connectOptions: TcpNetConnectOpts): Promise<Socket> {
      const host = connectOptions.host ?? 'localhost';
      if ((connectOptions as { path?: unknown }).path)
        throw refusal(host, 'unix socket connections are not allowed');
      const pre = precheck(core.compiled, host);
      if (!pre.ok) throw pre.error;
      const socket = netConnect({ ...connectOptions, host: pre.connectHost, lookup: core.lookup });
      core.watch(socket, host, false);
      return whenConnected(socket, 'connect', connectOptions.timeout);
    },

    async connectTls(tlsOptions: GuardTlsConnectOptions): Promise<TLSSocket> {
      if (tlsOptions.socket) {
        // STARTTLS (FTP AUTH TLS): the plain socket must already be connected to an allowed peer.
        const peer = tlsOptions.socket.remoteAddress;
        const host = tlsOptions.host ?? peer ?? 'unknown host';
        if (peer === undefined) throw refusal(host, 'the socket to upgrade is not connected');
        const verdict = evaluateAddress(core.compiled, peer);
        if (!verdict.allowed) throw refusal(host, verdict.reason);
        const servername =
          tlsOptions.servername ?? (tlsOptions.host && !isIP(tlsOptions.host) ? tlsOptions.host : undefined);
        const upgraded = tlsConnect({ ...tlsOptions, ...(servername ? { servername } : {}) });
        return whenConnected(upgraded, 'secureConnect');
      }
      const host = tlsOptions.host;
      const pre = precheck(core.compiled, host);
      if (!pre.ok) throw pre.error;
      const servername = tlsOptions.servername ?? (isIP(pre.connectHost) ? undefined : pre.connectHost);
      const socket = tlsConnect({
        ...tlsOptions,
        host: pre.connectHost,
        lookup: core.lookup,
        ...(servername ? { servername } : {}),
      });
      core.watch(socket, host, true);
      return whenConnected(socket, 'secureConnect', tlsOptions.timeout);
    },

    destroy(): void {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  });
}

/** The post-connect check alone, on a socket opened elsewhere (not exported from the package; for tests). */
export function attachPostConnectCheck(guard: NetworkGuardOptions, socket: Socket, host: string): void {
  new GuardCore(guard).watch(socket, host, false);
}
