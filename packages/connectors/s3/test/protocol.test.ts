/**
 * What s3rver cannot show, against the signature-verifying fake (./fake-s3.ts): every request's
 * SigV4 signature, wrong credentials, conditional writes, UploadPartCopy above 5 GiB, aborts of
 * failed multipart uploads, spooled parts, retries, Amazon-style listings, bounded memory.
 */
import { readdir } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { CloudmuxError } from '@cloudmux/core';
import { bufferStream, expectCloudmuxError, readAll, sha256 } from '@cloudmux/testkit';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeS3, type FakeS3Options } from './fake-s3.js';
import { type Harness, harness, patternBytes, patternSha256, patternStream } from './helpers.js';
import { verifySigV4 } from './sigv4.js';

const MiB = 1024 * 1024;
const KEY = 'AKIDCLOUDMUXTEST';
const SECRET = 'secret/with+special=chars';
const BUCKET = 'fake-bucket';

let fake: FakeS3;
let h: Harness | undefined;

async function setup(
  options: Partial<FakeS3Options> = {},
  creds: Record<string, unknown> = {},
  extra: Parameters<typeof harness>[1] = {},
) {
  fake = await new FakeS3({ bucket: BUCKET, accessKeyId: KEY, secretAccessKey: SECRET, ...options }).start();
  h = await harness(
    { access_key_id: KEY, secret_access_key: SECRET, bucket: BUCKET, endpoint: fake.endpoint, ...creds },
    extra,
  );
  return h;
}

afterEach(async () => {
  await h?.dispose();
  h = undefined;
  await fake?.close();
});

const root = () => h!.storage.rootRawId;
const upload = (
  name: string,
  data: Buffer | string,
  ifExists: 'fail' | 'replace' = 'fail',
  parent = root(),
) => {
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  return h!.storage.upload(parent, name, bufferStream(buf), { size: buf.length, ifExists });
};
const contents = async (rawId: string) => readAll((await h!.storage.download(rawId)).stream);
const partRequests = () => fake.requests.filter((r) => r.method === 'PUT' && r.query.has('partNumber'));

describe('the SigV4 verifier of the fake', () => {
  it('accepts the GET Object example of the S3 SigV4 reference and rejects a changed request', () => {
    // https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html (GET Object example)
    const headers = {
      host: 'examplebucket.s3.amazonaws.com',
      range: 'bytes=0-9',
      'x-amz-content-sha256': 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
      'x-amz-date': '20130524T000000Z',
      authorization:
        'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,' +
        'SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,' +
        'Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41',
    };
    const keys = {
      accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
      secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    };
    expect(verifySigV4({ method: 'GET', target: '/test.txt', headers }, keys).ok).toBe(true);
    expect(
      verifySigV4({ method: 'GET', target: '/test.txt', headers: { ...headers, range: 'bytes=0-10' } }, keys)
        .ok,
    ).toBe(false);
    expect(verifySigV4({ method: 'GET', target: '/test2.txt', headers }, keys).ok).toBe(false);
    expect(
      verifySigV4({ method: 'GET', target: '/test.txt', headers }, { ...keys, secretAccessKey: 'x' }).ok,
    ).toBe(false);
  });
});

