/** Credential parsing, endpoint addressing, raw ids, the XML reader, part sizing and the chunk reader. */

import { Readable } from 'node:stream';
import { networkModeFor } from '@cloudmux/core';
import { describe, expect, it } from 'vitest';
import {
  ChunkReader,
  KeySpace,
  MAX_PARTS,
  parseXml,
  partSizeForSize,
  partSizeForUnknown,
  resolveSettings,
  s3,
  s3Credentials,
} from '../src/index.js';

const MiB = 1024 * 1024;
const base = { access_key_id: 'AK', secret_access_key: 'SK', bucket: 'media' };

describe('credentials and addressing', () => {
  it('defaults: us-east-1, virtual-hosted Amazon S3, no prefix', () => {
    const parsed = s3Credentials.parse(base);
    expect(parsed.region).toBe('us-east-1');
    expect(resolveSettings(parsed)).toEqual({
      bucket: 'media',
      region: 'us-east-1',
      prefix: '',
      endpoint: {
        origin: 'https://media.s3.us-east-1.amazonaws.com',
        basePath: '',
        pathStyle: false,
        custom: false,
      },
    });
  });

  it('custom endpoints are path style by default and keep their path; empty means Amazon', () => {
    const minio = resolveSettings(
      s3Credentials.parse({ ...base, endpoint: 'https://minio.example.com:9000/s3/', region: 'eu-1' }),
    );
    expect(minio.endpoint).toEqual({
      origin: 'https://minio.example.com:9000',
      basePath: '/s3/media',
      pathStyle: true,
      custom: true,
    });
    const vhost = resolveSettings(
      s3Credentials.parse({ ...base, endpoint: 'https://r2.example.com', path_style: false }),
    );
    expect(vhost.endpoint.origin).toBe('https://media.r2.example.com');
    const ip = resolveSettings(
      s3Credentials.parse({ ...base, endpoint: 'http://10.0.0.5:9000', path_style: false }),
    );
    expect(ip.endpoint).toMatchObject({
      origin: 'http://10.0.0.5:9000',
      basePath: '/media',
      pathStyle: true,
    });
    const dotted = resolveSettings(s3Credentials.parse({ ...base, bucket: 'a.b.c' }));
    expect(dotted.endpoint).toMatchObject({
      origin: 'https://s3.us-east-1.amazonaws.com',
      basePath: '/a.b.c',
      pathStyle: true,
    });
    expect(
      resolveSettings(s3Credentials.parse({ ...base, endpoint: '', session_token: '' })).endpoint.custom,
    ).toBe(false);
  });

  it('refuses bad fields', () => {
    for (const bad of [
      {},
      { ...base, bucket: 'a/b' },
      { ...base, endpoint: 'ftp://x' },
      { ...base, endpoint: 'https://user:pw@x' },
      { ...base, endpoint: 'https://x/?q=1' },
      { ...base, base_prefix: 'a/../b' },
      { ...base, base_prefix: 'a\\b' },
      { ...base, region: 'us east' },
      { ...base, secret_access_key: 'a\nb' },
    ]) {
      expect(s3Credentials.safeParse(bad).success, JSON.stringify(bad)).toBe(false);
    }
    expect(resolveSettings(s3Credentials.parse({ ...base, base_prefix: '/team/docs/' })).prefix).toBe(
      'team/docs/',
    );
  });

  it('encode_raw_id attributes make the raw id', () => {
    const attrs = s3.rawId!.attributes.parse({ bucket_name: 'media', id: 'photos/cat.jpg' });
    expect(s3.rawId!.toRawId(attrs as Record<string, unknown>)).toBe('media/photos/cat.jpg');
    expect(s3.rawId!.toRawId({ bucket_name: 'media', id: '/photos/' })).toBe('media/photos/');
  });
});

