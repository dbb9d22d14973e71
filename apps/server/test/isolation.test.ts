/**
 * Isolation between two applications (issue 3 "Tests": every route, both directions). The route
 * table below is checked against the routes the server actually registers (`printRoutes`), so a
 * new route fails this file until it is classified. Every account- or app-scoped route is called
 * with app B's API key and with app B's bearer token on app A's account (404, never data), with
 * A's ids on B's own account (404 or the route's 400 for a body id), and then the other way
 * round; afterwards both apps' data is byte-for-byte what it was.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { LocalStorage, localCredentials } from '@cloudmux/connector-local';
import {
  defineConnector,
  errorEnvelopeSchema,
  type Permission,
  type Property,
  type StorageItemType,
} from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, STORE_KINDS, startTestServer, type TestApp, type TestServer, upload } from './harness.js';

/**
 * The local disk plus permissions and properties (kept in memory per root and raw id), so the
 * sharing routes reach their id checks instead of stopping at `not_implemented`.
 */
const sharing = new Map<string, Property[]>();
class SharingDisk extends LocalStorage {
  constructor(private readonly rootDir: string) {
    super(rootDir);
  }
  async getPermissions(rawId: string, type: StorageItemType): Promise<Permission[]> {
    await this.get(rawId, type);
    return [{ id: 'owner', email: 'owner@example.test', name: 'Owner', role: 'owner', type: 'user' }];
  }
  async setPermissions(rawId: string, type: StorageItemType): Promise<Permission[]> {
    return this.getPermissions(rawId, type);
  }
  async getProperties(rawId: string): Promise<Property[]> {
    await this.get(rawId, 'file');
    return sharing.get(`${this.rootDir}\u0000${rawId}`) ?? [];
  }
  async updateProperties(
    rawId: string,
    changes: Array<{ key: string; value: string | null }>,
  ): Promise<Property[]> {
    await this.get(rawId, 'file');
    const kept = (sharing.get(`${this.rootDir}\u0000${rawId}`) ?? []).filter(
      (p) => !changes.some((c) => c.key === p.key),
    );
    const next = [
      ...kept,
      ...changes.filter((c) => c.value !== null).map((c) => ({ key: c.key, value: c.value! })),
    ];
    sharing.set(`${this.rootDir}\u0000${rawId}`, next);
    return next;
  }
  async deleteProperties(rawId: string): Promise<void> {
    await this.get(rawId, 'file');
    sharing.delete(`${this.rootDir}\u0000${rawId}`);
  }
}

const isoDisk = defineConnector({
  service: 'isodisk',
  name: 'Isolation test disk',
  version: '1.0.0',
  category: 'storage',
  apis: ['storage'],
  auth: { type: 'protocol' },
  network: 'none',
  credentials: localCredentials,
  create: (ctx) => ({ storage: new SharingDisk(ctx.credentials.root), dispose: async () => {} }),
});

/** One application's side of the test: its account and the ids of things in it. */
interface Side {
  name: 'A' | 'B';
  app: TestApp;
  accountId: number;
  token: string;
  /** A second token, the target of the token-delete route. */
  spareToken: string;
  fileId: string;
  folderId: string;
  linkId: string;
  sessionId: number;
  taskId: string;
  webhookId: number;
  /** A `next_page` token of the folder listing. */
  pageToken: string;
  /** Strings that must never appear in a reply to the other app. */
  secrets: string[];
}

interface Req {
  path: string;
  json?: unknown;
  body?: string;
  headers?: Record<string, string>;
}
type Expect = readonly [status: number, code: string];
const NOT_FOUND: Expect = [404, 'not_found'];

/**
 * - `account`: under `/v1/accounts/:account`; `build(account, ids)` names the account in the path and
 *   takes every other id from `ids`. `foreign` is the answer with the caller's own account and the
 *   other app's ids (default 404); `null` when the route takes no id besides the account.
 * - `app`: under `/v1/applications/:app_id`; the same with an application id.
 * - `caller`: acts on the caller's own application whatever it names; `probe` checks that.
 * - `public`: served without credentials by design; `reason` says why nothing leaks.
 */
