/**
 * The per-account axios instance connectors get as `ctx.http`. A custom adapter wraps axios's
 * Node http adapter and, per attempt: merges raw headers, applies the auth strategy, optionally
 * paces against a rate limiter, sends through the network guard's agents with no redirects, then
 * decides — refresh on 401 once, retry transient 5xx / network errors (idempotent + replayable
 * only, full jitter), 429 never — and maps failures to CloudmuxErrors exactly once.
 */
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable } from 'node:stream';
import axios, {
  type AxiosAdapter,
  AxiosHeaders,
  type AxiosInstance,
  type AxiosResponse,
  type InternalAxiosRequestConfig,
} from 'axios';
import type { AnyConnectorDefinition, Logger } from '../connector.js';
import { silentLogger } from '../connector.js';
import {
  CloudmuxError,
  errorFromNetworkError,
  errorFromUpstreamResponse,
  isCloudmuxError,
  parseRetryAfter,
} from '../errors.js';
import { networkRefusalFrom } from '../net/guard.js';
import { type RateLimiter, tooManyRequests } from '../rate-limit.js';
import { type AppliedAuth, createAuthStrategy } from './auth.js';
import { type Clock, systemClock } from './clock.js';
import type { CredentialSource } from './credentials.js';
import { filterRawHeaders } from './headers.js';
import { createTokenHttp, type OAuthClient } from './oauth.js';
import { isReadableStream, type PreparedRequest } from './prepared.js';
import { refresherFor, sharedTokenCache, TokenCache, type TokenRefresher } from './refresh.js';
import {
  fullJitterDelay,
  isIdempotentMethod,
  isRetryableError,
  isRetryableStatus,
  MAX_ATTEMPTS,
} from './retry.js';

declare module 'axios' {
  interface AxiosRequestConfig {
    /**
     * `true`: this POST/PATCH may be retried (the connector sends an idempotency key or the
     * endpoint is documented idempotent). `false`: never retry, whatever the method.
     */
    idempotent?: boolean;
    /** Send without the account's credentials (e.g. a pre-signed URL). */
    skipAuth?: boolean;
    /** A fresh body per attempt, making a streamed upload replayable; `data` is ignored when set. */
    bodyFactory?: () => Readable | Buffer | string;
  }
}

export interface HttpClientOptions {
  definition: AnyConnectorDefinition;
  accountId: string;
  credentials: CredentialSource;
  /** The app's OAuth client for this service (refreshing authorization-code tokens). */
  oauthClient?: OAuthClient;
  /** From core's network guard; every connection of this client goes through them. */
  httpAgent?: HttpAgent;
  httpsAgent?: HttpsAgent;
  /** `X-Kloudless-Raw-Headers`. */
  rawHeaders?: Record<string, string>;
  /** `X-Kloudless-As-User` (service-account JWT subject). */
  asUser?: string;
  clock?: Clock;
  random?: () => number;
  log?: Logger;
  /** Shared refresher of this process (defaults to the one for the credential store). */
  refresher?: TokenRefresher;
  tokenCache?: TokenCache;
  /** Paces upstream calls per account (keyed by `accountId`, sized by `policies.rateLimit`). */
  rateLimiter?: RateLimiter;
  /** How long an attempt may wait for the rate limiter before `too_many_requests` (default 5 s). */
  rateLimitMaxWaitMs?: number;
  /**
   * Called once per attempt that reached the network: the upstream status, or `error` / `timeout`.
   * The server counts upstream calls by service and status with it (Prometheus).
   */
  onAttempt?: (attempt: {
    service: string;
    method: string;
    status: number | 'error' | 'timeout';
    seconds: number;
  }) => void;
}

// Fallbacks for tests and `network: 'none'` connectors; the server always passes the guard's agents.
const defaultHttpAgent = new HttpAgent({ keepAlive: true });
const defaultHttpsAgent = new HttpsAgent({ keepAlive: true });

const ERROR_BODY_LIMIT = 2048;
const ERROR_BODY_GUARD_MS = 5_000;

const CONFIG_ERROR_CODES = new Set([
  'ERR_BAD_OPTION_VALUE',
  'ERR_BAD_OPTION',
  'ERR_INVALID_URL',
  'ERR_NOT_SUPPORT',
  'ERR_BAD_REQUEST',
]);

interface NormalizedBody {
  body: Buffer | Readable | undefined | unknown;
  replayable: boolean;
}

