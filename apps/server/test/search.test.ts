import { mkdirSync, utimesSync } from 'node:fs';
import { join } from 'node:path';
import { LocalStorage, local } from '@cloudmux/connector-local';
import {
  defineConnector,
  errorEnvelopeSchema,
  objectListSchema,
  type StorageApi,
  storageItemSchema,
} from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as z from 'zod';
import { json, STORE_KINDS, startTestServer, type TestServer, upload } from './harness.js';

/** A disk connector without `search` and `recent`: the server must answer 501 for it. */
function withoutSearch(base: LocalStorage): StorageApi {
  return {
    rootRawId: base.rootRawId,
    get: (rawId, type) => base.get(rawId, type),
    list: (folder, page) => base.list(folder, page),
    lookup: (parent, name) => base.lookup(parent, name),
    createFolder: (parent, name) => base.createFolder(parent, name),
    upload: (parent, name, body, options) => base.upload(parent, name, body, options),
    download: (rawId, options) => base.download(rawId, options),
    updateContents: (rawId, body, options) => base.updateContents(rawId, body, options),
    move: (rawId, type, options) => base.move(rawId, type, options),
    delete: (rawId, type, options) => base.delete(rawId, type, options),
  };
}

const plainDisk = defineConnector({
  service: 'plaindisk',
  name: 'Plain test disk',
  version: '1.0.0',
  category: 'storage',
  apis: ['storage'],
  auth: { type: 'protocol' },
  network: 'none',
  credentials: z.object({ root: z.string().min(1) }),
  create: (ctx) => ({ storage: withoutSearch(new LocalStorage(ctx.credentials.root)) }),
});

const listSchema = objectListSchema(storageItemSchema, 'storage');
type Item = z.infer<typeof storageItemSchema>;

