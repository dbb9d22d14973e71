import { createHash } from 'node:crypto';
import {
  errorEnvelopeSchema,
  fileSchema,
  folderSchema,
  objectListSchema,
  storageItemSchema,
} from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, STORE_KINDS, startTestServer, type TestServer, upload } from './harness.js';

describe.each(STORE_KINDS)('Storage API on %s', (store) => {
  let t: TestServer;
  let base: string;
  beforeAll(async () => {
    t = await startTestServer({ store });
    base = t.base;
  });
  afterAll(async () => t?.close());

  const expectError = async (res: Response, status: number, code: string) => {
    expect(res.headers.get('content-type')).toBe('application/json');
    const body = await json(res);
    expect(errorEnvelopeSchema.parse(body)).toMatchObject({ status_code: status, error_code: code });
    expect(res.status).toBe(status);
    expect(typeof body.id).toBe('string');
    return body;
  };

  it('lists the root and reads the root folder', async () => {
    const res = await t.call(`${base}/storage/folders/root/contents`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    const list = objectListSchema(storageItemSchema, 'storage').parse(await json(res));
    expect(list).toMatchObject({ count: 0, next_page: null, objects: [] });
    const root = folderSchema.parse(await json(await t.call(`${base}/storage/folders/root`)));
    expect(root.id).toBe('root');
  });

  it('uploads, downloads with Range, renames, copies and deletes a file', async () => {
    const file = fileSchema.parse(await upload(t, base, 'hello.txt', 'hello world'));
    expect(file).toMatchObject({
      name: 'hello.txt',
      size: 11,
      account: t.apps[0]!.accountId,
      mime_type: 'text/plain',
    });
    expect(file.href).toBe(`${t.url}${base}/storage/files/${file.id}`);
    const contents = await t.call(`${base}/storage/files/${file.id}/contents`);
    expect(contents.status).toBe(200);
    expect(await contents.text()).toBe('hello world');
    const partial = await t.call(`${base}/storage/files/${file.id}/contents`, {
      headers: { range: 'bytes=6-' },
    });
    expect(partial.status).toBe(206);
    expect(partial.headers.get('content-range')).toBe('bytes 6-10/11');
    expect(await partial.text()).toBe('world');
    const suffix = await t.call(`${base}/storage/files/${file.id}/contents`, {
      headers: { range: 'bytes=-3' },
    });
    expect(await suffix.text()).toBe('rld');
    const bad = await t.call(`${base}/storage/files/${file.id}/contents`, {
      headers: { range: 'bytes=50-60' },
    });
    expect(bad.status).toBe(416);

    const renamed = fileSchema.parse(
      await json(
        await t.call(`${base}/storage/files/${file.id}`, { method: 'PATCH', json: { name: 'renamed.txt' } }),
      ),
    );
    expect(renamed.name).toBe('renamed.txt');
    const copy = await t.call(`${base}/storage/files/${renamed.id}/copy`, {
      method: 'POST',
      json: { parent_id: 'root', name: 'copy.txt' },
    });
    expect(copy.status).toBe(201);
    const copied = fileSchema.parse(await json(copy));
    expect(await (await t.call(`${base}/storage/files/${copied.id}/contents`)).text()).toBe('hello world');

    const del = await t.call(`${base}/storage/files/${renamed.id}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe('');
    await expectError(await t.call(`${base}/storage/files/${renamed.id}`), 404, 'not_found');
  });

  it('applies the overwrite=false renaming rule and overwrite=true replaces', async () => {
    const a = await upload(t, base, 'report.pdf', 'one');
    const b = await upload(t, base, 'report.pdf', 'two');
    const c = await upload(t, base, 'report.pdf', 'three', 'root', '?overwrite=false');
    expect([a.name, b.name, c.name]).toEqual(['report.pdf', 'report (1).pdf', 'report (2).pdf']);
    const replaced = await upload(t, base, 'report.pdf', 'four!', 'root', '?overwrite=true');
    expect(replaced).toMatchObject({ name: 'report.pdf', size: 5, id: a.id });
  });

  it('creates folders with conflict_if_exists, lists them in pages to exhaustion', async () => {
    const create = (name: string, q = '') =>
      t.call(`${base}/storage/folders${q}`, { method: 'POST', json: { name, parent_id: 'root' } });
    const res = await create('paged');
    expect(res.status).toBe(201);
    const folder = folderSchema.parse(await json(res));
    const again = await create('paged');
    expect(again.status).toBe(200);
    expect(((await json(again)) as { id: string }).id).toBe(folder.id);
    const conflict = await expectError(
      await create('paged', '?conflict_if_exists=true'),
      409,
      'naming_conflict',
    );
    expect(conflict.conflicting_resource_id).toBe(folder.id);

    for (let i = 0; i < 7; i++) await upload(t, base, `f${i}.txt`, String(i), folder.id);
    const seen: string[] = [];
    let page: string | null = '';
    let pages = 0;
    while (page !== null) {
      const r = await t.call(
        `${base}/storage/folders/${folder.id}/contents?page_size=3&page=${encodeURIComponent(page)}`,
      );
      expect(r.status).toBe(200);
      const list = objectListSchema(storageItemSchema, 'storage').parse(await json(r));
      expect(list.objects.length).toBeLessThanOrEqual(3);
      seen.push(...list.objects.map((o) => o.name));
      page = list.next_page;
      pages++;
    }
    expect(pages).toBe(3);
    expect(seen.sort()).toEqual(['f0.txt', 'f1.txt', 'f2.txt', 'f3.txt', 'f4.txt', 'f5.txt', 'f6.txt']);
    // Plain page numbers (the SDKs' page + 1 guess) work, and past the end is 404.
    const p2 = (await json(
      await t.call(`${base}/storage/folders/${folder.id}/contents?page_size=3&page=2`),
    )) as { objects: unknown[] };
    expect(p2.objects).toHaveLength(3);
    await expectError(
      await t.call(`${base}/storage/folders/${folder.id}/contents?page_size=3&page=4`),
      404,
      'not_found',
    );
    await expectError(
      await t.call(`${base}/storage/folders/${folder.id}/contents?page=forged-token`),
      400,
      'invalid_parameters',
    );
  });

  it('deletes folders only recursively when not empty', async () => {
    const folder = (await json(
      await t.call(`${base}/storage/folders`, { method: 'POST', json: { name: 'full', parent_id: 'root' } }),
    )) as { id: string };
    await upload(t, base, 'x.txt', 'x', folder.id);
    await expectError(
      await t.call(`${base}/storage/folders/${folder.id}`, { method: 'DELETE' }),
      403,
      'folder_not_empty',
    );
    expect(
      (await t.call(`${base}/storage/folders/${folder.id}?recursive=true`, { method: 'DELETE' })).status,
    ).toBe(204);
    await expectError(await t.call(`${base}/storage/folders/${folder.id}`), 404, 'not_found');
  });

  it('streams a multi-MB upload and download with equal sha256', async () => {
    const data = Buffer.alloc(6 * 1024 * 1024 + 123);
    for (let i = 0; i < data.length; i += 4096) data.writeUInt32BE(i, i);
    const file = await upload(t, base, 'big.bin', data);
    expect(file.size).toBe(data.length);
    const res = await t.call(`${base}/storage/files/${file.id}/contents`);
    const got = Buffer.from(await res.arrayBuffer());
    expect(createHash('sha256').update(got).digest('hex')).toBe(
      createHash('sha256').update(data).digest('hex'),
    );
  });

  it('rejects tampered ids, ids of another account and type confusion with not_found', async () => {
    const file = await upload(t, base, 'secret.txt', 's');
    const tampered = `${file.id.slice(0, -2)}${file.id.endsWith('AA') ? 'BB' : 'AA'}`;
    await expectError(await t.call(`${base}/storage/files/${tampered}`), 404, 'not_found');
    await expectError(await t.call(`${base}/storage/folders/${file.id}`), 404, 'not_found');
    const other = await t.newLocalAccount(t.apps[0]!, 'second');
    await expectError(
      await t.call(`/v1/accounts/${other.accountId}/storage/files/${file.id}`),
      404,
      'not_found',
    );
  });

  it('refuses bad input with the envelope', async () => {
    await expectError(
      await t.call(`${base}/storage/folders/root/contents?page_size=0`),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${base}/storage/folders/root/contents?page_size=1001`),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${base}/storage/folders`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{not json',
      }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${base}/storage/folders`, { method: 'POST', json: { name: '..', parent_id: 'root' } }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${base}/storage/folders`, { method: 'POST', json: { name: 'x', parent_id: 'nope' } }),
      400,
      'invalid_parent_folder',
    );
    await expectError(
      await t.call(`${base}/storage/files`, { method: 'POST', body: 'x' }),
      400,
      'invalid_parameters',
    );
    await expectError(await t.call(`${base}/storage/nothing-here`), 404, 'not_found');
    await expectError(
      await t.call(`${base}/storage/folders/root`, { auth: null }),
      401,
      'authentication_required',
    );
    await expectError(
      await t.call(`${base}/storage/folders/root`, { auth: 'APIKey wrong' }),
      401,
      'unauthorized',
    );
    await expectError(
      await t.call(`${base}/storage/folders/root`, { auth: 'Bearer wrong' }),
      401,
      'invalid_token',
    );
  });

  it('tolerates trailing and double slashes, JSON bodies on GET and empty JSON bodies', async () => {
    expect((await t.call(`${base}/storage/folders/root/contents/`)).status).toBe(200);
    expect((await t.call(`/v1//accounts/${t.apps[0]!.accountId}//storage/folders/root`)).status).toBe(200);
    const empty = await t.call(`${base}/storage/folders/root`, {
      method: 'GET',
      headers: { 'content-type': 'application/json' },
    });
    expect(empty.status).toBe(200);
    const del = await upload(t, base, 'json-body-delete.txt', 'd');
    const res = await t.call(`${base}/storage/files/${del.id}`, {
      method: 'DELETE',
      json: { account_id: 1, ignored: true },
    });
    expect(res.status).toBe(204);
  });

  it('works with a Bearer token and `me`, and with the ApiKey spelling', async () => {
    const app = t.apps[0]!;
    expect(
      (await t.call('/v1/accounts/me/storage/folders/root', { auth: `Bearer ${app.token}` })).status,
    ).toBe(200);
    expect((await t.call(`${base}/storage/folders/root`, { auth: `apikey ${app.apiKey}` })).status).toBe(200);
    expect((await t.call(`${base}/storage/folders/root`, { auth: `ApiKey ${app.apiKey}` })).status).toBe(200);
  });
});