function normalizeBody(data: unknown): NormalizedBody {
  if (data === undefined || data === null) return { body: undefined, replayable: true };
  if (Buffer.isBuffer(data)) return { body: data, replayable: true };
  if (typeof data === 'string') return { body: Buffer.from(data, 'utf8'), replayable: true };
  if (data instanceof ArrayBuffer) return { body: Buffer.from(new Uint8Array(data)), replayable: true };
  if (ArrayBuffer.isView(data))
    return { body: Buffer.from(data.buffer, data.byteOffset, data.byteLength), replayable: true };
  // Streams are consumed by the first attempt; FormData and the like are too.
  return { body: data, replayable: false };
}

function headerRecord(headers: InternalAxiosRequestConfig['headers'] | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  const json = AxiosHeaders.from(headers ?? {}).toJSON(true) as Record<string, unknown>;
  for (const [name, value] of Object.entries(json)) {
    if (value === undefined || value === null || value === false) continue;
    out[name.toLowerCase()] = String(value);
  }
  return out;
}

function headerValue(response: AxiosResponse, name: string): string | undefined {
  const value =
    (response.headers as Record<string, unknown>)[name] ??
    AxiosHeaders.from(response.headers as never).get(name);
  return typeof value === 'string' ? value : undefined;
}

/** For logs: never the query (API keys, SAS tokens) and never credentials in the userinfo. */
function logUrl(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function sanitizedNetworkError(error: unknown): Error {
  const e = error as { message?: string; code?: string; cause?: { code?: string } } | null;
  const code = e?.code ?? e?.cause?.code;
  // A fresh error, not the AxiosError: that one holds the config (auth headers, signed URLs).
  return Object.assign(new Error(e?.message ?? 'network error'), code ? { code } : {});
}

async function readPrefix(stream: Readable, limit: number): Promise<string> {
  return new Promise<string>((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stream.off('data', onData);
      stream.destroy();
      resolve(Buffer.concat(chunks).subarray(0, limit).toString('utf8'));
    };
    const onData = (chunk: Buffer | string) => {
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      chunks.push(buf);
      size += buf.length;
      if (size >= limit) finish();
    };
    // A safety net against an upstream that sends error headers and then stalls the body.
    const timer = setTimeout(finish, ERROR_BODY_GUARD_MS);
    timer.unref?.();
    stream.on('data', onData);
    stream.once('end', finish);
    stream.once('error', finish);
    stream.once('close', finish);
  });
}

async function bodyText(data: unknown): Promise<string | undefined> {
  if (data === undefined || data === null) return undefined;
  if (typeof data === 'string') return data.slice(0, ERROR_BODY_LIMIT * 2);
  if (Buffer.isBuffer(data)) return data.subarray(0, ERROR_BODY_LIMIT).toString('utf8');
  if (isReadableStream(data)) return readPrefix(data, ERROR_BODY_LIMIT);
  try {
    return JSON.stringify(data).slice(0, ERROR_BODY_LIMIT * 2);
  } catch {
    return undefined;
  }
}

/** The provider's own error code, for connectors' finer mapping (`itemNotFound`, `NoSuchKey`, …). */
export function upstreamErrorCode(body: string | undefined): string | undefined {
  if (!body) return undefined;
  const xml = /<Code>([^<]{1,200})<\/Code>/.exec(body);
  if (xml) return xml[1];
  try {
    const json = JSON.parse(body) as Record<string, unknown>;
    const error = json.error;
    if (typeof error === 'string') return error;
    if (error && typeof error === 'object') {
      const { code, status } = error as { code?: unknown; status?: unknown };
      if (typeof code === 'string') return code;
      if (typeof status === 'string') return status;
    }
    if (typeof json.error_summary === 'string') return json.error_summary;
    if (typeof json.code === 'string') return json.code;
  } catch {
    // not JSON, or cut at 2 KiB
  }
  return undefined;
}

function discard(response: AxiosResponse): void {
  if (isReadableStream(response.data)) response.data.destroy();
}