describe('signatures on the wire', () => {
  it('every request of a full workload is signed correctly, with odd names and streamed bodies', async () => {
    await setup({}, {}, { limits: { partSize: 5 * MiB, singlePutMax: 5 * MiB } });
    const s = h!.storage;
    const dir = await s.createFolder(root(), 'docs & notes+1 (é)');
    const odd = "a+b & c%d=é ü ~!*'().txt";
    const small = await upload(odd, 'small body', 'fail', dir.rawId);
    expect(small.name).toBe(odd);
    // Unknown size, 12 MiB: multipart with Buffer parts (payload hash signed).
    const big = await s.upload(dir.rawId, 'big.bin', patternStream(12 * MiB), {
      size: null,
      ifExists: 'fail',
    });
    expect(big.size).toBe(12 * MiB);
    const page = await s.list(dir.rawId, { pageSize: 10 });
    expect(page.items.map((i) => i.name).sort()).toEqual([odd, 'big.bin'].sort());
    expect((await s.lookup(dir.rawId, odd))?.rawId).toBe(small.rawId);
    const part = await s.download(big.rawId, { range: { start: 5 * MiB - 3, end: 5 * MiB + 2 } });
    expect(
      (await readAll(part.stream)).equals(patternBytes(12 * MiB).subarray(5 * MiB - 3, 5 * MiB + 3)),
    ).toBe(true);
    const copy = await s.copy!(small.rawId, 'file', { parentRawId: root(), name: 'copy of +.txt' });
    expect((await contents(copy.rawId)).toString()).toBe('small body');
    const moved = await s.move(dir.rawId, 'folder', { name: 'moved %2F dir' });
    expect((await s.list(moved.rawId, { pageSize: 10 })).items).toHaveLength(2);
    expect((await s.search!('+b &', { pageSize: 10 })).items.map((i) => i.name)).toEqual([odd]);
    await s.delete(moved.rawId, 'folder', { recursive: true, permanent: true });
    await s.delete(copy.rawId, 'file', { recursive: false, permanent: true });

    const methods = new Set(fake.requests.map((r) => r.method));
    expect([...methods].sort()).toEqual(['DELETE', 'GET', 'HEAD', 'POST', 'PUT']);
    const refused = fake.requests.filter((r) => r.auth !== 'ok');
    expect(refused, JSON.stringify(refused.map((r) => `${r.method} ${r.path} ${r.auth}`))).toEqual([]);
    // The small known-size upload streamed (UNSIGNED-PAYLOAD); parts and XML bodies carry their hash.
    const puts = fake.requests.filter((r) => r.method === 'PUT' && r.bytes > 0);
    expect(puts.some((r) => r.headers['x-amz-content-sha256'] === 'UNSIGNED-PAYLOAD')).toBe(true);
    expect(
      partRequests().every((r) => /^[0-9a-f]{64}$/.test(String(r.headers['x-amz-content-sha256']))),
    ).toBe(true);
    // The copy source names the source key, strictly encoded.
    const copyReq = fake.requests.find(
      (r) => r.method === 'PUT' && r.headers['x-amz-copy-source'] !== undefined,
    );
    expect(decodeURIComponent(String(copyReq!.headers['x-amz-copy-source']))).toBe(
      `/${BUCKET}/docs & notes+1 (é)/${odd}`,
    );
    expect(fake.objects.size).toBe(0);
  });

  it('a wrong secret is service_unauthorized (a HEAD, without error body, service_forbidden)', async () => {
    await setup();
    fake.put('x.txt', 'x');
    await h!.dispose();
    h = await harness({
      access_key_id: KEY,
      secret_access_key: 'wrong',
      bucket: BUCKET,
      endpoint: fake.endpoint,
    });
    const err = await expectCloudmuxError(h.storage.validate(), 'service_unauthorized');
    expect(err.upstream?.code).toBe('SignatureDoesNotMatch');
    await expectCloudmuxError(h.storage.list(root(), { pageSize: 5 }), 'service_unauthorized');
    await expectCloudmuxError(h.storage.get(`${BUCKET}/x.txt`, 'file'), 'service_forbidden');
    await expectCloudmuxError(upload('y.txt', 'y'), 'service_unauthorized');
    expect(fake.objects.has('y.txt')).toBe(false);
  });

  it('an unknown access key is service_unauthorized', async () => {
    await setup({}, { access_key_id: 'AKIDNOBODY' });
    const err = await expectCloudmuxError(h!.storage.validate(), 'service_unauthorized');
    expect(err.upstream?.code).toBe('InvalidAccessKeyId');
  });

  it('temporary credentials send and sign the session token', async () => {
    await setup({ sessionToken: 'session-token-123' }, { session_token: 'session-token-123' });
    await upload('t.txt', 't');
    expect(fake.requests.every((r) => r.auth === 'ok')).toBe(true);
    expect(fake.requests.every((r) => r.headers['x-amz-security-token'] === 'session-token-123')).toBe(true);
    await h!.dispose();
    h = await harness({
      access_key_id: KEY,
      secret_access_key: SECRET,
      bucket: BUCKET,
      endpoint: fake.endpoint,
    });
    await expectCloudmuxError(h.storage.validate(), 'service_unauthorized');
  });

  it('a wrong region is invalid_parameters naming the bucket region', async () => {
    await setup({ region: 'eu-central-1' }, { region: 'us-west-2' });
    const err = await expectCloudmuxError(h!.storage.validate(), 'invalid_parameters');
    expect(err.message).toContain('eu-central-1');
  });
});

