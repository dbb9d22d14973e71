import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpClient, ManualClock, staticCredentials } from '../src/index.js';
import { BEARER, makeDefinition } from './fixtures/http/definitions.js';
import { rejection } from './fixtures/http/rejection.js';
import { json, startServer, type TestServer } from './fixtures/http/server.js';

let server: TestServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

const client = (extra: Partial<Parameters<typeof createHttpClient>[0]> = {}) =>
  createHttpClient({
    definition: makeDefinition(BEARER),
    accountId: '1',
    credentials: staticCredentials({ token: 'tok-123' }),
    clock: new ManualClock(0, { autoAdvance: true }),
    ...extra,
  });

describe('createHttpClient', () => {
  it('merges raw headers but never lets them override auth, Host or hop-by-hop headers', async () => {
    server = await startServer((_req, res) => json(res, 200, { ok: true }));
    const http = client({
      rawHeaders: {
        'X-Custom': 'kept',
        'Dropbox-API-Select-User': 'dbmid:abc',
        Authorization: 'Bearer attacker',
        Host: 'evil.example',
        Connection: 'close, X-Drop-Me',
        'X-Drop-Me': '1',
        'Transfer-Encoding': 'chunked',
        'X-Forwarded-For': '10.0.0.1',
        'Proxy-Authorization': 'Basic eA==',
        'X-Bad': 'a\r\nInjected: 1',
      },
    });
    const res = await http.get(`${server.url}/path`, { headers: { 'X-Custom': 'connector' } });
    expect(res.data).toEqual({ ok: true });
    const seen = server.requests[0]!.headers;
    expect(seen.authorization).toBe('Bearer tok-123');
    expect(seen.host).toBe(`127.0.0.1:${server.port}`);
    expect(seen['x-custom']).toBe('kept');
    expect(seen['dropbox-api-select-user']).toBe('dbmid:abc');
    expect(seen['x-drop-me']).toBeUndefined();
    expect(seen['x-forwarded-for']).toBeUndefined();
    expect(seen['proxy-authorization']).toBeUndefined();
    expect(seen['x-bad']).toBeUndefined();
    expect(seen.injected).toBeUndefined();
    expect(seen.connection).not.toBe('close, X-Drop-Me');
  });

  it('raw headers cannot replace an API-key header either', async () => {
    server = await startServer((_req, res) => json(res, 200, {}));
    const http = createHttpClient({
      definition: makeDefinition({ type: 'api_key', in: 'header', name: 'X-Api-Key', field: 'key' }),
      accountId: '1',
      credentials: staticCredentials({ key: 'real' }),
      rawHeaders: { 'x-api-key': 'forged' },
    });
    await http.get(server.url);
    expect(server.requests[0]!.headers['x-api-key']).toBe('real');
  });

  it('does not follow redirects (a 302 is an error, the Location is never requested)', async () => {
    server = await startServer((req, res) => {
      if (req.url === '/start') {
        res.writeHead(302, { location: '/elsewhere' });
        res.end();
      } else json(res, 200, { followed: true });
    });
    const err = await rejection(client().get(`${server.url}/start`));
    expect(err.code).toBe('bad_gateway');
    expect(err.upstream?.status).toBe(302);
    expect(server.requests.map((r) => r.url)).toEqual(['/start']);
    // A connector that handles redirects itself sees the 302.
    const res = await client().get(`${server.url}/start`, { validateStatus: (s) => s === 302 });
    expect(res.headers.location).toBe('/elsewhere');
    expect(server.requests).toHaveLength(2);
  });

  it('maps upstream errors once, with status and a redacted body prefix (buffered, streamed)', async () => {
    const longTail = 'x'.repeat(5000);
    server = await startServer((_req, res) =>
      json(res, 404, {
        error: { code: 'itemNotFound', message: 'gone' },
        access_token: 'secret-token',
        pad: longTail,
      }),
    );
    const buffered = await rejection(client().get(`${server.url}/a`));
    expect(buffered.code).toBe('not_found');
    expect(buffered.status).toBe(404);
    expect(buffered.upstream?.status).toBe(404);
    expect(buffered.upstream?.body).toContain('itemNotFound');
    expect(buffered.upstream?.body).not.toContain('secret-token');
    expect(buffered.upstream!.body!.length).toBeLessThanOrEqual(2049);
    expect(buffered.message).not.toContain('gone');

    const streamed = await rejection(client().get(`${server.url}/b`, { responseType: 'stream' }));
    expect(streamed.code).toBe('not_found');
    expect(streamed.upstream?.body).toContain('itemNotFound');
    expect(streamed.upstream?.body).not.toContain('secret-token');
  });

  it('extracts the provider error code from XML bodies too', async () => {
    server = await startServer((_req, res) => {
      res.writeHead(409, { 'content-type': 'application/xml' });
      res.end('<?xml version="1.0"?><Error><Code>BlobAlreadyExists</Code><Message>m</Message></Error>');
    });
    const err = await rejection(client().put(`${server.url}/c/b`, 'x'));
    expect(err.code).toBe('naming_conflict');
    expect(err.upstream?.code).toBe('BlobAlreadyExists');
  });

  it('maps a refused connection to service_not_available without leaking the request config', async () => {
    const dead = await startServer(() => undefined);
    const url = dead.url;
    await dead.close();
    const err = await rejection(client().get(`${url}/x`, { idempotent: false }));
    expect(err.code).toBe('service_not_available');
    expect(err.upstream?.code).toBe('ECONNREFUSED');
    expect(JSON.stringify((err.cause as Error & { config?: unknown }).config ?? null)).toBe('null');
  });

  it('times out with the policy timeout → gateway_timeout', async () => {
    server = await startServer(() => undefined); // never answers
    const http = createHttpClient({
      definition: makeDefinition(BEARER, { timeoutMs: 150, retry: { maxAttempts: 1 } }),
      accountId: '1',
      credentials: staticCredentials({ token: 't' }),
    });
    const err = await rejection(http.get(server.url));
    expect(err.code).toBe('gateway_timeout');
  });

  it('turns an abort into a clear timed_out error, and a deadline signal into gateway_timeout', async () => {
    server = await startServer(() => undefined);
    const controller = new AbortController();
    const pending = client().get(server.url, { signal: controller.signal });
    setImmediate(() => controller.abort());
    const aborted = await rejection(pending);
    expect(aborted.code).toBe('timed_out');
    expect(aborted.upstream?.code).toBe('ERR_CANCELED');

    const deadline = await rejection(client().get(server.url, { signal: AbortSignal.timeout(50) }));
    expect(deadline.code).toBe('gateway_timeout');
  });

  it('streams a Readable upload and returns a stream download', async () => {
    server = await startServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      res.end(req.body);
    });
    const chunks = ['a'.repeat(70_000), 'b'.repeat(70_000), 'c'];
    const res = await client().put(`${server.url}/up`, Readable.from(chunks), {
      responseType: 'stream',
      headers: { 'Content-Type': 'application/octet-stream' },
    });
    const received: Buffer[] = [];
    for await (const c of res.data as Readable) received.push(c as Buffer);
    expect(Buffer.concat(received).toString()).toBe(chunks.join(''));
    expect(server.requests[0]!.headers['transfer-encoding']).toBe('chunked');
  });

  it('skipAuth sends no credentials; userinfo in the URL is dropped', async () => {
    server = await startServer((_req, res) => json(res, 200, {}));
    await client().get(`${server.url}/presigned?X-Amz-Signature=abc`, { skipAuth: true });
    expect(server.requests[0]!.headers.authorization).toBeUndefined();
    expect(server.requests[0]!.url).toBe('/presigned?X-Amz-Signature=abc');
    const withUser = server.url.replace('http://', 'http://user:pw@');
    await client().get(`${withUser}/u`);
    expect(server.requests[1]!.headers.authorization).toBe('Bearer tok-123');
  });

  it('applies params and baseURL before auth sees the URL', async () => {
    server = await startServer((_req, res) => json(res, 200, {}));
    const http = createHttpClient({
      definition: makeDefinition({ type: 'api_key', in: 'query', name: 'key', field: 'k' }),
      accountId: '1',
      credentials: staticCredentials({ k: 'a b&c' }),
    });
    await http.get('/v1/items', { baseURL: server.url, params: { q: 'x y' } });
    expect(server.requests[0]!.url).toBe('/v1/items?q=x+y&key=a%20b%26c');
  });
});
