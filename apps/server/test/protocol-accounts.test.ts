/**
 * Protocol connectors behind the Kloudless API: accounts imported with the connector's own
 * credential fields (no server code per connector), checked with `?validate=true`, then used
 * through the Storage API. Backends are real servers the connectors' own tests start.
 */
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Azurite, startAzurite } from '../../../packages/connectors/azure/test/server.js';
import { type S3rver, startS3rver } from '../../../packages/connectors/s3/test/server.js';
import { json, startTestServer, type TestServer, upload } from './harness.js';

describe('S3 and Azure accounts through the server', () => {
  let t: TestServer;
  let s3: S3rver;
  let azurite: Azurite;
  beforeAll(async () => {
    [s3, azurite] = await Promise.all([startS3rver({ bucket: 'via-server' }), startAzurite()]);
    await azurite.createContainer('via-server');
    t = await startTestServer({ store: 'sqlite' });
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await Promise.all([s3?.teardown(), azurite?.teardown()]);
  });

  const importAccount = (service: string, fields: Record<string, unknown>, validate = true) =>
    t.call(`/v1/accounts${validate ? '?validate=true' : ''}`, {
      method: 'POST',
      json: { service, account: `${service} test`, ...fields },
    });

  for (const service of ['s3', 'azure'] as const) {
    it(`${service}: import, upload, list, download, delete`, async () => {
      const fields = service === 's3' ? s3.credentials() : azurite.credentials('via-server');
      const res = await importAccount(service, fields);
      expect(res.status).toBe(201);
      const account = (await json(res)) as { id: number; service: string };
      expect(account.service).toBe(service);
      const base = `/v1/accounts/${account.id}`;
      const data = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
      const file = await upload(t, base, 'through-server.bin', data);
      const listed = (await json(await t.call(`${base}/storage/folders/root/contents`))) as {
        objects: Array<{ id: string; name: string }>;
      };
      expect(listed.objects.map((o) => o.name)).toContain('through-server.bin');
      const got = Buffer.from(
        await (await t.call(`${base}/storage/files/${file.id}/contents`)).arrayBuffer(),
      );
      expect(createHash('sha256').update(got).digest('hex')).toBe(
        createHash('sha256').update(data).digest('hex'),
      );
      const range = await t.call(`${base}/storage/files/${file.id}/contents`, {
        headers: { range: 'bytes=10-19' },
      });
      expect(range.status).toBe(206);
      expect((await range.arrayBuffer()).byteLength).toBe(10);
      expect((await t.call(`${base}/storage/files/${file.id}`, { method: 'DELETE' })).status).toBe(204);
      expect((await t.call(`${base}/storage/files/${file.id}`)).status).toBe(404);
    });
  }

  it('validate=true refuses wrong credentials with the service error; without it the import is offline', async () => {
    const wrong = {
      ...azurite.credentials('via-server'),
      account_key: Buffer.alloc(64, 1).toString('base64'),
    };
    const refused = await importAccount('azure', wrong);
    expect([401, 403]).toContain(refused.status);
    expect(['service_unauthorized', 'service_forbidden']).toContain(
      ((await json(refused)) as { error_code: string }).error_code,
    );
    expect((await importAccount('azure', wrong, false)).status).toBe(201);
    const missing = await importAccount('s3', { access_key_id: 'x' });
    expect(missing.status).toBe(400);
    expect(((await json(missing)) as { error_code: string }).error_code).toBe('invalid_parameters');
  });

  it('the public service list shows the installed connectors', async () => {
    const services = (await json(await t.call('/v1/public/services?apis=storage', { auth: null }))) as {
      objects: Array<{ name: string }>;
    };
    expect(services.objects.map((s) => s.name)).toEqual(
      expect.arrayContaining(['local', 'webdav', 'ftp', 'smb', 's3', 'azure']),
    );
  });
});
