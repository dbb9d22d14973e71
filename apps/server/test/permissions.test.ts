import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LocalStorage, local } from '@cloudmux/connector-local';
import {
  CloudmuxError,
  defineConnector,
  errorEnvelopeSchema,
  type Permission,
  type Property,
  permissionListSchema,
  propertyListSchema,
  type StorageApi,
  type StorageItemType,
} from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as z from 'zod';
import { json, STORE_KINDS, startTestServer, type TestApp, type TestServer, upload } from './harness.js';

/**
 * Test-only connector: the local disk plus in-memory permissions and properties, kept per account
 * root and raw id (instances may be rebuilt between requests; the state must survive that).
 */
const sharingState = new Map<string, { permissions: Permission[]; properties: Map<string, Property> }>();
const OWNER: Permission = {
  id: 'owner',
  email: 'owner@example.com',
  name: 'Owner',
  role: 'owner',
  type: 'user',
};

function sharingStorage(root: string): StorageApi {
  const base = new LocalStorage(root);
  const entry = async (rawId: string, type: StorageItemType) => {
    await base.get(rawId, type);
    const key = `${root}\u0000${type}\u0000${rawId}`;
    let state = sharingState.get(key);
    if (!state) {
      state = { permissions: [OWNER], properties: new Map() };
      sharingState.set(key, state);
    }
    return state;
  };
  let next = 1;
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
    getPermissions: async (rawId, type) => (await entry(rawId, type)).permissions,
    setPermissions: async (rawId, type, grants, mode) => {
      const state = await entry(rawId, type);
      if (grants.some((g) => g.role === 'owner'))
        throw new CloudmuxError('invalid_parameters', 'The owner cannot be granted.');
      const kept = mode === 'replace' ? [OWNER] : [...state.permissions];
      for (const grant of grants) {
        const existing = kept.find((p) => p.email === grant.email);
        if (existing) existing.role = grant.role;
        else
          kept.push({
            id: `perm-${next++}`,
            email: grant.email ?? null,
            name: grant.name ?? null,
            role: grant.role,
            type: grant.type,
          });
      }
      state.permissions = kept.map((p) => ({ ...p }));
      return state.permissions;
    },
    getProperties: async (rawId) => [...(await entry(rawId, 'file')).properties.values()],
    updateProperties: async (rawId, changes) => {
      const state = await entry(rawId, 'file');
      const now = new Date(Date.UTC(2024, 4, 6, 7, 8, 9));
      for (const { key, value } of changes) {
        if (value === null) state.properties.delete(key);
        else
          state.properties.set(key, {
            key,
            value,
            created: state.properties.get(key)?.created ?? now,
            modified: now,
          });
      }
      return [...state.properties.values()];
    },
    deleteProperties: async (rawId) => {
      (await entry(rawId, 'file')).properties.clear();
    },
  };
}

const shareDisk = defineConnector({
  service: 'sharedisk',
  name: 'Sharing test disk',
  version: '1.0.0',
  category: 'storage',
  apis: ['storage'],
  auth: { type: 'protocol' },
  network: 'none',
  credentials: z.object({ root: z.string().min(1) }),
  create: (ctx) => ({ storage: sharingStorage(ctx.credentials.root) }),
});

