import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type AuthSpec,
  createHttpClient,
  ManualClock,
  type PreparedRequest,
  signAwsSigV4,
  staticCredentials,
} from '../src/index.js';
import { makeDefinition } from './fixtures/http/definitions.js';
import { json, startServer, type TestServer } from './fixtures/http/server.js';
import { verifySigV4 } from './fixtures/http/sigv4-verify.js';

// AWS SigV4 test suite (aws-sig-v4-test-suite;
// https://docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html):
// example credentials, region us-east-1, service "service", 20150830T123600Z.
const AKID = 'AKIDEXAMPLE';
const SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
const DATE = new Date('2015-08-30T12:36:00Z');
const PREFIX =
  'AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, ' +
  'SignedHeaders=host;x-amz-date, Signature=';

const VECTORS: Array<{ name: string; method: string; target: string; signature: string }> = [
  {
    name: 'get-vanilla',
    method: 'GET',
    target: '/',
    signature: '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
  },
  {
    name: 'get-vanilla-query',
    method: 'GET',
    target: '/',
    signature: '5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31',
  },
  {
    name: 'get-vanilla-empty-query-key',
    method: 'GET',
    target: '/?Param1=value1',
    signature: 'a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb',
  },
  {
    name: 'get-vanilla-query-order-key-case',
    method: 'GET',
    target: '/?Param2=value2&Param1=value1',
    signature: 'b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500',
  },
  {
    name: 'post-vanilla',
    method: 'POST',
    target: '/',
    signature: '5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b',
  },
  {
    name: 'post-vanilla-query',
    method: 'POST',
    target: '/?Param1=value1',
    signature: '28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11',
  },
];

describe('SigV4 against the published test-suite vectors', () => {
  for (const v of VECTORS) {
    it(`${v.name}: signAwsSigV4 reproduces the .authz`, async () => {
      const req: PreparedRequest = {
        method: v.method,
        url: new URL(`https://example.amazonaws.com${v.target}`),
        headers: {},
        body: undefined,
      };
      await signAwsSigV4(req, {
        credentials: { accessKeyId: AKID, secretAccessKey: SECRET },
        region: 'us-east-1',
        service: 'service',
        date: DATE,
      });
      expect(req.headers.authorization).toBe(PREFIX + v.signature);
      expect(req.headers['x-amz-date']).toBe('20150830T123600Z');
      expect(req.headers.host).toBe('example.amazonaws.com');
      expect(req.headers['x-amz-content-sha256']).toBeUndefined();
    });

    it(`${v.name}: the test verifier accepts the published signature`, () => {
      const result = verifySigV4(
        {
          method: v.method,
          target: v.target,
          headers: {
            host: 'example.amazonaws.com',
            'x-amz-date': '20150830T123600Z',
            authorization: PREFIX + v.signature,
          },
          body: Buffer.alloc(0),
        },
        SECRET,
        { s3: false },
      );
      expect(result.reason).toBeUndefined();
      expect(result.ok).toBe(true);
    });
  }

  it('the verifier rejects a tampered request', () => {
    const v = VECTORS[2]!;
    const result = verifySigV4(
      {
        method: v.method,
        target: '/?Param1=value2',
        headers: {
          host: 'example.amazonaws.com',
          'x-amz-date': '20150830T123600Z',
          authorization: PREFIX + v.signature,
        },
        body: Buffer.alloc(0),
      },
      SECRET,
      { s3: false },
    );
    expect(result.ok).toBe(false);
  });
});

