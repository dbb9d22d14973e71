/**
 * nock fixtures shaped like the S3 API reference, for Amazon S3 itself (virtual-hosted and
 * path-style addressing) and for documented responses s3rver never gives: url-encoded listings,
 * 200 responses carrying an `<Error>`, PermanentRedirect, AccessDenied, per-key DeleteObjects
 * errors. nock buffers bodies, so no streaming or memory test lives in this file.
 */

import { expectCloudmuxError } from '@cloudmux/testkit';
import nock from 'nock';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, harness } from './helpers.js';

const creds = (extra: Record<string, unknown> = {}) => ({
  access_key_id: 'AKIAIOSFODNN7EXAMPLE',
  secret_access_key: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  region: 'eu-west-1',
  bucket: 'cloudmux-docs',
  ...extra,
});
const HOST = 'https://cloudmux-docs.s3.eu-west-1.amazonaws.com';

let h: Harness | undefined;

beforeAll(() => {
  nock.disableNetConnect();
});
afterEach(async () => {
  await h?.dispose();
  h = undefined;
  nock.cleanAll();
});
afterAll(() => {
  nock.enableNetConnect();
});

describe('Amazon S3 addressing', () => {
  it('lists with ListObjectsV2 on the virtual-hosted endpoint, decoding encoding-type=url keys', async () => {
    h = await harness(creds());
    // Shape: https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListObjectsV2.html (response syntax)
    const scope = nock(HOST, {
      reqheaders: {
        'x-amz-content-sha256': /^[0-9a-f]{64}$/,
        authorization:
          /^AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE\/\d{8}\/eu-west-1\/s3\/aws4_request/,
      },
    })
      .get('/')
      .query({ 'list-type': '2', delimiter: '/', 'encoding-type': 'url', 'max-keys': '2' })
      .reply(
        200,
        `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>cloudmux-docs</Name><Prefix></Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <Delimiter>%2F</Delimiter><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents>
    <Key>annual+report+2026%2B.pdf</Key><LastModified>2026-11-30T17:50:30.000Z</LastModified>
    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag><Size>434234</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <CommonPrefixes><Prefix>caf%C3%A9+photos/</Prefix></CommonPrefixes>
</ListBucketResult>`,
        { 'content-type': 'application/xml' },
      )
      .get('/')
      .query({
        'list-type': '2',
        'continuation-token': '1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=',
        delimiter: '/',
        'encoding-type': 'url',
        'max-keys': '2',
      })
      .reply(
        200,
        `<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>cloudmux-docs</Name><Prefix></Prefix><KeyCount>0</KeyCount><MaxKeys>2</MaxKeys>
  <EncodingType>url</EncodingType><IsTruncated>false</IsTruncated>
</ListBucketResult>`,
      );
    const first = await h.storage.list(h.storage.rootRawId, { pageSize: 2 });
    expect(first.items.map((i) => [i.type, i.name, i.rawId])).toEqual([
      ['file', 'annual report 2026+.pdf', 'cloudmux-docs/annual report 2026+.pdf'],
      ['folder', 'café photos', 'cloudmux-docs/café photos/'],
    ]);
    expect(first.items[0]).toMatchObject({
      size: 434234,
      mimeType: 'application/pdf',
      modified: new Date('2026-11-30T17:50:30.000Z'),
    });
    expect(JSON.parse(Buffer.from(first.cursor!, 'base64url').toString())).toEqual({
      t: '1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=',
    });
    const second = await h.storage.list(h.storage.rootRawId, { pageSize: 2, cursor: first.cursor! });
    expect(second).toEqual({ items: [], cursor: null });
    expect(scope.isDone()).toBe(true);
  });

  it('a dotted bucket over HTTPS is addressed path style (no wildcard certificate covers it)', async () => {
    h = await harness(creds({ bucket: 'my.dotted.bucket', region: 'us-east-1' }));
    const scope = nock('https://s3.us-east-1.amazonaws.com')
      .head('/my.dotted.bucket/a%20b.txt')
      .reply(200, '', {
        'content-length': '3',
        'last-modified': 'Mon, 30 Nov 2026 17:50:30 GMT',
        'content-type': 'text/plain',
        etag: '"x"',
      });
    const item = await h.storage.get('my.dotted.bucket/a b.txt', 'file');
    expect(item).toMatchObject({
      name: 'a b.txt',
      size: 3,
      mimeType: 'text/plain',
      parentRawId: 'my.dotted.bucket/',
    });
    expect(scope.isDone()).toBe(true);
  });
});

