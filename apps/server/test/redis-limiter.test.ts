/**
 * `REDIS_URL`: rate-limit buckets shared by every instance, against the machine's real Redis
 * (127.0.0.1:6379; `.ci/run` starts it). Each test uses its own key prefix and deletes its keys.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { InMemoryBucketStore, type Logger, ManualClock, RateLimiter } from '@cloudmux/core';
import { freePort, makeTempDir, type TempDir } from '@cloudmux/testkit';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { RedisBucketStore } from '../src/ops/redis-buckets.js';
import { type CloudmuxServer, createServer } from '../src/server.js';
import { dropPgSchema } from '../src/store/db.js';
import { PG_URL } from './harness.js';

const REDIS_URL = process.env.CLOUDMUX_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

async function redisMissing(): Promise<string | null> {
  const probe = new Redis(REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 0, connectTimeout: 2_000 });
  probe.on('error', () => undefined);
  try {
    await probe.connect();
    await probe.ping();
    return null;
  } catch (err) {
    return `no Redis at ${REDIS_URL} (${(err as Error).message})`;
  } finally {
    probe.disconnect();
  }
}

const missing = await redisMissing();
if (missing && process.env.CI) throw new Error(`Redis is required under CI: ${missing}`);

const silent = pino({ level: 'silent' }) as unknown as Logger;
const newPrefix = () => `cm_test:${process.pid}:${randomBytes(4).toString('hex')}:`;

async function deleteKeys(prefix: string): Promise<void> {
  const redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 0 });
  try {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 500);
      cursor = next;
      if (keys.length) await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
}

describe.skipIf(missing !== null)(`rate limits in Redis${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('decides exactly as the in-memory buckets do, step for step, on a fake clock', async () => {
    const prefix = newPrefix();
    const clock = new ManualClock(1_700_000_000_000);
    const redis = new RedisBucketStore({ url: REDIS_URL, prefix, clock, log: silent });
    const inRedis = new RateLimiter({ requestsPerSecond: 10, burst: 10, clock, store: redis });
    const inMemory = new RateLimiter({
      requestsPerSecond: 10,
      burst: 10,
      clock,
      store: new InMemoryBucketStore(),
    });
    try {
      await redis.ready();
      // A deterministic walk: bursts, pauses shorter and longer than a refill, three keys, costs 1–3.
      let seed = 7;
      const next = () => {
        seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
        return seed / 2 ** 31;
      };
      let denials = 0;
      for (let step = 0; step < 400; step++) {
        if (next() < 0.3) clock.advance(Math.floor(next() * 400));
        const key = `account:${1 + Math.floor(next() * 3)}`;
        const cost = 1 + Math.floor(next() * 3);
        const [a, b] = [await inRedis.take(key, { cost }), await inMemory.take(key, { cost })];
        expect(a, `step ${step}`).toEqual(b);
        if (!a.allowed) denials++;
      }
      // The walk exercised both answers.
      expect(denials).toBeGreaterThan(20);
    } finally {
      await redis.close();
      await deleteKeys(prefix);
    }
  });

  it('on Redis time: a burst of 10 passes, the 11th waits, keys expire once refilled', async () => {
    const prefix = newPrefix();
    const redis = new RedisBucketStore({ url: REDIS_URL, prefix, log: silent });
    const limiter = new RateLimiter({ requestsPerSecond: 1, burst: 10, store: redis });
    const inspect = new Redis(REDIS_URL, { maxRetriesPerRequest: 0 });
    try {
      const decisions = [];
      for (let i = 0; i < 11; i++) decisions.push(await limiter.take('account:42'));
      expect(decisions.slice(0, 10).every((d) => d.allowed)).toBe(true);
      expect(decisions[10]).toMatchObject({ allowed: false, remaining: 0, limit: 10 });
      // At 1 token/s the next token is at most a second away (less the time the burst took).
      expect(decisions[10]!.retryAfterMs).toBeGreaterThan(0);
      expect(decisions[10]!.retryAfterMs).toBeLessThanOrEqual(1000);
      const ttl = await inspect.pttl(`${prefix}rl:account:42`);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(10_000);
    } finally {
      inspect.disconnect();
      await redis.close();
      await deleteKeys(prefix);
    }
  });

  it('lets requests through, and warns, when Redis does not answer', async () => {
    const warnings: string[] = [];
    const log = pino(
      { level: 'warn' },
      { write: (line: string) => warnings.push(JSON.parse(line).msg as string) },
    ) as unknown as Logger;
    const port = await freePort();
    const redis = new RedisBucketStore({ url: `redis://127.0.0.1:${port}`, log, timeoutMs: 200 });
    const limiter = new RateLimiter({ requestsPerSecond: 10, burst: 2, store: redis });
    try {
      for (let i = 0; i < 5; i++) expect((await limiter.take('account:1')).allowed).toBe(true);
      expect(warnings.some((w) => w.includes('Redis is not answering'))).toBe(true);
    } finally {
      await redis.close();
    }
  });
});

// ── two instances on one PostgreSQL schema ──────────────────────────────────────────────────

describe.skipIf(missing !== null)('two instances, one account', () => {
  let dir: TempDir;
  const schema = `cm_test_${process.pid}_${randomBytes(4).toString('hex')}`;
  const prefix = newPrefix();
  const clock = new ManualClock(Date.now());
  const servers: CloudmuxServer[] = [];

  const open = async (env: Record<string, string>) => {
    const server = await createServer(
      loadConfig(
        {},
        {
          PORT: String(await freePort()),
          HOST: '127.0.0.1',
          CLOUDMUX_DATA_DIR: dir.path,
          CLOUDMUX_LOCAL_ROOTS: join(dir.path, 'files'),
          DATABASE_URL: PG_URL,
          CLOUDMUX_DATABASE_SCHEMA: schema,
          ...env,
        },
      ),
      { clock, logger: pino({ level: 'silent' }) },
    );
    servers.push(server);
    return server;
  };

  beforeAll(async () => {
    dir = await makeTempDir('cloudmux-redis-');
  });
  afterAll(async () => {
    for (const server of servers) await server.close();
    await dropPgSchema(PG_URL, schema);
    await deleteKeys(prefix);
    await dir?.remove();
  });

  /** An app and a local account on `server`'s store, and a request to the account's root. */
  async function accountOn(server: CloudmuxServer) {
    const { apiKey } = await server.deps.store.createApp(`limits-${randomBytes(3).toString('hex')}`);
    const root = join(dir.path, 'files', randomBytes(4).toString('hex'));
    mkdirSync(root, { recursive: true });
    const created = await server.app.inject({
      method: 'POST',
      url: '/v1/accounts',
      headers: { authorization: `APIKey ${apiKey}` },
      payload: { service: 'local', account: 'limits', root },
    });
    expect(created.statusCode).toBe(201);
    const id = (created.json() as { id: number }).id;
    return (s: CloudmuxServer) =>
      s.app.inject({
        method: 'GET',
        url: `/v1/accounts/${id}/storage/folders/root`,
        headers: { authorization: `APIKey ${apiKey}` },
      });
  }

  it('share one bucket per account with REDIS_URL: the 11th request of a burst is a 429 on either', async () => {
    const env = { REDIS_URL, CLOUDMUX_REDIS_PREFIX: prefix, CLOUDMUX_RATE_LIMIT: '10:10' };
    const [a, b] = [await open(env), await open(env)];
    const rootOf = await accountOn(a);
    // Ten requests, alternating instances: each instance alone saw only five.
    for (let i = 0; i < 10; i++) expect((await rootOf(i % 2 ? b : a)).statusCode).toBe(200);
    for (const s of [a, b]) {
      const denied = await rootOf(s);
      expect(denied.statusCode).toBe(429);
      expect(denied.json()).toMatchObject({ error_code: 'too_many_requests', status_code: 429 });
      expect(denied.headers['retry-after']).toBe('1');
      expect(denied.headers['ratelimit-remaining']).toBe('0');
    }
    // 100 ms at 10/s is one token, for whichever instance asks first.
    clock.advance(100);
    expect((await rootOf(b)).statusCode).toBe(200);
    expect((await rootOf(a)).statusCode).toBe(429);
  });

  it('without REDIS_URL each instance keeps its own buckets (the README says so)', async () => {
    const env = { CLOUDMUX_RATE_LIMIT: '10:10' };
    const [a, b] = [await open(env), await open(env)];
    const rootOf = await accountOn(a);
    for (let i = 0; i < 10; i++) expect((await rootOf(a)).statusCode).toBe(200);
    expect((await rootOf(a)).statusCode).toBe(429);
    expect((await rootOf(b)).statusCode).toBe(200);
  });
});
