/**
 * Limits and errors (issue 3 "Limits and errors"): the per-account 429 after the burst on a fake
 * clock, every kind of bad input answered with the Kloudless envelope and a 4xx, JSON bodies over
 * the limit refused without resetting the connection, unknown routes 404 and wrong methods 405.
 */
import { connect, type Socket } from 'node:net';
import { errorEnvelopeSchema, ManualClock } from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, STORE_KINDS, startTestServer, type TestServer, upload } from './harness.js';

/** An error reply: the envelope with `status` and `code`, exact JSON type, never a 5xx or a stack trace. */
async function expectError(res: Response, status: number, code: string) {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.status).toBeLessThan(500);
  expect(res.headers.get('content-type')).toBe('application/json');
  expect(text).not.toMatch(/"stack"|\n\s+at /);
  const body = errorEnvelopeSchema.parse(JSON.parse(text));
  expect(body).toMatchObject({ status_code: status, error_code: code });
  expect(typeof body.id).toBe('string');
  return body;
}

describe.each(STORE_KINDS)('rate limit on %s', (store) => {
  const clock = new ManualClock(1_000_000);
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ store, clock });
  });
  afterAll(async () => t?.close());

  // Everything before a burst (the harness minting tokens, earlier tests) is refilled by a full second.
  const refill = () => clock.advance(1000);
  const root = (accountId: number, auth?: string) =>
    t.call(`/v1/accounts/${accountId}/storage/folders/root`, auth ? { auth } : {});

  it('answers the 11th request in the same instant with 429, Retry-After and RateLimit-*', async () => {
    refill();
    const accountId = t.apps[0]!.accountId;
    for (let i = 0; i < 10; i++) {
      const res = await root(accountId);
      expect(res.status).toBe(200);
      expect(res.headers.get('ratelimit-limit')).toBe('10');
      expect(res.headers.get('ratelimit-remaining')).toBe(String(9 - i));
      await res.arrayBuffer();
    }
    const denied = await root(accountId);
    expect(denied.headers.get('retry-after')).toBe('1');
    expect(denied.headers.get('ratelimit-limit')).toBe('10');
    expect(denied.headers.get('ratelimit-remaining')).toBe('0');
    expect(Number(denied.headers.get('ratelimit-reset'))).toBeGreaterThanOrEqual(1);
    const body = await expectError(denied, 429, 'too_many_requests');
    expect(body.message.length).toBeGreaterThan(0);

    // The bucket refills at 10/s: 100 ms buys exactly one more request.
    clock.advance(100);
    expect((await root(accountId)).status).toBe(200);
    await expectError(await root(accountId), 429, 'too_many_requests');
  });

  it('counts per account: the token and the API key share a bucket, other accounts are unaffected', async () => {
    refill();
    const app = t.apps[0]!;
    const other = await t.newLocalAccount(app, 'other account');
    const otherApp = await t.newApp('second app');
    refill();
    for (let i = 0; i < 10; i++) expect((await root(app.accountId)).status).toBe(200);
    await expectError(await root(app.accountId), 429, 'too_many_requests');
    await expectError(
      await t.call('/v1/accounts/me/storage/folders/root', { auth: `Bearer ${app.token}` }),
      429,
      'too_many_requests',
    );
    // Same instant: the other account of the same app and an account of another app still pass.
    expect((await root(other.accountId)).status).toBe(200);
    expect((await root(otherApp.accountId, `APIKey ${otherApp.apiKey}`)).status).toBe(200);
    // Account-scoped routes outside storage are limited too.
    await expectError(await t.call(`/v1/accounts/${app.accountId}`), 429, 'too_many_requests');
    await expectError(await t.call(`/v1/accounts/${app.accountId}/events/latest`), 429, 'too_many_requests');
    // A path naming several accounts takes from each: one exhausted account refuses the request.
    await expectError(
      await t.call(`/v1/accounts/${other.accountId},${app.accountId}/storage/links`),
      429,
      'too_many_requests',
    );
  });
});

