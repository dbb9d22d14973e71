/**
 * Operations: liveness and readiness, Prometheus metrics (route patterns, upstream calls, one
 * registry per server), and logs (JSON, a request id on every request line, secrets redacted).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { LocalStorage, local } from '@cloudmux/connector-local';
import { CloudmuxError, defineConnector } from '@cloudmux/core';
import { freePort, makeTempDir, type TempDir } from '@cloudmux/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as z from 'zod';
import { loadConfig } from '../src/config.js';
import { runInRequest } from '../src/ops/context.js';
import { createLogger, redactUrl } from '../src/ops/logging.js';
import { metricsOf, recordUpstreamCall } from '../src/ops/metrics.js';
import { type CloudmuxServer, createServer } from '../src/server.js';
import { dropPgSchema } from '../src/store/db.js';
import { PG_URL, STORE_KINDS, type StoreKind, startTestServer, type TestServer, upload } from './harness.js';

const UPSTREAM_SECRET = `upstream-secret-${randomBytes(6).toString('hex')}`;

/**
 * A storage connector over a local directory that behaves like a networked one where it matters
 * here: each listing logs through the connector context's logger and reports an upstream call;
 * with `fail: true` the "upstream" fails with an error whose cause carries request headers, as an
 * HTTP client error would.
 */
const probe = defineConnector({
  service: 'opsprobe',
  name: 'Ops probe',
  version: '0.0.0',
  category: 'storage',
  apis: ['storage'],
  auth: { type: 'protocol' },
  network: 'none',
  credentials: z.object({ root: z.string().min(1), fail: z.boolean().optional() }),
  rawId: { attributes: z.object({ id: z.string().startsWith('/') }), toRawId: (a) => String(a.id) },
  create: (ctx) => {
    const storage = new LocalStorage(ctx.credentials.root);
    const list = storage.list.bind(storage);
    storage.list = async (...args: Parameters<LocalStorage['list']>) => {
      ctx.log.info({ probe: 'list' }, 'probe listing');
      if (ctx.credentials.fail) {
        recordUpstreamCall('opsprobe', 503, 0.02);
        throw new CloudmuxError('service_not_available', 'The probe upstream failed.', {
          status: 503,
          cause: {
            message: 'upstream 503',
            config: { headers: { Authorization: `Bearer ${UPSTREAM_SECRET}` } },
          },
        });
      }
      recordUpstreamCall('opsprobe', 200, 0.01);
      return list(...args);
    };
    return { storage, dispose: async () => {} };
  },
});