describe('conditional writes (If-None-Match: *)', () => {
  it('unknown support: buffered writes carry the header, a streamed PUT relies on HEAD', async () => {
    await setup({ conditionalWrites: 'supported' });
    expect(h!.client.conditionalWrites).toBe('unknown');
    await h!.storage.createFolder(root(), 'f');
    const marker = fake.requests.find((r) => r.method === 'PUT' && r.key === 'f/');
    expect(marker?.headers['if-none-match']).toBe('*');
    await upload('streamed.txt', 'abc');
    const put = fake.requests.find((r) => r.method === 'PUT' && r.key === 'streamed.txt');
    expect(put?.headers['if-none-match']).toBeUndefined();
    const err = await expectCloudmuxError(upload('streamed.txt', 'again'), 'naming_conflict');
    expect(err.conflictingRawId).toBe(`${BUCKET}/streamed.txt`);
    expect(fake.objects.get('streamed.txt')!.data!.toString()).toBe('abc');
  });

  it('a 501 to the header is remembered and the write is sent again without it', async () => {
    await setup({ conditionalWrites: 'not_implemented' });
    const folder = await h!.storage.createFolder(root(), 'old-endpoint');
    expect(folder.type).toBe('folder');
    const markerPuts = fake.requests.filter((r) => r.method === 'PUT' && r.key === 'old-endpoint/');
    expect(markerPuts.map((r) => r.headers['if-none-match'] ?? null)).toEqual(['*', null]);
    expect(h!.client.conditionalWrites).toBe('no');
    await h!.storage.createFolder(root(), 'second');
    expect(fake.requests.filter((r) => r.method === 'PUT' && r.key === 'second/')).toHaveLength(1);
  });

  it('a streamed PUT that loses a race (412) is a naming_conflict and does not overwrite', async () => {
    await setup({ conditionalWrites: 'supported' });
    h!.client.conditionalWrites = 'yes'; // as for Amazon S3
    fake.faults.push((req, s) => {
      if (req.method === 'PUT' && req.key === 'race.txt' && !s.objects.has('race.txt'))
        s.put('race.txt', 'the other writer');
      return null;
    });
    const err = await expectCloudmuxError(upload('race.txt', 'mine'), 'naming_conflict');
    expect(err.conflictingRawId).toBe(`${BUCKET}/race.txt`);
    expect(fake.objects.get('race.txt')!.data!.toString()).toBe('the other writer');
  });

  it('a multipart upload that loses a race at completion is a naming_conflict and is aborted', async () => {
    await setup(
      { conditionalWrites: 'supported' },
      {},
      { limits: { partSize: 5 * MiB, singlePutMax: 5 * MiB } },
    );
    fake.faults.push((req, s) => {
      if (req.method === 'POST' && req.query.has('uploadId') && !s.objects.has('mp.bin'))
        s.put('mp.bin', 'other');
      return null;
    });
    await expectCloudmuxError(
      h!.storage.upload(root(), 'mp.bin', patternStream(11 * MiB), { size: 11 * MiB, ifExists: 'fail' }),
      'naming_conflict',
    );
    expect(fake.objects.get('mp.bin')!.data!.toString()).toBe('other');
    expect(fake.aborted).toHaveLength(1);
    expect(fake.uploads.size).toBe(0);
  });
});

