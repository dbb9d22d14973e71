/**
 * Pass-through to a real server: a WebDAV account (pass-through to the account's own host) sends
 * a PROPFIND through `POST /accounts/{id}/raw` to Apache mod_dav, with the account's basic auth
 * applied by core — the client never sees or sends the WebDAV password.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type ApacheDav,
  apacheMissing,
  startApacheDav,
} from '../../../packages/connectors/webdav/test/server.js';
import { json, startTestServer, type TestServer, upload } from './harness.js';

const missing = await apacheMissing();
if (missing && process.env.CI) throw new Error(`CI needs Apache for this test: ${missing}`);

describe.skipIf(missing !== null)(
  `pass-through to Apache mod_dav${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    let dav: ApacheDav;
    let t: TestServer;
    let account: number;
    beforeAll(async () => {
      dav = await startApacheDav();
      t = await startTestServer({ store: 'sqlite' });
      const res = await t.call('/v1/accounts?validate=true', {
        method: 'POST',
        json: { service: 'webdav', account: 'dav', ...dav.credentials() },
      });
      expect(res.status).toBe(201);
      account = ((await json(res)) as { id: number }).id;
    }, 120_000);
    afterAll(async () => {
      await t?.close();
      await dav?.teardown();
    });

    it('PROPFIND through /raw answers the server multistatus, with the account auth applied', async () => {
      await upload(t, `/v1/accounts/${account}`, 'seen-by-propfind.txt', 'p');
      const res = await t.call(`/v1/accounts/${account}/raw`, {
        method: 'POST',
        headers: {
          'x-kloudless-raw-uri': '/',
          'x-kloudless-raw-method': 'PROPFIND',
          depth: '1',
          'content-type': 'application/xml',
        },
        body: '<?xml version="1.0"?><propfind xmlns="DAV:"><prop><displayname/><getcontentlength/></prop></propfind>',
      });
      expect(res.status).toBe(207);
      const text = await res.text();
      expect(text).toContain('multistatus');
      expect(text).toContain('seen-by-propfind.txt');
    });

    it('refuses full URLs that are not the account host', async () => {
      const res = await t.call(`/v1/accounts/${account}/raw`, {
        method: 'POST',
        headers: { 'x-kloudless-raw-uri': 'http://127.0.0.2:1/', 'x-kloudless-raw-method': 'GET' },
      });
      expect(res.status).toBe(403);
    });
  },
);