export function createHttpClient(options: HttpClientOptions): AxiosInstance {
  const { definition, accountId } = options;
  const service = definition.service;
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const log = options.log ?? silentLogger;
  const httpAgent = options.httpAgent ?? defaultHttpAgent;
  const httpsAgent = options.httpsAgent ?? defaultHttpsAgent;
  const policy = definition.policies.retry;
  const maxPolicyAttempts = Math.max(1, Math.min(MAX_ATTEMPTS, policy.maxAttempts));
  const tokenHttp = createTokenHttp({
    httpAgent,
    httpsAgent,
    timeoutMs: Math.min(definition.policies.timeoutMs, 30_000),
  });
  const source = options.credentials;
  const refresher =
    options.refresher ?? (source.kind === 'store' ? refresherFor(source.store, { clock, log }) : undefined);
  const strategy = createAuthStrategy(definition.auth, {
    service,
    accountId,
    credentials: source,
    ...(options.oauthClient ? { oauthClient: options.oauthClient } : {}),
    tokenHttp,
    clock,
    ...(refresher ? { refresher } : {}),
    tokenCache: options.tokenCache ?? (options.clock ? new TokenCache({ clock }) : sharedTokenCache),
    ...(options.asUser ? { asUser: options.asUser } : {}),
    log,
  });
  const raw = filterRawHeaders(options.rawHeaders, strategy.ownedHeaders);
  if (raw.dropped.length > 0) log.debug({ service, accountId, dropped: raw.dropped }, 'raw headers refused');
  const httpAdapter = axios.getAdapter('http');

  async function pace(signal: AbortSignal | undefined): Promise<void> {
    const limiter = options.rateLimiter;
    if (!limiter) return;
    const maxWait = options.rateLimitMaxWaitMs ?? 5_000;
    let waited = 0;
    for (;;) {
      const decision = await limiter.take(accountId, definition.policies.rateLimit);
      if (decision.allowed) return;
      if (waited + decision.retryAfterMs > maxWait) throw tooManyRequests(decision);
      waited += decision.retryAfterMs;
      await clock.sleep(decision.retryAfterMs, signal);
    }
  }

  async function backoff(
    attempt: number,
    url: URL,
    method: string,
    why: string | number,
    floorMs: number,
    signal?: AbortSignal,
  ) {
    const delayMs = Math.max(fullJitterDelay(policy, attempt - 1, random), floorMs);
    log.debug(
      { service, accountId, method, url: logUrl(url), attempt, delayMs, why },
      'retrying upstream request',
    );
    await clock.sleep(delayMs, signal);
  }

  async function errorFromResponse(response: AxiosResponse): Promise<CloudmuxError> {
    const body = await bodyText(response.data);
    const retryAfter = parseRetryAfter(headerValue(response, 'retry-after'), clock.now());
    const upstreamCode = upstreamErrorCode(body);
    return errorFromUpstreamResponse(service, response.status, {
      ...(body !== undefined ? { body } : {}),
      ...(retryAfter !== undefined ? { retryAfter } : {}),
      ...(upstreamCode !== undefined ? { upstreamCode } : {}),
    });
  }

  const adapter: AxiosAdapter = async (config: InternalAxiosRequestConfig): Promise<AxiosResponse> => {
    const method = (config.method ?? 'get').toUpperCase();
    const signal = (config.signal ?? undefined) as AbortSignal | undefined;
    let url: URL;
    try {
      url = new URL(axios.getUri(config));
    } catch {
      throw new CloudmuxError('internal_error', `Invalid upstream URL for ${service}.`, { service });
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new CloudmuxError(
        'internal_error',
        `Unsupported upstream protocol ${url.protocol} for ${service}.`,
        { service },
      );
    }
    if (url.username || url.password) {
      // Credentials go through the auth strategy, never the URL (axios would turn them into Basic auth).
      url.username = '';
      url.password = '';
      log.warn({ service, url: logUrl(url) }, 'userinfo removed from upstream URL');
    }
    const factory = config.bodyFactory;
    const first = factory ? undefined : normalizeBody(config.data);
    const replayable = factory !== undefined || (first?.replayable ?? true);
    const idempotent = config.idempotent ?? isIdempotentMethod(method);
    const maxAttempts = idempotent && replayable ? maxPolicyAttempts : 1;
    const validate = config.validateStatus;
    let authRetried = false;

    for (let attempt = 1; ; attempt++) {
      const body = factory ? normalizeBody(factory()).body : first?.body;
      const req: PreparedRequest = {
        method,
        url: new URL(url.href),
        headers: headerRecord(config.headers),
        body,
      };
      Object.assign(req.headers, raw.headers);
      delete req.headers.host;
      if (Buffer.isBuffer(body)) req.headers['content-length'] = String(body.length);
      await pace(signal);
      const applied: AppliedAuth = config.skipAuth ? {} : await strategy.apply(req, signal);

      const inner: InternalAxiosRequestConfig = {
        ...config,
        url: req.url.href,
        baseURL: undefined,
        params: undefined,
        headers: AxiosHeaders.from(req.headers),
        data: body,
        validateStatus: null,
        // Enforced whatever the connector passed: the guard's agents, no proxy, HTTP/1.1, no redirects.
        maxRedirects: 0,
        proxy: false,
        httpAgent,
        httpsAgent,
        httpVersion: 1,
        auth: undefined,
        socketPath: undefined,
        transport: undefined,
        lookup: undefined,
        beforeRedirect: undefined,
      } as InternalAxiosRequestConfig;

      let response: AxiosResponse;
      const attemptStarted = performance.now();
      const report = (status: number | 'error' | 'timeout') => {
        try {
          options.onAttempt?.({
            service,
            method,
            status,
            seconds: (performance.now() - attemptStarted) / 1000,
          });
        } catch {
          // metrics must never fail a request
        }
      };
      try {
        response = await httpAdapter(inner);
        report(response.status);
      } catch (error) {
        const status = (error as { response?: { status?: number } }).response?.status;
        const code = (error as { code?: string }).code;
        report(status ?? (code === 'ECONNABORTED' || code === 'ETIMEDOUT' ? 'timeout' : 'error'));
        if (axios.isCancel(error) || signal?.aborted) throw error;
        // The network guard refused the address: that is the answer (`forbidden`), never retried.
        const refusal = networkRefusalFrom(error);
        if (refusal) throw refusal;
        const mapped = errorFromNetworkError(service, sanitizedNetworkError(error));
        if (attempt < maxAttempts && isRetryableError(mapped)) {
          await backoff(attempt, req.url, method, mapped.upstream?.code ?? mapped.code, 0, signal);
          continue;
        }
        throw mapped;
      }

      const status = response.status;
      if (status === 401 && !config.skipAuth && strategy.onUnauthorized && !authRetried) {
        authRetried = true;
        let changed: boolean;
        try {
          changed = await strategy.onUnauthorized(applied, signal);
        } catch (error) {
          discard(response);
          throw error;
        }
        if (changed && replayable) {
          discard(response);
          attempt -= 1; // the retry after a refresh is not a failure attempt
          continue;
        }
      }
      if (isRetryableStatus(status) && attempt < maxAttempts) {
        const retryAfter =
          status === 503 ? parseRetryAfter(headerValue(response, 'retry-after'), clock.now()) : undefined;
        const floorMs = (retryAfter ?? 0) * 1000;
        // A Retry-After beyond our backoff cap: answer now instead of holding the caller.
        if (floorMs <= policy.maxDelayMs) {
          discard(response);
          await backoff(attempt, req.url, method, status, floorMs, signal);
          continue;
        }
      }
      if (!validate || validate(status)) return response;
      throw await errorFromResponse(response);
    }
  };

  const instance = axios.create({
    adapter,
    timeout: definition.policies.timeoutMs,
    maxRedirects: 0,
    // -1 is axios's "no limit" without the per-chunk counting stream a numeric cap adds.
    maxBodyLength: -1,
    maxContentLength: -1,
    proxy: false,
    httpAgent,
    httpsAgent,
    headers: { 'User-Agent': 'cloudmux' },
  });

  // Failures that never reached the adapter's mapping (aborts, config errors) are mapped here, once.
  instance.interceptors.response.use(undefined, (error: unknown) =>
    Promise.reject(mapLeftover(error, service)),
  );
  return instance;
}