describe('multipart uploads and copies', () => {
  it('copies an object above 5 GiB with UploadPartCopy, keeping its type and metadata', async () => {
    await setup();
    const size = 6 * 1024 * MiB + 12_345;
    fake.putVirtual('videos/huge.mp4', size, 'video/mp4', { origin: 'camera-1' });
    const copied = await h!.storage.copy!(`${BUCKET}/videos/huge.mp4`, 'file', {
      parentRawId: root(),
      name: 'huge copy.mp4',
    });
    expect(copied).toMatchObject({ name: 'huge copy.mp4', size, mimeType: 'video/mp4' });
    const partCopies = fake.requests.filter(
      (r) => r.method === 'PUT' && r.headers['x-amz-copy-source-range'] !== undefined,
    );
    const ranges = partCopies
      .map((r) => ({
        n: Number(r.query.get('partNumber')),
        range: /bytes=(\d+)-(\d+)/.exec(String(r.headers['x-amz-copy-source-range']))!,
      }))
      .sort((a, b) => a.n - b.n)
      .map((p) => [Number(p.range[1]), Number(p.range[2])] as const);
    expect(ranges[0]![0]).toBe(0);
    expect(ranges.at(-1)![1]).toBe(size - 1);
    for (let i = 1; i < ranges.length; i++) expect(ranges[i]![0]).toBe(ranges[i - 1]![1] + 1);
    for (const [a, b] of ranges) expect(b - a + 1).toBeLessThanOrEqual(5 * 1024 * MiB);
    expect(
      fake.requests.some(
        (r) =>
          r.method === 'PUT' && r.headers['x-amz-copy-source'] !== undefined && !r.query.has('partNumber'),
      ),
    ).toBe(false);
    const target = fake.objects.get('huge copy.mp4')!;
    expect(target.metadata).toEqual({ origin: 'camera-1' });
    // A move of it is the same copy plus a delete of the source.
    const moved = await h!.storage.move(copied.rawId, 'file', { name: 'moved.mp4' });
    expect(moved.size).toBe(size);
    expect(fake.objects.has('huge copy.mp4')).toBe(false);
  });

  it('a part that keeps failing aborts the upload: nothing under the key, no upload left', async () => {
    await setup({}, {}, { limits: { partSize: 5 * MiB, singlePutMax: 5 * MiB } });
    fake.faults.push((req) =>
      req.method === 'PUT' && req.query.get('partNumber') === '2'
        ? { status: 500, body: '<Error><Code>InternalError</Code></Error>' }
        : null,
    );
    await expectCloudmuxError(
      h!.storage.upload(root(), 'doomed.bin', patternStream(12 * MiB), { size: 12 * MiB, ifExists: 'fail' }),
      'bad_gateway',
    );
    // Buffered parts are replayable: core tried part 2 three times.
    expect(partRequests().filter((r) => r.query.get('partNumber') === '2')).toHaveLength(3);
    expect(fake.aborted).toHaveLength(1);
    expect(fake.uploads.size).toBe(0);
    expect(fake.objects.has('doomed.bin')).toBe(false);
  });

  it('large parts are spooled to scratch, replayed from the file on a retry, then removed', async () => {
    await setup({}, {}, { limits: { partSize: 5 * MiB, singlePutMax: 5 * MiB, memoryPartMax: 1 * MiB } });
    let failed = false;
    fake.faults.push((req) => {
      if (!failed && req.method === 'PUT' && req.query.get('partNumber') === '2') {
        failed = true;
        return { status: 503, body: '<Error><Code>SlowDown</Code></Error>' };
      }
      return null;
    });
    const size = 13 * MiB + 7;
    const file = await h!.storage.upload(root(), 'spooled.bin', patternStream(size), {
      size,
      ifExists: 'fail',
    });
    expect(file.size).toBe(size);
    expect(fake.objects.get('spooled.bin')!.sha256).toBe(patternSha256(size));
    const part2 = partRequests().filter((r) => r.query.get('partNumber') === '2');
    expect(part2).toHaveLength(2);
    expect(
      part2.every((r) => r.headers['x-amz-content-sha256'] === 'UNSIGNED-PAYLOAD' && r.bytes === 5 * MiB),
    ).toBe(true);
    expect(await readdir(h!.scratch.path)).toEqual([]);
  });

  it('a small body of unknown size is one PutObject with a signed payload', async () => {
    await setup();
    const file = await h!.storage.upload(
      root(),
      'unknown.txt',
      Readable.from([Buffer.from('abc'), Buffer.from('def')]),
      {
        size: null,
        ifExists: 'fail',
      },
    );
    expect(file.size).toBe(6);
    const puts = fake.requests.filter((r) => r.method === 'PUT');
    expect(puts).toHaveLength(1);
    expect(puts[0]!.headers['x-amz-content-sha256']).toBe(sha256('abcdef'));
  });

  it('a body shorter or longer than its declared size fails and leaves nothing', async () => {
    await setup({}, {}, { limits: { partSize: 5 * MiB, singlePutMax: 5 * MiB } });
    await expectCloudmuxError(
      h!.storage.upload(root(), 'short.bin', patternStream(11 * MiB), { size: 12 * MiB, ifExists: 'fail' }),
      'bad_request',
    );
    await expectCloudmuxError(
      h!.storage.upload(root(), 'long.bin', patternStream(12 * MiB + 1), {
        size: 12 * MiB,
        ifExists: 'fail',
      }),
      'bad_request',
    );
    await expectCloudmuxError(
      h!.storage.upload(root(), 'tiny.bin', bufferStream('12345'), { size: 10, ifExists: 'fail' }),
      'bad_request',
    );
    await expectCloudmuxError(
      h!.storage.upload(root(), 'tiny2.bin', bufferStream('12345'), { size: 3, ifExists: 'fail' }),
      'bad_request',
    );
    expect([...fake.objects.keys()]).toEqual([]);
    expect(fake.aborted).toHaveLength(2);
    expect(fake.uploads.size).toBe(0);
  });

  it('native multipart: parts, completion, EntityTooSmall, abort', async () => {
    await setup();
    const mp = h!.storage.multipart;
    const a = patternBytes(5 * MiB);
    const b = Buffer.from('tail');
    let { sessionState } = await mp.begin(root(), 'native.bin', {
      size: a.length + b.length,
      ifExists: 'fail',
    });
    ({ sessionState } = await mp.uploadPart(sessionState, 2, bufferStream(b), b.length));
    ({ sessionState } = await mp.uploadPart(sessionState, 1, bufferStream(a), a.length));
    const file = await mp.complete(sessionState);
    expect(file.size).toBe(a.length + b.length);
    expect(fake.objects.get('native.bin')!.sha256).toBe(sha256(Buffer.concat([a, b])));

    let small = (await mp.begin(root(), 'small-parts.bin', { ifExists: 'fail' })).sessionState;
    small = (await mp.uploadPart(small, 1, bufferStream('x'), 1)).sessionState;
    small = (await mp.uploadPart(small, 2, bufferStream('y'), 1)).sessionState;
    const err = await expectCloudmuxError(mp.complete(small), 'bad_request');
    expect(err.upstream?.code).toBe('EntityTooSmall');
    await mp.abort(small);
    expect(fake.uploads.size).toBe(0);
    // Aborting again (the upload is gone) is not an error.
    await mp.abort(small);
    await expectCloudmuxError(mp.uploadPart(small, 10_001, bufferStream('z'), 1), 'invalid_parameters');
    await expectCloudmuxError(mp.uploadPart(small, 3, bufferStream('zz'), 1), 'bad_request');
  });
});

