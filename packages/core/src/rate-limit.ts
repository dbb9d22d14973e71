/**
 * Our own per-account limit (Kloudless `too_many_requests`): a token bucket, 10 requests/s with a
 * burst of 10 by default. The arithmetic is integer (credit in token·ms), so `retryAfterMs` is exact
 * on a fake clock. State lives behind `BucketStore` so several server instances can share it (the
 * server's Redis store runs this same step as a Lua script, so it stays atomic).
 */
import { CloudmuxError } from './errors.js';
import { type Clock, systemClock } from './http/clock.js';

export interface TokenBucketParams {
  /** Tokens added per second. */
  requestsPerSecond: number;
  /** Bucket size: how many requests may arrive at once. */
  burst: number;
}

export interface BucketState {
  /** Tokens × 1000 (so refills of `rate` per elapsed ms stay integral for integral rates). */
  credit: number;
  /** When `credit` was computed, ms since the epoch. */
  updatedAt: number;
}

export interface BucketStepInput extends TokenBucketParams {
  now: number;
  cost: number;
}

export interface BucketStepResult {
  state: BucketState;
  allowed: boolean;
}

/** One atomic step: refill for the elapsed time, then take `cost` tokens if there are enough. */
export function tokenBucketStep(previous: BucketState | undefined, input: BucketStepInput): BucketStepResult {
  const capacity = input.burst * 1000;
  const need = input.cost * 1000;
  let credit = capacity;
  if (previous) {
    const elapsed = Math.max(0, input.now - previous.updatedAt);
    credit = Math.min(capacity, previous.credit + elapsed * input.requestsPerSecond);
  }
  const allowed = credit >= need;
  if (allowed) credit -= need;
  return { state: { credit, updatedAt: input.now }, allowed };
}

/** Where buckets live. `take` must run `tokenBucketStep` atomically for one key. */
export interface BucketStore {
  take(key: string, input: BucketStepInput, ttlMs: number): Promise<BucketState & { allowed: boolean }>;
}

/** Process-local buckets; idle entries are dropped once they would have refilled completely. */
export class InMemoryBucketStore implements BucketStore {
  private readonly buckets = new Map<string, { state: BucketState; expiresAt: number }>();
  private takes = 0;

  async take(
    key: string,
    input: BucketStepInput,
    ttlMs: number,
  ): Promise<BucketState & { allowed: boolean }> {
    if (++this.takes % 1024 === 0) this.sweep(input.now);
    const entry = this.buckets.get(key);
    const previous = entry && entry.expiresAt > input.now ? entry.state : undefined;
    const { state, allowed } = tokenBucketStep(previous, input);
    this.buckets.set(key, { state, expiresAt: input.now + ttlMs });
    return { ...state, allowed };
  }

  get size(): number {
    return this.buckets.size;
  }

  private sweep(now: number): void {
    for (const [key, entry] of this.buckets) if (entry.expiresAt <= now) this.buckets.delete(key);
  }
}

export interface RateLimitDecision {
  allowed: boolean;
  /** Whole tokens left after this request. */
  remaining: number;
  /** 0 when allowed; otherwise how long until `cost` tokens are available. */
  retryAfterMs: number;
  /** How long until the bucket is full again. */
  resetMs: number;
  /** The burst (bucket size). */
  limit: number;
}

export const DEFAULT_RATE_LIMIT: TokenBucketParams = { requestsPerSecond: 10, burst: 10 };

export interface RateLimiterOptions extends Partial<TokenBucketParams> {
  store?: BucketStore;
  clock?: Clock;
}

export class RateLimiter {
  readonly params: TokenBucketParams;
  private readonly store: BucketStore;
  private readonly clock: Clock;

  constructor(options: RateLimiterOptions = {}) {
    this.params = {
      requestsPerSecond: options.requestsPerSecond ?? DEFAULT_RATE_LIMIT.requestsPerSecond,
      burst: options.burst ?? DEFAULT_RATE_LIMIT.burst,
    };
    if (!(this.params.requestsPerSecond > 0) || !(this.params.burst >= 1)) {
      throw new RangeError('rate limit needs requestsPerSecond > 0 and burst >= 1');
    }
    this.store = options.store ?? new InMemoryBucketStore();
    this.clock = options.clock ?? systemClock;
  }

  /** Takes `cost` tokens from `key`'s bucket (e.g. the connected account id). */
  async take(
    key: string,
    options: Partial<TokenBucketParams> & { cost?: number } = {},
  ): Promise<RateLimitDecision> {
    const rate = options.requestsPerSecond ?? this.params.requestsPerSecond;
    const burst = options.burst ?? this.params.burst;
    const cost = options.cost ?? 1;
    if (cost > burst) throw new RangeError('cost exceeds the bucket size');
    const ttlMs = Math.ceil((burst * 1000) / rate);
    const result = await this.store.take(
      key,
      { now: this.clock.now(), requestsPerSecond: rate, burst, cost },
      ttlMs,
    );
    const deficit = cost * 1000 - result.credit;
    return {
      allowed: result.allowed,
      remaining: Math.floor(result.credit / 1000),
      retryAfterMs: result.allowed ? 0 : Math.ceil(deficit / rate),
      resetMs: Math.ceil((burst * 1000 - result.credit) / rate),
      limit: burst,
    };
  }
}

/** `Retry-After` (on denial) and the draft-06 `RateLimit-*` headers, in whole seconds rounded up. */
export function rateLimitHeaders(decision: RateLimitDecision): Record<string, string> {
  const headers: Record<string, string> = {
    'RateLimit-Limit': String(decision.limit),
    'RateLimit-Remaining': String(decision.remaining),
    'RateLimit-Reset': String(Math.ceil(decision.resetMs / 1000)),
  };
  if (!decision.allowed)
    headers['Retry-After'] = String(Math.max(1, Math.ceil(decision.retryAfterMs / 1000)));
  return headers;
}

/** The Kloudless `too_many_requests` error for a denied decision, carrying the headers above. */
export function tooManyRequests(decision: RateLimitDecision): CloudmuxError {
  return new CloudmuxError('too_many_requests', undefined, {
    retryAfter: Math.max(1, Math.ceil(decision.retryAfterMs / 1000)),
    headers: rateLimitHeaders(decision),
  });
}
