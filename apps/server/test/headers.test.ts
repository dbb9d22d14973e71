/**
 * Headers and HTTP hygiene (issue 3 "Headers", kloudless-api.md §3.10, §8): `X-Kloudless-Raw-Data`,
 * `X-Kloudless-As-User` refused by a connector without impersonation, `X-Kloudless-Raw-Headers`
 * validation, CORS preflights, `Content-Type: application/json` exactly, 204 with an empty body on
 * every delete, and `href` built from `CLOUDMUX_PUBLIC_URL`.
 */
import {
  accountSchema,
  errorEnvelopeSchema,
  fileSchema,
  folderSchema,
  linkSchema,
  objectListSchema,
  storageItemSchema,
} from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, STORE_KINDS, startTestServer, type TestServer, upload } from './harness.js';

async function expectError(res: Response, status: number, code: string) {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/json');
  expect(text).not.toMatch(/"stack"|\n\s+at /);
  const body = errorEnvelopeSchema.parse(JSON.parse(text));
  expect(body).toMatchObject({ status_code: status, error_code: code });
  return body;
}

const KLOUDLESS_HEADERS = [
  'X-Kloudless-Metadata',
  'X-Kloudless-Raw-Data',
  'X-Kloudless-Raw-Headers',
  'X-Kloudless-As-User',
  'X-Kloudless-Raw-URI',
  'X-Kloudless-Raw-Method',
  'X-Kloudless-Async',
  'X-Kloudless-Source',
];

