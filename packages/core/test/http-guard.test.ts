import { afterEach, describe, expect, it } from 'vitest';
import { CloudmuxError, createHttpClient, createNetworkGuard, staticCredentials } from '../src/index.js';
import { makeDefinition } from './fixtures/http/definitions.js';
import { json, startServer, type TestServer } from './fixtures/http/server.js';

const servers: TestServer[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

describe('http client over the network guard', () => {
  it('a refused address is forbidden (not a gateway error) and is not retried', async () => {
    const s = await startServer((_req, res) => json(res, 200, {}));
    servers.push(s);
    const connects: unknown[] = [];
    const guard = createNetworkGuard({ policy: { mode: 'saas' }, onConnect: (e) => connects.push(e) });
    const client = createHttpClient({
      definition: makeDefinition({ type: 'bearer', field: 'token' }),
      accountId: '1',
      credentials: staticCredentials({ token: 't' }),
      httpAgent: guard.httpAgent,
      httpsAgent: guard.httpsAgent,
    });
    const err = await client.get(`${s.url}/x`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CloudmuxError);
    expect((err as CloudmuxError).code).toBe('forbidden');
    expect(s.requests).toHaveLength(0);
    expect(connects).toHaveLength(0);
  });
});

describe('onAttempt', () => {
  it('reports each attempt with its status, including retries and network errors', async () => {
    let n = 0;
    const s = await startServer((_req, res) => json(res, n++ === 0 ? 503 : 200, {}));
    servers.push(s);
    const attempts: Array<{ status: number | string; method: string }> = [];
    const client = createHttpClient({
      definition: makeDefinition(
        { type: 'bearer', field: 'token' },
        { retry: { baseDelayMs: 1, maxDelayMs: 1 } },
      ),
      accountId: '1',
      credentials: staticCredentials({ token: 't' }),
      onAttempt: (a) => attempts.push({ status: a.status, method: a.method }),
    });
    await client.get(`${s.url}/x`);
    expect(attempts).toEqual([
      { status: 503, method: 'GET' },
      { status: 200, method: 'GET' },
    ]);
    await client.get('http://127.0.0.1:1/closed').catch(() => undefined);
    expect(attempts.at(-1)!.status).toBe('error');
  });
});