describe('SigV4 through the HTTP client (loopback, custom endpoint, path-style)', () => {
  let server: TestServer | undefined;
  afterEach(async () => {
    await server?.close();
    server = undefined;
  });

  const s3Spec: AuthSpec = {
    type: 'aws_sigv4',
    signingService: 's3',
    regionField: 'region',
    accessKeyIdField: 'access_key_id',
    secretAccessKeyField: 'secret_access_key',
    sessionTokenField: 'session_token',
  };
  const creds = {
    region: 'eu-west-3',
    access_key_id: 'AKIDLOCAL',
    secret_access_key: 'local/secret+key',
    session_token: 'sess-tok',
  };

  async function verifyingServer(s3: boolean) {
    return startServer((req, res) => {
      const result = verifySigV4(
        { method: req.method, target: req.url, headers: req.headers, body: req.body },
        creds.secret_access_key,
        { s3 },
      );
      if (result.ok)
        json(res, 200, {
          signedHeaders: result.signedHeaders,
          payloadHash: result.payloadHash,
          bytes: req.body.length,
        });
      else json(res, 403, { reason: result.reason });
    });
  }

  const client = (spec: AuthSpec) =>
    createHttpClient({
      definition: makeDefinition(spec),
      accountId: '9',
      credentials: staticCredentials(creds),
      clock: new ManualClock(Date.parse('2026-03-04T05:06:07Z'), { autoAdvance: true }),
    });

  it('signs a streamed upload as UNSIGNED-PAYLOAD (awkward key, path-style, custom endpoint)', async () => {
    server = await verifyingServer(true);
    const key = "bucket/dir with space/o'k (1)+é.txt";
    const res = await client(s3Spec).put(
      `${server.url}/${key}`,
      Readable.from([Buffer.alloc(100_000, 1), Buffer.alloc(5, 2)]),
      {
        headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': '100005' },
      },
    );
    expect(res.data.payloadHash).toBe('UNSIGNED-PAYLOAD');
    expect(res.data.bytes).toBe(100_005);
    expect(res.data.signedHeaders).toEqual(
      expect.arrayContaining(['host', 'x-amz-date', 'x-amz-content-sha256', 'x-amz-security-token']),
    );
    const seen = server.requests[0]!;
    expect(seen.url).toBe('/bucket/dir%20with%20space/o%27k%20%281%29%2B%C3%A9.txt');
    expect(seen.headers['x-amz-security-token']).toBe('sess-tok');
    expect(String(seen.headers.authorization)).toContain(
      'Credential=AKIDLOCAL/20260304/eu-west-3/s3/aws4_request',
    );
  });

  it('hashes a buffered body and signs the query (repeated keys, no-value keys, plus signs)', async () => {
    server = await verifyingServer(true);
    const body = Buffer.from('hello world');
    const res = await client(s3Spec).post(`${server.url}/bucket/obj?uploads`, body, {
      headers: { 'Content-Type': 'text/plain' },
      idempotent: false,
    });
    expect(res.data.payloadHash).toBe(createHash('sha256').update(body).digest('hex'));
    const list = await client(s3Spec).get(`${server.url}/bucket?list-type=2&prefix=a+b c&x=2&x=1`);
    expect(list.status).toBe(200);
    expect(server.requests[1]!.url).toBe('/bucket?list-type=2&prefix=a%2Bb%20c&x=2&x=1');
  });

  it('double-encodes the path for non-S3 services', async () => {
    server = await verifyingServer(false);
    const spec: AuthSpec = { ...s3Spec, signingService: 'cloudtrail' } as AuthSpec;
    const res = await client(spec).post(
      `${server.url}/some path/x`,
      { LookupAttributes: [] },
      { headers: { 'Content-Type': 'application/x-amz-json-1.1' } },
    );
    expect(res.status).toBe(200);
    expect(res.data.signedHeaders).not.toContain('x-amz-content-sha256');
  });

  it('signs every attempt afresh (a retried GET carries a valid signature each time)', async () => {
    let n = 0;
    server = await startServer((req, res) => {
      const result = verifySigV4(
        { method: req.method, target: req.url, headers: req.headers, body: req.body },
        creds.secret_access_key,
        { s3: true },
      );
      if (!result.ok) return json(res, 403, { reason: result.reason });
      n++;
      json(res, n < 3 ? 503 : 200, {});
    });
    const res = await client(s3Spec).get(`${server.url}/bucket/k`);
    expect(res.status).toBe(200);
    expect(n).toBe(3);
  });
});
