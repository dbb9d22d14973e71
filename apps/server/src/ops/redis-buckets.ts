/**
 * Rate-limit buckets in Redis (`REDIS_URL`), so every instance in front of one database shares one
 * bucket per account. The step is core's `tokenBucketStep` as a Lua script (one atomic EVALSHA per
 * request; Redis runs scripts one at a time). Time comes from Redis' own `TIME` unless a clock is
 * injected (tests), so instances with skewed clocks still agree on how much a bucket refilled.
 *
 * A Redis that does not answer within `timeoutMs` lets the request through and logs a warning:
 * the limiter protects upstream quotas, and an outage of it must not take the API down.
 */
import {
  type BucketState,
  type BucketStepInput,
  type BucketStore,
  type Clock,
  type Logger,
  tokenBucketStep,
} from '@cloudmux/core';
import { Redis } from 'ioredis';

// KEYS[1] bucket; ARGV now (-1: Redis TIME), burst, cost, requests per second, ttl ms.
// Credit is tokens × 1000, as in tokenBucketStep; it is returned as a string (Lua numbers are
// doubles, a RESP integer reply would truncate a fractional credit).
const TAKE_SCRIPT = `
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local capacity = tonumber(ARGV[2]) * 1000
local need = tonumber(ARGV[3]) * 1000
local rate = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 'credit', 'at')
local credit = capacity
if state[1] and state[2] then
  local elapsed = math.max(0, now - tonumber(state[2]))
  credit = math.min(capacity, tonumber(state[1]) + elapsed * rate)
end
local allowed = 0
if credit >= need then
  credit = credit - need
  allowed = 1
end
redis.call('HSET', KEYS[1], 'credit', string.format('%.17g', credit), 'at', now)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return { allowed, string.format('%.17g', credit), now }
`;

type TakeReply = [number, string, number];

interface RedisWithTake extends Redis {
  cloudmuxTake(key: string, ...args: Array<string | number>): Promise<TakeReply>;
}

export interface RedisBucketStoreOptions {
  url: string;
  /** Prepended to every key (one Redis can serve several deployments, or test runs). */
  prefix?: string;
  /** Tests: take `now` from this clock instead of Redis' TIME. */
  clock?: Clock;
  /** How long a step may take before the request is let through. */
  timeoutMs?: number;
  log: Logger;
}

/** Warn at most this often while Redis is failing, not once per request. */
const WARN_EVERY_MS = 30_000;

export class RedisBucketStore implements BucketStore {
  readonly prefix: string;
  readonly #redis: RedisWithTake;
  readonly #clock: Clock | undefined;
  readonly #log: Logger;
  #lastWarning = 0;
  #firstConnect: Promise<void> | null;

  constructor(options: RedisBucketStoreOptions) {
    this.prefix = options.prefix ?? 'cloudmux:';
    this.#clock = options.clock;
    this.#log = options.log;
    const timeoutMs = options.timeoutMs ?? 500;
    const redis = new Redis(options.url, {
      // A step waits for no reconnect: it fails fast and the request goes through.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: timeoutMs,
      connectTimeout: Math.max(timeoutMs, 2_000),
      lazyConnect: false,
    });
    redis.on('error', (err: Error) => this.#warn(err));
    redis.defineCommand('cloudmuxTake', { numberOfKeys: 1, lua: TAKE_SCRIPT });
    this.#redis = redis as RedisWithTake;
    // Requests that arrive while the first connection is being made wait for it (bounded), so a
    // fresh instance does not let its first burst through unlimited.
    let timer: NodeJS.Timeout | undefined;
    this.#firstConnect = Promise.race([
      this.ready().catch(() => undefined),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(timeoutMs, 2_000));
        timer.unref();
      }),
    ]).finally(() => {
      clearTimeout(timer);
      this.#firstConnect = null;
    });
  }

  /** Resolves once connected (or rejects), for startup checks and tests. */
  async ready(): Promise<void> {
    if (this.#redis.status === 'ready') return;
    await new Promise<void>((resolve, reject) => {
      const onReady = () => {
        this.#redis.off('end', onEnd);
        resolve();
      };
      const onEnd = () => {
        this.#redis.off('ready', onReady);
        reject(new Error('the Redis connection ended'));
      };
      this.#redis.once('ready', onReady);
      this.#redis.once('end', onEnd);
    });
  }

  async take(
    key: string,
    input: BucketStepInput,
    ttlMs: number,
  ): Promise<BucketState & { allowed: boolean }> {
    if (this.#firstConnect) await this.#firstConnect;
    const now = this.#clock ? this.#clock.now() : -1;
    try {
      const [allowed, credit, at] = await this.#redis.cloudmuxTake(
        `${this.prefix}rl:${key}`,
        now,
        input.burst,
        input.cost,
        input.requestsPerSecond,
        this.#expiryMs(ttlMs),
      );
      return { allowed: allowed === 1, credit: Number(credit), updatedAt: Number(at) };
    } catch (err) {
      this.#warn(err);
      // Fail open: a fresh bucket's answer, so the request proceeds with honest headers.
      const { state, allowed } = tokenBucketStep(undefined, input);
      return { ...state, allowed };
    }
  }

  /**
   * The key outlives a full refill, so an expired key means a full bucket. Redis expires keys on
   * real time; with an injected clock that may run slower, keys are kept at least a minute.
   */
  #expiryMs(ttlMs: number): number {
    const ttl = Math.max(1, Math.ceil(ttlMs));
    return this.#clock ? Math.max(ttl, 60_000) : ttl;
  }

  async close(): Promise<void> {
    try {
      await this.#redis.quit();
    } catch {
      this.#redis.disconnect();
    }
  }

  #warn(err: unknown): void {
    const now = Date.now();
    if (now - this.#lastWarning < WARN_EVERY_MS) return;
    this.#lastWarning = now;
    this.#log.warn({ err }, 'rate limiter: Redis is not answering; requests are let through unlimited');
  }
}