describe.each(STORE_KINDS)('Search and recent on %s', (store) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ store, connectors: [local, plainDisk] });
  });
  afterAll(async () => t?.close());

  const expectError = async (res: Response, status: number, code: string) => {
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(errorEnvelopeSchema.parse(await json(res))).toMatchObject({
      status_code: status,
      error_code: code,
    });
    expect(res.status).toBe(status);
  };

  /** Follows `next_page` to the end; returns every object and the number of pages. */
  const pageThrough = async (path: string, auth?: string) => {
    const objects: Item[] = [];
    const totals: Array<number | undefined> = [];
    let page: string | null = '';
    let pages = 0;
    while (page !== null) {
      const res = await t.call(
        `${path}${path.includes('?') ? '&' : '?'}page=${encodeURIComponent(page)}`,
        auth ? { auth } : {},
      );
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      const body = (await json(res)) as { total?: number };
      const list = listSchema.parse(body);
      objects.push(...list.objects);
      totals.push(body.total);
      page = list.next_page;
      pages++;
      expect(pages).toBeLessThan(50);
    }
    return { objects, pages, totals };
  };

  const newAccount = async (name: string) => {
    const acc = await t.newLocalAccount(t.apps[0]!, name);
    return { ...acc, base: `/v1/accounts/${acc.accountId}` };
  };
  const mkdir = async (accountBase: string, name: string) =>
    (await json(
      await t.call(`${accountBase}/storage/folders`, { method: 'POST', json: { name, parent_id: 'root' } }),
    )) as { id: string };

  it('searches by name, in pages to exhaustion, within parents, and refuses bad input', async () => {
    const acc = await newAccount('search one');
    for (let i = 0; i < 7; i++) await upload(t, acc.base, `needle-${i}.txt`, `n${i}`);
    for (let i = 0; i < 3; i++) await upload(t, acc.base, `other-${i}.txt`, `o${i}`);
    const sub = await mkdir(acc.base, 'sub');
    await upload(t, acc.base, 'deep-needle-a.txt', 'a', sub.id);
    await upload(t, acc.base, 'deep-NEEDLE-b.txt', 'b', sub.id);

    const all = await pageThrough(`${acc.base}/storage/search?q=needle&page_size=4`);
    expect(all.pages).toBe(3);
    expect(all.objects).toHaveLength(9);
    expect(new Set(all.objects.map((o) => o.id)).size).toBe(9);
    expect(
      all.objects.every((o) => o.name.toLowerCase().includes('needle') && o.account === acc.accountId),
    ).toBe(true);
    expect(all.totals).toEqual([9, 9, 9]);
    // Ids from a search work on the files API.
    expect((await t.call(`${acc.base}/storage/files/${all.objects[8]!.id}`)).status).toBe(200);

    const second = listSchema.parse(
      await json(await t.call(`${acc.base}/storage/search?q=needle&page_size=4&page=2`)),
    );
    expect(second.objects.map((o) => o.id)).toEqual(all.objects.slice(4, 8).map((o) => o.id));
    await expectError(
      await t.call(`${acc.base}/storage/search?q=needle&page_size=4&page=4`),
      404,
      'not_found',
    );

    const within = await pageThrough(`${acc.base}/storage/search?q=needle&parents=${sub.id}`);
    expect(within.objects.map((o) => o.name).sort()).toEqual(['deep-NEEDLE-b.txt', 'deep-needle-a.txt']);
    expect((await pageThrough(`${acc.base}/storage/search?q=needle&parents=root`)).objects).toHaveLength(9);

    const none = await t.call(`${acc.base}/storage/search?q=nothing-like-this`);
    expect(listSchema.parse(await json(none))).toMatchObject({ count: 0, objects: [], next_page: null });

    await expectError(await t.call(`${acc.base}/storage/search?q=`), 400, 'invalid_parameters');
    await expectError(await t.call(`${acc.base}/storage/search?q=%20%20`), 400, 'invalid_parameters');
    await expectError(await t.call(`${acc.base}/storage/search`), 400, 'invalid_parameters');
    await expectError(
      await t.call(`${acc.base}/storage/search?q=needle&page_size=1001`),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${acc.base}/storage/search?q=needle&page_size=0`),
      400,
      'invalid_parameters',
    );
    await expectError(await t.call(`${acc.base}/storage/search?q=needle&page=0`), 400, 'invalid_parameters');
    await expectError(
      await t.call(`${acc.base}/storage/search?q=needle&page=forged`),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${acc.base}/storage/search?q=needle&parents=bogus`),
      400,
      'invalid_parent_folder',
    );
    const other = await newAccount('search other');
    const foreign = await mkdir(other.base, 'theirs');
    await expectError(
      await t.call(`${acc.base}/storage/search?q=needle&parents=${foreign.id}`),
      400,
      'invalid_parent_folder',
    );
    // A next_page token is bound to its query.
    const first = listSchema.parse(
      await json(await t.call(`${acc.base}/storage/search?q=needle&page_size=4`)),
    );
    await expectError(
      await t.call(`${acc.base}/storage/search?q=other&page_size=4&page=${first.next_page}`),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(`${acc.base}/storage/search?q=needle`, { auth: null }),
      401,
      'authentication_required',
    );
  });

  it('searches several accounts at once, each object carrying its own account', async () => {
    const one = await newAccount('multi one');
    const two = await newAccount('multi two');
    for (let i = 0; i < 5; i++) await upload(t, one.base, `multi-${i}.txt`, `${i}`);
    for (let i = 0; i < 3; i++) await upload(t, two.base, `multi-two-${i}.txt`, `${i}`);
    const twoFolder = await mkdir(two.base, 'multi-folder');
    await upload(t, two.base, 'inside.txt', 'x', twoFolder.id);

    const both = await pageThrough(
      `/v1/accounts/${one.accountId},${two.accountId}/storage/search?q=multi&page_size=2`,
    );
    expect(both.objects).toHaveLength(9);
    const byAccount = (account: number) => both.objects.filter((o) => o.account === account);
    expect(byAccount(one.accountId)).toHaveLength(5);
    expect(byAccount(two.accountId)).toHaveLength(4);
    for (const o of byAccount(two.accountId)) {
      expect(o.href).toBe(`${t.url}${two.base}/storage/${o.type === 'file' ? 'files' : 'folders'}/${o.id}`);
      expect(
        (await t.call(`${two.base}/storage/${o.type === 'file' ? 'files' : 'folders'}/${o.id}`)).status,
      ).toBe(200);
      expect(
        (await t.call(`${one.base}/storage/${o.type === 'file' ? 'files' : 'folders'}/${o.id}`)).status,
      ).toBe(404);
    }
    // `parents` names a folder of one account: only that account is searched.
    const scoped = await pageThrough(
      `/v1/accounts/${one.accountId},${two.accountId}/storage/search?q=txt&parents=${twoFolder.id}`,
    );
    expect(scoped.objects.map((o) => [o.name, o.account])).toEqual([['inside.txt', two.accountId]]);
    // Bearer tokens of both accounts with `me`.
    const bearer = await pageThrough(
      '/v1/accounts/me/storage/search?q=multi&page_size=4',
      `Bearer ${one.token},${two.token}`,
    );
    expect(bearer.objects).toHaveLength(9);
  });

  it('lists recent files newest first with after, total and paging', async () => {
    const acc = await newAccount('recent one');
    const start = Date.UTC(2024, 0, 1, 0, 0, 0);
    const hour = 3_600_000;
    for (let i = 0; i < 6; i++) await upload(t, acc.base, `r${i}.txt`, `${i}`);
    const sub = await mkdir(acc.base, 'rsub');
    await upload(t, acc.base, 'r6.txt', '6', sub.id);
    // Modification times set on disk make the order independent of upload timing.
    const stamp = (root: string, path: string, ms: number) =>
      utimesSync(join(root, path), ms / 1000, ms / 1000);
    for (let i = 0; i < 6; i++) stamp(acc.root, `r${i}.txt`, start + i * hour);
    stamp(acc.root, 'rsub/r6.txt', start + 3.5 * hour);

    const all = await pageThrough(`${acc.base}/storage/recent?page_size=3`);
    expect(all.objects.map((o) => o.name)).toEqual([
      'r5.txt',
      'r4.txt',
      'r6.txt',
      'r3.txt',
      'r2.txt',
      'r1.txt',
      'r0.txt',
    ]);
    expect(all.pages).toBe(3);
    expect(all.totals).toEqual([7, 7, 7]);
    expect(all.objects.every((o) => o.type === 'file')).toBe(true);

    const after = new Date(start + 2 * hour).toISOString();
    const newer = await pageThrough(`${acc.base}/storage/recent?after=${encodeURIComponent(after)}`);
    expect(newer.objects.map((o) => o.name)).toEqual(['r5.txt', 'r4.txt', 'r6.txt', 'r3.txt']);
    expect(newer.totals).toEqual([4]);

    const page2 = (await json(await t.call(`${acc.base}/storage/recent?page_size=3&page=2`))) as {
      objects: Item[];
      total: number;
    };
    expect(page2.objects.map((o) => o.name)).toEqual(['r3.txt', 'r2.txt', 'r1.txt']);
    expect(page2.total).toBe(7);
    await expectError(await t.call(`${acc.base}/storage/recent?page_size=3&page=4`), 404, 'not_found');
    await expectError(await t.call(`${acc.base}/storage/recent?page_size=1001`), 400, 'invalid_parameters');
    await expectError(await t.call(`${acc.base}/storage/recent?page=0`), 400, 'invalid_parameters');
    await expectError(
      await t.call(`${acc.base}/storage/recent?after=yesterday&page_size=1001`),
      400,
      'invalid_parameters',
    );

    const invalid = await t.call(`${acc.base}/storage/recent?after=not-a-date`);
    expect(invalid.status).toBe(200);
    expect(listSchema.parse(await json(invalid))).toMatchObject({ count: 0, objects: [], next_page: null });
  });

  it('merges recent files of several accounts by modification time', async () => {
    const one = await newAccount('recent multi one');
    const two = await newAccount('recent multi two');
    const start = Date.UTC(2023, 5, 1);
    const minute = 60_000;
    const times: Record<string, number> = { a0: 0, a1: 10, a2: 20, a3: 30, a4: 40, b0: 5, b1: 25, b2: 100 };
    for (const [name, offset] of Object.entries(times)) {
      const acc = name.startsWith('a') ? one : two;
      await upload(t, acc.base, `${name}.txt`, name);
      const ms = start + offset * minute;
      utimesSync(join(acc.root, `${name}.txt`), ms / 1000, ms / 1000);
    }
    const expected = Object.entries(times)
      .sort((x, y) => y[1] - x[1])
      .map(([name]) => `${name}.txt`);
    for (const pageSize of [1, 2, 3, 100]) {
      const merged = await pageThrough(
        `/v1/accounts/${one.accountId},${two.accountId}/storage/recent?page_size=${pageSize}`,
      );
      expect(merged.objects.map((o) => o.name)).toEqual(expected);
      expect(merged.pages).toBe(Math.ceil(expected.length / pageSize));
      expect(merged.totals.every((total) => total === 8)).toBe(true);
      for (const o of merged.objects)
        expect(o.account).toBe(o.name.startsWith('a') ? one.accountId : two.accountId);
    }
    const third = (await json(
      await t.call(`/v1/accounts/${one.accountId},${two.accountId}/storage/recent?page_size=3&page=3`),
    )) as { objects: Item[] };
    expect(third.objects.map((o) => o.name)).toEqual(expected.slice(6));
    await expectError(
      await t.call(`/v1/accounts/${one.accountId},${two.accountId}/storage/recent?page_size=3&page=4`),
      404,
      'not_found',
    );
  });

  it('answers 501 for connectors without search or recent', async () => {
    const root = join(t.dataDir.path, 'plain-disk');
    mkdirSync(root, { recursive: true });
    const res = await t.call('/v1/accounts', {
      method: 'POST',
      json: { service: 'plaindisk', account: 'plain', root },
    });
    expect(res.status).toBe(201);
    const plain = (await json(res)) as { id: number };
    await upload(t, `/v1/accounts/${plain.id}`, 'plain.txt', 'p');
    await expectError(
      await t.call(`/v1/accounts/${plain.id}/storage/search?q=plain`),
      501,
      'not_implemented',
    );
    await expectError(await t.call(`/v1/accounts/${plain.id}/storage/recent`), 501, 'not_implemented');
    await expectError(
      await t.call(`/v1/accounts/${t.apps[0]!.accountId},${plain.id}/storage/search?q=plain`),
      501,
      'not_implemented',
    );
  });

  it('keeps apps apart for search and recent', async () => {
    const appB = await t.newApp('Search app B');
    const appA = t.apps[0]!;
    await upload(t, `/v1/accounts/${appA.accountId}`, 'isolated-a.txt', 'a');
    await upload(
      t,
      `/v1/accounts/${appB.accountId}`,
      'isolated-b.txt',
      'b',
      'root',
      '',
      `APIKey ${appB.apiKey}`,
    );
    for (const [owner, intruder] of [
      [appA, appB],
      [appB, appA],
    ] as const) {
      for (const auth of [`APIKey ${intruder.apiKey}`, `Bearer ${intruder.token}`]) {
        await expectError(
          await t.call(`/v1/accounts/${owner.accountId}/storage/search?q=isolated`, { auth }),
          404,
          'not_found',
        );
        await expectError(
          await t.call(`/v1/accounts/${owner.accountId}/storage/recent`, { auth }),
          404,
          'not_found',
        );
        await expectError(
          await t.call(`/v1/accounts/${intruder.accountId},${owner.accountId}/storage/search?q=isolated`, {
            auth,
          }),
          404,
          'not_found',
        );
        const own = await pageThrough(`/v1/accounts/${intruder.accountId}/storage/search?q=isolated`, auth);
        expect(own.objects.map((o) => o.account)).toEqual([intruder.accountId]);
      }
    }
  });
});
