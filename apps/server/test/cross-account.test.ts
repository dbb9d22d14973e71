/**
 * Cross-account copy and move (kloudless-api.md §3.1–3.2: `account` in the copy/PATCH body): files
 * and folders streamed from one account to another of the same application, with the API key or
 * comma-separated Bearer tokens; conflicts; and a target account of another application is 404.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  errorEnvelopeSchema,
  fileSchema,
  folderSchema,
  objectListSchema,
  storageItemSchema,
} from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, STORE_KINDS, startTestServer, type TestApp, type TestServer, upload } from './harness.js';

async function expectError(res: Response, status: number, code: string) {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/json');
  const body = errorEnvelopeSchema.parse(JSON.parse(text));
  expect(body).toMatchObject({ status_code: status, error_code: code });
  return body;
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

/** A few MB with a position-dependent pattern, so truncation or reordering changes the hash. */
function bigPayload(size: number): Buffer {
  const data = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4096) data.writeUInt32BE(i, i);
  return data;
}

describe.each(STORE_KINDS)('cross-account copy and move on %s', (store) => {
  let t: TestServer;
  let a: TestApp;
  let b: TestApp;
  let a2: { accountId: number; root: string; token: string };
  let srcBase: string;
  let dstBase: string;
  beforeAll(async () => {
    t = await startTestServer({ store });
    a = t.apps[0]!;
    a2 = await t.newLocalAccount(a, 'second of A');
    b = await t.newApp('other app');
    srcBase = `/v1/accounts/${a.accountId}`;
    dstBase = `/v1/accounts/${a2.accountId}`;
  });
  afterAll(async () => t?.close());

  const mkdir = async (base: string, name: string, parent = 'root', auth?: string) => {
    const res = await t.call(`${base}/storage/folders`, {
      method: 'POST',
      ...(auth ? { auth } : {}),
      json: { name, parent_id: parent },
    });
    return folderSchema.parse(await json(res));
  };
  const bytes = async (base: string, id: string, auth?: string) => {
    const res = await t.call(`${base}/storage/files/${id}/contents`, auth ? { auth } : {});
    expect(res.status).toBe(200);
    return Buffer.from(await res.arrayBuffer());
  };
  const names = async (base: string, folder = 'root', auth?: string) => {
    const res = await t.call(
      `${base}/storage/folders/${folder}/contents?page_size=1000`,
      auth ? { auth } : {},
    );
    const list = objectListSchema(storageItemSchema, 'storage').parse(await json(res));
    return list.objects.map((o) => o.name).sort();
  };
  /** name → sha256 for every file under `folder`, recursively, keyed by relative path. */
  const tree = async (base: string, folder: string, prefix = ''): Promise<Record<string, string>> => {
    const list = objectListSchema(storageItemSchema, 'storage').parse(
      await json(await t.call(`${base}/storage/folders/${folder}/contents?page_size=1000`)),
    );
    const out: Record<string, string> = {};
    for (const item of list.objects) {
      if (item.type === 'folder')
        Object.assign(
          out,
          { [`${prefix}${item.name}/`]: 'dir' },
          await tree(base, item.id, `${prefix}${item.name}/`),
        );
      else out[`${prefix}${item.name}`] = sha256(await bytes(base, item.id));
    }
    return out;
  };

  it('copies a multi-MB file into another account, streamed, bytes equal, source kept', async () => {
    const data = bigPayload(5 * 1024 * 1024 + 77);
    const source = await upload(t, srcBase, 'big-copy.bin', data);
    const target = await mkdir(dstBase, 'incoming');
    const res = await t.call(`${srcBase}/storage/files/${source.id}/copy`, {
      method: 'POST',
      json: { account: a2.accountId, parent_id: target.id },
    });
    expect(res.status).toBe(201);
    const copied = fileSchema.parse(await json(res));
    expect(copied).toMatchObject({ account: a2.accountId, name: 'big-copy.bin', size: data.length });
    expect(copied.href).toBe(`${t.url}${dstBase}/storage/files/${copied.id}`);
    expect(copied.parent?.id).toBe(target.id);
    expect(sha256(await bytes(dstBase, copied.id))).toBe(sha256(data));
    // The source is intact, and each id is bound to its own account.
    expect(sha256(await bytes(srcBase, source.id))).toBe(sha256(data));
    await expectError(await t.call(`${srcBase}/storage/files/${copied.id}`), 404, 'not_found');
    await expectError(await t.call(`${dstBase}/storage/files/${source.id}`), 404, 'not_found');
    // `account` as a string and no parent_id: the target's root.
    const again = fileSchema.parse(
      await json(
        await t.call(`${srcBase}/storage/files/${source.id}/copy`, {
          method: 'POST',
          json: { account: String(a2.accountId), name: 'renamed-copy.bin' },
        }),
      ),
    );
    expect(again).toMatchObject({ account: a2.accountId, name: 'renamed-copy.bin', parent: { id: 'root' } });
    expect(sha256(await bytes(dstBase, again.id))).toBe(sha256(data));
  });

  it('copies a folder tree into another account', async () => {
    const top = await mkdir(srcBase, 'tree');
    const sub = await mkdir(srcBase, 'sub', top.id);
    await mkdir(srcBase, 'empty', sub.id);
    await upload(t, srcBase, 'a.txt', 'alpha', top.id);
    await upload(t, srcBase, 'b.bin', bigPayload(300_000), sub.id);
    const expected = await tree(srcBase, top.id);
    const res = await t.call(`${srcBase}/storage/folders/${top.id}/copy`, {
      method: 'POST',
      json: { account: a2.accountId },
    });
    expect(res.status).toBe(201);
    const copied = folderSchema.parse(await json(res));
    expect(copied).toMatchObject({ account: a2.accountId, name: 'tree' });
    expect(await tree(dstBase, copied.id)).toEqual(expected);
    expect(await tree(srcBase, top.id)).toEqual(expected);
  });

  it('moves a file into another account: bytes equal there, source gone here', async () => {
    const data = bigPayload(2 * 1024 * 1024 + 5);
    const source = await upload(t, srcBase, 'moving.bin', data);
    const res = await t.call(`${srcBase}/storage/files/${source.id}`, {
      method: 'PATCH',
      json: { account: a2.accountId, name: 'moved.bin' },
    });
    expect(res.status).toBe(200);
    const moved = fileSchema.parse(await json(res));
    expect(moved).toMatchObject({ account: a2.accountId, name: 'moved.bin', size: data.length });
    expect(sha256(await bytes(dstBase, moved.id))).toBe(sha256(data));
    await expectError(await t.call(`${srcBase}/storage/files/${source.id}`), 404, 'not_found');
    expect(existsSync(join(a.accountRoot, 'moving.bin'))).toBe(false);
    expect(existsSync(join(a2.root, 'moved.bin'))).toBe(true);
  });

  it('moves a folder tree into another account and removes it from the source', async () => {
    const top = await mkdir(srcBase, 'relocate');
    const sub = await mkdir(srcBase, 'inner', top.id);
    await upload(t, srcBase, 'x.txt', 'x-bytes', sub.id);
    const expected = await tree(srcBase, top.id);
    const target = await mkdir(dstBase, 'landing');
    const res = await t.call(`${srcBase}/storage/folders/${top.id}`, {
      method: 'PATCH',
      json: { account: a2.accountId, parent_id: target.id },
    });
    expect(res.status).toBe(200);
    const moved = folderSchema.parse(await json(res));
    expect(moved).toMatchObject({ account: a2.accountId, name: 'relocate', parent: { id: target.id } });
    expect(await tree(dstBase, moved.id)).toEqual(expected);
    await expectError(await t.call(`${srcBase}/storage/folders/${top.id}`), 404, 'not_found');
    await expectError(await t.call(`${srcBase}/storage/folders/${sub.id}`), 404, 'not_found');
    expect(existsSync(join(a.accountRoot, 'relocate'))).toBe(false);
  });

  it('works with comma-separated Bearer tokens naming both accounts, and only then', async () => {
    const source = await upload(t, srcBase, 'bearer.txt', 'via tokens');
    const both = `Bearer ${a.token},${a2.token}`;
    const res = await t.call(`${srcBase}/storage/files/${source.id}/copy`, {
      method: 'POST',
      auth: both,
      json: { account: a2.accountId, name: 'bearer-copy.txt' },
    });
    expect(res.status).toBe(201);
    const copied = fileSchema.parse(await json(res));
    expect((await bytes(dstBase, copied.id, `Bearer ${a2.token}`)).toString()).toBe('via tokens');
    // The order of the tokens does not matter.
    const reversed = await t.call(`${srcBase}/storage/files/${source.id}/copy`, {
      method: 'POST',
      auth: `Bearer ${a2.token},${a.token}`,
      json: { account: a2.accountId, name: 'bearer-copy-2.txt' },
    });
    expect(reversed.status).toBe(201);
    // One token alone cannot reach the other account: 404, and nothing is written there.
    const before = await names(dstBase);
    await expectError(
      await t.call(`${srcBase}/storage/files/${source.id}/copy`, {
        method: 'POST',
        auth: `Bearer ${a.token}`,
        json: { account: a2.accountId, name: 'denied.txt' },
      }),
      404,
      'not_found',
    );
    await expectError(
      await t.call(`${srcBase}/storage/files/${source.id}`, {
        method: 'PATCH',
        auth: `Bearer ${a.token}`,
        json: { account: a2.accountId },
      }),
      404,
      'not_found',
    );
    expect(await names(dstBase)).toEqual(before);
    expect((await bytes(srcBase, source.id)).toString()).toBe('via tokens');
    // The move with both tokens.
    const moved = await t.call(`${srcBase}/storage/files/${source.id}`, {
      method: 'PATCH',
      auth: both,
      json: { account: a2.accountId, name: 'bearer-moved.txt' },
    });
    expect(moved.status).toBe(200);
    await expectError(await t.call(`${srcBase}/storage/files/${source.id}`), 404, 'not_found');
  });

  it('renames on a copy conflict, replaces with overwrite=true, and refuses a conflicting move keeping the source', async () => {
    const target = await mkdir(dstBase, 'conflicts');
    const existing = await upload(t, dstBase, 'same.txt', 'already there', target.id);
    const source = await upload(t, srcBase, 'same.txt', 'from A');
    const copy = (query = '') =>
      t.call(`${srcBase}/storage/files/${source.id}/copy${query}`, {
        method: 'POST',
        json: { account: a2.accountId, parent_id: target.id },
      });
    const renamed = fileSchema.parse(await json(await copy()));
    expect(renamed.name).toBe('same (1).txt');
    expect((await bytes(dstBase, existing.id)).toString()).toBe('already there');
    const replaced = await copy('?overwrite=true');
    expect(replaced.status).toBe(201);
    const replacedFile = fileSchema.parse(await json(replaced));
    expect(replacedFile.name).toBe('same.txt');
    expect((await bytes(dstBase, replacedFile.id)).toString()).toBe('from A');
    expect(await names(dstBase, target.id)).toEqual(['same (1).txt', 'same.txt']);

    const conflict = await expectError(
      await t.call(`${srcBase}/storage/files/${source.id}`, {
        method: 'PATCH',
        json: { account: a2.accountId, parent_id: target.id },
      }),
      409,
      'naming_conflict',
    );
    expect(conflict.conflicting_resource_id).toBe(replacedFile.id);
    expect((await bytes(srcBase, source.id)).toString()).toBe('from A');
    // Folders: a copy takes a free name, a move onto an existing name is refused.
    const dir = await mkdir(srcBase, 'dup');
    await upload(t, srcBase, 'inside.txt', 'i', dir.id);
    await mkdir(dstBase, 'dup', target.id);
    const dirCopy = folderSchema.parse(
      await json(
        await t.call(`${srcBase}/storage/folders/${dir.id}/copy`, {
          method: 'POST',
          json: { account: a2.accountId, parent_id: target.id },
        }),
      ),
    );
    expect(dirCopy.name).toBe('dup (1)');
    await expectError(
      await t.call(`${srcBase}/storage/folders/${dir.id}`, {
        method: 'PATCH',
        json: { account: a2.accountId, parent_id: target.id },
      }),
      409,
      'naming_conflict',
    );
    expect(await names(srcBase, dir.id)).toEqual(['inside.txt']);
  });

  it('refuses a target account of another application with 404 and writes nothing there', async () => {
    const source = await upload(t, srcBase, 'private.txt', 'A only');
    const dir = await mkdir(srcBase, 'private-dir');
    const bKey = `APIKey ${b.apiKey}`;
    const before = await names(`/v1/accounts/${b.accountId}`, 'root', bKey);
    const attempts: Array<[string, string, unknown]> = [
      ['POST', `${srcBase}/storage/files/${source.id}/copy`, { account: b.accountId }],
      ['PATCH', `${srcBase}/storage/files/${source.id}`, { account: b.accountId }],
      ['POST', `${srcBase}/storage/folders/${dir.id}/copy`, { account: b.accountId }],
      ['PATCH', `${srcBase}/storage/folders/${dir.id}`, { account: b.accountId }],
      ['POST', `${srcBase}/storage/files/${source.id}/copy`, { account: b.accountId, parent_id: 'root' }],
    ];
    for (const [method, path, body] of attempts) {
      await expectError(await t.call(path, { method, json: body }), 404, 'not_found');
      await expectError(await t.call(`${path}?overwrite=true`, { method, json: body }), 404, 'not_found');
      await expectError(
        await t.call(path, { method, json: body, headers: { 'x-kloudless-async': 'true' } }),
        404,
        'not_found',
      );
    }
    // Tokens of two applications cannot be combined at all.
    await expectError(
      await t.call(`${srcBase}/storage/files/${source.id}/copy`, {
        method: 'POST',
        auth: `Bearer ${a.token},${b.token}`,
        json: { account: b.accountId },
      }),
      401,
      'invalid_token',
    );
    // From B's side, A's account is just as unknown.
    const bFile = await upload(t, `/v1/accounts/${b.accountId}`, 'b.txt', 'B only', 'root', '', bKey);
    await expectError(
      await t.call(`/v1/accounts/${b.accountId}/storage/files/${bFile.id}/copy`, {
        method: 'POST',
        auth: bKey,
        json: { account: a.accountId },
      }),
      404,
      'not_found',
    );
    expect(await names(`/v1/accounts/${b.accountId}`, 'root', bKey)).toEqual([...before, 'b.txt'].sort());
    expect((await bytes(srcBase, source.id)).toString()).toBe('A only');
    expect(await names(srcBase, dir.id)).toEqual([]);
  });

  it('refuses bad targets: unknown account, malformed account, a parent_id of the source account', async () => {
    const source = await upload(t, srcBase, 'targets.txt', 't');
    const srcFolder = await mkdir(srcBase, 'src-only');
    const copy = (body: unknown) =>
      t.call(`${srcBase}/storage/files/${source.id}/copy`, { method: 'POST', json: body });
    await expectError(await copy({ account: 987654 }), 404, 'not_found');
    await expectError(await copy({ account: 'abc' }), 400, 'invalid_parameters');
    await expectError(await copy({ account: 1.5 }), 400, 'invalid_parameters');
    await expectError(
      await copy({ account: a2.accountId, parent_id: srcFolder.id }),
      400,
      'invalid_parent_folder',
    );
    await expectError(
      await t.call(`${srcBase}/storage/files/${source.id}`, {
        method: 'PATCH',
        json: { account: a2.accountId, parent_id: srcFolder.id },
      }),
      400,
      'invalid_parent_folder',
    );
    expect((await bytes(srcBase, source.id)).toString()).toBe('t');
    expect(await names(dstBase)).not.toContain('targets.txt');
  });

  it('records the copy in the target account event journal and the move in both', async () => {
    const cursor = (id: number) =>
      t.call(`/v1/accounts/${id}/events/latest`).then((r) => json<{ cursor: number }>(r));
    const src = (await cursor(a.accountId)).cursor;
    const dst = (await cursor(a2.accountId)).cursor;
    const source = await upload(t, srcBase, 'journal.txt', 'j');
    const copied = fileSchema.parse(
      await json(
        await t.call(`${srcBase}/storage/files/${source.id}/copy`, {
          method: 'POST',
          json: { account: a2.accountId, name: 'journal-copy.txt' },
        }),
      ),
    );
    await t.call(`${srcBase}/storage/files/${source.id}`, {
      method: 'PATCH',
      json: { account: a2.accountId, name: 'journal-moved.txt' },
    });
    type Events = {
      objects: Array<{ type: string; id: string; metadata: { id: string; name: string } | null }>;
    };
    const dstEvents = await json<Events>(await t.call(`/v1/accounts/${a2.accountId}/events?cursor=${dst}`));
    const added = dstEvents.objects.filter((e) => e.type === 'add').map((e) => e.metadata?.name);
    expect(added).toEqual(expect.arrayContaining(['journal-copy.txt', 'journal-moved.txt']));
    expect(dstEvents.objects.find((e) => e.metadata?.name === 'journal-copy.txt')?.metadata?.id).toBe(
      copied.id,
    );
    const srcEvents = await json<Events>(await t.call(`/v1/accounts/${a.accountId}/events?cursor=${src}`));
    expect(srcEvents.objects.filter((e) => e.type === 'delete').map((e) => e.id)).toContain(source.id);
  });
});