describe('documented error shapes', () => {
  it('CopyObject answering 200 with an <Error> body is a failure, not a copy', async () => {
    h = await harness(creds());
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CopyObject.html
    // ("A 200 OK response can contain either a success or an error.")
    const scope = nock(HOST, {
      reqheaders: { 'x-amz-copy-source': '/cloudmux-docs/src/a%20b.txt', 'x-amz-metadata-directive': 'COPY' },
    })
      .put('/dst/c.txt')
      .reply(
        200,
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>' +
          '<Message>We encountered an internal error. Please try again.</Message></Error>',
      );
    const err = await expectCloudmuxError(h.client.copyObject('src/a b.txt', 'dst/c.txt'), 'bad_gateway');
    expect(err.upstream?.code).toBe('InternalError');
    expect(scope.isDone()).toBe(true);
  });

  it('UploadPartCopy sends the source and byte range and reads the CopyPartResult ETag', async () => {
    h = await harness(creds());
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_UploadPartCopy.html (response syntax)
    const scope = nock(HOST, {
      reqheaders: {
        'x-amz-copy-source': '/cloudmux-docs/big.iso',
        'x-amz-copy-source-range': 'bytes=0-536870911',
      },
    })
      .put('/copy.iso')
      .query({ partNumber: '1', uploadId: 'VXBsb2FkIElE' })
      .reply(
        200,
        '<CopyPartResult><LastModified>2026-11-30T17:50:30.000Z</LastModified>' +
          '<ETag>"b0c6f0e7e054ab8fa2536a2677f8734d"</ETag></CopyPartResult>',
      );
    const etag = await h.client.uploadPartCopy('copy.iso', 'VXBsb2FkIElE', 1, 'big.iso', {
      start: 0,
      end: 512 * 1024 * 1024 - 1,
    });
    expect(etag).toBe('"b0c6f0e7e054ab8fa2536a2677f8734d"');
    expect(scope.isDone()).toBe(true);
  });

  it('CompleteMultipartUpload answering 200 with an <Error> body fails', async () => {
    h = await harness(creds());
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html
    // (the error may come after the 200)
    const scope = nock(HOST)
      .post('/big.bin', (body: string) =>
        body.includes('<Part><PartNumber>1</PartNumber><ETag>&quot;e1&quot;</ETag></Part>'),
      )
      .query({ uploadId: 'abc' })
      .reply(200, '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>');
    await expectCloudmuxError(
      h.client.completeMultipartUpload('big.bin', 'abc', [{ partNumber: 1, etag: '"e1"' }]),
      'service_not_available',
    );
    expect(scope.isDone()).toBe(true);
  });

  it('PermanentRedirect (wrong region): invalid_parameters; AccessDenied: service_forbidden', async () => {
    h = await harness(creds({ region: 'us-east-1' }));
    // https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html (PermanentRedirect, AccessDenied)
    nock('https://cloudmux-docs.s3.us-east-1.amazonaws.com')
      .get('/')
      .query(true)
      .reply(
        301,
        '<Error><Code>PermanentRedirect</Code><Message>The bucket you are attempting to access must be ' +
          'addressed using the specified endpoint. Please send all future requests to this ' +
          'endpoint.</Message><Endpoint>cloudmux-docs.s3.eu-west-1.amazonaws.com</Endpoint>' +
          '<Bucket>cloudmux-docs</Bucket></Error>',
        { 'x-amz-bucket-region': 'eu-west-1' },
      )
      .get('/')
      .query(true)
      .reply(403, '<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>');
    const redirect = await expectCloudmuxError(h.storage.validate(), 'invalid_parameters');
    expect(redirect.message).toMatch(/region/);
    const denied = await expectCloudmuxError(
      h.storage.list(h.storage.rootRawId, { pageSize: 5 }),
      'service_forbidden',
    );
    expect(denied.upstream?.code).toBe('AccessDenied');
  });

  it('DeleteObjects reporting a per-key <Error> fails the delete', async () => {
    h = await harness(creds());
    // https://docs.aws.amazon.com/AmazonS3/latest/API/API_DeleteObjects.html (response syntax, Error element)
    const scope = nock(HOST, { reqheaders: { 'content-md5': /^[A-Za-z0-9+/]{22}==$/ } })
      .post(
        '/',
        (body: string) => body.includes('<Quiet>true</Quiet>') && body.includes('<Key>a&amp;b</Key>'),
      )
      .query({ delete: '' })
      .reply(
        200,
        '<DeleteResult><Error><Key>a&amp;b</Key><Code>AccessDenied</Code>' +
          '<Message>Access Denied</Message></Error></DeleteResult>',
      );
    await expectCloudmuxError(h.client.deleteObjects(['a&b', 'c']), 'service_forbidden');
    expect(scope.isDone()).toBe(true);
  });
});
