/**
 * Retry rules shared by the HTTP client and protocol connectors (FTP, SMB): full-jitter
 * exponential backoff, at most `maxAttempts` (≤ 3) attempts, only for idempotent operations,
 * and never for an upstream 429.
 */
import type { RetryPolicy } from '../connector.js';
import { DEFAULT_POLICIES } from '../connector.js';
import { isCloudmuxError } from '../errors.js';
import { type Clock, systemClock } from './clock.js';

/** Hard ceiling whatever a definition says (the meta-schema enforces it too). */
export const MAX_ATTEMPTS = 3;

/** RFC 9110 §9.2.2 idempotent methods. */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set([
  'GET',
  'HEAD',
  'OPTIONS',
  'TRACE',
  'PUT',
  'DELETE',
]);

export function isIdempotentMethod(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method.toUpperCase());
}

/**
 * Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"): the wait before retry
 * number `retry` (0 for the first retry) is uniform in [0, min(maxDelayMs, baseDelayMs·2^retry)).
 */
export function fullJitterDelay(
  policy: RetryPolicy,
  retry: number,
  random: () => number = Math.random,
): number {
  const cap = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
  return Math.floor(random() * cap);
}

/** The ceiling of the full-jitter window for `retry`, for callers and tests that check a delay. */
export function fullJitterCap(policy: RetryPolicy, retry: number): number {
  return Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** retry);
}

/** Upstream 5xx that may be transient; 501, 505, 507, 508, 510 and 511 are permanent answers. */
export function isRetryableStatus(status: number): boolean {
  return status >= 500 && status <= 599 && ![501, 505, 507, 508, 510, 511].includes(status);
}

const PERMANENT_NETWORK_CODES = new Set([
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_HAS_EXPIRED',
]);

/**
 * Default retryability of a mapped error: gateway-class failures (upstream 5xx, connection and
 * timeout errors), never `too_many_service_requests`, never certificate failures.
 */
export function isRetryableError(error: unknown): boolean {
  if (!isCloudmuxError(error)) return false;
  if (error.code === 'too_many_service_requests') return false;
  if (error.upstream?.code !== undefined && PERMANENT_NETWORK_CODES.has(error.upstream.code)) return false;
  if (error.upstream?.status !== undefined) return isRetryableStatus(error.upstream.status);
  return (
    error.code === 'bad_gateway' || error.code === 'service_not_available' || error.code === 'gateway_timeout'
  );
}

export interface RetryOperationOptions {
  policy?: RetryPolicy;
  /** Only idempotent operations are ever retried. */
  idempotent: boolean;
  clock?: Clock;
  random?: () => number;
  isRetryable?: (error: unknown) => boolean;
  signal?: AbortSignal;
  /** Called before each wait, e.g. to log. */
  onRetry?: (info: { attempt: number; delayMs: number; error: unknown }) => void;
}

/**
 * Runs `fn(attempt)` (attempt starts at 1) under the retry rules. The operation must be replayable
 * as a whole: a protocol connector passes a function that reopens whatever stream it sends.
 */
export async function retryOperation<T>(
  fn: (attempt: number) => Promise<T>,
  options: RetryOperationOptions,
): Promise<T> {
  const policy = options.policy ?? DEFAULT_POLICIES.retry;
  const clock = options.clock ?? systemClock;
  const isRetryable = options.isRetryable ?? isRetryableError;
  const maxAttempts = options.idempotent ? Math.max(1, Math.min(MAX_ATTEMPTS, policy.maxAttempts)) : 1;
  for (let attempt = 1; ; attempt++) {
    options.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (error) {
      if (attempt >= maxAttempts || options.signal?.aborted || !isRetryable(error)) throw error;
      if (isCloudmuxError(error) && error.code === 'too_many_service_requests') throw error;
      const delayMs = fullJitterDelay(policy, attempt - 1, options.random);
      options.onRetry?.({ attempt, delayMs, error });
      await clock.sleep(delayMs, options.signal);
    }
  }
}
