/**
 * Webhooks, black-box: the Management API (CRUD, isolation, URL policy, signing key), and delivery
 * to real loopback receivers — signature, app-id echo, retries with backoff, Retry-After, a
 * receiver that is down, giving up, restart safety and re-sending after a lost attempt. Time is a
 * ManualClock: tests move it and run the worker; nothing sleeps, and schedules are asserted on
 * `next_attempt_at`, not on wall time.
 */
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { ManualClock } from '@cloudmux/core';
import { freePort, makeTempDir } from '@cloudmux/testkit';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { type CloudmuxServer, createServer } from '../src/server.js';
import { dropPgSchema } from '../src/store/db.js';
import {
  OUTBOX_DELIVERED,
  OUTBOX_GAVE_UP,
  OUTBOX_PENDING,
  type WebhookWorker,
  webhooksFor,
} from '../src/webhooks/index.js';
import {
  json,
  PG_URL,
  STORE_KINDS,
  type StoreKind,
  startTestServer,
  type TestApp,
  type TestServer,
  upload,
} from './harness.js';

interface Hit {
  body: string;
  signature: string | undefined;
  contentType: string | undefined;
}

type Responder = (hit: Hit, res: ServerResponse) => void;

/** A loopback receiver that records every request and answers with the current `respond`. */
async function startReceiver(port = 0): Promise<{
  url: string;
  port: number;
  hits: Hit[];
  respond: Responder;
  setRespond(r: Responder): void;
  close(): Promise<void>;
}> {
  const hits: Hit[] = [];
  const state = { respond: ((_hit, res) => res.end()) as Responder };
  const server: Server = createHttpServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const hit = {
        body: Buffer.concat(chunks).toString('utf8'),
        signature: req.headers['x-kloudless-signature'] as string | undefined,
        contentType: req.headers['content-type'],
      };
      hits.push(hit);
      state.respond(hit, res);
    });
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const actual = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${actual}/hook`,
    port: actual,
    hits,
    get respond() {
      return state.respond;
    },
    setRespond(r) {
      state.respond = r;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const sign = (body: string, key: string) => createHmac('sha256', key).update(body).digest('base64');

/** The Kloudless receiver contract: verify the signature over the raw body, echo the app id. */
function kloudlessReceiver(appId: string, key: () => string): Responder {
  return (hit, res) => {
    if (hit.signature !== sign(hit.body, key())) {
      res.statusCode = 403;
      res.end('bad signature');
      return;
    }
    res.end(appId);
  };
}

/** Everything in flight finishes, then every row due at the clock's time is attempted. */
async function drain(worker: WebhookWorker): Promise<void> {
  await worker.settled();
  await worker.runDue();
  await worker.settled();
}

type OutboxRow = {
  id: number;
  attempts: number;
  next_attempt_at: number;
  last_error: string | null;
  delivered: number;
  body: string;
};

async function outbox(server: CloudmuxServer, webhookId: number): Promise<OutboxRow[]> {
  const rows = await server.deps.storeHandle.db
    .selectFrom('webhook_outbox')
    .select(['id', 'attempts', 'next_attempt_at', 'last_error', 'delivered', 'body'])
    .where('webhook_id', '=', webhookId)
    .orderBy('id')
    .execute();
  return rows.map((r) => ({
    ...r,
    id: Number(r.id),
    attempts: Number(r.attempts),
    next_attempt_at: Number(r.next_attempt_at),
    delivered: Number(r.delivered),
  }));
}

describe.each(STORE_KINDS)('webhooks on %s', (store) => {
  let t: TestServer;
  let clock: ManualClock;
  let worker: WebhookWorker;
  let app: TestApp;
  const hooksPath = (a: TestApp) => `/v1/applications/${a.appId}/webhooks`;

  beforeAll(async () => {
    clock = new ManualClock(Date.now());
    t = await startTestServer({ store, clock, env: { CLOUDMUX_RATE_LIMIT: '100000:100000' } });
    worker = webhooksFor(t.server.deps);
    app = t.apps[0]!;
    // The directory watcher's echo of an upload is dropped only within a few seconds; on a loaded
    // machine a late echo would be a second event (and delivery) that the counts below do not expect.
    await t.server.deps.watchers.stop(app.accountId);
  });
  afterAll(async () => t?.close());

  const addHook = async (url: string, a = app) => {
    const res = await t.call(hooksPath(a), { method: 'POST', auth: `APIKey ${a.apiKey}`, json: { url } });
    expect(res.status, await res.clone().text()).toBe(201);
    return (await json(res)) as { id: number; url: string };
  };
  const removeHook = async (id: number, a = app) => {
    expect(
      (await t.call(`${hooksPath(a)}/${id}`, { method: 'DELETE', auth: `APIKey ${a.apiKey}` })).status,
    ).toBe(204);
  };
  const signingKey = async (a = app) =>
    (
      (await json(await t.call(`${hooksPath(a)}/signing_key`, { auth: `APIKey ${a.apiKey}` }))) as {
        signing_key: string;
      }
    ).signing_key;

  it('manages webhooks: create, list with pages, get, no duplicates, delete (204), with the Kloudless envelopes', async () => {
    const created = await addHook('http://127.0.0.1:9/first');
    expect(created).toMatchObject({
      url: 'http://127.0.0.1:9/first',
      application: app.appId,
      api: 'meta',
      type: 'webhook',
    });
    expect(typeof created.id).toBe('number');
    expect((created as unknown as { href: string }).href).toBe(`${t.url}${hooksPath(app)}/${created.id}`);

    const dup = await t.call(hooksPath(app), { method: 'POST', json: { url: 'http://127.0.0.1:9/first' } });
    expect(dup.status).toBe(409);
    expect(await json(dup)).toMatchObject({
      error_code: 'naming_conflict',
      conflicting_resource_id: String(created.id),
    });

    const second = await addHook('https://receiver.example.test/second');
    const all = await t.call(hooksPath(app));
    expect(all.headers.get('content-type')).toBe('application/json');
    expect(await json(all)).toMatchObject({
      count: 2,
      total: 2,
      page: 1,
      next_page: null,
      type: 'object_list',
      api: 'meta',
    });

    const page1 = (await json(await t.call(`${hooksPath(app)}?page_size=1`))) as {
      objects: Array<{ id: number }>;
      next_page: string;
    };
    expect(page1.objects.map((o) => o.id)).toEqual([created.id]);
    const page2 = (await json(await t.call(`${hooksPath(app)}?page_size=1&page=${page1.next_page}`))) as {
      objects: Array<{ id: number }>;
      next_page: string | null;
    };
    expect(page2.objects.map((o) => o.id)).toEqual([second.id]);
    expect(page2.next_page).toBeNull();

    expect(await json(await t.call(`${hooksPath(app)}/${created.id}/`))).toEqual(created);
    const del = await t.call(`${hooksPath(app)}/${created.id}`, { method: 'DELETE' });
    expect(del.status).toBe(204);
    expect(await del.text()).toBe('');
    expect((await t.call(`${hooksPath(app)}/${created.id}`)).status).toBe(404);
    expect((await t.call(`${hooksPath(app)}/${created.id}`, { method: 'DELETE' })).status).toBe(404);
    expect((await t.call(`${hooksPath(app)}/abc`)).status).toBe(404);
    await removeHook(second.id);
  });

  it('registers a URL once when several requests race to create it (unique index, not only a check)', async () => {
    const url = 'http://127.0.0.1:9/raced';
    const answers = await Promise.all(
      Array.from({ length: 8 }, () => t.call(hooksPath(app), { method: 'POST', json: { url } })),
    );
    const created = answers.filter((r) => r.status === 201);
    expect(created).toHaveLength(1);
    const winner = (await json(created[0]!)) as { id: number };
    for (const res of answers.filter((r) => r.status !== 201)) {
      expect(res.status).toBe(409);
      expect(await json(res)).toMatchObject({
        error_code: 'naming_conflict',
        conflicting_resource_id: String(winner.id),
      });
    }
    const listed = (await json(await t.call(`${hooksPath(app)}?page_size=100`))) as {
      objects: Array<{ url: string }>;
    };
    expect(listed.objects.filter((o) => o.url === url)).toHaveLength(1);
    await removeHook(winner.id);
  });

  it('validates the body and the URL', async () => {
    for (const body of [
      {},
      { url: '' },
      { url: 'not a url' },
      { url: 'ftp://127.0.0.1/x' },
      { url: 'http://user:pw@127.0.0.1/x' },
      { url: 'http://127.0.0.1/x#frag' },
      { url: 42 },
    ]) {
      const res = await t.call(hooksPath(app), { method: 'POST', json: body });
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(await json(res)).toMatchObject({ error_code: 'invalid_parameters' });
    }
    expect((await json(await t.call(hooksPath(app)))).count).toBe(0);
  });

  it('refuses cloud metadata and unspecified addresses as receivers, and the worker refuses them at connect time too', async () => {
    const urls = [
      'http://169.254.169.254/latest/meta-data/',
      'http://[fd00:ec2::254]/hook',
      'http://metadata.google.internal/hook',
      'http://0xa9fea9fe/',
      'http://2852039166/hook',
      'https://[::ffff:169.254.169.254]/hook',
      'http://100.100.100.200/hook',
      'http://0.0.0.0:8080/hook',
    ];
    for (const url of urls) {
      const res = await t.call(hooksPath(app), { method: 'POST', json: { url } });
      expect(res.status, url).toBe(403);
      expect(await json(res)).toMatchObject({ error_code: 'forbidden' });
    }
    expect((await json(await t.call(hooksPath(app)))).count).toBe(0);

    // A row that bypassed the API (e.g. a name that later resolves to metadata) is still refused by the guard.
    const db = t.server.deps.storeHandle.db;
    const inserted = await db
      .insertInto('webhooks')
      .values({
        app_id: app.appId,
        url: 'http://169.254.169.254/hook',
        created: new Date(clock.now()).toISOString(),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    await upload(t, t.base, 'metadata.txt', 'm');
    await drain(worker);
    const [row] = await outbox(t.server, Number(inserted.id));
    expect(row).toMatchObject({ attempts: 1, delivered: OUTBOX_PENDING });
    expect(row!.last_error).toMatch(/refused.*metadata/i);
    await removeHook(Number(inserted.id));
  });

  it('isolates applications: another app’s id is not_found, and bearer tokens cannot manage webhooks', async () => {
    const mine = await addHook('http://127.0.0.1:9/isolated');
    const other = await t.newApp('other');
    const asOther = { auth: `APIKey ${other.apiKey}` };
    expect((await t.call(hooksPath(app), asOther)).status).toBe(404);
    expect((await t.call(`${hooksPath(app)}/${mine.id}`, asOther)).status).toBe(404);
    expect((await t.call(`${hooksPath(app)}/${mine.id}`, { method: 'DELETE', ...asOther })).status).toBe(404);
    expect((await t.call(`${hooksPath(other)}/${mine.id}`, asOther)).status).toBe(404);
    expect((await t.call(`${hooksPath(other)}/${mine.id}`, { method: 'DELETE', ...asOther })).status).toBe(
      404,
    );
    expect((await t.call(`${hooksPath(app)}/signing_key`, asOther)).status).toBe(404);
    expect(
      (await t.call(hooksPath(app), { method: 'POST', json: { url: 'http://127.0.0.1:9/x' }, ...asOther }))
        .status,
    ).toBe(404);
    expect(await json(await t.call(hooksPath(other), asOther))).toMatchObject({ count: 0 });
    const bearer = await t.call(hooksPath(app), { auth: `Bearer ${app.token}` });
    expect(bearer.status).toBe(403);
    expect(await json(bearer)).toMatchObject({ error_code: 'forbidden' });
    expect((await t.call(hooksPath(app), { auth: null })).status).toBe(401);
    expect((await t.call(hooksPath(app), { auth: `DeveloperKey ${app.apiKey}` })).status).toBe(401);
    // The other app's events never reach this app's webhook.
    await upload(
      t,
      `/v1/accounts/${other.accountId}`,
      'theirs.txt',
      'x',
      'root',
      '',
      `APIKey ${other.apiKey}`,
    );
    await worker.settled();
    expect(await outbox(t.server, mine.id)).toEqual([]);
    await removeHook(mine.id);
  });

  it('has one signing key per app, readable and rotatable', async () => {
    const key = await signingKey();
    expect(key).toMatch(/^cmwh_[A-Za-z0-9_-]{43}$/);
    expect(await signingKey()).toBe(key);
    const other = await t.newApp('keys');
    expect(await signingKey(other)).not.toBe(key);
    const rotated = await t.call(`${hooksPath(app)}/signing_key`, { method: 'POST' });
    expect(rotated.status).toBe(200);
    const fresh = ((await json(rotated)) as { signing_key: string }).signing_key;
    expect(fresh).not.toBe(key);
    expect(await signingKey()).toBe(fresh);
    // Stored encrypted, never as the key itself.
    const row = await t.server.deps.storeHandle.db
      .selectFrom('apps')
      .select('webhook_secret_enc')
      .where('id', '=', app.appId)
      .executeTakeFirstOrThrow();
    expect(row.webhook_secret_enc).not.toContain(fresh);
    expect(row.webhook_secret_enc!.length).toBeGreaterThan(40);
  });

  it('delivers an event once: form body, valid signature, the receiver echoes the app id', async () => {
    const receiver = await startReceiver();
    try {
      const hook = await addHook(receiver.url);
      const key = await signingKey();
      receiver.setRespond(kloudlessReceiver(app.appId, () => key));
      const file = await upload(t, t.base, 'hello.txt', 'hello');
      await drain(worker);
      expect(receiver.hits).toHaveLength(1);
      const hit = receiver.hits[0]!;
      expect(hit.contentType).toBe('application/x-www-form-urlencoded');
      expect(hit.signature).toBe(sign(hit.body, key));
      const fields = Object.fromEntries(new URLSearchParams(hit.body));
      expect(hit.body.startsWith(`account=${app.accountId}&`)).toBe(true);
      expect(fields).toMatchObject({
        account: String(app.accountId),
        event_category: 'storage',
        event_type: 'add',
        object_id: file.id,
        object_type: 'file',
      });
      const cursor = ((await json(await t.call(`${t.base}/events/latest`))) as { cursor: number }).cursor;
      expect(Number(fields.event_id)).toBe(cursor);
      const rows = await outbox(t.server, hook.id);
      expect(rows).toMatchObject([{ attempts: 1, delivered: OUTBOX_DELIVERED, last_error: null }]);
      clock.advance(60 * 60_000);
      await drain(worker);
      expect(receiver.hits).toHaveLength(1);
      await removeHook(hook.id);
    } finally {
      await receiver.close();
    }
  });

  it('retries a receiver that does not echo the app id, with backoff, until it does', async () => {
    const receiver = await startReceiver();
    try {
      receiver.setRespond((_hit, res) => res.end('OK'));
      const hook = await addHook(receiver.url);
      await upload(t, t.base, 'no-echo.txt', 'x');
      await drain(worker);
      expect(receiver.hits).toHaveLength(1);
      let [row] = await outbox(t.server, hook.id);
      expect(row).toMatchObject({ attempts: 1, delivered: OUTBOX_PENDING });
      expect(row!.last_error).toMatch(/application id/);
      // Full jitter under 10 s for the first retry, never less than the 1 s floor.
      expect(row!.next_attempt_at).toBeGreaterThanOrEqual(clock.now() + 1_000);
      expect(row!.next_attempt_at).toBeLessThanOrEqual(clock.now() + 10_000);
      clock.advance(row!.next_attempt_at - clock.now() - 1);
      await drain(worker);
      expect(receiver.hits).toHaveLength(1);
      clock.advance(1);
      await drain(worker);
      expect(receiver.hits).toHaveLength(2);
      [row] = await outbox(t.server, hook.id);
      expect(row).toMatchObject({ attempts: 2, delivered: OUTBOX_PENDING });
      expect(row!.next_attempt_at).toBeLessThanOrEqual(clock.now() + 20_000);
      const key = await signingKey();
      receiver.setRespond(kloudlessReceiver(app.appId, () => key));
      clock.advance(20_000);
      await drain(worker);
      expect(receiver.hits).toHaveLength(3);
      expect(receiver.hits[2]!.body).toBe(receiver.hits[0]!.body);
      expect(await outbox(t.server, hook.id)).toMatchObject([
        { attempts: 3, delivered: OUTBOX_DELIVERED, last_error: null },
      ]);
      await removeHook(hook.id);
    } finally {
      await receiver.close();
    }
  });

  it('honours Retry-After on 429: the next attempt is scheduled no earlier', async () => {
    const receiver = await startReceiver();
    try {
      receiver.setRespond((_hit, res) => {
        res.statusCode = 429;
        res.setHeader('retry-after', '120');
        res.end('slow down');
      });
      const hook = await addHook(receiver.url);
      await upload(t, t.base, 'throttled.txt', 'x');
      await drain(worker);
      const [row] = await outbox(t.server, hook.id);
      expect(row).toMatchObject({ attempts: 1, delivered: OUTBOX_PENDING });
      expect(row!.last_error).toMatch(/^HTTP 429/);
      expect(row!.next_attempt_at).toBe(clock.now() + 120_000);
      const key = await signingKey();
      receiver.setRespond(kloudlessReceiver(app.appId, () => key));
      clock.advance(119_999);
      await drain(worker);
      expect(receiver.hits).toHaveLength(1);
      clock.advance(1);
      await drain(worker);
      expect(receiver.hits).toHaveLength(2);
      expect(await outbox(t.server, hook.id)).toMatchObject([{ attempts: 2, delivered: OUTBOX_DELIVERED }]);
      await removeHook(hook.id);
    } finally {
      await receiver.close();
    }
  });

  it('retries while the receiver is down and delivers once it is up', async () => {
    const port = await freePort();
    const hook = await addHook(`http://127.0.0.1:${port}/hook`);
    await upload(t, t.base, 'down.txt', 'x');
    await drain(worker);
    let [row] = await outbox(t.server, hook.id);
    expect(row).toMatchObject({ attempts: 1, delivered: OUTBOX_PENDING });
    expect(row!.last_error).toMatch(/ECONNREFUSED/);
    clock.advance(10_000);
    await drain(worker);
    [row] = await outbox(t.server, hook.id);
    expect(row).toMatchObject({ attempts: 2, delivered: OUTBOX_PENDING });
    const receiver = await startReceiver(port);
    try {
      const key = await signingKey();
      receiver.setRespond(kloudlessReceiver(app.appId, () => key));
      clock.advance(20_000);
      await drain(worker);
      expect(receiver.hits).toHaveLength(1);
      expect(await outbox(t.server, hook.id)).toMatchObject([{ attempts: 3, delivered: OUTBOX_DELIVERED }]);
      await removeHook(hook.id);
    } finally {
      await receiver.close();
    }
  });

  it('gives up after 24 hours, keeping the last error', async () => {
    const receiver = await startReceiver();
    try {
      receiver.setRespond((_hit, res) => {
        res.statusCode = 500;
        res.end('broken');
      });
      const hook = await addHook(receiver.url);
      await upload(t, t.base, 'doomed.txt', 'x');
      await drain(worker);
      clock.advance(24 * 60 * 60_000);
      await drain(worker);
      expect(receiver.hits).toHaveLength(2);
      const [row] = await outbox(t.server, hook.id);
      expect(row).toMatchObject({ attempts: 2, delivered: OUTBOX_GAVE_UP });
      expect(row!.last_error).toMatch(/^gave up after 2 attempts: HTTP 500/);
      clock.advance(60 * 60_000);
      await drain(worker);
      expect(receiver.hits).toHaveLength(2);
      await removeHook(hook.id);
    } finally {
      await receiver.close();
    }
  });
});

