/**
 * Pass-through (`POST /accounts/{id}/raw`), `encode_raw_id` and `storage/convert_id`, black-box.
 * Two test-only connectors: one self-hosted (pass-through to the account's own loopback server)
 * and one SaaS whose allow-list names a test host, run against the SSRF corpus with a hostile
 * resolver and a connect hook that proves no socket was opened.
 */
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { type AddressInfo, connect, type LookupFunction } from 'node:net';
import { LocalStorage } from '@cloudmux/connector-local';
import {
  type AnyConnectorDefinition,
  type ConnectEvent,
  createNetworkGuard,
  defineConnector,
} from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as z from 'zod';
import {
  FAKE_DNS,
  FAKE_DNS_DEFAULT,
  SSRF_VECTORS,
} from '../../../packages/core/test/fixtures/net/ssrf-vectors.js';
import { json, STORE_KINDS, startTestServer, type TestServer } from './harness.js';

interface Seen {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  bytes: number;
  sha256: string;
}

async function upstreamServer(host = '127.0.0.1') {
  const seen: Seen[] = [];
  const sockets = { count: 0 };
  const server: Server = createServer((req, res) => {
    const hash = createHash('sha256');
    let bytes = 0;
    req.on('data', (c: Buffer) => {
      bytes += c.length;
      hash.update(c);
    });
    req.on('end', () => {
      seen.push({
        method: req.method ?? '',
        url: req.url ?? '',
        headers: req.headers,
        bytes,
        sha256: hash.digest('hex'),
      });
      if (req.url?.startsWith('/base/redirect')) {
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' });
        res.end();
        return;
      }
      if (req.url?.startsWith('/base/empty')) {
        res.writeHead(204, { 'x-upstream': 'empty' });
        res.end();
        return;
      }
      if (req.url?.startsWith('/base/missing')) {
        res.writeHead(404, { 'content-type': 'application/json; charset=utf-8' });
        res.end('{"error":"nope"}');
        return;
      }
      const text = `upstream saw ${req.method} ${req.url} ${bytes}`;
      res.writeHead(207, {
        'content-type': 'text/plain',
        // Also on HEAD, as a real server answers it (Node's own would leave it out).
        'content-length': String(Buffer.byteLength(text)),
        'x-upstream': 'yes',
        'keep-alive': 'timeout=5',
        upgrade: 'h2c',
      });
      res.end(req.method === 'HEAD' ? undefined : text);
    });
  });
  server.on('connection', () => {
    sockets.count += 1;
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  return { server, seen, sockets, port: (server.address() as AddressInfo).port };
}

const echoConnector = defineConnector({
  service: 'echo_selfhosted',
  name: 'Echo (self-hosted)',
  version: '1.0.0',
  category: 'storage',
  apis: ['storage'],
  auth: { type: 'basic', usernameField: 'username', passwordField: 'password' },
  network: 'self_hosted',
  credentials: z.object({
    url: z.string().url(),
    username: z.string(),
    password: z.string(),
    root: z.string(),
  }),
  passThrough: { kind: 'account_host', baseUrl: (c) => c.url },
  create: (ctx) => ({ storage: new LocalStorage(ctx.credentials.root) }),
});

/** A request written byte by byte on a socket, so a header may carry UTF-8 that fetch would refuse. */
async function rawSocketRequest(
  base: string,
  path: string,
  rawUri: string,
  apiKey: string,
): Promise<{ error_code?: string }> {
  const url = new URL(base);
  const socket = connect({ host: url.hostname, port: Number(url.port) });
  await new Promise((r) => socket.once('connect', r));
  socket.write(
    Buffer.concat([
      Buffer.from(
        `POST ${path} HTTP/1.1\r\nHost: ${url.host}\r\nAuthorization: APIKey ${apiKey}\r\nX-Kloudless-Raw-URI: `,
      ),
      Buffer.from(rawUri, 'utf8'),
      Buffer.from('\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'),
    ]),
  );
  const chunks: Buffer[] = [];
  for await (const chunk of socket) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString('utf8');
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as { error_code?: string };
}

describe.each(STORE_KINDS)('pass-through and raw ids on %s', (store) => {
  let t: TestServer;
  let upstream: Awaited<ReturnType<typeof upstreamServer>>;
  let trap: Awaited<ReturnType<typeof upstreamServer>>;
  let trap6: Awaited<ReturnType<typeof upstreamServer>> | undefined;
  const connects: ConnectEvent[] = [];
  let echoAccount: number;
  let saasAccount: number;

  beforeAll(async () => {
    upstream = await upstreamServer();
    // The SSRF trap: every vector targets this port on 127.0.0.1 / ::1; a connection would be a breach.
    trap = await upstreamServer();
    trap6 = await new Promise<Awaited<ReturnType<typeof upstreamServer>> | undefined>((resolve) => {
      const s = createServer((_q, r) => r.end());
      s.once('error', () => resolve(undefined));
      s.listen(trap.port, '::1', () => {
        const sockets = { count: 0 };
        s.on('connection', () => sockets.count++);
        resolve({ server: s, seen: [], sockets, port: trap.port });
      });
    });
    const saasConnector = defineConnector({
      service: 'saas_guarded',
      name: 'SaaS (guarded)',
      version: '1.0.0',
      category: 'storage',
      apis: ['storage'],
      auth: { type: 'bearer', field: 'token' },
      network: 'saas',
      credentials: z.object({ token: z.string(), root: z.string() }),
      passThrough: {
        kind: 'saas',
        baseUrl: `https://api.allowed.example:${trap.port}`,
        allowedHosts: [`api.allowed.example:${trap.port}`, `*.allowed.example:${trap.port}`],
      },
      create: (ctx) => ({ storage: new LocalStorage(ctx.credentials.root) }),
    });
    const hostileLookup = ((hostname: string, options: unknown, callback: (...args: unknown[]) => void) => {
      const cb = typeof options === 'function' ? (options as typeof callback) : callback;
      const all = typeof options === 'object' && options !== null && (options as { all?: boolean }).all;
      const answers = (FAKE_DNS[hostname] ?? FAKE_DNS_DEFAULT).map((address) => ({
        address,
        family: address.includes(':') ? 6 : 4,
      }));
      if (all) cb(null, answers);
      else cb(null, answers[0]!.address, answers[0]!.family);
    }) as unknown as LookupFunction;
    t = await startTestServer({
      store,
      connectors: [echoConnector, saasConnector] as AnyConnectorDefinition[],
      contextOverrides: (definition) =>
        definition.service === 'saas_guarded'
          ? {
              net: createNetworkGuard({
                policy: { mode: 'saas' },
                lookup: hostileLookup,
                onConnect: (e) => connects.push(e),
              }),
            }
          : undefined,
    });
    const app = t.apps[0]!;
    const importAccount = async (body: Record<string, unknown>) => {
      const res = await t.call('/v1/accounts', { method: 'POST', auth: `APIKey ${app.apiKey}`, json: body });
      expect(res.status).toBe(201);
      return ((await res.json()) as { id: number }).id;
    };
    echoAccount = await importAccount({
      service: 'echo_selfhosted',
      account: 'echo',
      url: `http://127.0.0.1:${upstream.port}/base`,
      username: 'u',
      password: 'p',
      root: app.accountRoot,
    });
    saasAccount = await importAccount({
      service: 'saas_guarded',
      account: 'saas',
      token: 'secret-token',
      root: app.accountRoot,
    });
  });

  afterAll(async () => {
    await t?.close();
    for (const s of [upstream, trap, trap6])
      if (s) await new Promise((r) => s.server.close(() => r(undefined)));
  });

  const raw = (account: number, uri: string, method = 'GET', init: RequestInit & { json?: unknown } = {}) =>
    t.call(`/v1/accounts/${account}/raw`, {
      method: 'POST',
      ...init,
      headers: {
        'x-kloudless-raw-uri': uri,
        'x-kloudless-raw-method': method,
        ...(init.headers as Record<string, string>),
      },
    });

  it('forwards method, path, headers and body with the connector auth, and streams the answer back', async () => {
    const body = Buffer.alloc(3 * 1024 * 1024 + 7, 9);
    const res = await raw(echoAccount, '/items/1?x=1', 'PROPFIND', {
      headers: {
        'content-type': 'application/xml',
        depth: '1',
        'x-kloudless-raw-data': 'true',
        cookie: 'c=1',
      },
      body,
    });
    expect(res.status).toBe(207);
    expect(res.headers.get('x-upstream')).toBe('yes');
    expect(res.headers.get('upgrade')).toBeNull();
    expect(await res.text()).toBe(`upstream saw PROPFIND /base/items/1?x=1 ${body.length}`);
    const seen = upstream.seen.at(-1)!;
    expect(seen.method).toBe('PROPFIND');
    expect(seen.headers.authorization).toBe(`Basic ${Buffer.from('u:p').toString('base64')}`);
    expect(seen.headers.depth).toBe('1');
    expect(seen.headers['x-kloudless-raw-data']).toBeUndefined();
    expect(seen.headers.cookie).toBeUndefined();
    expect(seen.sha256).toBe(createHash('sha256').update(body).digest('hex'));
  });

  it('forwards JSON, text and form bodies unread, byte for byte (no parser consumes them first)', async () => {
    const bodies: Array<[string, string]> = [
      ['application/json', '{"path": "/Homework/math", "recursive": false}'],
      ['application/json; charset=utf-8', ''],
      ['text/plain', 'plain text body'],
      ['application/x-www-form-urlencoded', 'a=1&b=%C3%A9'],
    ];
    for (const [type, body] of bodies) {
      const res = await raw(echoAccount, '/rpc', 'POST', { headers: { 'content-type': type }, body });
      expect(res.status, type).toBe(207);
      expect(await res.text()).toBe(`upstream saw POST /base/rpc ${Buffer.byteLength(body)}`);
      const seen = upstream.seen.at(-1)!;
      expect(seen.headers['content-type']).toBe(type);
      expect(seen.sha256).toBe(createHash('sha256').update(body).digest('hex'));
    }
  });

  it('passes body-less answers through: HEAD and 204 come back empty, not with a length to wait for', async () => {
    // The upstream's Content-Length (33) describes the resource; the answer to our POST has no body.
    const head = await raw(echoAccount, '/items/2', 'HEAD');
    expect(head.status).toBe(207);
    expect(head.headers.get('x-upstream')).toBe('yes');
    expect(head.headers.get('content-type')).toBe('text/plain');
    expect(await head.text()).toBe('');
    expect(upstream.seen.at(-1)!.method).toBe('HEAD');

    const empty = await raw(echoAccount, '/empty', 'DELETE');
    expect(empty.status).toBe(204);
    expect(empty.headers.get('x-upstream')).toBe('empty');
    expect(await empty.text()).toBe('');
  });

  it('counts upstream calls by service and status in /metrics', async () => {
    expect((await raw(echoAccount, '/counted')).status).toBe(207);
    const metrics = await (await t.call('/metrics', { auth: null })).text();
    expect(metrics).toMatch(
      /cloudmux_upstream_requests_total\{service="echo_selfhosted",status="207"\} [1-9]/,
    );
  });

  it('passes upstream errors and redirects through without following them', async () => {
    const missing = await raw(echoAccount, '/missing');
    expect(missing.status).toBe(404);
    expect(await missing.text()).toBe('{"error":"nope"}');
    // The upstream's header as sent (our own JSON answers drop the charset; pass-through does not).
    expect(missing.headers.get('content-type')).toBe('application/json; charset=utf-8');
    const before = upstream.seen.length;
    // The test's own fetch must not follow the 302 either.
    const redirect = await raw(echoAccount, '/redirect', 'GET', { redirect: 'manual' });
    expect(redirect.status).toBe(302);
    expect(redirect.headers.get('location')).toBe('http://169.254.169.254/latest/meta-data/');
    expect(upstream.seen.length).toBe(before + 1);
  });

  it('allows full URLs on the account host only', async () => {
    expect((await raw(echoAccount, `http://127.0.0.1:${upstream.port}/base/full`)).status).toBe(207);
    const other = await raw(echoAccount, `http://127.0.0.1:${trap.port}/base/x`);
    expect(other.status).toBe(403);
    expect(((await json(other)) as { error_code: string }).error_code).toBe('forbidden');
    expect(trap.seen).toHaveLength(0);
  });

  // Vectors with CR, LF, NUL or edge whitespace cannot travel in an HTTP header unchanged (clients
  // refuse them; header parsing trims whitespace); core's tests run those through
  // resolvePassThroughUrl directly with their exact expected code.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: these vectors cannot be sent as a header
  const sendable = SSRF_VECTORS.filter((v) => !/[\r\n\u0000]/.test(v.uri) && v.uri.trim() === v.uri);

  it(`refuses the ${sendable.length} header-sendable SSRF vectors without opening a socket`, async () => {
    expect(sendable.length).toBeGreaterThanOrEqual(40);
    const failures: string[] = [];
    for (const vector of sendable) {
      const uri = vector.uri.replaceAll('{port}', String(trap.port));
      // Non-Latin-1 vectors (IDN dots…) go as raw UTF-8 bytes, as a careless client would send them.
      // biome-ignore lint/suspicious/noControlCharactersInRegex: the Latin-1 range, NUL included
      const viaBytes = /[^\u0000-\u00ff]/.test(uri);
      const body = viaBytes
        ? await rawSocketRequest(t.url, `/v1/accounts/${saasAccount}/raw`, uri, t.apps[0]!.apiKey)
        : ((await json(await raw(saasAccount, uri))) as { error_code?: string });
      // Raw UTF-8 bytes arrive as Latin-1 and may read as a malformed URL: refused either way is the bar.
      const ok = viaBytes
        ? body.error_code === 'bad_request' || body.error_code === 'forbidden'
        : body.error_code === vector.expected;
      if (!ok) failures.push(`${vector.id}: got ${body.error_code}, expected ${vector.expected}`);
    }
    expect(failures).toEqual([]);
    expect(connects.filter((c) => c.allowed)).toEqual([]);
    expect(trap.sockets.count).toBe(0);
    expect(trap6?.sockets.count ?? 0).toBe(0);
  });

  it('is not_implemented for connectors without pass-through', async () => {
    const res = await raw(t.apps[0]!.accountId, '/anything');
    expect(res.status).toBe(501);
    // Our own answers on this route are still exactly application/json.
    expect(res.headers.get('content-type')).toBe('application/json');
  });

  it('encodes raw ids (and the older convert_id) into usable ids', async () => {
    const base = t.base;
    const upload = await t.call(`${base}/storage/files`, {
      method: 'POST',
      headers: {
        'x-kloudless-metadata': JSON.stringify({ name: 'raw-id.txt', parent_id: 'root' }),
        'content-type': 'application/octet-stream',
      },
      body: 'raw',
    });
    const file = (await json(upload)) as { id: string; raw_id: string };
    const encoded = (await json(
      await t.call(`${base}/encode_raw_id`, { method: 'POST', json: { id: file.raw_id } }),
    )) as Record<string, unknown>;
    expect(encoded).toEqual({ id: file.id, api: 'core', type: 'kloudless_id' });
    const converted = (await json(
      await t.call(`${base}/storage/convert_id`, {
        method: 'POST',
        json: { raw_id: file.raw_id, type: 'file' },
      }),
    )) as { id: string };
    expect(converted.id).toBe(file.id);
    expect(
      (
        (await json(await t.call(`${base}/encode_raw_id`, { method: 'POST', json: { id: 'root' } }))) as {
          id: string;
        }
      ).id,
    ).toBe('root');
    expect(
      (await t.call(`${base}/encode_raw_id`, { method: 'POST', json: { id: '/nope.txt' } })).status,
    ).toBe(404);
    expect((await t.call(`${base}/encode_raw_id`, { method: 'POST', json: { id: 'relative' } })).status).toBe(
      400,
    );
  });
});
