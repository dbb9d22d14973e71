import { afterEach, describe, expect, it } from 'vitest';
import {
  CloudmuxError,
  createHttpClient,
  InMemoryBucketStore,
  ManualClock,
  RateLimiter,
  rateLimitHeaders,
  staticCredentials,
  tokenBucketStep,
  tooManyRequests,
} from '../src/index.js';
import { BEARER, makeDefinition } from './fixtures/http/definitions.js';
import { rejection } from './fixtures/http/rejection.js';
import { json, startServer, type TestServer } from './fixtures/http/server.js';

describe('token bucket limiter (fake clock)', () => {
  it('admits a burst of 10, then denies with an exact retryAfterMs, then refills at 10/s', async () => {
    const clock = new ManualClock(1_000);
    const limiter = new RateLimiter({ clock });
    const burst = [];
    for (let i = 0; i < 10; i++) burst.push(await limiter.take('account:42'));
    expect(burst.every((d) => d.allowed)).toBe(true);
    expect(burst.map((d) => d.remaining)).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);

    const denied = await limiter.take('account:42');
    expect(denied).toEqual({ allowed: false, remaining: 0, retryAfterMs: 100, resetMs: 1000, limit: 10 });

    clock.advance(99);
    const early = await limiter.take('account:42');
    expect(early.allowed).toBe(false);
    expect(early.retryAfterMs).toBe(1);

    clock.advance(1);
    expect((await limiter.take('account:42')).allowed).toBe(true);
    expect((await limiter.take('account:42')).allowed).toBe(false);

    // Over one second exactly 10 more are admitted at 10/s.
    let admitted = 0;
    for (let ms = 0; ms < 1000; ms += 10) {
      clock.advance(10);
      if ((await limiter.take('account:42')).allowed) admitted++;
    }
    expect(admitted).toBe(10);
  });

  it('refills to the burst and no further, and keys are independent', async () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ clock });
    for (let i = 0; i < 10; i++) await limiter.take('a');
    expect((await limiter.take('b')).remaining).toBe(9);
    clock.advance(60_000);
    const after = await limiter.take('a');
    expect(after.remaining).toBe(9);
    expect(after.resetMs).toBe(100);
  });

  it('supports per-connector sizes and costs', async () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ clock, requestsPerSecond: 2, burst: 4 });
    expect(await limiter.take('k', { cost: 3 })).toMatchObject({ allowed: true, remaining: 1 });
    expect(await limiter.take('k', { cost: 2 })).toMatchObject({ allowed: false, retryAfterMs: 500 });
    expect(await limiter.take('k2', { requestsPerSecond: 1, burst: 1 })).toMatchObject({
      allowed: true,
      limit: 1,
    });
    expect(await limiter.take('k2', { requestsPerSecond: 1, burst: 1 })).toMatchObject({
      allowed: false,
      retryAfterMs: 1000,
    });
    await expect(limiter.take('k', { cost: 5 })).rejects.toThrow(RangeError);
  });

  it('gives the server Retry-After and RateLimit-* headers and the too_many_requests error', async () => {
    const clock = new ManualClock(0);
    const limiter = new RateLimiter({ clock, requestsPerSecond: 10, burst: 10 });
    for (let i = 0; i < 10; i++) await limiter.take('x');
    const denied = await limiter.take('x');
    expect(rateLimitHeaders(denied)).toEqual({
      'RateLimit-Limit': '10',
      'RateLimit-Remaining': '0',
      'RateLimit-Reset': '1',
      'Retry-After': '1',
    });
    const err = tooManyRequests(denied);
    expect(err).toBeInstanceOf(CloudmuxError);
    expect(err.code).toBe('too_many_requests');
    expect(err.status).toBe(429);
    expect(err.retryAfter).toBe(1);
    expect(err.headers?.['Retry-After']).toBe('1');
  });

  it('the step function is integer-exact and the memory store forgets idle buckets', async () => {
    const params = { requestsPerSecond: 10, burst: 10, cost: 1 };
    let state = tokenBucketStep(undefined, { ...params, now: 0 }).state;
    expect(state.credit).toBe(9000);
    for (let i = 0; i < 9; i++) state = tokenBucketStep(state, { ...params, now: 0 }).state;
    const step = tokenBucketStep(state, { ...params, now: 33 });
    expect(step.allowed).toBe(false);
    expect(step.state.credit).toBe(330);
    const store = new InMemoryBucketStore();
    for (let i = 0; i < 2000; i++) await store.take(`k${i}`, { ...params, now: i }, 1000);
    expect(store.size).toBeGreaterThan(1900);
    // Sweeps run every 1024 takes; by then every earlier bucket would have refilled.
    for (let i = 0; i < 48; i++) await store.take('late', { ...params, now: 10_000 }, 1000);
    expect(store.size).toBe(1);
  });
});

describe('upstream pacing in the HTTP client', () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  it('waits on the clock when the account is over its rate, and gives up past the wait budget', async () => {
    server = await startServer((_req, res) => json(res, 200, {}));
    const clock = new ManualClock(0, { autoAdvance: true });
    const limiter = new RateLimiter({ clock });
    const http = createHttpClient({
      definition: makeDefinition(BEARER, { rateLimit: { requestsPerSecond: 10, burst: 2 } }),
      accountId: 'acc',
      credentials: staticCredentials({ token: 't' }),
      clock,
      rateLimiter: limiter,
      rateLimitMaxWaitMs: 150,
    });
    for (let i = 0; i < 4; i++) await http.get(server.url);
    expect(clock.sleeps).toEqual([100, 100]);
    expect(server.requests).toHaveLength(4);

    const noWait = createHttpClient({
      definition: makeDefinition(BEARER, { rateLimit: { requestsPerSecond: 1, burst: 1 } }),
      accountId: 'acc2',
      credentials: staticCredentials({ token: 't' }),
      clock,
      rateLimiter: limiter,
      rateLimitMaxWaitMs: 150,
    });
    await noWait.get(server.url);
    const err = await rejection(noWait.get(server.url));
    expect(err.code).toBe('too_many_requests');
    expect(err.retryAfter).toBe(1);
    expect(server.requests).toHaveLength(5);
  });
});