/** One sample of the Prometheus text: the value of `name` whose labels include `labels`. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match || match[1] !== name) continue;
    const have = Object.fromEntries(
      [...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1], m[2]]),
    );
    if (Object.entries(labels).every(([k, v]) => have[k] === v)) return Number(match[3]);
  }
  return undefined;
}

describe.each(STORE_KINDS)('health and readiness on %s', (store) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ store });
  });
  afterAll(async () => t?.close());

  it('answers /health and /ready with the store kind', async () => {
    const health = await fetch(`${t.url}/health`);
    expect(health.status).toBe(200);
    expect(health.headers.get('content-type')).toBe('application/json');
    expect(await health.json()).toEqual({ status: 'ok' });
    const ready = await fetch(`${t.url}/ready/`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toEqual({ status: 'ready', store });
  });

  it('is not ready once the store is unreachable, while still alive', async () => {
    const other = await startTestServer({ store });
    try {
      await other.server.deps.storeHandle.db.destroy();
      const ready = await fetch(`${other.url}/ready`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toEqual({ status: 'unavailable', store });
      expect((await fetch(`${other.url}/health`)).status).toBe(200);
    } finally {
      await other.close().catch(() => {});
    }
  });
});

describe('Prometheus metrics', () => {
  let a: TestServer;
  let b: TestServer;
  beforeAll(async () => {
    [a, b] = await Promise.all([startTestServer({ store: 'sqlite' }), startTestServer({ store: 'sqlite' })]);
  });
  afterAll(async () => Promise.all([a?.close(), b?.close()]));

  const scrape = async (t: TestServer) => {
    const res = await fetch(`${t.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    return res.text();
  };

  it('counts requests by route pattern and status, with latency histograms, never raw ids', async () => {
    const file = await upload(a, a.base, 'metrics.txt', 'm');
    expect((await a.call(`${a.base}/storage/files/${file.id}`)).status).toBe(200);
    expect((await a.call(`${a.base}/storage/files/${file.id}`)).status).toBe(200);
    expect((await a.call(`${a.base}/storage/files/${file.id}x`)).status).toBe(404);
    expect((await a.call('/v1/no/such/route')).status).toBe(404);
    const text = await scrape(a);
    const route = '/v1/accounts/:account/storage/files/:id';
    expect(sample(text, 'cloudmux_http_requests_total', { method: 'GET', route, status: '200' })).toBe(2);
    expect(sample(text, 'cloudmux_http_requests_total', { method: 'GET', route, status: '404' })).toBe(1);
    expect(
      sample(text, 'cloudmux_http_requests_total', {
        method: 'POST',
        route: '/v1/accounts/:account/storage/files',
        status: '201',
      }),
    ).toBe(1);
    expect(sample(text, 'cloudmux_http_requests_total', { route: 'unmatched', status: '404' })).toBe(1);
    expect(sample(text, 'cloudmux_http_request_duration_seconds_count', { method: 'GET', route })).toBe(3);
    expect(
      sample(text, 'cloudmux_http_request_duration_seconds_bucket', { method: 'GET', route, le: '+Inf' }),
    ).toBe(3);
    expect(text).not.toContain(file.id);
    expect(text).not.toContain('/v1/no/such/route');
    // Process metrics of prom-client's default collectors.
    expect(sample(text, 'process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(sample(text, 'nodejs_heap_size_total_bytes')).toBeGreaterThan(0);
    expect(text).toContain('# TYPE cloudmux_http_requests_in_flight gauge');
  });

  it('keeps one registry per server', async () => {
    const before =
      sample(await scrape(b), 'cloudmux_http_requests_total', {
        route: '/v1/accounts/:account/storage/folders/:id',
      }) ?? 0;
    for (let i = 0; i < 3; i++) expect((await a.call(`${a.base}/storage/folders/root`)).status).toBe(200);
    const textA = await scrape(a);
    const textB = await scrape(b);
    expect(
      sample(textA, 'cloudmux_http_requests_total', {
        route: '/v1/accounts/:account/storage/folders/:id',
        status: '200',
      }),
    ).toBe(3);
    expect(
      sample(textB, 'cloudmux_http_requests_total', { route: '/v1/accounts/:account/storage/folders/:id' }) ??
        0,
    ).toBe(before);
  });

  it('counts upstream calls by service and status on the server whose request made them', async () => {
    runInRequest({ reqId: 'test', metrics: metricsOf(a.server.deps) }, () =>
      recordUpstreamCall('s3', 503, 0.25),
    );
    metricsOf(b.server.deps).recordUpstreamCall('s3', 200, 0.5);
    // Outside any request with two servers open there is no right server: nothing is counted.
    recordUpstreamCall('s3', 500, 0.1);
    const textA = await scrape(a);
    const textB = await scrape(b);
    expect(sample(textA, 'cloudmux_upstream_requests_total', { service: 's3', status: '503' })).toBe(1);
    expect(
      sample(textA, 'cloudmux_upstream_requests_total', { service: 's3', status: '200' }),
    ).toBeUndefined();
    expect(
      sample(textA, 'cloudmux_upstream_requests_total', { service: 's3', status: '500' }),
    ).toBeUndefined();
    expect(sample(textA, 'cloudmux_upstream_request_duration_seconds_sum', { service: 's3' })).toBe(0.25);
    expect(sample(textB, 'cloudmux_upstream_requests_total', { service: 's3', status: '200' })).toBe(1);
    expect(
      sample(textB, 'cloudmux_upstream_requests_total', { service: 's3', status: '503' }),
    ).toBeUndefined();
  });
});

interface LoggedServer {
  url: string;
  server: CloudmuxServer;
  lines: () => Array<Record<string, unknown>>;
  raw: () => string;
  apiKey: string;
  appId: string;
  dir: TempDir;
  close(): Promise<void>;
}

/** A server whose real logger (`createLogger`, trace level) writes into memory. */
async function startLogged(store: StoreKind): Promise<LoggedServer> {
  const dir = await makeTempDir('cloudmux-ops-');
  const schema = `cm_ops_${process.pid}_${randomBytes(4).toString('hex')}`;
  let output = '';
  const sink = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      output += chunk.toString('utf8');
      callback();
    },
  });
  const config = loadConfig(
    {},
    {
      PORT: String(await freePort()),
      HOST: '127.0.0.1',
      CLOUDMUX_DATA_DIR: dir.path,
      CLOUDMUX_RATE_LIMIT: '100000:100000',
      ...(store === 'postgres' ? { DATABASE_URL: PG_URL, CLOUDMUX_DATABASE_SCHEMA: schema } : {}),
    },
  );
  const server = await createServer(config, {
    connectors: [local, probe],
    logger: createLogger('trace', sink),
  });
  const url = await server.listen();
  const { app, apiKey } = await server.deps.store.createApp('Logged');
  return {
    url,
    server,
    apiKey,
    appId: app.id,
    dir,
    raw: () => output,
    lines: () =>
      output
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    close: async () => {
      await server.close();
      if (store === 'postgres') await dropPgSchema(PG_URL, schema);
      await dir.remove();
    },
  };
}