describe.each(STORE_KINDS)('Permissions and properties on %s', (store) => {
  let t: TestServer;
  let share: string;
  beforeAll(async () => {
    t = await startTestServer({ store, connectors: [local, shareDisk] });
    share = await shareAccount(t.apps[0]!);
  });
  afterAll(async () => t?.close());

  async function shareAccount(app: TestApp): Promise<string> {
    const root = join(t.dataDir.path, `share-${app.appId}`);
    mkdirSync(root, { recursive: true });
    const res = await t.call('/v1/accounts', {
      method: 'POST',
      auth: `APIKey ${app.apiKey}`,
      json: { service: 'sharedisk', account: 'Sharing', root },
    });
    expect(res.status).toBe(201);
    return `/v1/accounts/${((await json(res)) as { id: number }).id}`;
  }

  const expectError = async (res: Response, status: number, code: string) => {
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(errorEnvelopeSchema.parse(await json(res))).toMatchObject({
      status_code: status,
      error_code: code,
    });
    expect(res.status).toBe(status);
  };

  const permissions = async (res: Response) => {
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    const body = (await json(res)) as Record<string, unknown>;
    expect(body).not.toHaveProperty('objects');
    return permissionListSchema
      .parse(body)
      .permissions.map(({ email, role, type }) => ({ email, role, type }));
  };

  it('reads, replaces and updates the permissions of files and folders', async () => {
    const file = await upload(t, share, 'shared.txt', 'shared');
    const path = `${share}/storage/files/${file.id}/permissions`;
    const owner = { email: 'owner@example.com', role: 'owner', type: 'user' };
    expect(await permissions(await t.call(path))).toEqual([owner]);

    const reader = { email: 'a@example.com', role: 'reader', type: 'user' };
    expect(
      await permissions(
        await t.call(path, {
          method: 'PUT',
          json: [{ type: 'user', role: 'reader', email: 'a@example.com' }],
        }),
      ),
    ).toEqual([owner, reader]);
    // The older mapping form `{email: role}`.
    const writer = { email: 'b@example.com', role: 'writer', type: 'user' };
    expect(
      await permissions(await t.call(path, { method: 'PATCH', json: { 'b@example.com': 'writer' } })),
    ).toEqual([owner, reader, writer]);
    expect(
      await permissions(
        await t.call(path, {
          method: 'PATCH',
          json: { permissions: [{ email: 'a@example.com', role: 'writer' }] },
        }),
      ),
    ).toEqual([owner, { ...reader, role: 'writer' }, writer]);
    expect(await permissions(await t.call(path))).toHaveLength(3);
    expect(await permissions(await t.call(path, { method: 'PUT', json: [] }))).toEqual([owner]);

    const folder = (await json(
      await t.call(`${share}/storage/folders`, { method: 'POST', json: { name: 'team', parent_id: 'root' } }),
    )) as { id: string };
    const folderPath = `${share}/storage/folders/${folder.id}/permissions`;
    expect(
      await permissions(
        await t.call(folderPath, {
          method: 'PATCH',
          json: [{ role: 'reader', email: 'c@example.com', type: 'group' }],
        }),
      ),
    ).toEqual([owner, { email: 'c@example.com', role: 'reader', type: 'group' }]);
    expect(await permissions(await t.call(`${share}/storage/folders/root/permissions`))).toEqual([owner]);

    await expectError(await t.call(path, { method: 'PUT', json: [{ role: 5 }] }), 400, 'invalid_parameters');
    await expectError(await t.call(path, { method: 'PUT', json: 'reader' }), 400, 'invalid_parameters');
    await expectError(
      await t.call(path, { method: 'PATCH', json: [{ email: 'x@example.com' }] }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(path, { method: 'PUT', json: [{ role: 'owner', email: 'x@example.com' }] }),
      400,
      'invalid_parameters',
    );
    await expectError(await t.call(`${share}/storage/folders/${file.id}/permissions`), 404, 'not_found');
    await expectError(await t.call(`${share}/storage/files/${folder.id}/permissions`), 404, 'not_found');
    await expectError(await t.call(`${share}/storage/files/garbage/permissions`), 404, 'not_found');
    expect((await t.call(`${share}/storage/files/${file.id}`, { method: 'DELETE' })).status).toBe(204);
    await expectError(await t.call(path), 404, 'not_found');
  });

  it('reads, updates and deletes the properties of a file', async () => {
    const file = await upload(t, share, 'props.txt', 'props');
    const path = `${share}/storage/files/${file.id}/properties`;
    const read = async (res: Response) => {
      expect(res.status).toBe(200);
      const body = (await json(res)) as Record<string, unknown>;
      expect(body).not.toHaveProperty('objects');
      return propertyListSchema.parse(body).properties;
    };
    expect(await read(await t.call(path))).toEqual([]);
    const updated = await read(
      await t.call(path, {
        method: 'PATCH',
        json: [
          { key: 'color', value: 'blue' },
          { key: 'size', value: 3 },
        ],
      }),
    );
    expect(updated.map(({ key, value }) => [key, value])).toEqual([
      ['color', 'blue'],
      ['size', '3'],
    ]);
    expect(updated[0]).toMatchObject({
      created: '2024-05-06T07:08:09Z',
      modified: '2024-05-06T07:08:09Z',
      api: 'storage',
      type: 'property',
    });
    expect(
      (
        await read(
          await t.call(path, { method: 'PATCH', json: { properties: [{ key: 'color', value: null }] } }),
        )
      ).map((p) => p.key),
    ).toEqual(['size']);
    expect((await read(await t.call(path))).map((p) => p.key)).toEqual(['size']);

    await expectError(
      await t.call(path, {
        method: 'PATCH',
        json: [
          { key: 'a', value: '1' },
          { key: 'a', value: '2' },
        ],
      }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(path, { method: 'PATCH', json: [{ key: '', value: '1' }] }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await t.call(path, { method: 'PATCH', json: [{ key: 'k', value: { nested: true } }] }),
      400,
      'invalid_parameters',
    );

    const del = await t.call(path, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe('');
    expect(await read(await t.call(path))).toEqual([]);
    await expectError(await t.call(`${share}/storage/files/garbage/properties`), 404, 'not_found');
  });

  it('answers 501 not_implemented on the local connector, which has neither', async () => {
    const base = t.base;
    const file = await upload(t, base, 'plain.txt', 'plain');
    const calls: Array<[string, string, unknown?]> = [
      ['GET', `files/${file.id}/permissions`],
      ['PUT', `files/${file.id}/permissions`, []],
      ['PATCH', `files/${file.id}/permissions`, []],
      ['GET', 'folders/root/permissions'],
      ['PUT', 'folders/root/permissions', []],
      ['GET', `files/${file.id}/properties`],
      ['PATCH', `files/${file.id}/properties`, [{ key: 'k', value: 'v' }]],
      ['DELETE', `files/${file.id}/properties`],
    ];
    for (const [method, path, body] of calls) {
      await expectError(
        await t.call(`${base}/storage/${path}`, { method, ...(body !== undefined ? { json: body } : {}) }),
        501,
        'not_implemented',
      );
    }
  });

  it('keeps apps apart: another app cannot read or change permissions and properties', async () => {
    const appA = t.apps[0]!;
    const appB = await t.newApp('Sharing app B');
    const shareB = await shareAccount(appB);
    const fileA = await upload(t, share, 'mine-a.txt', 'a');
    const fileB = await upload(t, shareB, 'mine-b.txt', 'b', 'root', '', `APIKey ${appB.apiKey}`);
    for (const [owner, ownerBase, file, intruder, intruderBase] of [
      [appA, share, fileA, appB, shareB],
      [appB, shareB, fileB, appA, share],
    ] as const) {
      const auth = `APIKey ${intruder.apiKey}`;
      for (const accountBase of [ownerBase, intruderBase]) {
        await expectError(
          await t.call(`${accountBase}/storage/files/${file.id}/permissions`, { auth }),
          404,
          'not_found',
        );
        await expectError(
          await t.call(`${accountBase}/storage/files/${file.id}/permissions`, {
            auth,
            method: 'PUT',
            json: [],
          }),
          404,
          'not_found',
        );
        await expectError(
          await t.call(`${accountBase}/storage/files/${file.id}/properties`, { auth }),
          404,
          'not_found',
        );
        await expectError(
          await t.call(`${accountBase}/storage/files/${file.id}/properties`, { auth, method: 'DELETE' }),
          404,
          'not_found',
        );
      }
      const mine = await t.call(`${ownerBase}/storage/files/${file.id}/permissions`, {
        auth: `APIKey ${owner.apiKey}`,
      });
      expect(await permissions(mine)).toHaveLength(1);
    }
  });
});