describe.each(STORE_KINDS)('request headers on %s', (store) => {
  let t: TestServer;
  let base: string;
  let file: { id: string };
  let folder: { id: string };
  beforeAll(async () => {
    t = await startTestServer({ store });
    base = t.base;
    folder = (await json(
      await t.call(`${base}/storage/folders`, { method: 'POST', json: { name: 'hdr', parent_id: 'root' } }),
    )) as { id: string };
    file = await upload(t, base, 'raw.txt', 'raw bytes', folder.id);
  });
  afterAll(async () => t?.close());

  it('adds `raw` to objects with X-Kloudless-Raw-Data: true, and only then', async () => {
    const raw = { 'x-kloudless-raw-data': 'true' };
    const got = fileSchema.parse(
      await json(await t.call(`${base}/storage/files/${file.id}`, { headers: raw })),
    );
    expect(got.raw).toBeDefined();
    expect(got.raw!.object).toBeTruthy();
    expect(got.raw!.id).toBe(got.raw_id);
    const dir = folderSchema.parse(
      await json(await t.call(`${base}/storage/folders/${folder.id}`, { headers: raw })),
    );
    expect(dir.raw).toBeDefined();
    const list = objectListSchema(storageItemSchema, 'storage').parse(
      await json(await t.call(`${base}/storage/folders/${folder.id}/contents`, { headers: raw })),
    );
    expect(list.objects.length).toBeGreaterThan(0);
    for (const item of list.objects) expect(item.raw).toBeDefined();
    const uploaded = fileSchema.parse(
      await json(
        await t.call(`${base}/storage/files`, {
          method: 'POST',
          headers: {
            ...raw,
            'content-type': 'application/octet-stream',
            'x-kloudless-metadata': JSON.stringify({ name: 'raw2.txt', parent_id: folder.id }),
          },
          body: 'second',
        }),
      ),
    );
    expect(uploaded.raw).toBeDefined();
    // `True` (py1's spelling) works; absent or false leaves it out.
    const titled = await json(
      await t.call(`${base}/storage/files/${file.id}`, { headers: { 'x-kloudless-raw-data': 'True' } }),
    );
    expect(titled.raw).toBeDefined();
    for (const headers of [{}, { 'x-kloudless-raw-data': 'false' }] as Array<Record<string, string>>) {
      const plain = fileSchema.parse(
        await json(await t.call(`${base}/storage/files/${file.id}`, { headers })),
      );
      expect(plain.raw).toBeUndefined();
    }
    await expectError(
      await t.call(`${base}/storage/files/${file.id}`, { headers: { 'x-kloudless-raw-data': 'sometimes' } }),
      400,
      'invalid_parameters',
    );
  });

  it('refuses X-Kloudless-As-User clearly on the local connector (no impersonation), changing nothing', async () => {
    const asUser = { 'x-kloudless-as-user': 'user-42' };
    const requests: Array<[string, RequestInit & { json?: unknown }]> = [
      [`${base}/storage/files/${file.id}`, { headers: asUser }],
      [`${base}/storage/folders/root/contents`, { headers: asUser }],
      [
        `${base}/storage/folders`,
        { method: 'POST', headers: asUser, json: { name: 'as-user', parent_id: 'root' } },
      ],
      [`${base}/storage/files/${file.id}`, { method: 'DELETE', headers: asUser }],
      [
        `${base}/storage/files`,
        {
          method: 'POST',
          headers: {
            ...asUser,
            'content-type': 'application/octet-stream',
            'x-kloudless-metadata': JSON.stringify({ name: 'as-user.txt', parent_id: 'root' }),
          },
          body: 'nope',
        },
      ],
    ];
    for (const [path, init] of requests) {
      const body = await expectError(await t.call(path, init), 501, 'not_implemented');
      expect(body.message).toMatch(/X-Kloudless-As-User/);
      expect(body.message).toMatch(/local/);
    }
    const root = (await json(await t.call(`${base}/storage/folders/root/contents`))) as {
      objects: Array<{ name: string }>;
    };
    expect(root.objects.map((o) => o.name)).toEqual(['hdr']);
    expect(await (await t.call(`${base}/storage/files/${file.id}/contents`)).text()).toBe('raw bytes');
  });

  it('validates X-Kloudless-Raw-Headers: a JSON object of header names to values', async () => {
    for (const value of [
      '{not json',
      '[1,2]',
      '"text"',
      '42',
      '{"bad name": "x"}',
      '{"X-Ok": {"nested": 1}}',
    ]) {
      const body = await expectError(
        await t.call(`${base}/storage/files/${file.id}`, { headers: { 'x-kloudless-raw-headers': value } }),
        400,
        'invalid_parameters',
      );
      expect(body.message).toMatch(/X-Kloudless-Raw-Headers/);
    }
    // A value with an escaped CR/LF would smuggle a header upstream.
    await expectError(
      await t.call(`${base}/storage/files/${file.id}`, {
        headers: { 'x-kloudless-raw-headers': '{"X-A": "1\\r\\nX-B: 2"}' },
      }),
      400,
      'invalid_parameters',
    );
    const ok = await t.call(`${base}/storage/files/${file.id}`, {
      headers: { 'x-kloudless-raw-headers': '{"X-Custom": "yes", "X-Count": 3}' },
    });
    expect(ok.status).toBe(200);
    expect(fileSchema.parse(await json(ok)).id).toBe(file.id);
  });

  it('keeps file bytes sent as application/json as bytes (uploads and PUT contents)', async () => {
    const data = '{"a": [1, 2, {"b": "\u00e9"}]}\n';
    const res = await t.call(`${base}/storage/files`, {
      method: 'POST',
      headers: {
        'content-type': 'application/json; charset=utf-8',
        'x-kloudless-metadata': JSON.stringify({ name: 'data.json', parent_id: folder.id }),
      },
      body: data,
    });
    expect(res.status).toBe(201);
    const uploaded = fileSchema.parse(await json(res));
    expect(uploaded).toMatchObject({
      name: 'data.json',
      size: Buffer.byteLength(data),
      mime_type: 'application/json',
    });
    expect(await (await t.call(`${base}/storage/files/${uploaded.id}/contents`)).text()).toBe(data);
    // Not even valid JSON: still just the file's bytes.
    const replaced = await t.call(`${base}/storage/files/${uploaded.id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: '{"truncated": ',
    });
    expect(replaced.status).toBe(200);
    expect(fileSchema.parse(await json(replaced)).size).toBe(14);
    expect(await (await t.call(`${base}/storage/files/${uploaded.id}/contents`)).text()).toBe(
      '{"truncated": ',
    );
    // Without X-Kloudless-Metadata a JSON upload is the upload-from-URL form.
    await expectError(
      await t.call(`${base}/storage/files`, {
        method: 'POST',
        json: { url: 'https://example.test/a', parent_id: 'root' },
      }),
      400,
      'invalid_parameters',
    );
  });

  it('answers CORS preflights with the origin and the Authorization and X-Kloudless-* headers', async () => {
    const origin = 'https://picker.example.test';
    const requested = [
      'authorization',
      'content-type',
      ...KLOUDLESS_HEADERS.map((h) => h.toLowerCase()),
    ].join(', ');
    for (const path of [
      `${base}/storage/files/${file.id}`,
      '/v1/accounts/me/storage/folders/root/contents/',
      '/v1/oauth/token',
    ]) {
      const res = await t.call(path, {
        method: 'OPTIONS',
        auth: null,
        headers: {
          origin,
          'access-control-request-method': 'PATCH',
          'access-control-request-headers': requested,
        },
      });
      expect(res.status).toBe(204);
      expect(await res.text()).toBe('');
      expect(res.headers.get('access-control-allow-origin')).toBe(origin);
      expect(res.headers.get('vary')).toMatch(/Origin/i);
      const allowed = (res.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
      expect(allowed).toEqual(expect.arrayContaining(requested.split(', ')));
      const methods = (res.headers.get('access-control-allow-methods') ?? '').split(/\s*,\s*/);
      expect(methods).toEqual(expect.arrayContaining(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']));
    }
    // Without Access-Control-Request-Headers the default list still names them all.
    const plain = await t.call(`${base}/storage/files/${file.id}`, {
      method: 'OPTIONS',
      auth: null,
      headers: { origin, 'access-control-request-method': 'GET' },
    });
    expect(plain.status).toBe(204);
    const defaults = (plain.headers.get('access-control-allow-headers') ?? '').toLowerCase().split(/\s*,\s*/);
    expect(defaults).toEqual(
      expect.arrayContaining(['authorization', ...KLOUDLESS_HEADERS.map((h) => h.toLowerCase())]),
    );
    // Actual requests echo the origin and expose the headers clients read.
    const actual = await t.call(`${base}/storage/files/${file.id}`, { headers: { origin } });
    expect(actual.status).toBe(200);
    expect(actual.headers.get('access-control-allow-origin')).toBe(origin);
    expect((actual.headers.get('access-control-expose-headers') ?? '').toLowerCase()).toMatch(/retry-after/);
    // Errors carry CORS headers too, so a browser client can read the envelope.
    const denied = await t.call(`${base}/storage/files/${file.id}`, {
      auth: 'APIKey wrong',
      headers: { origin },
    });
    expect(denied.headers.get('access-control-allow-origin')).toBe(origin);
    await expectError(denied, 401, 'unauthorized');
  });

  it('sends Content-Type: application/json exactly on every JSON reply', async () => {
    const app = t.apps[0]!;
    const accountId = app.accountId;
    const link = (await json(
      await t.call(`${base}/storage/links`, { method: 'POST', json: { file_id: file.id } }),
    )) as { id: string };
    const session = (await json(
      await t.call(`${base}/storage/multipart`, {
        method: 'POST',
        json: { parent_id: 'root', name: 'mp.bin', size: 4 },
      }),
    )) as { id: number };
    const calls: Array<[string, RequestInit & { json?: unknown; auth?: string | null }]> = [
      ['/health', {}],
      ['/ready', {}],
      ['/v1/accounts', {}],
      [`/v1/accounts/${accountId}`, {}],
      [`/v1/accounts/${accountId}?retrieve_full=true`, {}],
      ['/v1/accounts/me', { auth: `Bearer ${app.token}` }],
      [`/v1/accounts/${accountId}`, { method: 'PATCH', json: { account: 'renamed' } }],
      [`/v1/accounts/${accountId}/tokens`, { method: 'POST', json: {} }],
      ['/v1/oauth/token', { auth: `Bearer ${app.token}` }],
      ['/v1/public/services?apis=storage', { auth: null }],
      [`${base}/storage/folders/root`, {}],
      [`${base}/storage/folders/${folder.id}/contents`, {}],
      [`${base}/storage/files/${file.id}`, {}],
      [`${base}/storage/files/${file.id}/copy`, { method: 'POST', json: { name: 'copy-ct.txt' } }],
      [`${base}/storage/folders`, { method: 'POST', json: { name: 'ct', parent_id: 'root' } }],
      [`${base}/storage/links`, {}],
      [`${base}/storage/links/${link.id}`, {}],
      [`${base}/storage/search?q=raw`, {}],
      [`${base}/storage/recent`, {}],
      [`${base}/storage/multipart/${session.id}`, {}],
      [`/v1/accounts/${accountId}/events/latest`, {}],
      [`/v1/accounts/${accountId}/events?cursor=0`, {}],
      [`/v1/accounts/${accountId}/encode_raw_id`, { method: 'POST', json: { id: '/hdr' } }],
      // Errors of every origin: routing, auth, validation, the connector.
      ['/v1/nothing', {}],
      [`${base}/storage/folders/root`, { method: 'PUT' }],
      [`${base}/storage/folders/root`, { auth: null }],
      [`${base}/storage/folders/root`, { auth: 'Bearer nope' }],
      [`${base}/storage/files/nope`, {}],
      [
        `${base}/storage/folders`,
        { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' },
      ],
      [`${base}/storage/files/${file.id}/properties`, {}],
      [`${base}/storage/files/%ff`, {}],
    ];
    for (const [path, init] of calls) {
      const res = await t.call(path, init);
      expect(res.headers.get('content-type'), `${init.method ?? 'GET'} ${path}`).toBe('application/json');
      const body = JSON.parse(await res.text()) as Record<string, unknown>;
      expect(typeof body).toBe('object');
    }
  });

  it('answers every delete with 204 and an empty body', async () => {
    const app = t.apps[0]!;
    const victim = await upload(t, base, 'delete-me.txt', 'x');
    const dir = (await json(
      await t.call(`${base}/storage/folders`, {
        method: 'POST',
        json: { name: 'delete-dir', parent_id: 'root' },
      }),
    )) as { id: string };
    await upload(t, base, 'inner.txt', 'y', dir.id);
    const empty = (await json(
      await t.call(`${base}/storage/folders`, {
        method: 'POST',
        json: { name: 'empty-dir', parent_id: 'root' },
      }),
    )) as { id: string };
    const permanent = await upload(t, base, 'permanent.txt', 'z');
    const link = (await json(
      await t.call(`${base}/storage/links`, { method: 'POST', json: { file_id: file.id } }),
    )) as { id: string };
    const session = (await json(
      await t.call(`${base}/storage/multipart`, {
        method: 'POST',
        json: { parent_id: 'root', name: 'abort.bin', size: 4 },
      }),
    )) as { id: number };
    const token = (
      (await json(await t.call(`/v1/accounts/${app.accountId}/tokens`, { method: 'POST', json: {} }))) as {
        access_token: string;
      }
    ).access_token;
    const extra = await t.newLocalAccount(app, 'to delete');
    const deletes = [
      `${base}/storage/files/${victim.id}`,
      `${base}/storage/files/${permanent.id}?permanent=true`,
      `${base}/storage/folders/${dir.id}?recursive=true`,
      `${base}/storage/folders/${empty.id}`,
      `${base}/storage/links/${link.id}`,
      `${base}/storage/multipart/${session.id}`,
      `/v1/accounts/${app.accountId}/tokens/${token}`,
      `/v1/accounts/${extra.accountId}`,
    ];
    for (const path of deletes) {
      const res = await t.call(path, { method: 'DELETE' });
      expect(res.status, path).toBe(204);
      expect(res.headers.get('content-type')).toBeNull();
      expect(await res.text()).toBe('');
    }
    // And each one is gone.
    for (const path of deletes) await expectError(await t.call(path, { method: 'DELETE' }), 404, 'not_found');
  });
});

describe.each(STORE_KINDS)('href from CLOUDMUX_PUBLIC_URL on %s', (store) => {
  const PUBLIC = 'https://cm.example.test/base';
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ store, env: { CLOUDMUX_PUBLIC_URL: `${PUBLIC}/` } });
  });
  afterAll(async () => t?.close());

  it('builds the href of files, folders, lists, links and accounts from the public URL', async () => {
    const accountId = t.apps[0]!.accountId;
    const base = t.base;
    const folder = folderSchema.parse(
      await json(
        await t.call(`${base}/storage/folders`, { method: 'POST', json: { name: 'pub', parent_id: 'root' } }),
      ),
    );
    expect(folder.href).toBe(`${PUBLIC}/v1/accounts/${accountId}/storage/folders/${folder.id}`);
    const file = fileSchema.parse(await upload(t, base, 'pub.txt', 'public', folder.id));
    expect(file.href).toBe(`${PUBLIC}/v1/accounts/${accountId}/storage/files/${file.id}`);
    expect(fileSchema.parse(await json(await t.call(`${base}/storage/files/${file.id}`))).href).toBe(
      file.href,
    );
    const root = folderSchema.parse(await json(await t.call(`${base}/storage/folders/root`)));
    expect(root.href).toBe(`${PUBLIC}/v1/accounts/${accountId}/storage/folders/root`);
    const list = objectListSchema(storageItemSchema, 'storage').parse(
      await json(await t.call(`${base}/storage/folders/${folder.id}/contents`)),
    );
    expect(list.objects.map((o) => o.href)).toEqual([file.href]);
    const account = accountSchema.parse(await json(await t.call(`/v1/accounts/${accountId}`)));
    expect(account.href).toBe(`${PUBLIC}/v1/accounts/${accountId}`);
    const accounts = objectListSchema(accountSchema, 'core').parse(await json(await t.call('/v1/accounts')));
    for (const a of accounts.objects) expect(a.href).toBe(`${PUBLIC}/v1/accounts/${a.id}`);
    const link = linkSchema.parse(
      await json(await t.call(`${base}/storage/links`, { method: 'POST', json: { file_id: file.id } })),
    );
    expect(link.href).toBe(`${PUBLIC}/v1/accounts/${accountId}/storage/links/${link.id}`);
    expect(link.url.startsWith(`${PUBLIC}/`)).toBe(true);
    // Nothing leaks the listening address.
    for (const href of [folder.href, file.href, account.href, link.href, link.url])
      expect(href).not.toContain('127.0.0.1');
  });
});