function mapLeftover(error: unknown, service: string): CloudmuxError {
  if (isCloudmuxError(error)) return error;
  if (axios.isCancel(error)) {
    const reason = (
      (error as { config?: { signal?: AbortSignal } }).config?.signal as AbortSignal | undefined
    )?.reason as unknown;
    const deadline = reason instanceof DOMException && reason.name === 'TimeoutError';
    return new CloudmuxError(
      deadline ? 'gateway_timeout' : 'timed_out',
      deadline
        ? 'The upstream request exceeded its deadline.'
        : 'The upstream request was aborted before it completed.',
      {
        service,
        upstream: { service, code: 'ERR_CANCELED' },
        ...(reason !== undefined ? { cause: reason } : {}),
      },
    );
  }
  const refusal = networkRefusalFrom(error);
  if (refusal) return refusal;
  if (axios.isAxiosError(error)) {
    if (error.response) {
      return errorFromUpstreamResponse(service, error.response.status);
    }
    if (error.code && CONFIG_ERROR_CODES.has(error.code)) {
      return new CloudmuxError(
        'internal_error',
        `Invalid upstream request for ${service}: ${error.message}`,
        { service },
      );
    }
    return errorFromNetworkError(service, sanitizedNetworkError(error));
  }
  return new CloudmuxError('internal_error', `Unexpected failure calling ${service}.`, {
    service,
    cause: error,
  });
}