describe('listings as Amazon S3 answers them', () => {
  beforeEach(async () => {
    await setup();
    fake.put('dir/', '');
    for (const k of [
      'dir/a b+c%.txt',
      'dir/sub/x.txt',
      'dir/sub2/y.txt',
      'dir/z.txt',
      'dir/implicit/deep/q.txt',
      'dir//empty-segment',
      'dir/back\\slash',
    ]) {
      fake.put(k, k);
    }
  });

  it('pages by token with prefixes counted, decodes url-encoded keys, hides unnameable keys', async () => {
    const seen: string[] = [];
    let cursor: string | undefined;
    let tokens = 0;
    for (let i = 0; i < 20; i++) {
      const page = await h!.storage.list(`${BUCKET}/dir/`, { pageSize: 2, ...(cursor ? { cursor } : {}) });
      expect(page.items.length).toBeLessThanOrEqual(2);
      seen.push(...page.items.map((x) => `${x.type}:${x.name}`));
      if (!page.cursor) break;
      const decoded = JSON.parse(Buffer.from(page.cursor, 'base64url').toString()) as { t?: string };
      if (decoded.t) tokens += 1;
      cursor = page.cursor;
    }
    expect(seen.sort()).toEqual(
      ['file:a b+c%.txt', 'file:z.txt', 'folder:implicit', 'folder:sub', 'folder:sub2'].sort(),
    );
    expect(tokens).toBeGreaterThan(0);
    const listing = fake.requests.filter((r) => r.query.get('list-type') === '2');
    expect(
      listing.every((r) => r.query.get('encoding-type') === 'url' && r.query.get('delimiter') === '/'),
    ).toBe(true);
  });

  it('implicit folders read as folders; search reports each folder once', async () => {
    const implicit = await h!.storage.get(`${BUCKET}/dir/implicit/`, 'folder');
    expect(implicit).toMatchObject({
      type: 'folder',
      name: 'implicit',
      modified: null,
      parentRawId: `${BUCKET}/dir/`,
    });
    fake.put('dir/sub/sub-note.txt', 'n');
    const found = await h!.storage.search!('sub', { pageSize: 1 });
    const all = [...found.items];
    let cursor = found.cursor;
    while (cursor) {
      const next = await h!.storage.search!('sub', { pageSize: 1, cursor });
      all.push(...next.items);
      cursor = next.cursor;
    }
    expect(all.map((i) => `${i.type}:${i.path}`).sort()).toEqual([
      'file:/dir/sub/sub-note.txt',
      'folder:/dir/sub',
      'folder:/dir/sub2',
    ]);
  });
});

