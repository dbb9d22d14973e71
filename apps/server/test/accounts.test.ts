/**
 * Accounts (issue 3 "Auth, apps, accounts"; kloudless-api.md §1.5, §1.6, §2.1–2.2): import with its
 * validation and the CLOUDMUX_LOCAL_ROOTS fence, `?validate=true`, listing to exhaustion with
 * filters, `retrieve_full`, `me`, PATCH, DELETE revoking tokens, account tokens, token
 * verification and the public service list. Bodies are checked against core's zod schemas.
 */
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { accountSchema, errorEnvelopeSchema, objectListSchema } from '@cloudmux/core';
import { makeTempDir, type TempDir } from '@cloudmux/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as z from 'zod';
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

const accountList = objectListSchema(accountSchema, 'core').extend({ total: z.number().int() });
const tokenSchema = z.object({
  access_token: z.string().min(20),
  token_type: z.literal('Bearer'),
  account_id: z.number().int().positive(),
  expires_in: z.number().int().positive().optional(),
});

describe.each(STORE_KINDS)('accounts on %s', (store) => {
  let t: TestServer;
  let outside: TempDir;
  let roots: string;
  beforeAll(async () => {
    t = await startTestServer({ store });
    outside = await makeTempDir('cloudmux-outside-');
    roots = join(t.dataDir.path, 'files');
  });
  afterAll(async () => {
    await t?.close();
    await outside?.remove();
  });

  const key = () => `APIKey ${t.apps[0]!.apiKey}`;
  const importAccount = (body: unknown, query = '', auth: string | null = key()) =>
    t.call(`/v1/accounts${query}`, { method: 'POST', auth, json: body });
  const listAll = async (query: string, auth: string = key()) => {
    const ids: number[] = [];
    let page: string | null = '';
    let pages = 0;
    while (page !== null) {
      const res = await t.call(`/v1/accounts?${query}&page=${page}`, { auth });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      const list = accountList.parse(await json(res));
      expect(list.count).toBe(list.objects.length);
      ids.push(...list.objects.map((a) => a.id));
      page = list.next_page;
      if (++pages > 50) throw new Error('listing did not end');
    }
    return { ids, pages };
  };

  it('imports a local account inside CLOUDMUX_LOCAL_ROOTS and returns the account object', async () => {
    const root = join(roots, 'imported');
    mkdirSync(root, { recursive: true });
    const res = await importAccount({
      service: 'local',
      account: 'Imported disk',
      root,
      custom_properties: { team: 'a' },
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toBe('application/json');
    const account = accountSchema.parse(await json(res));
    expect(account).toMatchObject({
      account: 'Imported disk',
      service: 'local',
      service_name: 'Local Disk',
      active: true,
      admin: false,
      custom_properties: { team: 'a' },
      api: 'core',
      type: 'account',
    });
    expect(account.href).toBe(`${t.url}/v1/accounts/${account.id}`);
    // The credentials are never echoed.
    expect(JSON.stringify(account)).not.toContain(root);
    const token = tokenSchema.parse(
      await json(await t.call(`/v1/accounts/${account.id}/tokens`, { method: 'POST', json: {} })),
    );
    const folder = await t.call(`/v1/accounts/${account.id}/storage/folders/root`, {
      auth: `Bearer ${token.access_token}`,
    });
    expect(folder.status).toBe(200);
  });

  it('refuses unknown services, invalid fields and the wrong credentials with 400/401/403', async () => {
    const root = join(roots, 'never');
    await expectError(await importAccount({ service: 'no-such-service', root }), 400, 'invalid_parameters');
    await expectError(await importAccount({ root }), 400, 'invalid_parameters');
    await expectError(await importAccount({ service: '' }), 400, 'invalid_parameters');
    await expectError(await importAccount({ service: 'local' }), 400, 'invalid_parameters');
    await expectError(
      await importAccount({ service: 'local', root: 'relative/dir' }),
      400,
      'invalid_parameters',
    );
    await expectError(await importAccount({ service: 'local', root: 42 }), 400, 'invalid_parameters');
    await expectError(
      await importAccount({ service: 'local', root, account: 'x'.repeat(513) }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await importAccount({ service: 'local', root, admin: 'yes' }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await importAccount({ service: 'local', root, custom_properties: 'x' }),
      400,
      'invalid_parameters',
    );
    await expectError(
      await importAccount({ service: 'local', root, token_expiry: 'next tuesday' }),
      400,
      'invalid_parameters',
    );
    await expectError(await importAccount([{ service: 'local', root }]), 400, 'invalid_parameters');
    // Importing needs the application's API key.
    await expectError(
      await importAccount({ service: 'local', root }, '', `Bearer ${t.apps[0]!.token}`),
      403,
      'forbidden',
    );
    await expectError(
      await importAccount({ service: 'local', root }, '', null),
      401,
      'authentication_required',
    );
    await expectError(
      await importAccount({ service: 'local', root }, '', 'APIKey not-a-key'),
      401,
      'unauthorized',
    );
    const { ids } = await listAll('page_size=1000');
    expect(ids).toHaveLength(2);
  });

  it('refuses a local root outside CLOUDMUX_LOCAL_ROOTS with 403 forbidden', async () => {
    const escapes = [
      outside.path,
      '/',
      '/etc',
      join(roots, '..'),
      join(roots, '..', 'cloudmux.db'),
      `${roots}/../${'x'}`,
      `${roots}-sibling`,
    ];
    for (const root of escapes) {
      const body = await expectError(await importAccount({ service: 'local', root }), 403, 'forbidden');
      expect(body.message).toMatch(/outside/);
    }
    // A link inside the allowed directory that points outside it is outside too.
    const link = join(roots, 'escape-link');
    symlinkSync(outside.path, link);
    await expectError(await importAccount({ service: 'local', root: link }), 403, 'forbidden');
    await expectError(
      await importAccount({ service: 'local', root: join(link, 'deeper') }),
      403,
      'forbidden',
    );
    const { ids } = await listAll('page_size=1000');
    expect(ids).toHaveLength(2);
  });

  it('validates credentials against the service only with ?validate=true', async () => {
    const missing = join(roots, 'not-created-yet');
    const refused = await t.call('/v1/accounts?validate=true', {
      method: 'POST',
      json: { service: 'local', root: missing },
    });
    expect(refused.status).toBeGreaterThanOrEqual(400);
    expect(refused.status).toBeLessThan(500);
    const error = errorEnvelopeSchema.parse(await json(refused));
    expect(error.message).toMatch(/root/i);
    expect((await listAll('page_size=1000')).ids).toHaveLength(2);
    // Offline (the default, and validate=false) the same import works.
    for (const query of ['', '?validate=false']) {
      const res = await importAccount({ service: 'local', account: `offline${query}`, root: missing }, query);
      expect(res.status).toBe(201);
      accountSchema.parse(await json(res));
    }
    const existing = join(roots, 'validated');
    mkdirSync(existing, { recursive: true });
    expect((await importAccount({ service: 'local', root: existing }, '?validate=True')).status).toBe(201);
    await expectError(
      await importAccount({ service: 'local', root: existing }, '?validate=perhaps'),
      400,
      'invalid_parameters',
    );
  });

  it('lists with page, page_size, active and admin to exhaustion', async () => {
    const app = await t.newApp('listing app');
    const auth = `APIKey ${app.apiKey}`;
    const created = [app.accountId];
    for (let i = 0; i < 6; i++) {
      const root = join(roots, `list-${i}`);
      const res = await t.call('/v1/accounts', {
        method: 'POST',
        auth,
        json: { service: 'local', account: `list ${i}`, root, admin: i % 3 === 0 },
      });
      created.push(accountSchema.parse(await json(res)).id);
    }
    const inactive = created.slice(1, 3);
    for (const id of inactive) {
      const res = await t.call(`/v1/accounts/${id}`, { method: 'PATCH', auth, json: { active: false } });
      expect(accountSchema.parse(await json(res)).active).toBe(false);
    }
    const admins = [created[1]!, created[4]!];
    const all = await listAll('page_size=2', auth);
    expect(all.ids).toEqual(created);
    expect(all.pages).toBe(4);
    expect((await listAll('page_size=3', auth)).pages).toBe(3);
    expect((await listAll('page_size=1000', auth)).pages).toBe(1);
    expect((await listAll('page_size=2&active=true', auth)).ids).toEqual(
      created.filter((id) => !inactive.includes(id)),
    );
    expect((await listAll('page_size=2&active=False', auth)).ids).toEqual(inactive);
    expect((await listAll('page_size=1&admin=true', auth)).ids).toEqual(admins);
    expect((await listAll('page_size=2&admin=false&active=true', auth)).ids).toEqual(
      created.filter((id) => !inactive.includes(id) && !admins.includes(id)),
    );
    const first = accountList.parse(await json(await t.call('/v1/accounts?page_size=2&page=1', { auth })));
    expect(first).toMatchObject({
      count: 2,
      page: 1,
      next_page: '2',
      total: 7,
      type: 'object_list',
      api: 'core',
    });
    await expectError(await t.call('/v1/accounts?page_size=2&page=5', { auth }), 404, 'not_found');
    await expectError(await t.call('/v1/accounts?page=0', { auth }), 400, 'invalid_parameters');
    await expectError(await t.call('/v1/accounts?page_size=1001', { auth }), 400, 'invalid_parameters');
    // A Bearer token lists its own account(s) only, as the File Picker reads objects[0].
    const own = accountList.parse(
      await json(await t.call('/v1/accounts/?active=True', { auth: `Bearer ${app.token}` })),
    );
    expect(own.objects.map((a) => a.id)).toEqual([app.accountId]);
    const extra = tokenSchema.parse(
      await json(await t.call(`/v1/accounts/${created[3]}/tokens`, { method: 'POST', auth, json: {} })),
    );
    const both = accountList.parse(
      await json(await t.call('/v1/accounts', { auth: `Bearer ${app.token},${extra.access_token}` })),
    );
    expect(both.objects.map((a) => a.id)).toEqual([app.accountId, created[3]]);
  });

  it('gets an account, with apis and properties.capabilities when retrieve_full=true', async () => {
    const app = t.apps[0]!;
    const plain = accountSchema.parse(await json(await t.call(`/v1/accounts/${app.accountId}`)));
    expect(plain.id).toBe(app.accountId);
    expect(plain.apis).toBeUndefined();
    expect(plain.properties).toBeUndefined();
    const notFull = accountSchema.parse(
      await json(await t.call(`/v1/accounts/${app.accountId}/?retrieve_full=False`)),
    );
    expect(notFull.properties).toBeUndefined();
    const full = accountSchema.parse(
      await json(await t.call(`/v1/accounts/${app.accountId}?retrieve_full=true`)),
    );
    expect(full.apis).toEqual(['storage']);
    const capabilities = full.properties!.capabilities;
    for (const name of [
      'can_upload_file',
      'can_create_folder',
      'can_delete_file',
      'can_rename_file',
      'can_move_folder',
    ]) {
      expect(capabilities[name], name).toEqual({ value: true });
    }
    expect(capabilities.can_list_users).toEqual({ value: false });
    expect(capabilities.can_crud_crm_accounts).toEqual({ value: false });
    for (const value of Object.values(capabilities)) expect(Object.keys(value)).toEqual(['value']);
    // Comma-separated ids answer a list; `active` filters.
    const other = await t.newLocalAccount(app, 'pair');
    const pair = objectListSchema(accountSchema, 'core').parse(
      await json(await t.call(`/v1/accounts/${app.accountId},${other.accountId}?retrieve_full=true`)),
    );
    expect(pair.objects.map((a) => a.id)).toEqual([app.accountId, other.accountId]);
    for (const a of pair.objects) expect(a.properties?.capabilities.can_upload_file).toEqual({ value: true });
    await expectError(await t.call(`/v1/accounts/${app.accountId}?active=false`), 404, 'not_found');
  });

  it('answers `me` for Bearer tokens and refuses it with an API key', async () => {
    const app = t.apps[0]!;
    for (const path of [
      '/v1/accounts/me',
      '/v1/accounts/me/',
      '/v1/accounts/me/?active=True',
      '/v1/accounts/me?retrieve_full=False',
    ]) {
      const res = await t.call(path, { auth: `Bearer ${app.token}` });
      expect(res.status, path).toBe(200);
      expect(accountSchema.parse(await json(res)).id).toBe(app.accountId);
    }
    await expectError(await t.call('/v1/accounts/me'), 400, 'bad_request');
    await expectError(await t.call('/v1/accounts/me', { auth: 'Bearer not-a-token' }), 401, 'invalid_token');
    await expectError(await t.call('/v1/accounts/me', { auth: null }), 401, 'authentication_required');
  });

  it('PATCHes the name, custom properties and active flag; the service cannot change', async () => {
    const app = t.apps[0]!;
    const { accountId, token } = await t.newLocalAccount(app, 'patch me');
    const patched = accountSchema.parse(
      await json(
        await t.call(`/v1/accounts/${accountId}/`, {
          method: 'PATCH',
          json: { account: 'patched', custom_properties: { k: 'v' }, unknown_key: 1 },
        }),
      ),
    );
    expect(patched).toMatchObject({ id: accountId, account: 'patched', custom_properties: { k: 'v' } });
    expect(Date.parse(patched.modified)).toBeGreaterThanOrEqual(Date.parse(patched.created));
    expect(accountSchema.parse(await json(await t.call(`/v1/accounts/${accountId}`))).account).toBe(
      'patched',
    );
    // The token holder may rename its own account.
    const byToken = await t.call('/v1/accounts/me', {
      method: 'PATCH',
      auth: `Bearer ${token}`,
      json: { account: 'mine' },
    });
    expect(accountSchema.parse(await json(byToken)).account).toBe('mine');
    await expectError(
      await t.call(`/v1/accounts/${accountId}`, { method: 'PATCH', json: { service: 'invalid' } }),
      400,
      'invalid_parameters',
    );
    // Deactivated, its storage is refused until it is active again.
    await t.call(`/v1/accounts/${accountId}`, { method: 'PATCH', json: { active: false } });
    await expectError(
      await t.call(`/v1/accounts/${accountId}/storage/folders/root`),
      401,
      'service_unauthorized',
    );
    await t.call(`/v1/accounts/${accountId}`, { method: 'PATCH', json: { active: true } });
    expect((await t.call(`/v1/accounts/${accountId}/storage/folders/root`)).status).toBe(200);
    await expectError(
      await t.call(`/v1/accounts/${accountId},${app.accountId}`, {
        method: 'PATCH',
        json: { account: 'both' },
      }),
      400,
      'invalid_parameters',
    );
  });

  it('DELETE removes the account, revokes its tokens and a second DELETE is 404', async () => {
    const app = t.apps[0]!;
    const { accountId, token } = await t.newLocalAccount(app, 'doomed');
    const base = `/v1/accounts/${accountId}`;
    // Rows that hang off the account: a link, a multipart session, events, a second token.
    const file = await upload(t, base, 'doomed.txt', 'bye');
    const link = (await json(
      await t.call(`${base}/storage/links`, { method: 'POST', json: { file_id: file.id, direct: true } }),
    )) as {
      url: string;
    };
    expect((await fetch(link.url)).status).toBe(200);
    await t.call(`${base}/storage/multipart`, {
      method: 'POST',
      json: { parent_id: 'root', name: 'part.bin', size: 3 },
    });
    const second = tokenSchema.parse(
      await json(await t.call(`${base}/tokens`, { method: 'POST', json: { expires_in: 3600 } })),
    );
    expect(second.expires_in).toBe(3600);
    expect((await t.call('/v1/accounts/me', { auth: `Bearer ${token}` })).status).toBe(200);

    const del = await t.call(base, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe('');
    for (const tok of [token, second.access_token]) {
      await expectError(await t.call('/v1/accounts/me', { auth: `Bearer ${tok}` }), 401, 'invalid_token');
      await expectError(
        await t.call(`${base}/storage/folders/root`, { auth: `Bearer ${tok}` }),
        401,
        'invalid_token',
      );
      await expectError(await t.call('/v1/oauth/token', { auth: `Bearer ${tok}` }), 400, 'bad_request');
    }
    await expectError(await t.call(base), 404, 'not_found');
    await expectError(await t.call(base, { method: 'DELETE' }), 404, 'not_found');
    await expectError(await t.call(`${base}/storage/folders/root`), 404, 'not_found');
    // Its public link stops serving.
    const gone = await fetch(link.url);
    expect([403, 404]).toContain(gone.status);
    expect((await listAll('page_size=1000')).ids).not.toContain(accountId);
    // A token holder may disconnect its own account (the File Picker's logout with delete).
    const own = await t.newLocalAccount(app, 'logout');
    expect((await t.call('/v1/accounts/me/', { method: 'DELETE', auth: `Bearer ${own.token}` })).status).toBe(
      204,
    );
    await expectError(await t.call(`/v1/accounts/${own.accountId}`), 404, 'not_found');
  });

  it('creates and deletes account tokens', async () => {
    const app = t.apps[0]!;
    const { accountId } = await t.newLocalAccount(app, 'tokens');
    const res = await t.call(`/v1/accounts/${accountId}/tokens`, { method: 'POST' });
    expect(res.status).toBe(201);
    const minted = tokenSchema.parse(await json(res));
    expect(minted.account_id).toBe(accountId);
    expect(minted.expires_in).toBeUndefined();
    const other = tokenSchema.parse(
      await json(await t.call(`/v1/accounts/${accountId}/tokens/`, { method: 'POST', json: {} })),
    );
    expect(other.access_token).not.toBe(minted.access_token);
    expect((await t.call('/v1/accounts/me', { auth: `Bearer ${minted.access_token}` })).status).toBe(200);
    // Minting needs the API key.
    await expectError(
      await t.call(`/v1/accounts/${accountId}/tokens`, {
        method: 'POST',
        auth: `Bearer ${minted.access_token}`,
        json: {},
      }),
      403,
      'forbidden',
    );
    // A token is deleted only under its own account.
    await expectError(
      await t.call(`/v1/accounts/${app.accountId}/tokens/${minted.access_token}`, { method: 'DELETE' }),
      404,
      'not_found',
    );
    expect((await t.call('/v1/accounts/me', { auth: `Bearer ${minted.access_token}` })).status).toBe(200);
    const del = await t.call(`/v1/accounts/${accountId}/tokens/${minted.access_token}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe('');
    await expectError(
      await t.call('/v1/accounts/me', { auth: `Bearer ${minted.access_token}` }),
      401,
      'invalid_token',
    );
    await expectError(
      await t.call(`/v1/accounts/${accountId}/tokens/${minted.access_token}`, { method: 'DELETE' }),
      404,
      'not_found',
    );
    await expectError(
      await t.call(`/v1/accounts/${accountId}/tokens/not-a-token`, { method: 'DELETE' }),
      404,
      'not_found',
    );
    // The other token is untouched.
    expect((await t.call('/v1/accounts/me', { auth: `Bearer ${other.access_token}` })).status).toBe(200);
  });

  it('verifies bearer tokens at GET /v1/oauth/token (400 when invalid)', async () => {
    const app = t.apps[0]!;
    for (const path of ['/v1/oauth/token', '/v1/oauth/token/']) {
      const res = await t.call(path, {
        auth: `Bearer ${app.token}`,
        headers: { 'x-kloudless-source': 'authenticator' },
      });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/json');
      expect(await json(res)).toMatchObject({ client_id: app.appId, account_id: app.accountId });
    }
    for (const auth of ['Bearer invalid-token', `APIKey ${app.apiKey}`, 'Bearer ', null]) {
      const res = await t.call('/v1/oauth/token', { auth });
      expect(res.status, String(auth)).toBe(400);
      errorEnvelopeSchema.parse(await json(res));
    }
  });

  it('lists the installed services at /v1/public/services without auth', async () => {
    const res = await t.call('/v1/public/services?apis=storage&retrieve_properties=true', { auth: null });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    const service = z.object({
      name: z.string(),
      friendly_name: z.string(),
      logo_url: z.string().nullable(),
      category: z.string(),
      apis: z.array(z.string()),
      properties: z.object({
        capabilities: z.record(z.string(), z.array(z.object({ admin: z.boolean(), result: z.boolean() }))),
      }),
    });
    const list = objectListSchema(service, 'core').parse(await json(res));
    const local = list.objects.find((s) => s.name === 'local');
    expect(local).toMatchObject({ friendly_name: 'Local Disk', category: 'storage' });
    // The File Picker hides services without these two.
    expect(local!.properties.capabilities['storage.folders.list']).toEqual([{ admin: false, result: true }]);
    expect(local!.properties.capabilities['storage.folders.read']).toEqual([{ admin: false, result: true }]);
    for (const s of list.objects) expect(s.apis).toContain('storage');
    const none = objectListSchema(service, 'core').parse(
      await json(await t.call('/v1/public/services?apis=no-such-api', { auth: null })),
    );
    expect(none.objects).toEqual([]);
    const bare = (await json(
      await t.call('/v1/public/services?apis=storage&retrieve_properties=false', { auth: null }),
    )) as {
      objects: Array<Record<string, unknown>>;
    };
    expect(bare.objects.length).toBe(list.objects.length);
    for (const s of bare.objects) expect(s.properties).toBeUndefined();
  });
});
