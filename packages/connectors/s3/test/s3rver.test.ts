/**
 * Against the real s3rver child process: failures (server killed mid-upload and mid-download, server
 * down, unknown key, missing bucket), and what the connector wrote or reads checked with an
 * independent client (@aws-sdk/client-s3): folder markers, implicit folders, hidden keys, moves.
 */
import { Transform } from 'node:stream';
import {
  S3Client as AwsS3,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { bufferStream, expectCloudmuxError, readAll, sha256 } from '@cloudmux/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Harness, harness, patternSha256, patternStream } from './helpers.js';
import { S3RVER_KEY, S3RVER_SECRET, type S3rver, s3rverMissing, startS3rver } from './server.js';

const MiB = 1024 * 1024;
const missing = s3rverMissing();
if (missing && process.env.CI) throw new Error(`s3rver is required under CI: ${missing}`);

describe.skipIf(missing !== null)(`s3rver${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let server: S3rver;
  let h: Harness;
  let aws: AwsS3;

  beforeAll(async () => {
    server = await startS3rver();
    h = await harness(server.credentials());
    // Checksums only when required: the SDK's default aws-chunked stream bodies are stored framed by s3rver.
    aws = new AwsS3({
      endpoint: server.endpoint,
      region: 'us-east-1',
      forcePathStyle: true,
      credentials: { accessKeyId: S3RVER_KEY, secretAccessKey: S3RVER_SECRET },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
  });

  afterAll(async () => {
    aws?.destroy();
    await h?.dispose();
    await server?.teardown();
  });

  const root = () => h.storage.rootRawId;
  const bucket = () => server.bucket;
  const awsKeys = async (prefix: string) =>
    ((await aws.send(new ListObjectsV2Command({ Bucket: bucket(), Prefix: prefix }))).Contents ?? [])
      .map((c) => c.Key!)
      .sort();
  const awsExists = async (key: string) =>
    aws.send(new HeadObjectCommand({ Bucket: bucket(), Key: key })).then(
      () => true,
      (err: { name?: string }) => {
        if (err.name === 'NotFound' || err.name === 'NoSuchKey') return false;
        throw err;
      },
    );

  it('an independent client reads what the connector wrote: bytes, type, folder markers', async () => {
    const file = await h.storage.upload(root(), 'report.csv', bufferStream('a,b\n1,2\n'), {
      size: 8,
      ifExists: 'fail',
      mimeType: 'text/csv',
    });
    const got = await aws.send(new GetObjectCommand({ Bucket: bucket(), Key: 'report.csv' }));
    expect(Buffer.from(await got.Body!.transformToByteArray()).toString()).toBe('a,b\n1,2\n');
    expect(got.ContentType).toBe('text/csv');
    expect(file.rawId).toBe(`${bucket()}/report.csv`);
    const folder = await h.storage.createFolder(root(), 'photos');
    expect(folder.rawId).toBe(`${bucket()}/photos/`);
    const marker = await aws.send(new HeadObjectCommand({ Bucket: bucket(), Key: 'photos/' }));
    expect(marker.ContentLength).toBe(0);
    expect(marker.ContentType).toBe('application/x-directory');
  });

  it('a body of unknown size above 16 MiB goes up as a multipart upload and reads back equal', async () => {
    const size = 21 * MiB + 5;
    const file = await h.storage.upload(root(), 'unknown-size.bin', patternStream(size), {
      size: null,
      ifExists: 'fail',
    });
    expect(file.size).toBe(size);
    const got = await aws.send(new GetObjectCommand({ Bucket: bucket(), Key: 'unknown-size.bin' }));
    expect(sha256(Buffer.from(await got.Body!.transformToByteArray()))).toBe(patternSha256(size));
    const updated = await h.storage.updateContents(file.rawId, bufferStream('now small'), {});
    expect(updated.size).toBe(9);
    expect((await readAll((await h.storage.download(file.rawId)).stream)).toString()).toBe('now small');
  });

  it('keys of other clients: implicit folders list, read, move, delete; unnameable keys hidden', async () => {
    for (const key of ['sdk/a/b/c.txt', 'sdk/a/d.txt', 'sdk/top.txt', 'sdk/bad\\name.txt']) {
      await aws.send(new PutObjectCommand({ Bucket: bucket(), Key: key, Body: Buffer.from(key) }));
    }
    const rootNames = (await h.storage.list(root(), { pageSize: 100 })).items.map(
      (i) => `${i.type}:${i.name}`,
    );
    expect(rootNames).toContain('folder:sdk');
    const sdk = await h.storage.lookup(root(), 'sdk');
    expect(sdk).toMatchObject({ type: 'folder', rawId: `${bucket()}/sdk/`, modified: null });
    const inside = (await h.storage.list(sdk!.rawId, { pageSize: 100 })).items.map(
      (i) => `${i.type}:${i.name}`,
    );
    expect(inside.sort()).toEqual(['file:top.txt', 'folder:a']);
    const moved = await h.storage.move(`${bucket()}/sdk/a/`, 'folder', { name: 'a2' });
    expect(moved.rawId).toBe(`${bucket()}/sdk/a2/`);
    expect(await awsKeys('sdk/')).toEqual([
      'sdk/a2/b/c.txt',
      'sdk/a2/d.txt',
      'sdk/bad\\name.txt',
      'sdk/top.txt',
    ]);
    await expectCloudmuxError(
      h.storage.delete(sdk!.rawId, 'folder', { recursive: false, permanent: true }),
      'folder_not_empty',
    );
    await h.storage.delete(sdk!.rawId, 'folder', { recursive: true, permanent: true });
    // Recursive deletes remove every key under the prefix, including ones no item name can carry.
    expect(await awsKeys('sdk/')).toEqual([]);
    await expectCloudmuxError(h.storage.get(sdk!.rawId, 'folder'), 'not_found');
  });

  it('one-item pages over folders and files neither repeat nor skip (s3rver max-keys)', async () => {
    const dir = await h.storage.createFolder(root(), 'one-by-one');
    const expected: string[] = [];
    for (const name of ['a', 'b.txt', 'c', 'd.txt', 'e', 'f.txt']) {
      if (name.includes('.'))
        await h.storage.upload(dir.rawId, name, bufferStream(name), { size: name.length, ifExists: 'fail' });
      else {
        const sub = await h.storage.createFolder(dir.rawId, name);
        await h.storage.upload(sub.rawId, 'inner.txt', bufferStream('i'), { size: 1, ifExists: 'fail' });
      }
      expected.push(name);
    }
    const seen: string[] = [];
    let cursor: string | undefined;
    for (let i = 0; i < 30; i++) {
      const page = await h.storage.list(dir.rawId, { pageSize: 1, ...(cursor ? { cursor } : {}) });
      expect(page.items.length).toBeLessThanOrEqual(1);
      seen.push(...page.items.map((x) => x.name));
      if (!page.cursor) break;
      cursor = page.cursor;
    }
    expect(seen).toEqual(expected);
  });

  it('killed mid-upload: service_not_available, no object under the final key once it is back', async () => {
    const size = 50 * MiB;
    let sent = 0;
    let killed: Promise<void> | null = null;
    const tripwire = new Transform({
      transform(chunk: Buffer, _enc, done) {
        sent += chunk.length;
        if (sent > 20 * MiB && !killed) killed = server.kill();
        done(null, chunk);
      },
    });
    const body = patternStream(size).pipe(tripwire);
    await expectCloudmuxError(
      h.storage.upload(root(), 'interrupted.bin', body, { size, ifExists: 'fail' }),
      'service_not_available',
      'bad_gateway',
    );
    expect(killed).not.toBeNull();
    await killed;
    await server.restart();
    expect(await awsExists('interrupted.bin')).toBe(false);
    expect(await h.storage.lookup(root(), 'interrupted.bin')).toBeNull();
  });

  it('s3rver killed mid-download: the stream fails instead of ending short', async () => {
    const size = 40 * MiB;
    const file = await h.storage.upload(root(), 'download-me.bin', patternStream(size), {
      size,
      ifExists: 'replace',
    });
    const { stream } = await h.storage.download(file.rawId);
    let received = 0;
    let killed: Promise<void> | null = null;
    const outcome = new Promise<'ended' | Error>((resolve) => {
      stream.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > 4 * MiB && !killed) killed = server.kill();
      });
      stream.once('end', () => resolve('ended'));
      stream.once('error', (err) => resolve(err));
    });
    const result = await outcome;
    await killed;
    await server.restart();
    expect(result).toBeInstanceOf(Error);
    expect(received).toBeLessThan(size);
  });

  it('down: service_not_available; unknown key: service_unauthorized; no bucket: not_found', async () => {
    await server.server.stop();
    try {
      await expectCloudmuxError(h.storage.validate(), 'service_not_available');
    } finally {
      await server.restart();
    }
    await h.storage.validate();
    const stranger = await harness(server.credentials({ access_key_id: 'NOBODY' }));
    try {
      const err = await expectCloudmuxError(stranger.storage.validate(), 'service_unauthorized');
      expect(err.upstream?.code).toBe('InvalidAccessKeyId');
    } finally {
      await stranger.dispose();
    }
    const lost = await harness(server.credentials({ bucket: 'no-such-bucket' }));
    try {
      const err = await expectCloudmuxError(lost.storage.validate(), 'not_found');
      expect(err.message).toContain('bucket');
    } finally {
      await lost.dispose();
    }
  });
});