type Entry =
  | { kind: 'account'; build: (account: number | string, ids: Side) => Req; foreign?: Expect | null }
  | { kind: 'app'; build: (appId: string, ids: Side) => Req; foreign?: Expect | null }
  | { kind: 'caller'; reason: string; probe: (t: TestServer, attacker: Side, victim: Side) => Promise<void> }
  | { kind: 'public'; reason: string };

const acc = (account: number | string, rest = '') => `/v1/accounts/${account}${rest}`;
const st = (account: number | string, rest: string) => acc(account, `/storage${rest}`);
const octet = (body: string, extra: Record<string, string> = {}) => ({
  body,
  headers: { 'content-type': 'application/octet-stream', ...extra },
});

const TABLE: Record<string, Entry> = {
  // ── accounts ──
  'GET /v1/accounts/:account': { kind: 'account', build: (a) => ({ path: acc(a) }), foreign: null },
  'PATCH /v1/accounts/:account': {
    kind: 'account',
    build: (a) => ({ path: acc(a), json: { account: 'pwned' } }),
    foreign: null,
  },
  'DELETE /v1/accounts/:account': { kind: 'account', build: (a) => ({ path: acc(a) }), foreign: null },
  'POST /v1/accounts/:account/tokens': {
    kind: 'account',
    build: (a) => ({ path: acc(a, '/tokens'), json: {} }),
    foreign: null,
  },
  'DELETE /v1/accounts/:account/tokens/:token': {
    kind: 'account',
    build: (a, v) => ({ path: acc(a, `/tokens/${v.spareToken}`) }),
  },
  'GET /v1/accounts/:account/tasks/:task': {
    kind: 'account',
    build: (a, v) => ({ path: acc(a, `/tasks/${v.taskId}`) }),
  },
  // ── files ──
  'POST /v1/accounts/:account/storage/files': {
    kind: 'account',
    build: (a, v) => ({
      path: st(a, '/files'),
      ...octet('evil', {
        'x-kloudless-metadata': JSON.stringify({ name: 'evil.txt', parent_id: v.folderId }),
      }),
    }),
    foreign: [400, 'invalid_parent_folder'],
  },
  'GET /v1/accounts/:account/storage/files/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/files/${v.fileId}`) }),
  },
  'PUT /v1/accounts/:account/storage/files/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/files/${v.fileId}`), ...octet('overwritten') }),
  },
  'PATCH /v1/accounts/:account/storage/files/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/files/${v.fileId}`), json: { name: 'pwned.txt' } }),
  },
  'DELETE /v1/accounts/:account/storage/files/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/files/${v.fileId}?permanent=true`) }),
  },
  'GET /v1/accounts/:account/storage/files/:id/contents': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/files/${v.fileId}/contents`) }),
  },
  'POST /v1/accounts/:account/storage/files/:id/copy': {
    kind: 'account',
    build: (a, v) => ({
      path: st(a, `/files/${v.fileId}/copy`),
      json: { parent_id: 'root', name: 'stolen.txt' },
    }),
  },
  'GET /v1/accounts/:account/storage/files/:id/permissions': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/files/${v.fileId}/permissions`) }),
  },
  'PUT /v1/accounts/:account/storage/files/:id/permissions': {
    kind: 'account',
    build: (a, v) => ({
      path: st(a, `/files/${v.fileId}/permissions`),
      json: [{ type: 'user', role: 'reader', email: 'evil@example.test' }],
    }),
  },
  'PATCH /v1/accounts/:account/storage/files/:id/permissions': {
    kind: 'account',
    build: (a, v) => ({
      path: st(a, `/files/${v.fileId}/permissions`),
      json: [{ type: 'user', role: 'writer', email: 'evil@example.test' }],
    }),
  },
  'GET /v1/accounts/:account/storage/files/:id/properties': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/files/${v.fileId}/properties`) }),
  },
  'PATCH /v1/accounts/:account/storage/files/:id/properties': {
    kind: 'account',
    build: (a, v) => ({
      path: st(a, `/files/${v.fileId}/properties`),
      json: [{ key: 'owner', value: 'evil' }],
    }),
  },
  'DELETE /v1/accounts/:account/storage/files/:id/properties': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/files/${v.fileId}/properties`) }),
  },
  // ── folders ──
  'POST /v1/accounts/:account/storage/folders': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, '/folders'), json: { name: 'evil-dir', parent_id: v.folderId } }),
    foreign: [400, 'invalid_parent_folder'],
  },
  'GET /v1/accounts/:account/storage/folders/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/folders/${v.folderId}`) }),
  },
  'PATCH /v1/accounts/:account/storage/folders/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/folders/${v.folderId}`), json: { name: 'pwned-dir' } }),
  },
  'DELETE /v1/accounts/:account/storage/folders/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/folders/${v.folderId}?recursive=true&permanent=true`) }),
  },
  'POST /v1/accounts/:account/storage/folders/:id/copy': {
    kind: 'account',
    build: (a, v) => ({
      path: st(a, `/folders/${v.folderId}/copy`),
      json: { parent_id: 'root', name: 'stolen-dir' },
    }),
  },
  'GET /v1/accounts/:account/storage/folders/:id/contents': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/folders/${v.folderId}/contents?page_size=1`) }),
  },
  'GET /v1/accounts/:account/storage/folders/:id/permissions': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/folders/${v.folderId}/permissions`) }),
  },
  'PUT /v1/accounts/:account/storage/folders/:id/permissions': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/folders/${v.folderId}/permissions`), json: [] }),
  },
  'PATCH /v1/accounts/:account/storage/folders/:id/permissions': {
    kind: 'account',
    build: (a, v) => ({
      path: st(a, `/folders/${v.folderId}/permissions`),
      json: { 'evil@example.test': 'writer' },
    }),
  },
  // ── links ──
  'GET /v1/accounts/:account/storage/links': {
    kind: 'account',
    build: (a) => ({ path: st(a, '/links') }),
    foreign: null,
  },
  'POST /v1/accounts/:account/storage/links': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, '/links'), json: { file_id: v.fileId, direct: true } }),
    foreign: [400, 'invalid_parameters'],
  },
  'GET /v1/accounts/:account/storage/links/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/links/${v.linkId}`) }),
  },
  'PATCH /v1/accounts/:account/storage/links/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/links/${v.linkId}`), json: { active: false, password: 'evil' } }),
  },
  'DELETE /v1/accounts/:account/storage/links/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/links/${v.linkId}`) }),
  },
  // ── search, recent ──
  'GET /v1/accounts/:account/storage/search': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/search?q=secret&parents=${encodeURIComponent(v.folderId)}`) }),
    foreign: [400, 'invalid_parent_folder'],
  },
  'GET /v1/accounts/:account/storage/recent': {
    kind: 'account',
    build: (a) => ({ path: st(a, '/recent') }),
    foreign: null,
  },
  // ── multipart ──
  'POST /v1/accounts/:account/storage/multipart': {
    kind: 'account',
    build: (a, v) => ({
      path: st(a, '/multipart'),
      json: { parent_id: v.folderId, name: 'evil.bin', size: 3 },
    }),
    foreign: [400, 'invalid_parent_folder'],
  },
  'GET /v1/accounts/:account/storage/multipart/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/multipart/${v.sessionId}`) }),
  },
  'PUT /v1/accounts/:account/storage/multipart/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/multipart/${v.sessionId}?part_number=2`), ...octet('evil') }),
  },
  'DELETE /v1/accounts/:account/storage/multipart/:id': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/multipart/${v.sessionId}`) }),
  },
  'POST /v1/accounts/:account/storage/multipart/:id/complete': {
    kind: 'account',
    build: (a, v) => ({ path: st(a, `/multipart/${v.sessionId}/complete`) }),
  },
  // ── ids, events, pass-through ──
  'POST /v1/accounts/:account/storage/convert_id': {
    kind: 'account',
    build: (a) => ({ path: st(a, '/convert_id'), json: { raw_id: '/vault/secret.txt', type: 'file' } }),
    foreign: null,
  },
  'POST /v1/accounts/:account/encode_raw_id': {
    kind: 'account',
    build: (a) => ({ path: acc(a, '/encode_raw_id'), json: { id: '/vault/secret.txt', type: 'file' } }),
    foreign: null,
  },
  'GET /v1/accounts/:account/events': {
    kind: 'account',
    build: (a) => ({ path: acc(a, '/events?cursor=0') }),
    foreign: null,
  },
  'GET /v1/accounts/:account/events/latest': {
    kind: 'account',
    build: (a) => ({ path: acc(a, '/events/latest') }),
    foreign: null,
  },
  'POST /v1/accounts/:account/raw': {
    kind: 'account',
    build: (a) => ({
      path: acc(a, '/raw'),
      json: {},
      headers: { 'x-kloudless-raw-uri': '/', 'x-kloudless-raw-method': 'GET' },
    }),
    foreign: null,
  },
  // ── application-scoped ──
  'GET /v1/applications/:app_id/settings': {
    kind: 'app',
    build: (app) => ({ path: `/v1/applications/${app}/settings` }),
    foreign: null,
  },
  'PUT /v1/applications/:app_id/settings': {
    kind: 'app',
    build: (app) => ({
      path: `/v1/applications/${app}/settings`,
      json: { redirect_uris: ['https://evil.example.test/cb'] },
    }),
    foreign: null,
  },
  'GET /v1/applications/:app_id/webhooks': {
    kind: 'app',
    build: (app) => ({ path: `/v1/applications/${app}/webhooks` }),
    foreign: null,
  },
  'POST /v1/applications/:app_id/webhooks': {
    kind: 'app',
    build: (app) => ({ path: `/v1/applications/${app}/webhooks`, json: { url: 'http://127.0.0.1:9/evil' } }),
    foreign: null,
  },
  'GET /v1/applications/:app_id/webhooks/signing_key': {
    kind: 'app',
    build: (app) => ({ path: `/v1/applications/${app}/webhooks/signing_key` }),
    foreign: null,
  },
  'POST /v1/applications/:app_id/webhooks/signing_key': {
    kind: 'app',
    build: (app) => ({ path: `/v1/applications/${app}/webhooks/signing_key` }),
    foreign: null,
  },
  'GET /v1/applications/:app_id/webhooks/:webhook_id': {
    kind: 'app',
    build: (app, v) => ({ path: `/v1/applications/${app}/webhooks/${v.webhookId}` }),
  },
  'DELETE /v1/applications/:app_id/webhooks/:webhook_id': {
    kind: 'app',
    build: (app, v) => ({ path: `/v1/applications/${app}/webhooks/${v.webhookId}` }),
  },
  // ── the caller's own application ──
  'GET /v1/accounts': {
    kind: 'caller',
    reason: 'lists the accounts of the calling app (or of the bearer tokens) only',
    probe: async (t, attacker, victim) => {
      for (const auth of [`APIKey ${attacker.app.apiKey}`, `Bearer ${attacker.token}`]) {
        const res = await t.call('/v1/accounts?page_size=1000', { auth });
        expect(res.status).toBe(200);
        const text = await res.text();
        const ids = (JSON.parse(text) as { objects: Array<{ id: number }> }).objects.map((o) => o.id);
        expect(ids).toContain(attacker.accountId);
        expect(ids).not.toContain(victim.accountId);
        expect(ids).not.toContain(victim.app.accountId);
        for (const secret of victim.secrets) expect(text).not.toContain(secret);
      }
    },
  },
  'POST /v1/accounts': {
    kind: 'caller',
    reason: 'imports into the calling app (API key only); the other app never sees the account',
    probe: async (t, attacker, victim) => {
      const root = join(t.dataDir.path, 'files', `import-${attacker.name}`);
      mkdirSync(root, { recursive: true });
      const body = { service: 'local', account: `imported by ${attacker.name}`, root };
      const byToken = await t.call('/v1/accounts', {
        method: 'POST',
        auth: `Bearer ${attacker.token}`,
        json: body,
      });
      await expectError(byToken, 403, 'forbidden');
      const res = await t.call('/v1/accounts', {
        method: 'POST',
        auth: `APIKey ${attacker.app.apiKey}`,
        json: body,
      });
      expect(res.status).toBe(201);
      const created = (await json(res)) as { id: number };
      await expectError(
        await t.call(acc(created.id), { auth: `APIKey ${victim.app.apiKey}` }),
        404,
        'not_found',
      );
      const listed = (await json(
        await t.call('/v1/accounts?page_size=1000', { auth: `APIKey ${victim.app.apiKey}` }),
      )) as {
        objects: Array<{ id: number }>;
      };
      expect(listed.objects.map((o) => o.id)).not.toContain(created.id);
      expect(
        (await t.call(acc(created.id), { method: 'DELETE', auth: `APIKey ${attacker.app.apiKey}` })).status,
      ).toBe(204);
    },
  },
  'GET /v1/oauth/token': {
    kind: 'caller',
    reason: 'describes the presented bearer token itself: its own app and account',
    probe: async (t, attacker, victim) => {
      const res = await t.call('/v1/oauth/token', { auth: `Bearer ${attacker.token}` });
      expect(await json(res)).toMatchObject({
        client_id: attacker.app.appId,
        account_id: attacker.accountId,
      });
      // The other app's API key is not a token.
      await expectError(
        await t.call('/v1/oauth/token', { auth: `APIKey ${victim.app.apiKey}` }),
        400,
        'bad_request',
      );
    },
  },
  'POST /v1/oauth/token': {
    kind: 'caller',
    reason: 'client authentication: an API key only authenticates its own app as client_id',
    probe: async (t, attacker, victim) => {
      const form = new URLSearchParams({
        grant_type: 'authorization_code',
        code: 'not-a-code',
        redirect_uri: 'urn:ietf:wg:oauth:2.0:oob',
        client_id: victim.app.appId,
        client_secret: attacker.app.apiKey,
      });
      const res = await t.call('/v1/oauth/token', {
        method: 'POST',
        auth: null,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      });
      expect(res.status).toBe(401);
      expect(await json(res)).toMatchObject({ error: 'invalid_client' });
      const header = await t.call('/v1/oauth/token', {
        method: 'POST',
        auth: `APIKey ${attacker.app.apiKey}`,
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: form.toString(),
      });
      expect(header.status).toBe(401);
    },
  },
  // ── public by design ──
  'GET /health': { kind: 'public', reason: 'liveness, no data' },
  'GET /ready': { kind: 'public', reason: 'readiness: the store kind, no data' },
  'GET /metrics': { kind: 'public', reason: 'operator metrics by route pattern and status, no ids or data' },
  'GET /docs': { kind: 'public', reason: 'static API reference page' },
  'GET /v1/openapi.json': { kind: 'public', reason: 'static API description' },
  'GET /v1/public/services': { kind: 'public', reason: 'the installed connectors, the same for every app' },
  'GET /static/iexd.html': { kind: 'public', reason: 'static relay page of the widgets' },
  'GET /l/:id': {
    kind: 'public',
    reason: 'a hosted link: the unguessable link id is the capability (links.test.ts)',
  },
  'POST /l/:id': { kind: 'public', reason: 'the password form of a hosted link (links.test.ts)' },
  'GET /v1/oauth': {
    kind: 'public',
    reason: 'browser connect flow keyed by the public client_id; accounts land in that app (oauth.test.ts)',
  },
  'GET /v1/oauth/connect/:service': {
    kind: 'public',
    reason: 'connect form behind a signed single-use flow state (oauth.test.ts)',
  },
  'POST /v1/oauth/connect/:service': {
    kind: 'public',
    reason: 'connect form submission behind the flow state (oauth.test.ts)',
  },
  'GET /v1/oauth/callback/:service': {
    kind: 'public',
    reason: 'provider callback behind the flow state (oauth.test.ts)',
  },
};

/** `METHOD /path` of every registered route, from Fastify's route tree. */
function registeredRoutes(tree: string): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const match = /^((?:│ {3}| {4})*)(?:├── |└── )(\S+)(?: \(([^)]*)\))?/.exec(line);
    if (!match) continue;
    const depth = match[1]!.length / 4;
    const path = (stack[depth - 1] ?? '') + match[2]!;
    stack[depth] = path;
    stack.length = depth + 1;
    for (const method of (match[3] ?? '')
      .split(',')
      .map((m) => m.trim())
      .filter(Boolean))
      out.push(`${method} ${path}`);
  }
  return out;
}

async function expectError(res: Response, status: number, code: string) {
  const text = await res.text();
  expect(res.status, text).toBe(status);
  expect(res.headers.get('content-type')).toBe('application/json');
  const body = errorEnvelopeSchema.parse(JSON.parse(text));
  expect(body).toMatchObject({ status_code: status, error_code: code });
  return body;
}

describe.each(STORE_KINDS)('isolation between two apps on %s', (store) => {
  let t: TestServer;
  let sides: Record<'A' | 'B', Side>;
  let routes: string[];

  async function makeSide(name: 'A' | 'B', app: TestApp): Promise<Side> {
    const key = `APIKey ${app.apiKey}`;
    const root = join(t.dataDir.path, `iso-${name}`);
    mkdirSync(root, { recursive: true });
    const call = (path: string, init: Parameters<TestServer['call']>[1] = {}) =>
      t.call(path, { auth: key, ...init });
    const imported = await call('/v1/accounts', {
      method: 'POST',
      json: { service: 'isodisk', account: `vault of ${name}`, root },
    });
    expect(imported.status).toBe(201);
    const accountId = ((await json(imported)) as { id: number }).id;
    const mint = async () =>
      (
        (await json(await call(acc(accountId, '/tokens'), { method: 'POST', json: {} }))) as {
          access_token: string;
        }
      ).access_token;
    const token = await mint();
    const spareToken = await mint();
    const folder = (await json(
      await call(st(accountId, '/folders'), { method: 'POST', json: { name: 'vault', parent_id: 'root' } }),
    )) as {
      id: string;
    };
    const file = await upload(
      t,
      acc(accountId),
      `secret-${name}.txt`,
      `${name}'s secret bytes`,
      folder.id,
      '',
      key,
    );
    await upload(t, acc(accountId), `second-${name}.txt`, 'two', folder.id, '', key);
    await call(st(accountId, `/files/${file.id}/properties`), {
      method: 'PATCH',
      json: [{ key: 'label', value: `label-${name}` }],
    });
    const link = (await json(
      await call(st(accountId, '/links'), { method: 'POST', json: { file_id: file.id } }),
    )) as { id: string };
    const session = (await json(
      await call(st(accountId, '/multipart'), {
        method: 'POST',
        json: { parent_id: folder.id, name: `upload-${name}.bin`, size: 3 },
      }),
    )) as { id: number };
    const part = await call(st(accountId, `/multipart/${session.id}?part_number=1`), {
      method: 'PUT',
      ...octet('abc'),
    });
    expect(part.status).toBe(200);
    const task = await call(st(accountId, `/files/${file.id}/copy`), {
      method: 'POST',
      headers: { 'x-kloudless-async': 'true' },
      json: { parent_id: 'root', name: `task-copy-${name}.txt` },
    });
    expect(task.status).toBe(202);
    const taskId = ((await json(task)) as { id: string }).id;
    // The task finishes (a copy in the same account) before the state is recorded.
    for (let i = 0; i < 200; i++) {
      const status = (await json(await call(acc(accountId, `/tasks/${taskId}`)))) as { type?: string };
      if (status.type === 'file') break;
      await new Promise((r) => setTimeout(r, 25));
    }
    const webhook = (await json(
      await call(`/v1/applications/${app.appId}/webhooks`, {
        method: 'POST',
        json: { url: `http://127.0.0.1:9/hook-${name}` },
      }),
    )) as { id: number };
    const pageToken = (
      (await json(await call(st(accountId, `/folders/${folder.id}/contents?page_size=1`)))) as {
        next_page: string;
      }
    ).next_page;
    expect(pageToken).toEqual(expect.any(String));
    return {
      name,
      app,
      accountId,
      token,
      spareToken,
      fileId: file.id,
      folderId: folder.id,
      linkId: link.id,
      sessionId: session.id,
      taskId,
      webhookId: webhook.id,
      pageToken,
      secrets: [
        `secret-${name}.txt`,
        `vault of ${name}`,
        file.id,
        folder.id,
        link.id,
        `label-${name}`,
        `upload-${name}.bin`,
      ],
    };
  }

  /** Everything an attack could change, read with the owner's own credentials. */
  async function snapshot(side: Side): Promise<unknown> {
    const key = `APIKey ${side.app.apiKey}`;
    const read = async (path: string, auth = key) => {
      const res = await t.call(path, { auth });
      return { status: res.status, body: await res.text() };
    };
    const a = side.accountId;
    return {
      account: await read(acc(a)),
      accounts: await read('/v1/accounts?page_size=1000'),
      file: await read(st(a, `/files/${side.fileId}`)),
      contents: await read(st(a, `/files/${side.fileId}/contents`)),
      properties: await read(st(a, `/files/${side.fileId}/properties`)),
      folder: await read(st(a, `/folders/${side.folderId}/contents?page_size=1000`)),
      root: await read(st(a, '/folders/root/contents?page_size=1000')),
      link: await read(st(a, `/links/${side.linkId}`)),
      links: await read(st(a, '/links')),
      session: await read(st(a, `/multipart/${side.sessionId}`)),
      task: await read(acc(a, `/tasks/${side.taskId}`)),
      events: await read(acc(a, '/events/latest')),
      token: await read('/v1/oauth/token', `Bearer ${side.token}`),
      spare: await read('/v1/oauth/token', `Bearer ${side.spareToken}`),
      settings: await read(`/v1/applications/${side.app.appId}/settings`),
      webhooks: await read(`/v1/applications/${side.app.appId}/webhooks`),
      signingKey: await read(`/v1/applications/${side.app.appId}/webhooks/signing_key`),
    };
  }

  beforeAll(async () => {
    t = await startTestServer({ store, connectors: [isoDisk] });
    const b = await t.newApp('app B');
    sides = { A: await makeSide('A', t.apps[0]!), B: await makeSide('B', b) };
    routes = registeredRoutes(t.server.app.printRoutes({ commonPrefix: false }));
  });
  afterAll(async () => t?.close());

  it('classifies every registered route', () => {
    expect(routes.length).toBeGreaterThan(40);
    const registered = new Set(routes);
    // HEAD is Fastify's automatic twin of GET and is probed with it.
    const unclassified = routes.filter(
      (r) => !TABLE[r] && !(r.startsWith('HEAD ') && registered.has(`GET ${r.slice(5)}`)),
    );
    expect(unclassified, 'add these routes to the isolation table').toEqual([]);
    const stale = Object.keys(TABLE).filter((r) => !registered.has(r));
    expect(stale, 'these table entries name no registered route').toEqual([]);
  });

  it('builds requests that work for the owner (so the refusals below are isolation, not typos)', async () => {
    for (const side of Object.values(sides)) {
      for (const [route, entry] of Object.entries(TABLE)) {
        if (!route.startsWith('GET ') || (entry.kind !== 'account' && entry.kind !== 'app')) continue;
        const req =
          entry.kind === 'account' ? entry.build(side.accountId, side) : entry.build(side.app.appId, side);
        for (const auth of [
          `APIKey ${side.app.apiKey}`,
          ...(entry.kind === 'account' ? [`Bearer ${side.token}`] : []),
        ]) {
          const res = await t.call(req.path, { auth });
          expect(res.status, `${route} as its owner: ${await res.text()}`).toBe(200);
        }
      }
    }
  });

  /** Calls `method req` with `auth` and returns the reply as text, never following redirects. */
  async function send(method: string, req: Req, auth: string | null) {
    const init: Parameters<TestServer['call']>[1] = { method, auth, redirect: 'manual' };
    if (req.headers) init.headers = req.headers;
    if (req.json !== undefined) init.json = req.json;
    if (req.body !== undefined) init.body = req.body;
    return t.call(req.path, init);
  }

  async function expectRefused(
    label: string,
    res: Response,
    [status, code]: Expect,
    victim: Side,
    method: string,
  ) {
    const text = await res.text();
    expect(res.status, `${label}: ${text}`).toBe(status);
    for (const secret of victim.secrets) expect(text, label).not.toContain(secret);
    if (method === 'HEAD') {
      expect(text).toBe('');
      return;
    }
    expect(res.headers.get('content-type'), label).toBe('application/json');
    expect(errorEnvelopeSchema.parse(JSON.parse(text)), label).toMatchObject({
      status_code: status,
      error_code: code,
    });
  }

  for (const [attackerName, victimName] of [
    ['B', 'A'],
    ['A', 'B'],
  ] as const) {
    it(`refuses app ${attackerName} on every route of app ${victimName}, leaving both unchanged`, async () => {
      const attacker = sides[attackerName];
      const victim = sides[victimName];
      const before = { attacker: await snapshot(attacker), victim: await snapshot(victim) };
      for (const [name, read] of Object.entries(before.victim as Record<string, { status: number }>)) {
        expect(read.status, `snapshot ${name}`).toBe(200);
      }
      const key = `APIKey ${attacker.app.apiKey}`;
      const bearer = `Bearer ${attacker.token}`;
      let probed = 0;
      for (const route of routes) {
        const [method, pattern] = route.split(' ') as [string, string];
        const entry = TABLE[route] ?? (method === 'HEAD' ? TABLE[`GET ${pattern}`] : undefined);
        if (!entry) continue;
        const label = `${attackerName}→${victimName} ${route}`;
        if (entry.kind === 'public') continue;
        if (entry.kind === 'caller') {
          if (method !== 'HEAD') await entry.probe(t, attacker, victim);
          probed++;
          continue;
        }
        if (entry.kind === 'account') {
          const onVictim = entry.build(victim.accountId, victim);
          await expectRefused(
            `${label} (API key)`,
            await send(method, onVictim, key),
            NOT_FOUND,
            victim,
            method,
          );
          await expectRefused(
            `${label} (bearer)`,
            await send(method, onVictim, bearer),
            NOT_FOUND,
            victim,
            method,
          );
          // Both accounts in one path: the victim's is still unknown.
          const both = entry.build(`${attacker.accountId},${victim.accountId}`, victim);
          await expectRefused(
            `${label} (both accounts)`,
            await send(method, both, key),
            NOT_FOUND,
            victim,
            method,
          );
          await expectRefused(
            `${label} (no auth)`,
            await send(method, onVictim, null),
            [401, 'authentication_required'],
            victim,
            method,
          );
          if (entry.foreign !== null) {
            // The victim's ids on the attacker's own account.
            const expected = entry.foreign ?? NOT_FOUND;
            const onOwn = entry.build(attacker.accountId, victim);
            await expectRefused(
              `${label} (own account, foreign ids, key)`,
              await send(method, onOwn, key),
              expected,
              victim,
              method,
            );
            await expectRefused(
              `${label} (own account, foreign ids, bearer)`,
              await send(method, onOwn, bearer),
              expected,
              victim,
              method,
            );
          }
        } else {
          const onVictim = entry.build(victim.app.appId, victim);
          await expectRefused(
            `${label} (API key)`,
            await send(method, onVictim, key),
            NOT_FOUND,
            victim,
            method,
          );
          await expectRefused(
            `${label} (bearer)`,
            await send(method, onVictim, bearer),
            [403, 'forbidden'],
            victim,
            method,
          );
          await expectRefused(
            `${label} (no auth)`,
            await send(method, onVictim, null),
            [401, 'authentication_required'],
            victim,
            method,
          );
          if (entry.foreign !== null) {
            const onOwn = entry.build(attacker.app.appId, victim);
            await expectRefused(
              `${label} (own app, foreign ids)`,
              await send(method, onOwn, key),
              entry.foreign ?? NOT_FOUND,
              victim,
              method,
            );
          }
        }
        probed++;
      }
      expect(probed).toBeGreaterThan(60);
      // A page token of the victim's listing means nothing on the attacker's.
      await expectRefused(
        'foreign page token',
        await t.call(
          st(
            attacker.accountId,
            `/folders/root/contents?page_size=1&page=${encodeURIComponent(victim.pageToken)}`,
          ),
          { auth: key },
        ),
        [400, 'invalid_parameters'],
        victim,
        'GET',
      );
      // Tokens of the two apps cannot be combined.
      await expectRefused(
        'mixed tokens',
        await t.call(acc(`${attacker.accountId},${victim.accountId}`), {
          auth: `Bearer ${attacker.token},${victim.token}`,
        }),
        [401, 'invalid_token'],
        victim,
        'GET',
      );
      expect({ attacker: await snapshot(attacker), victim: await snapshot(victim) }).toEqual(before);
    });
  }

  it('still serves each app its own data afterwards', async () => {
    for (const side of Object.values(sides)) {
      const res = await t.call(st(side.accountId, `/files/${side.fileId}/contents`), {
        auth: `Bearer ${side.token}`,
      });
      expect(await res.text()).toBe(`${side.name}'s secret bytes`);
      const props = (await json(
        await t.call(st(side.accountId, `/files/${side.fileId}/properties`), {
          auth: `APIKey ${side.app.apiKey}`,
        }),
      )) as {
        properties: Array<{ key: string; value: string }>;
      };
      expect(props.properties.map((p) => [p.key, p.value])).toEqual([['label', `label-${side.name}`]]);
    }
  });
});