describe('raw ids', () => {
  const keys = new KeySpace('media', 'team/');
  it('map to keys only inside the bucket and the base prefix', () => {
    expect(keys.rootRawId).toBe('media/team/');
    expect(keys.keyOf('media/team/a/b.txt')).toBe('team/a/b.txt');
    expect(keys.keyOf('media/team/a/')).toBe('team/a/');
    for (const bad of [
      'other/team/a.txt',
      'media/elsewhere/a.txt',
      'media/team/../x',
      'media/team/a//b',
      'media/team/./a',
      'mediateam/a',
    ]) {
      expect(() => keys.keyOf(bad), bad).toThrowError(/No such/);
    }
  });
  it('know names, parents, paths and ancestors', () => {
    expect(keys.nameOf('team/a/b.txt')).toBe('b.txt');
    expect(keys.nameOf('team/a/')).toBe('a');
    expect(keys.parentKey('team/a/b.txt')).toBe('team/a/');
    expect(keys.parentKey('team/a/')).toBe('team/');
    expect(keys.parentKey('team/')).toBeNull();
    expect(keys.displayPath('team/a/sub/')).toBe('/a/sub');
    expect(keys.ancestors('team/a/b.txt')).toEqual([
      { rawId: 'media/team/', name: '' },
      { rawId: 'media/team/a/', name: 'a' },
    ]);
  });
});

describe('XML reader', () => {
  it('reads elements, entities, character references and CDATA, skipping declarations and attributes', () => {
    const root = parseXml(
      '<?xml version="1.0"?><!-- c --><r xmlns="u" a=">">' +
        '<k>a&amp;b &lt;&#233;&#x263A;</k><s3:k2>x</s3:k2><e/><c><![CDATA[<raw>]]></c></r>',
    );
    expect(root.name).toBe('r');
    expect(root.children.map((c) => [c.name, c.text])).toEqual([
      ['k', 'a&b <é☺'],
      ['k2', 'x'],
      ['e', ''],
      ['c', '<raw>'],
    ]);
  });
  it('throws on malformed documents', () => {
    for (const bad of ['', '<a>', '<a></b>', '<a/><b/>', 'text', '<a>&bogus;</a>', '<a><!-- x</a>']) {
      expect(() => parseXml(bad), bad).toThrow();
    }
  });
});

describe('part sizes', () => {
  it('known sizes use 8 MiB parts, raised to fit 10,000 parts', () => {
    expect(partSizeForSize(50 * MiB)).toBe(8 * MiB);
    const tib = 1024 * 1024 * MiB;
    const size = 5 * tib;
    const part = partSizeForSize(size);
    expect(Math.ceil(size / part)).toBeLessThanOrEqual(MAX_PARTS);
    expect(part % MiB).toBe(0);
    expect(() => partSizeForSize(50 * tib)).toThrow();
  });
  it('unknown sizes grow the part size with the part number', () => {
    expect([1, 1000, 1001, 5000, 5001, 10_000].map((n) => partSizeForUnknown(n) / MiB)).toEqual([
      8, 8, 64, 64, 512, 512,
    ]);
  });
});

describe('ChunkReader', () => {
  it('cuts exact byte counts across chunk boundaries and knows the end', async () => {
    const reader = new ChunkReader(
      Readable.from([Buffer.from('abc'), Buffer.from(''), Buffer.from('defgh'), Buffer.from('i')]),
    );
    expect((await reader.readBuffer(4)).toString()).toBe('abcd');
    expect(await reader.hasMore()).toBe(true);
    expect((await reader.readBuffer(4)).toString()).toBe('efgh');
    expect((await reader.readBuffer(4)).toString()).toBe('i');
    expect(await reader.hasMore()).toBe(false);
    expect((await reader.readBuffer(4)).length).toBe(0);
    expect(reader.bytesRead).toBe(9);
  });
  it('propagates a failing source', async () => {
    const failing = new Readable({
      read() {
        this.destroy(new Error('client went away'));
      },
    });
    await expect(new ChunkReader(failing).readBuffer(10)).rejects.toThrow('client went away');
  });
});

describe('definition', () => {
  it('declares SigV4 on the credential fields, a per-account network, pass-through to the bucket', () => {
    expect(s3.auth).toEqual({
      type: 'aws_sigv4',
      signingService: 's3',
      regionField: 'region',
      accessKeyIdField: 'access_key_id',
      secretAccessKeyField: 'secret_access_key',
      sessionTokenField: 'session_token',
    });
    expect(networkModeFor(s3, { endpoint: 'http://10.0.0.2:9000' })).toBe('self_hosted');
    expect(networkModeFor(s3, {})).toBe('saas');
    expect(s3.service).toBe('s3');
    const pass = s3.passThrough;
    expect(pass?.kind).toBe('account_host');
    if (pass?.kind === 'account_host') {
      expect(pass.baseUrl(s3Credentials.parse({ ...base, endpoint: 'http://127.0.0.1:9000' }))).toBe(
        'http://127.0.0.1:9000/media/',
      );
    }
  });
});