// ── restart safety and re-sending: servers opened by hand on one data dir / schema ────────────

async function openServer(
  kind: StoreKind,
  dir: string,
  schema: string,
  clock: ManualClock,
): Promise<CloudmuxServer> {
  const env: Record<string, string> = {
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
    CLOUDMUX_DATA_DIR: dir,
    CLOUDMUX_LOCAL_ROOTS: join(dir, 'files'),
    CLOUDMUX_RATE_LIMIT: '100000:100000',
    ...(kind === 'postgres' ? { DATABASE_URL: PG_URL, CLOUDMUX_DATABASE_SCHEMA: schema } : {}),
  };
  return createServer(loadConfig({}, env), {
    clock,
    logger: pino({ level: process.env.CLOUDMUX_TEST_LOG ?? 'silent' }),
  });
}

async function setUp(server: CloudmuxServer, dir: string, receiverUrl: string) {
  const { app, apiKey } = await server.deps.store.createApp('restart');
  const auth = `APIKey ${apiKey}`;
  const root = join(dir, 'files', randomBytes(4).toString('hex'));
  mkdirSync(root, { recursive: true });
  const account = await server.app.inject({
    method: 'POST',
    url: '/v1/accounts',
    headers: { authorization: auth },
    payload: { service: 'local', account: 'restart', root },
  });
  expect(account.statusCode).toBe(201);
  const accountId = (account.json() as { id: number }).id;
  const hook = await server.app.inject({
    method: 'POST',
    url: `/v1/applications/${app.id}/webhooks`,
    headers: { authorization: auth },
    payload: { url: receiverUrl },
  });
  expect(hook.statusCode).toBe(201);
  const key = await server.app.inject({
    method: 'GET',
    url: `/v1/applications/${app.id}/webhooks/signing_key`,
    headers: { authorization: auth },
  });
  const uploadFile = async (name: string) => {
    const res = await server.app.inject({
      method: 'POST',
      url: `/v1/accounts/${accountId}/storage/files`,
      headers: {
        authorization: auth,
        'content-type': 'application/octet-stream',
        'x-kloudless-metadata': JSON.stringify({ name, parent_id: 'root' }),
      },
      payload: Buffer.from(name),
    });
    expect(res.statusCode).toBe(201);
  };
  return {
    appId: app.id,
    accountId,
    webhookId: (hook.json() as { id: number }).id,
    signingKey: (key.json() as { signing_key: string }).signing_key,
    uploadFile,
  };
}