describe.each(STORE_KINDS)('logs on %s', (store) => {
  let t: LoggedServer;
  beforeAll(async () => {
    t = await startLogged(store);
  });
  afterAll(async () => t?.close());

  it('writes JSON lines that all carry the request id and never a secret', async () => {
    const call = (path: string, init: RequestInit = {}) => fetch(`${t.url}${path}`, init);
    const apiKeyAuth = { authorization: `APIKey ${t.apiKey}` };
    const root = join(t.dir.path, 'files', 'probe');
    mkdirSync(root, { recursive: true });
    const linkPassword = `link-pass-${randomBytes(6).toString('hex')}`;
    const bodyKey = `body-key-${randomBytes(6).toString('hex')}`;

    const created = await call('/v1/accounts', {
      method: 'POST',
      headers: { ...apiKeyAuth, 'content-type': 'application/json' },
      body: JSON.stringify({ service: 'opsprobe', account: 'probe', root }),
    });
    expect(created.status).toBe(201);
    const accountId = ((await created.json()) as { id: number }).id;
    const failing = await call('/v1/accounts', {
      method: 'POST',
      headers: { ...apiKeyAuth, 'content-type': 'application/json' },
      body: JSON.stringify({ service: 'opsprobe', account: 'failing', root, fail: true }),
    });
    const failingId = ((await failing.json()) as { id: number }).id;
    const tokenRes = await call(`/v1/accounts/${accountId}/tokens`, {
      method: 'POST',
      headers: { ...apiKeyAuth, 'content-type': 'application/json' },
      body: '{}',
    });
    const bearer = ((await tokenRes.json()) as { access_token: string }).access_token;

    const responses: Response[] = [];
    // A listing through a bearer token: the connector logs through the root logger.
    responses.push(
      await call('/v1/accounts/me/storage/folders/root/contents', {
        headers: { authorization: `Bearer ${bearer}` },
      }),
    );
    // An upstream failure logged at error level with its cause (request headers included).
    responses.push(
      await call(`/v1/accounts/${failingId}/storage/folders/root/contents`, { headers: apiKeyAuth }),
    );
    // An API key in a JSON body, on a request that fails validation.
    responses.push(
      await call('/v1/accounts', {
        method: 'POST',
        headers: { ...apiKeyAuth, 'content-type': 'application/json' },
        body: JSON.stringify({ service: 'nope', api_key: bodyKey, password: linkPassword }),
      }),
    );
    // A link password in a query string.
    responses.push(
      await call(`/v1/accounts/${accountId}/storage/folders/root?password=${linkPassword}`, {
        headers: apiKeyAuth,
      }),
    );
    // A password link: its page, a wrong password and the right one posted to the public URL.
    const uploaded = await call(`/v1/accounts/${accountId}/storage/files`, {
      method: 'POST',
      headers: {
        ...apiKeyAuth,
        'content-type': 'application/octet-stream',
        'x-kloudless-metadata': JSON.stringify({ name: 'shared.txt', parent_id: 'root' }),
      },
      body: 'shared',
    });
    const fileId = ((await uploaded.json()) as { id: string }).id;
    const linkRes = await call(`/v1/accounts/${accountId}/storage/links`, {
      method: 'POST',
      headers: { ...apiKeyAuth, 'content-type': 'application/json' },
      body: JSON.stringify({ file_id: fileId, password: linkPassword }),
    });
    expect(linkRes.status).toBe(201);
    const linkId = ((await linkRes.json()) as { id: string }).id;
    const form = { 'content-type': 'application/x-www-form-urlencoded', accept: 'text/html' };
    responses.push(await call(`/l/${linkId}`, { headers: { accept: 'text/html' } }));
    responses.push(
      await call(`/l/${linkId}`, { method: 'POST', headers: form, body: `password=${linkPassword}x` }),
    );
    responses.push(
      await call(`/l/${linkId}`, {
        method: 'POST',
        headers: form,
        body: `password=${linkPassword}`,
        redirect: 'manual',
      }),
    );
    responses.push(await call('/v1/accounts/me', { headers: { authorization: `Bearer ${bearer}x` } }));
    // A token in the path (revocation) — the last use of the bearer token.
    responses.push(
      await call(`/v1/accounts/${accountId}/tokens/${bearer}`, { method: 'DELETE', headers: apiKeyAuth }),
    );

    expect(responses.map((r) => r.status)).toEqual([200, 503, 400, 200, 200, 401, 303, 401, 204]);
    const ids = new Set(responses.map((r) => r.headers.get('x-request-id')));

    const raw = t.raw();
    for (const secret of [t.apiKey, bearer, bodyKey, linkPassword, linkId, UPSTREAM_SECRET])
      expect(raw).not.toContain(secret);
    expect(raw).toContain('[redacted]');

    const lines = t.lines();
    // Only the startup line is written outside a request.
    const requestLines = lines.filter((l) => !String(l.msg).startsWith('Server listening'));
    expect(requestLines.length).toBeGreaterThan(responses.length * 2);
    for (const line of requestLines) expect(typeof line.reqId, JSON.stringify(line)).toBe('string');
    // Each answered request shows up with its own id, and the connector's own line carries it too.
    const seen = new Set(requestLines.map((l) => l.reqId));
    for (const id of ids) expect(seen.has(id)).toBe(true);
    const probeLines = requestLines.filter((l) => l.probe === 'list');
    expect(probeLines).toHaveLength(2);
    expect(probeLines[0]!.reqId).toBe(responses[0]!.headers.get('x-request-id'));
    expect(probeLines[1]!.reqId).toBe(responses[1]!.headers.get('x-request-id'));
    // The upstream failure is logged with its cause, credentials censored.
    const failure = requestLines.find(
      (l) => l.reqId === responses[1]!.headers.get('x-request-id') && l.level === 50,
    );
    expect(JSON.stringify(failure)).toContain('[redacted]');
    // Upstream calls were counted on this server through the request context.
    const metrics = await (await fetch(`${t.url}/metrics`)).text();
    expect(sample(metrics, 'cloudmux_upstream_requests_total', { service: 'opsprobe', status: '200' })).toBe(
      1,
    );
    expect(sample(metrics, 'cloudmux_upstream_requests_total', { service: 'opsprobe', status: '503' })).toBe(
      1,
    );
  });

  it('redacts tokens and keys in logged URLs', () => {
    expect(redactUrl('/v1/accounts/1/tokens/cmt_abc.def?x=1')).toBe('/v1/accounts/1/tokens/[redacted]?x=1');
    expect(redactUrl('/l/abc?password=hunter2&direct=true')).toBe(
      '/l/[redacted]?password=[redacted]&direct=true',
    );
    expect(redactUrl('/v1/oauth/callback?code=xyz&state=s1')).toBe(
      '/v1/oauth/callback?code=[redacted]&state=[redacted]',
    );
    expect(redactUrl('/x?api_key=cmk_123')).toBe('/x?api_key=[redacted]');
    expect(redactUrl('/v1/accounts/me/storage/files/abc')).toBe('/v1/accounts/me/storage/files/abc');
  });
});
