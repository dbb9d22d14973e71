import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { eventSchema } from '@cloudmux/core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { json, STORE_KINDS, startTestServer, type TestServer, upload } from './harness.js';

describe.each(STORE_KINDS)('events journal on %s', (store) => {
  let t: TestServer;
  beforeAll(async () => {
    t = await startTestServer({ store });
  });
  afterAll(async () => t?.close());

  it('records changes made through Cloudmux behind an integer cursor', async () => {
    const base = t.base;
    const latest = (await json(await t.call(`${base}/events/latest`))) as { cursor: number };
    expect(Number.isInteger(latest.cursor)).toBe(true);
    const file = await upload(t, base, 'evented.txt', 'e');
    const renamed = (await json(
      await t.call(`${base}/storage/files/${file.id}`, { method: 'PATCH', json: { name: 'evented-2.txt' } }),
    )) as { id: string };
    expect((await t.call(`${base}/storage/files/${renamed.id}`, { method: 'DELETE' })).status).toBe(204);

    const first = (await json(await t.call(`${base}/events?cursor=${latest.cursor}&page_size=2`))) as {
      objects: Array<Record<string, unknown>>;
      cursor: number;
      count: number;
      remaining: number;
    };
    expect(first.count).toBe(2);
    expect(first.remaining).toBe(1);
    for (const event of first.objects) eventSchema.parse(event);
    expect(first.objects.map((e) => e.type)).toEqual(['add', 'rename']);
    expect((first.objects[0]!.metadata as { id: string }).id).toBe(file.id);
    const second = (await json(
      await t.call(`${base}/events?cursor=${first.cursor}&page_size=2`),
    )) as typeof first;
    expect(second.objects.map((e) => e.type)).toEqual(['delete']);
    expect(second.objects[0]!.id).toBe(renamed.id);
    expect(second.remaining).toBe(0);
    const done = (await json(await t.call(`${base}/events?cursor=${second.cursor}`))) as typeof first;
    expect(done).toMatchObject({ count: 0, remaining: 0, cursor: second.cursor });
    expect(((await json(await t.call(`${base}/events/latest`))) as { cursor: number }).cursor).toBe(
      second.cursor,
    );
  });

  it('records changes made on disk by the watcher, without echoing changes made through Cloudmux', async () => {
    const base = t.base;
    const start = ((await json(await t.call(`${base}/events/latest`))) as { cursor: number }).cursor;
    await upload(t, base, 'through-api.txt', 'a');
    writeFileSync(join(t.apps[0]!.accountRoot, 'on-disk.txt'), 'written outside Cloudmux');
    let events: Array<{ type: string; metadata: { name: string } | null }> = [];
    for (let i = 0; i < 200; i++) {
      events = ((await json(await t.call(`${base}/events?cursor=${start}`))) as { objects: typeof events })
        .objects;
      if (events.some((e) => e.metadata?.name === 'on-disk.txt')) break;
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(events.filter((e) => e.metadata?.name === 'on-disk.txt').map((e) => e.type)).toEqual(['add']);
    // The upload is in the journal once (the watcher's echo of it is dropped).
    expect(events.filter((e) => e.metadata?.name === 'through-api.txt')).toHaveLength(1);
  });

  it('refuses bad cursors and page sizes, and other apps', async () => {
    const base = t.base;
    expect((await t.call(`${base}/events?cursor=abc`)).status).toBe(400);
    expect((await t.call(`${base}/events?cursor=999999999`)).status).toBe(400);
    const missingRoot = await t.call('/v1/accounts?validate=true', {
      method: 'POST',
      json: { service: 'local', root: `${t.apps[0]!.accountRoot}-missing` },
    });
    expect(missingRoot.status).toBe(400);
    expect((await t.call(`${base}/events?cursor=0&page_size=100000`)).status).toBe(400);
    const other = await t.newApp('other');
    expect((await t.call(`${base}/events/latest`, { auth: `APIKey ${other.apiKey}` })).status).toBe(404);
    const otherEvents = (await json(
      await t.call(`/v1/accounts/${other.accountId}/events?cursor=0`, { auth: `APIKey ${other.apiKey}` }),
    )) as { count: number };
    expect(otherEvents.count).toBe(0);
  });
});