describe.each(STORE_KINDS)('bad input on %s', (store) => {
  const BODY_LIMIT = 64 * 1024;
  let t: TestServer;
  let base: string;
  let fileId: string;
  beforeAll(async () => {
    t = await startTestServer({ store, env: { CLOUDMUX_BODY_LIMIT: String(BODY_LIMIT) } });
    base = t.base;
    fileId = (await upload(t, base, 'input.txt', 'some bytes')).id;
  });
  afterAll(async () => t?.close());

  const badJson = (path: string, method: string, body: string) =>
    t.call(path, { method, headers: { 'content-type': 'application/json' }, body });

  it('refuses malformed JSON bodies on every kind of JSON route', async () => {
    const folder = (await json(
      await t.call(`${base}/storage/folders`, { method: 'POST', json: { name: 'jf', parent_id: 'root' } }),
    )) as { id: string };
    const routes: Array<[string, string]> = [
      ['POST', '/v1/accounts'],
      ['PATCH', `/v1/accounts/${t.apps[0]!.accountId}`],
      ['POST', `/v1/accounts/${t.apps[0]!.accountId}/tokens`],
      ['POST', `${base}/storage/folders`],
      ['PATCH', `${base}/storage/files/${fileId}`],
      ['PATCH', `${base}/storage/folders/${folder.id}`],
      ['POST', `${base}/storage/files/${fileId}/copy`],
      ['POST', `${base}/storage/folders/${folder.id}/copy`],
      ['POST', `${base}/storage/links`],
      ['POST', `${base}/storage/multipart`],
      ['POST', `${base}/encode_raw_id`],
      ['POST', `${base}/storage/convert_id`],
    ];
    for (const [method, path] of routes) {
      for (const body of ['{not json', '{"name": "x",}', '"unterminated', '\u0000']) {
        await expectError(await badJson(path, method, body), 400, 'invalid_parameters');
      }
    }
    // Nothing was renamed, created or moved by any of them.
    const list = (await json(await t.call(`${base}/storage/folders/root/contents`))) as {
      objects: Array<{ name: string }>;
    };
    expect(list.objects.map((o) => o.name).sort()).toEqual(['input.txt', 'jf']);
  });

  it('refuses wrong types and bad values with invalid_parameters', async () => {
    const cases: Array<[string, string, unknown]> = [
      ['POST', `${base}/storage/folders`, { name: 5, parent_id: 'root' }],
      ['POST', `${base}/storage/folders`, { name: 'x', parent_id: ['root'] }],
      ['POST', `${base}/storage/folders`, [1, 2]],
      ['POST', `${base}/storage/folders`, 'a string'],
      ['POST', `${base}/storage/folders`, null],
      ['PATCH', `${base}/storage/files/${fileId}`, { name: { nested: true } }],
      ['PATCH', `${base}/storage/files/${fileId}`, { account: 'abc' }],
      ['PATCH', `${base}/storage/files/${fileId}`, { account: -3 }],
      ['POST', `${base}/storage/files/${fileId}/copy`, { name: 12 }],
      ['POST', `${base}/storage/links`, { file_id: 42 }],
      ['POST', `${base}/storage/links`, { file_id: fileId, direct: 'sometimes' }],
      ['POST', `${base}/storage/multipart`, { parent_id: 'root', name: 'm.bin', size: 'big' }],
      ['POST', '/v1/accounts', { service: 'local', root: 7 }],
      ['POST', '/v1/accounts', { service: ['local'] }],
      ['PATCH', `/v1/accounts/${t.apps[0]!.accountId}`, { active: 'yes please' }],
      ['PATCH', `/v1/accounts/${t.apps[0]!.accountId}`, { account: 3 }],
      ['POST', `/v1/accounts/${t.apps[0]!.accountId}/tokens`, { expires_in: 'soon' }],
      ['POST', `/v1/accounts/${t.apps[0]!.accountId}/tokens`, { expires_in: -1 }],
    ];
    for (const [method, path, body] of cases) {
      await expectError(await t.call(path, { method, json: body }), 400, 'invalid_parameters');
    }
    const booleans = [
      `${base}/storage/folders/root/contents?page_size=abc`,
      `/v1/accounts?active=maybe`,
      `/v1/accounts/${t.apps[0]!.accountId}?retrieve_full=often`,
    ];
    for (const path of booleans) await expectError(await t.call(path), 400, 'invalid_parameters');
    await expectError(
      await t.call(`${base}/storage/files/${fileId}?permanent=perhaps`, { method: 'DELETE' }),
      400,
      'invalid_parameters',
    );
    // The file survived the refused delete.
    expect((await t.call(`${base}/storage/files/${fileId}`)).status).toBe(200);
    await expectError(
      await t.call(`${base}/storage/files`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'x-kloudless-metadata': '{"name": 5}' },
        body: 'x',
      }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${base}/storage/files`, {
        method: 'POST',
        headers: { 'content-type': 'application/octet-stream', 'x-kloudless-metadata': 'not json' },
        body: 'x',
      }),
      400,
      'invalid_parameters',
    );
  });

  it('answers bad ids with not_found or the specific 400, never data', async () => {
    const accountId = t.apps[0]!.accountId;
    for (const id of ['nope', 'file_AAAA', 'A'.repeat(5000), '..', 'root', '%2e%2e', 'folder_%2F']) {
      await expectError(await t.call(`${base}/storage/files/${id}`), 404, 'not_found');
      await expectError(await t.call(`${base}/storage/files/${id}/contents`), 404, 'not_found');
    }
    await expectError(await t.call(`${base}/storage/folders/not-a-folder/contents`), 404, 'not_found');
    await expectError(await t.call(`${base}/storage/links/999999`), 404, 'not_found');
    await expectError(await t.call(`${base}/storage/multipart/abc`), 404, 'not_found');
    await expectError(await t.call(`${base}/tasks/not-a-task`), 404, 'not_found');
    for (const account of ['abc', '0x1', '-1', '1.5', '99999999999999999999', String(accountId + 1000)]) {
      await expectError(await t.call(`/v1/accounts/${account}/storage/folders/root`), 404, 'not_found');
    }
    // Ids in bodies have their own codes.
    await expectError(
      await t.call(`${base}/storage/folders`, { method: 'POST', json: { name: 'x', parent_id: 'bogus' } }),
      400,
      'invalid_parent_folder',
    );
    await expectError(
      await t.call(`${base}/storage/files/${fileId}/copy`, { method: 'POST', json: { parent_id: 'bogus' } }),
      400,
      'invalid_parent_folder',
    );
    await expectError(
      await t.call(`${base}/storage/links`, { method: 'POST', json: { file_id: 'bogus' } }),
      400,
      'invalid_parameters',
    );
    // Malformed URLs (bad percent-encoding, an id past the router's limit) get the envelope too.
    await expectError(await t.call(`${base}/storage/files/%00%ff`), 400, 'bad_request');
    await expectError(await t.call(`${base}/storage/files/${'A'.repeat(12_000)}`), 400, 'bad_request');
  });

  it('refuses page_size 0 or over 1000 and forged pages on every list, and accepts an empty page=', async () => {
    const accountId = t.apps[0]!.accountId;
    const lists = [
      `${base}/storage/folders/root/contents?`,
      `/v1/accounts?`,
      `${base}/storage/links?`,
      `${base}/storage/search?q=input&`,
      `${base}/storage/recent?`,
      `/v1/accounts/${accountId}/events?`,
    ];
    for (const list of lists) {
      for (const size of ['0', '1001', '-1', '2.5', 'ten', '100000']) {
        await expectError(await t.call(`${list}page_size=${size}`), 400, 'invalid_parameters');
      }
      const first = await t.call(`${list}page=`);
      expect(first.status, list).toBe(200);
      expect(first.headers.get('content-type')).toBe('application/json');
      const body = (await json(first)) as { objects: unknown[] };
      expect(Array.isArray(body.objects)).toBe(true);
      expect((await t.call(`${list}page=&page_size=1000`)).status).toBe(200);
      expect((await t.call(`${list}page_size=1`)).status).toBe(200);
    }
    // Events page with a cursor, not `page`; the others refuse a forged one.
    for (const list of lists.slice(0, 5)) {
      for (const page of ['forged-token', '0', '-2', 'eyJmYWtlIjp0cnVlfQ']) {
        await expectError(await t.call(`${list}page=${page}`), 400, 'invalid_parameters');
      }
    }
    await expectError(
      await t.call(`/v1/accounts/${accountId}/events?cursor=forged`),
      400,
      'invalid_parameters',
    );
    // A page token of one listing is refused on another (it is bound to the listing).
    const folder = (await json(
      await t.call(`${base}/storage/folders`, { method: 'POST', json: { name: 'pages', parent_id: 'root' } }),
    )) as { id: string };
    for (let i = 0; i < 3; i++) await upload(t, base, `p${i}.txt`, 'p', folder.id);
    const page1 = (await json(await t.call(`${base}/storage/folders/${folder.id}/contents?page_size=1`))) as {
      next_page: string;
    };
    expect(page1.next_page).toEqual(expect.any(String));
    expect(
      (
        await t.call(
          `${base}/storage/folders/${folder.id}/contents?page_size=1&page=${encodeURIComponent(page1.next_page)}`,
        )
      ).status,
    ).toBe(200);
    await expectError(
      await t.call(
        `${base}/storage/folders/root/contents?page_size=1&page=${encodeURIComponent(page1.next_page)}`,
      ),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(
        `${base}/storage/folders/${folder.id}/contents?page_size=2&page=${encodeURIComponent(page1.next_page)}`,
      ),
      400,
      'invalid_parameters',
    );
  });

  it('answers unknown routes with 404 and wrong methods with 405 in the envelope', async () => {
    for (const path of [
      '/nope',
      '/v1',
      '/v1/nope',
      `${base}/storage/nothing-here`,
      `${base}/storage/files/${fileId}/nothing`,
      '/v2/accounts',
    ]) {
      await expectError(await t.call(path), 404, 'not_found');
      await expectError(await t.call(path, { method: 'POST', json: {} }), 404, 'not_found');
    }
    const wrong: Array<[string, string, string[]]> = [
      ['PUT', `${base}/storage/folders/root`, ['GET', 'PATCH', 'DELETE']],
      ['POST', `${base}/storage/files/${fileId}`, ['GET', 'PUT', 'PATCH', 'DELETE']],
      ['DELETE', '/v1/accounts', ['GET', 'POST']],
      ['PUT', '/v1/accounts/', ['GET', 'POST']],
      ['GET', `${base}/storage/files`, ['POST']],
      ['DELETE', `${base}/storage/files/${fileId}/contents`, ['GET']],
      ['PATCH', `${base}/storage/search`, ['GET']],
      ['POST', '/health', ['GET']],
      // Registered in its own context (no body parsers): still known to the method table.
      ['GET', `${base}/raw`, ['POST']],
      ['DELETE', `//v1//accounts/${t.apps[0]!.accountId}//tokens/`, ['POST']],
    ];
    for (const [method, path, allowed] of wrong) {
      const res = await t.call(path, { method });
      const allow = (res.headers.get('allow') ?? '').split(/,\s*/);
      expect(allow, `${method} ${path}`).toEqual(expect.arrayContaining(allowed));
      expect(allow).not.toContain(method);
      await expectError(res, 405, 'method_not_allowed');
    }
    // The refused PUT did not touch the file.
    expect(await (await t.call(`${base}/storage/files/${fileId}/contents`)).text()).toBe('some bytes');
  });

  it('refuses a JSON body over the limit with a 400 the client reads, without resetting the connection', async () => {
    const path = `${base}/storage/folders`;
    const auth = `APIKey ${t.apps[0]!.apiKey}`;
    for (const framing of ['content-length', 'chunked'] as const) {
      const result = await oversizedPost(t.url, path, auth, 40 * BODY_LIMIT, framing);
      expect(result.socketError, framing).toBeUndefined();
      expect(result.sent).toBe(40 * BODY_LIMIT);
      expect(result.status).toBe(400);
      expect(result.headers['content-type']).toBe('application/json');
      expect(errorEnvelopeSchema.parse(JSON.parse(result.body))).toMatchObject({
        status_code: 400,
        error_code: 'bad_request',
      });
      // The connection stayed usable: the next request on the same socket is answered.
      expect(result.next).toMatch(/^HTTP\/1\.1 200 /);
    }
    // Just under the limit is parsed as usual (and refused on its merits, not its size).
    const padded = JSON.stringify({ name: 'x'.repeat(BODY_LIMIT - 100), parent_id: 'root' });
    expect(padded.length).toBeLessThan(BODY_LIMIT);
    await expectError(
      await t.call(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: padded }),
      400,
      'invalid_parameters',
    );
    // undici (fetch) sending a body over the limit reads the same envelope.
    await expectError(
      await t.call(path, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ name: 'y'.repeat(3 * BODY_LIMIT), parent_id: 'root' }),
      }),
      400,
      'bad_request',
    );
  });
});

