/**
 * Pass-through for the object stores, signed by core: S3 requests to the repository's
 * signature-verifying S3 (packages/connectors/s3/test/fake-s3.ts checks SigV4 on every request;
 * s3rver checks none), Azure requests to Azurite, which verifies Shared Key signatures. The client
 * sends neither keys nor signatures — only `X-Kloudless-Raw-URI` and `X-Kloudless-Raw-Method`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Azurite,
  azuriteMissing,
  startAzurite,
} from '../../../packages/connectors/azure/test/server.js';
import { FakeS3 } from '../../../packages/connectors/s3/test/fake-s3.js';
import { json, startTestServer, type TestServer, upload } from './harness.js';

const missingAzurite = azuriteMissing();
if (missingAzurite && process.env.CI) throw new Error(`CI needs Azurite for this test: ${missingAzurite}`);

const BUCKET = 'raw-bucket';
const CONTAINER = 'raw-container';

describe('pass-through to S3 and Azure Blob, signed by core', () => {
  let t: TestServer;
  let fake: FakeS3;
  let azurite: Azurite | undefined;
  beforeAll(async () => {
    fake = await new FakeS3({
      bucket: BUCKET,
      accessKeyId: 'AKIDRAWTEST',
      secretAccessKey: 'raw-secret',
    }).start();
    if (!missingAzurite) {
      azurite = await startAzurite();
      await azurite.createContainer(CONTAINER);
    }
    t = await startTestServer({ store: 'sqlite' });
  }, 120_000);
  afterAll(async () => {
    await t?.close();
    await fake?.close();
    await azurite?.teardown();
  });

  const importAccount = async (service: string, fields: Record<string, unknown>) => {
    const res = await t.call('/v1/accounts?validate=true', {
      method: 'POST',
      json: { service, account: `${service} raw`, ...fields },
    });
    expect(res.status).toBe(201);
    return ((await json(res)) as { id: number }).id;
  };
  const raw = (account: number, method: string, uri: string, init: RequestInit = {}) =>
    t.call(`/v1/accounts/${account}/raw`, {
      ...init,
      method: 'POST',
      headers: { 'x-kloudless-raw-uri': uri, 'x-kloudless-raw-method': method, ...(init.headers ?? {}) },
    });

  it('s3: ListObjectsV2 and a streamed PutObject through /raw, every request SigV4-verified', async () => {
    const account = await importAccount('s3', {
      access_key_id: 'AKIDRAWTEST',
      secret_access_key: 'raw-secret',
      region: 'us-east-1',
      bucket: BUCKET,
      endpoint: fake.endpoint,
    });
    await upload(t, `/v1/accounts/${account}`, 'listed-by-raw.txt', 'l');
    const before = fake.requests.length;

    // Amazon S3 API Reference, ListObjectsV2: GET /?list-type=2 on the bucket.
    const list = await raw(account, 'GET', '/?list-type=2');
    expect(list.status).toBe(200);
    expect(await list.text()).toContain('<Key>listed-by-raw.txt</Key>');

    // Amazon S3 API Reference, PutObject: PUT /<key> with the bytes as the body.
    const put = await raw(account, 'PUT', '/put-by-raw.txt', {
      headers: { 'content-type': 'text/plain' },
      body: 'sent through the pass-through API',
    });
    expect(put.status).toBe(200);
    expect(fake.objects.get('put-by-raw.txt')?.data?.toString()).toBe('sent through the pass-through API');

    const sent = fake.requests.slice(before);
    expect(sent.map((r) => `${r.method} ${r.auth}`)).toEqual(['GET ok', 'PUT ok']);
    // The object written through /raw is an ordinary file to the Storage API.
    const names = (
      (await json(await t.call(`/v1/accounts/${account}/storage/folders/root/contents`))) as {
        objects: Array<{ name: string }>;
      }
    ).objects.map((o) => o.name);
    expect(names).toContain('put-by-raw.txt');
  });

  it.skipIf(!!missingAzurite)(
    `azure: List Blobs and Put Blob through /raw, Shared Key verified by Azurite${missingAzurite ? ` (skipped: ${missingAzurite})` : ''}`,
    async () => {
      const account = await importAccount('azure', azurite!.credentials(CONTAINER));
      await upload(t, `/v1/accounts/${account}`, 'listed-by-raw.txt', 'l');

      // Azure Blob REST reference, List Blobs: GET /<container>?restype=container&comp=list.
      const list = await raw(account, 'GET', `/${CONTAINER}?restype=container&comp=list`);
      expect(list.status).toBe(200);
      expect(await list.text()).toContain('<Name>listed-by-raw.txt</Name>');

      // Azure Blob REST reference, Put Blob: x-ms-blob-type is signed with the other x-ms-* headers.
      const put = await raw(account, 'PUT', `/${CONTAINER}/put-by-raw.txt`, {
        headers: { 'x-ms-blob-type': 'BlockBlob', 'content-type': 'text/plain' },
        body: 'sent through the pass-through API',
      });
      expect(put.status).toBe(201);
      const blob = await azurite!.service
        .getContainerClient(CONTAINER)
        .getBlobClient('put-by-raw.txt')
        .downloadToBuffer();
      expect(blob.toString()).toBe('sent through the pass-through API');

      // A request the account's key did not sign is refused by Azurite, so the 200s above were signed.
      const forged = await fetch(`${azurite!.endpoint}/${CONTAINER}?restype=container&comp=list`, {
        headers: { authorization: 'SharedKey devstoreaccount1:AAAA', 'x-ms-version': '2021-08-06' },
      });
      expect(forged.status).toBe(403);
    },
  );
});