describe('retries', () => {
  it('a 503 SlowDown on a GET is retried', async () => {
    await setup();
    fake.put('f.txt', 'retried');
    let left = 2;
    fake.faults.push((req) =>
      req.method === 'GET' && req.key === 'f.txt' && left-- > 0
        ? {
            status: 503,
            body: '<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>',
          }
        : null,
    );
    expect((await contents(`${BUCKET}/f.txt`)).toString()).toBe('retried');
    expect(fake.requests.filter((r) => r.method === 'GET' && r.key === 'f.txt')).toHaveLength(3);
    expect(h!.clock.sleeps.length).toBe(2);
  });

  it('a 503 or 429 on a PUT with a stream body is not replayed', async () => {
    await setup();
    fake.faults.push((req) =>
      req.method === 'PUT' && req.key === 'busy.txt'
        ? { status: 503, body: '<Error><Code>SlowDown</Code></Error>' }
        : null,
    );
    await expectCloudmuxError(upload('busy.txt', 'streamed'), 'service_not_available');
    expect(fake.requests.filter((r) => r.method === 'PUT' && r.key === 'busy.txt')).toHaveLength(1);
    fake.faults.length = 0;
    fake.faults.push((req) =>
      req.method === 'PUT' && req.key === 'limited.txt'
        ? { status: 429, body: '<Error><Code>SlowDown</Code></Error>', headers: { 'retry-after': '7' } }
        : null,
    );
    const err = await expectCloudmuxError(upload('limited.txt', 'streamed'), 'too_many_service_requests');
    expect(err.retryAfter).toBe(7);
    expect(fake.requests.filter((r) => r.method === 'PUT' && r.key === 'limited.txt')).toHaveLength(1);
  });

  it('a dropped connection during a streamed PUT is service_not_available and stores nothing', async () => {
    await setup();
    fake.faults.push((req) =>
      req.method === 'PUT' && req.key === 'cut.txt' ? { status: 0, destroy: true } : null,
    );
    const err = await expectCloudmuxError(
      upload('cut.txt', 'x'.repeat(1000)),
      'service_not_available',
      'bad_gateway',
    );
    expect(err).toBeInstanceOf(CloudmuxError);
    expect(fake.objects.has('cut.txt')).toBe(false);
  });
});

describe('memory', () => {
  it('a 256 MiB upload of unknown size holds a bounded number of parts', { timeout: 120_000 }, async () => {
    await setup({ sink: true });
    // Live Buffers are measured after a collection (vitest.config.ts passes --expose-gc), so
    // garbage chunks awaiting GC (the fake server's in the same process too) do not count.
    const gc = (globalThis as { gc?: () => void }).gc;
    expect(gc, 'run with --expose-gc').toBeTypeOf('function');
    gc!();
    const base = process.memoryUsage();
    let peakRss = 0;
    let peakBuffers = 0;
    const timer = setInterval(() => {
      gc!();
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss - base.rss);
      peakBuffers = Math.max(peakBuffers, m.arrayBuffers - base.arrayBuffers);
    }, 20);
    const size = 256 * MiB;
    try {
      await h!.storage.upload(root(), 'big.bin', patternStream(size), { size: null, ifExists: 'replace' });
    } finally {
      clearInterval(timer);
    }
    expect(fake.objects.get('big.bin')?.sha256).toBe(patternSha256(size));
    console.log(
      `256 MiB unknown-size upload: peak RSS +${(peakRss / MiB).toFixed(1)} MiB, ` +
        `Buffers +${(peakBuffers / MiB).toFixed(1)} MiB`,
    );
    // A few parts at most (the 16 MiB probe sent as part 1, one 8 MiB part uploading, the next being
    // read, one more not yet released by the HTTP stack) — never a growing share of the 256 MiB.
    expect(peakBuffers).toBeLessThan(64 * MiB);
    expect(peakRss).toBeLessThan(128 * MiB);
  });
});
