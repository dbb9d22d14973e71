import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CloudmuxError,
  createHttpClient,
  DEFAULT_POLICIES,
  fullJitterCap,
  fullJitterDelay,
  ManualClock,
  retryOperation,
  staticCredentials,
} from '../src/index.js';
import { BEARER, makeDefinition } from './fixtures/http/definitions.js';
import { rejection } from './fixtures/http/rejection.js';
import { json, startServer, type TestServer } from './fixtures/http/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const policy = { maxAttempts: 3, baseDelayMs: 100, maxDelayMs: 2_000 };

function setup(random: () => number = Math.random) {
  const clock = new ManualClock(1_000_000, { autoAdvance: true });
  const http = createHttpClient({
    definition: makeDefinition(BEARER, { retry: policy }),
    accountId: '7',
    credentials: staticCredentials({ token: 't' }),
    clock,
    random,
  });
  return { clock, http };
}

describe('retry policy of the HTTP client', () => {
  it('never retries an upstream 429 and carries Retry-After', async () => {
    server = await startServer((_req, res) => json(res, 429, { error: 'rate' }, { 'retry-after': '7' }));
    const { http, clock } = setup();
    const err = await rejection(http.get(`${server.url}/r`));
    expect(err.code).toBe('too_many_service_requests');
    expect(err.status).toBe(429);
    expect(err.retryAfter).toBe(7);
    expect(server.requests).toHaveLength(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('reads an HTTP-date Retry-After against the injected clock', async () => {
    const clock = new ManualClock(Date.parse('2026-01-01T00:00:00Z'), { autoAdvance: true });
    server = await startServer((_req, res) =>
      json(res, 429, {}, { 'retry-after': 'Thu, 01 Jan 2026 00:00:30 GMT' }),
    );
    const http = createHttpClient({
      definition: makeDefinition(BEARER),
      accountId: '7',
      credentials: staticCredentials({ token: 't' }),
      clock,
    });
    expect((await rejection(http.get(server.url))).retryAfter).toBe(30);
  });

  it('does not retry a POST on 5xx', async () => {
    server = await startServer((_req, res) => json(res, 503, {}));
    const { http, clock } = setup();
    const err = await rejection(http.post(`${server.url}/p`, { a: 1 }));
    expect(err.code).toBe('service_not_available');
    expect(server.requests).toHaveLength(1);
    expect(clock.sleeps).toEqual([]);
  });

  it('retries a GET on 5xx at most 3 attempts, each wait inside the full-jitter window', async () => {
    server = await startServer((_req, res) => json(res, 502, { n: 1 }));
    const draws = [0.999, 0.5];
    const { http, clock } = setup(() => draws.shift() ?? 0);
    const err = await rejection(http.get(`${server.url}/g`));
    expect(err.code).toBe('bad_gateway');
    expect(server.requests).toHaveLength(3);
    expect(clock.sleeps).toHaveLength(2);
    // retry n waits in [0, min(max, base·2^n)): [0,100) then [0,200)
    expect(clock.sleeps[0]).toBeGreaterThanOrEqual(0);
    expect(clock.sleeps[0]).toBeLessThan(100);
    expect(clock.sleeps[1]).toBeGreaterThanOrEqual(0);
    expect(clock.sleeps[1]).toBeLessThan(200);
    expect(clock.sleeps).toEqual([99, 100]);
  });

  it('random delays over many runs stay in the window (real Math.random)', async () => {
    let failures = 0;
    server = await startServer((_req, res, i) =>
      i % 3 === 2 ? json(res, 200, { ok: i }) : json(res, 500, {}),
    );
    const { http, clock } = setup();
    for (let i = 0; i < 20; i++) await http.get(server.url).catch(() => failures++);
    expect(failures).toBe(0);
    expect(server.requests).toHaveLength(60);
    clock.sleeps.forEach((ms, i) => {
      const cap = fullJitterCap(policy, i % 2);
      expect(ms).toBeGreaterThanOrEqual(0);
      expect(ms).toBeLessThan(cap);
    });
  });

  it('recovers when a retry succeeds, and retries network errors of idempotent requests', async () => {
    server = await startServer((_req, res, i) => {
      if (i === 0)
        res.socket?.destroy(); // ECONNRESET / socket hang up
      else json(res, 200, { attempt: i + 1 });
    });
    const { http, clock } = setup();
    const res = await http.delete(`${server.url}/d`);
    expect(res.data).toEqual({ attempt: 2 });
    expect(clock.sleeps).toHaveLength(1);
  });

  it('does not replay a consumed stream body, but replays a body factory', async () => {
    server = await startServer((_req, res) => json(res, 500, {}));
    const { http, clock } = setup();
    const err = await rejection(http.put(`${server.url}/s`, Readable.from([Buffer.from('stream-body')])));
    expect(err.code).toBe('bad_gateway');
    expect(server.requests).toHaveLength(1);
    expect(clock.sleeps).toEqual([]);

    let made = 0;
    const bodyFactory = () => {
      made++;
      return Readable.from([Buffer.from(`body-${made}`)]);
    };
    await rejection(http.put(`${server.url}/f`, undefined, { bodyFactory }));
    expect(made).toBe(3);
    expect(server.requests.slice(1).map((r) => r.body.toString())).toEqual(['body-1', 'body-2', 'body-3']);
  });

  it('replays a buffered PUT body byte for byte', async () => {
    server = await startServer((_req, res, i) => (i < 2 ? json(res, 503, {}) : json(res, 201, {})));
    const { http } = setup();
    const body = Buffer.from('exact bytes');
    const res = await http.put(`${server.url}/b`, body, {
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    expect(res.status).toBe(201);
    expect(server.requests.map((r) => r.body.toString())).toEqual([
      'exact bytes',
      'exact bytes',
      'exact bytes',
    ]);
  });

  it('retries a POST the connector flags idempotent, and never a GET flagged otherwise', async () => {
    server = await startServer((_req, res) => json(res, 500, {}));
    const { http } = setup();
    await rejection(http.post(server.url, 'x', { idempotent: true }));
    expect(server.requests).toHaveLength(3);
    await rejection(http.get(server.url, { idempotent: false }));
    expect(server.requests).toHaveLength(4);
  });

  it('does not retry permanent 5xx answers (501, 507)', async () => {
    server = await startServer((_req, res, i) => json(res, i === 0 ? 501 : 507, {}));
    const { http } = setup();
    expect((await rejection(http.get(server.url))).code).toBe('not_implemented');
    expect((await rejection(http.get(server.url))).code).toBe('insufficient_storage');
    expect(server.requests).toHaveLength(2);
  });

  it('a short 503 Retry-After floors the wait; one beyond the cap is answered at once', async () => {
    server = await startServer((_req, res, i) =>
      i === 0
        ? json(res, 503, {}, { 'retry-after': '1' })
        : i === 1
          ? json(res, 200, {})
          : json(res, 503, {}, { 'retry-after': '120' }),
    );
    const { http, clock } = setup(() => 0);
    await http.get(server.url);
    expect(clock.sleeps).toEqual([1000]);
    const err = await rejection(http.get(server.url));
    expect(err.code).toBe('service_not_available');
    expect(server.requests).toHaveLength(3);
    expect(clock.sleeps).toEqual([1000]);
  });
});

describe('retryOperation (protocol connectors)', () => {
  const transient = () =>
    new CloudmuxError('service_not_available', 'down', { upstream: { code: 'ECONNRESET' } });

  it('retries idempotent operations with full jitter, at most 3 attempts', async () => {
    const clock = new ManualClock(0, { autoAdvance: true });
    let calls = 0;
    await expect(
      retryOperation(
        async () => {
          calls++;
          throw transient();
        },
        {
          policy: { maxAttempts: 5, baseDelayMs: 50, maxDelayMs: 60 },
          idempotent: true,
          clock,
          random: () => 0.9999,
        },
      ),
    ).rejects.toMatchObject({ code: 'service_not_available' });
    expect(calls).toBe(3); // capped at 3 whatever the policy says
    expect(clock.sleeps).toEqual([49, 59]);
  });

  it('never retries non-idempotent work or too_many_service_requests; honours isRetryable', async () => {
    const clock = new ManualClock(0, { autoAdvance: true });
    let calls = 0;
    const op = async () => {
      calls++;
      throw transient();
    };
    await expect(retryOperation(op, { idempotent: false, clock })).rejects.toBeInstanceOf(CloudmuxError);
    expect(calls).toBe(1);
    const limited = async () => {
      calls++;
      throw new CloudmuxError('too_many_service_requests');
    };
    await expect(
      retryOperation(limited, { idempotent: true, clock, isRetryable: () => true }),
    ).rejects.toMatchObject({
      code: 'too_many_service_requests',
    });
    expect(calls).toBe(2);
    await expect(
      retryOperation(op, { idempotent: true, clock, isRetryable: () => false }),
    ).rejects.toBeInstanceOf(CloudmuxError);
    expect(calls).toBe(3);
    expect(clock.sleeps).toEqual([]);
  });

  it('returns the first success and passes the attempt number', async () => {
    const clock = new ManualClock(0, { autoAdvance: true });
    const seen: number[] = [];
    const result = await retryOperation(
      async (attempt) => {
        seen.push(attempt);
        if (attempt < 2) throw transient();
        return 'ok';
      },
      { idempotent: true, clock, random: () => 0 },
    );
    expect(result).toBe('ok');
    expect(seen).toEqual([1, 2]);
  });

  it('stops waiting when the signal aborts', async () => {
    const clock = new ManualClock(0);
    const controller = new AbortController();
    const pending = retryOperation(
      async () => {
        throw transient();
      },
      { idempotent: true, clock, signal: controller.signal },
    );
    await Promise.resolve();
    await new Promise((r) => setImmediate(r));
    expect(clock.pending).toBe(1);
    controller.abort(new Error('client went away'));
    await expect(pending).rejects.toThrow('client went away');
  });

  it('full jitter is uniform below min(max, base·2^n)', () => {
    const p = DEFAULT_POLICIES.retry;
    expect(fullJitterCap(p, 0)).toBe(100);
    expect(fullJitterCap(p, 3)).toBe(800);
    expect(fullJitterCap(p, 10)).toBe(2000);
    expect(fullJitterDelay(p, 10, () => 0.5)).toBe(1000);
    expect(fullJitterDelay(p, 0, () => 0)).toBe(0);
  });
});
