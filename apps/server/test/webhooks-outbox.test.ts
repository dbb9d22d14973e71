/** The outbox row of a webhook is written in the same transaction as its event. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { STORE_KINDS, startTestServer, type TestServer, upload } from './harness.js';

describe.each(STORE_KINDS)('webhook outbox on %s', (store) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ store });
  });
  afterAll(async () => t?.close());

  it('an event and its outbox rows are committed together', async () => {
    const app = t.apps[0]!;
    const res = await t.call(`/v1/applications/${app.appId}/webhooks`, {
      method: 'POST',
      json: { url: 'http://127.0.0.1:9/hook' },
    });
    expect(res.status).toBe(201);
    await upload(t, t.base, 'outboxed.txt', 'o');
    const { db } = t.server.deps.storeHandle;
    // Right after the request returns — no waiting for a background write.
    const event = await db
      .selectFrom('events')
      .select(['id'])
      .where('account_id', '=', app.accountId)
      .orderBy('id', 'desc')
      .executeTakeFirstOrThrow();
    const rows = await db
      .selectFrom('webhook_outbox')
      .select(['body'])
      .where('app_id', '=', app.appId)
      .execute();
    expect(rows.some((r) => r.body.includes(`event_id=${event.id}`))).toBe(true);
  });
});