interface RawResult {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The raw reply to a follow-up GET /health on the same socket. */
  next: string;
  sent: number;
  socketError?: string;
}

/**
 * Sends an oversized JSON body over a raw socket in 16 KiB writes, honouring backpressure, while
 * reading the reply; then asks `GET /health` on the same connection. Any ECONNRESET/EPIPE is kept.
 */
async function oversizedPost(
  url: string,
  path: string,
  auth: string,
  total: number,
  framing: 'content-length' | 'chunked',
): Promise<RawResult> {
  const { hostname, port, host } = new URL(url);
  const socket: Socket = connect(Number(port), hostname);
  let socketError: string | undefined;
  let received = '';
  const waiters: Array<() => void> = [];
  socket.on('error', (err: NodeJS.ErrnoException) => {
    socketError = err.code ?? err.message;
    for (const w of waiters.splice(0)) w();
  });
  socket.on('data', (chunk: Buffer) => {
    received += chunk.toString('latin1');
    for (const w of waiters.splice(0)) w();
  });
  socket.on('close', () => {
    for (const w of waiters.splice(0)) w();
  });
  const until = async (done: () => boolean) => {
    while (!done() && !socketError && !socket.destroyed) await new Promise<void>((r) => waiters.push(r));
  };
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const framingHeader = framing === 'chunked' ? 'Transfer-Encoding: chunked' : `Content-Length: ${total}`;
  socket.write(
    `POST ${path} HTTP/1.1\r\nHost: ${host}\r\nAuthorization: ${auth}\r\nContent-Type: application/json\r\n${framingHeader}\r\n\r\n`,
  );
  const piece = Buffer.alloc(16 * 1024, 0x20);
  piece.write('{"name":"');
  let sent = 0;
  while (sent < total && !socketError) {
    const n = Math.min(piece.length, total - sent);
    const data =
      framing === 'chunked'
        ? Buffer.concat([Buffer.from(`${n.toString(16)}\r\n`), piece.subarray(0, n), Buffer.from('\r\n')])
        : piece.subarray(0, n);
    sent += n;
    if (!socket.write(data)) {
      await new Promise<void>((resolve) => {
        const done = () => resolve();
        socket.once('drain', done).once('close', done).once('error', done);
      });
    }
  }
  if (framing === 'chunked' && !socketError) socket.write('0\r\n\r\n');
  const headEnd = () => received.indexOf('\r\n\r\n');
  await until(
    () => headEnd() >= 0 && received.length >= headEnd() + 4 + contentLength(received.slice(0, headEnd())),
  );
  const head = received.slice(0, Math.max(0, headEnd()));
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(
    lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
  );
  const bodyStart = headEnd() + 4;
  const body = received.slice(bodyStart, bodyStart + contentLength(head));
  received = received.slice(bodyStart + body.length);
  let next = '';
  if (!socketError && !socket.destroyed) {
    socket.write(`GET /health HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
    await until(() => received.includes('\r\n\r\n'));
    next = received;
  }
  socket.destroy();
  return {
    status: Number(statusLine.split(' ')[1]),
    headers,
    body,
    next,
    sent,
    ...(socketError ? { socketError } : {}),
  };
}

function contentLength(head: string): number {
  const match = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  return match ? Number(match[1]) : 0;
}