// Two servers per test, each opening the store and running migrations: slow on a loaded machine.
const RESTART_TIMEOUT_MS = 120_000;

describe.each(STORE_KINDS)('webhook outbox across restarts on %s', (kind) => {
  it(
    'events recorded before a shutdown are delivered by the next server on the same store',
    async () => {
      const dir = await makeTempDir('cloudmux-webhooks-');
      const schema = `cm_test_${process.pid}_${randomBytes(4).toString('hex')}`;
      const receiver = await startReceiver();
      const clock = new ManualClock(Date.now());
      try {
        // The first server never listens, so its worker never starts: the rows wait in the outbox.
        const first = await openServer(kind, dir.path, schema, clock);
        const setup = await setUp(first, dir.path, receiver.url);
        receiver.setRespond(kloudlessReceiver(setup.appId, () => setup.signingKey));
        await setup.uploadFile('one.txt');
        await setup.uploadFile('two.txt');
        await first.close();
        expect(receiver.hits).toHaveLength(0);

        const second = await openServer(kind, dir.path, schema, clock);
        try {
          expect(await outbox(second, setup.webhookId)).toMatchObject([{ attempts: 0 }, { attempts: 0 }]);
          await second.listen();
          await drain(webhooksFor(second.deps));
          expect(receiver.hits).toHaveLength(2);
          for (const hit of receiver.hits) expect(hit.signature).toBe(sign(hit.body, setup.signingKey));
          expect(receiver.hits.map((h) => new URLSearchParams(h.body).get('event_type'))).toEqual([
            'add',
            'add',
          ]);
          expect(await outbox(second, setup.webhookId)).toMatchObject([
            { delivered: OUTBOX_DELIVERED },
            { delivered: OUTBOX_DELIVERED },
          ]);
        } finally {
          await second.close();
        }
      } finally {
        await receiver.close();
        if (kind === 'postgres') await dropPgSchema(PG_URL, schema);
        await dir.remove();
      }
    },
    RESTART_TIMEOUT_MS,
  );

  it(
    'an attempt whose outcome was never recorded is sent again once its lease expires (at-least-once)',
    async () => {
      const dir = await makeTempDir('cloudmux-webhooks-');
      const schema = `cm_test_${process.pid}_${randomBytes(4).toString('hex')}`;
      const receiver = await startReceiver();
      const clockA = new ManualClock(Date.now());
      let held: ServerResponse | undefined;
      let firstHit: () => void = () => undefined;
      const arrived = new Promise<void>((resolve) => {
        firstHit = resolve;
      });
      try {
        const clockB = new ManualClock(clockA.now());
        const a = await openServer(kind, dir.path, schema, clockA);
        const b = await openServer(kind, dir.path, schema, clockB);
        try {
          const setup = await setUp(a, dir.path, receiver.url);
          const echo = kloudlessReceiver(setup.appId, () => setup.signingKey);
          // The first request gets no answer: as if its sender died before recording the outcome.
          receiver.setRespond((hit, res) => {
            if (!held) {
              held = res;
              firstHit();
              return;
            }
            echo(hit, res);
          });
          await a.listen();
          await a.deps.watchers.stop(setup.accountId);
          await setup.uploadFile('lost.txt');
          await arrived;
          const [claimed] = await outbox(b, setup.webhookId);
          expect(claimed).toMatchObject({ attempts: 1, delivered: OUTBOX_PENDING });
          const leaseEnd = claimed!.next_attempt_at;
          expect(leaseEnd).toBeGreaterThan(clockA.now());

          // A second instance on the same store: the row is invisible until the lease ends, then re-sent.
          const workerB = webhooksFor(b.deps);
          clockB.advance(leaseEnd - 1 - clockB.now());
          await drain(workerB);
          expect(receiver.hits).toHaveLength(1);
          clockB.advance(1);
          await drain(workerB);
          expect(receiver.hits).toHaveLength(2);
          expect(receiver.hits[1]!.body).toBe(receiver.hits[0]!.body);
          expect(receiver.hits[1]!.signature).toBe(receiver.hits[0]!.signature);
          expect(await outbox(b, setup.webhookId)).toMatchObject([
            { attempts: 2, delivered: OUTBOX_DELIVERED },
          ]);
          held!.end(setup.appId);
          await webhooksFor(a.deps).settled();
          expect(await outbox(a, setup.webhookId)).toMatchObject([
            { attempts: 2, delivered: OUTBOX_DELIVERED },
          ]);
        } finally {
          held?.destroy();
          await a.close();
          await b.close();
        }
      } finally {
        await receiver.close();
        if (kind === 'postgres') await dropPgSchema(PG_URL, schema);
        await dir.remove();
      }
    },
    RESTART_TIMEOUT_MS,
  );
});
