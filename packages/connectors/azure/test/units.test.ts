/** Connector pieces that need no server: credentials, raw ids, block arithmetic, XML, error refinement, copy polling. */
import { CloudmuxError, errorFromUpstreamResponse, ManualClock } from '@cloudmux/core';
import { expectCloudmuxError } from '@cloudmux/testkit';
import { describe, expect, it } from 'vitest';
import {
  azure,
  azureCredentials,
  BlobClient,
  BlobPaths,
  type BlobProperties,
  blockId,
  blockSizeForIndex,
  blockSizeForSize,
  encodeBlobPath,
  MAX_BLOCKS,
  parseXml,
  resolveSettings,
} from '../src/index.js';
import { AzureStorage } from '../src/storage.js';

const MIB = 1024 * 1024;
const KEY = Buffer.alloc(64, 7).toString('base64');

describe('definition and credentials', () => {
  it('declares service azure with Shared Key or SAS chosen by the fields present', () => {
    expect(azure.service).toBe('azure');
    expect(azure.network).toBe('self_hosted');
    expect(azure.auth).toEqual({
      type: 'one_of',
      strategies: [
        { type: 'azure_shared_key', accountNameField: 'account_name', accountKeyField: 'account_key' },
        { type: 'azure_sas', sasTokenField: 'sas_token' },
      ],
    });
  });

  it('needs a key or a SAS; empty form fields count as absent', () => {
    const base = { account_name: 'myaccount', container: 'files' };
    expect(azureCredentials.safeParse(base).success).toBe(false);
    expect(azureCredentials.safeParse({ ...base, account_key: '', sas_token: '' }).success).toBe(false);
    expect(azureCredentials.safeParse({ ...base, account_key: KEY }).success).toBe(true);
    const sasOnly = azureCredentials.parse({
      ...base,
      account_key: '',
      sas_token: '?sv=2021-08-06&sr=c&sp=rl&sig=abc%3D',
      endpoint: '',
    });
    const settings = resolveSettings(sasOnly);
    expect(settings).toMatchObject({ authMode: 'sas', sasQuery: 'sv=2021-08-06&sr=c&sp=rl&sig=abc%3D' });
    expect(settings.endpoint).toBe('https://myaccount.blob.core.windows.net');
    // Both given: the key wins, as in core's one_of order; the SAS is then not used for Copy Blob sources.
    expect(
      resolveSettings(azureCredentials.parse({ ...base, account_key: KEY, sas_token: 'sv=1&sig=x' })),
    ).toMatchObject({
      authMode: 'shared_key',
      sasQuery: null,
    });
  });

  it('refuses malformed fields', () => {
    const ok = { account_name: 'myaccount', container: 'files', account_key: KEY };
    for (const bad of [
      { container: 'Files' },
      { container: 'a--b' },
      { account_name: 'My_Account' },
      { account_key: 'not base64!' },
      { account_key: undefined, sas_token: 'https://myaccount.blob.core.windows.net/files?sv=1&sig=x' },
      { account_key: undefined, sas_token: 'sv=1&sp=r' },
      { endpoint: 'http://127.0.0.1:10000/devstoreaccount1?x=1' },
      { endpoint: 'ftp://example.com' },
      { base_prefix: 'a/../b' },
    ]) {
      expect(azureCredentials.safeParse({ ...ok, ...bad }).success, JSON.stringify(bad)).toBe(false);
    }
  });

  it('normalizes the endpoint and the base prefix', () => {
    const settings = resolveSettings(
      azureCredentials.parse({
        account_name: 'devstoreaccount1',
        container: 'files',
        account_key: KEY,
        endpoint: 'http://127.0.0.1:10000/devstoreaccount1/',
        base_prefix: '/team/docs/',
      }),
    );
    expect(settings).toMatchObject({
      endpoint: 'http://127.0.0.1:10000/devstoreaccount1',
      basePrefix: 'team/docs/',
      authMode: 'shared_key',
    });
  });

  it('encode_raw_id takes container_name + id (the object path)', () => {
    const rawId = azure.rawId!;
    expect(rawId.attributes.safeParse({ id: 'a.txt' }).success).toBe(false);
    expect(rawId.toRawId({ container_name: 'files', id: '/docs/a.txt' })).toBe('files/docs/a.txt');
    expect(rawId.toRawId({ container_name: 'files', id: 'docs/' })).toBe('files/docs/');
  });
});

describe('raw ids', () => {
  const paths = new BlobPaths('files', 'team/');

  it('are <container>/<blob name>, folders ending in /', () => {
    expect(paths.rootRawId).toBe('files/team/');
    expect(paths.fileName('files/team/a/b.txt')).toBe('team/a/b.txt');
    expect(paths.folderPrefix('files/team/a')).toBe('team/a/');
    expect(paths.folderPrefix('files/team/a/')).toBe('team/a/');
    expect(paths.folderPrefix('files/team')).toBe('team/');
    expect(paths.parentPrefix('team/a/b.txt')).toBe('team/a/');
    expect(paths.parentPrefix('team/a/')).toBe('team/');
    expect(paths.parentPrefix('team/')).toBeNull();
    expect(paths.displayPath('team/a/b/')).toBe('/a/b');
    expect(paths.ancestors('team/a/b.txt')).toEqual([
      { rawId: 'files/team/', name: '' },
      { rawId: 'files/team/a/', name: 'a' },
    ]);
  });

  it.each([
    'other/team/a.txt',
    'files/elsewhere/a.txt',
    'files/team/../secret.txt',
    'files/team/./a.txt',
    'files/team//a.txt',
    'files/team/a\u0000b',
    'files/team/',
    'files/team/dir/',
    'files',
    '',
  ])('file raw id %j is not_found', (rawId) => {
    expect(() => paths.fileName(rawId)).toThrow(CloudmuxError);
    try {
      paths.fileName(rawId);
    } catch (error) {
      expect((error as CloudmuxError).code).toBe('not_found');
    }
  });

  it('percent-encodes each path segment, keeping /', () => {
    expect(encodeBlobPath("a b/c#d?e%f+g/(x)'!*")).toBe('a%20b/c%23d%3Fe%25f%2Bg/%28x%29%27%21%2A');
    expect(encodeBlobPath('café/ü')).toBe('caf%C3%A9/%C3%BC');
  });
});

describe('blocks', () => {
  it('sizes blocks from 4 MiB up so a known size fits 50,000 blocks, and refuses what 100 MiB blocks cannot hold', () => {
    expect(blockSizeForSize(0)).toBe(4 * MIB);
    expect(blockSizeForSize(50 * MIB)).toBe(4 * MIB);
    expect(blockSizeForSize(4 * MIB * MAX_BLOCKS)).toBe(4 * MIB);
    expect(blockSizeForSize(4 * MIB * MAX_BLOCKS + 1)).toBe(5 * MIB);
    expect(blockSizeForSize(100 * MIB * MAX_BLOCKS)).toBe(100 * MIB);
    expect(() => blockSizeForSize(100 * MIB * MAX_BLOCKS + 1)).toThrow(/exceeds/);
    expect([0, 9_999, 10_000, 19_999, 20_000, 49_999].map(blockSizeForIndex)).toEqual([
      4 * MIB,
      4 * MIB,
      16 * MIB,
      16 * MIB,
      100 * MIB,
      100 * MIB,
    ]);
  });

  it('block ids are base64 of one fixed length, distinct per index and per session', () => {
    const a = Buffer.from('0123456789abcdef', 'hex');
    const b = Buffer.from('fedcba9876543210', 'hex');
    const ids = [0, 1, 255, 65_536, MAX_BLOCKS].map((i) => blockId(a, i));
    expect(new Set(ids.map((id) => id.length))).toEqual(new Set([16]));
    expect(new Set(ids).size).toBe(ids.length);
    expect(Buffer.from(ids[2]!, 'base64').readUInt32BE(8)).toBe(255);
    expect(blockId(a, 1)).not.toBe(blockId(b, 1));
  });
});

describe('XML', () => {
  it('reads entities, character references, CDATA and attributes', () => {
    const doc = parseXml(
      '\ufeff<?xml version="1.0" encoding="utf-8"?><!-- c --><R a="1 &amp; 2"><N>a &lt;b&gt; &#233;&#x1F600;</N>' +
        '<N Encoded="true">x%0Ay</N><C><![CDATA[<raw>&]]></C><E/></R>',
    );
    expect(doc.name).toBe('R');
    expect(doc.attributes.a).toBe('1 & 2');
    expect(doc.children.map((c) => c.name)).toEqual(['N', 'N', 'C', 'E']);
    expect(doc.children[0]!.text).toBe('a <b> é😀');
    expect(doc.children[1]!.attributes.Encoded).toBe('true');
    expect(doc.children[2]!.text).toBe('<raw>&');
  });

  it.each(['<R><N></R>', '<R>', '<R></R><S/>', 'text', '<R>&bogus;</R>', '<R>&amp</R>', '<R a=1/>', ''])(
    'malformed %j is bad_gateway',
    (xml) => {
      expect(() => parseXml(xml)).toThrow(expect.objectContaining({ code: 'bad_gateway' }));
    },
  );
});

describe('error refinement', () => {
  const client = (authMode: 'shared_key' | 'sas') =>
    new BlobClient(null as never, {
      accountName: 'a',
      container: 'files',
      endpoint: 'https://a.blob.core.windows.net',
      basePrefix: '',
      authMode,
      sasQuery: authMode === 'sas' ? 'sv=1&sig=x' : null,
    });
  const upstream = (status: number, upstreamCode: string) =>
    errorFromUpstreamResponse('azure', status, { upstreamCode });
  const code = (e: unknown) => (e as CloudmuxError).code;

  it('a refused Shared Key signature is service_unauthorized; SAS refusals stay service_forbidden', () => {
    expect(code(client('shared_key').refine(upstream(403, 'AuthenticationFailed')))).toBe(
      'service_unauthorized',
    );
    expect(code(client('sas').refine(upstream(403, 'AuthenticationFailed')))).toBe('service_forbidden');
    expect(code(client('shared_key').refine(upstream(403, 'AuthorizationPermissionMismatch')))).toBe(
      'service_forbidden',
    );
    expect(code(client('sas').refine(upstream(403, 'AuthorizationFailure')))).toBe('service_forbidden');
  });

  it('maps container, range, lease and precondition codes', () => {
    const c = client('shared_key');
    expect(code(c.refine(upstream(404, 'ContainerNotFound')))).toBe('not_found');
    expect(code(c.refine(upstream(416, 'InvalidRange')))).toBe('invalid_parameters');
    expect(code(c.refine(upstream(409, 'BlobAlreadyExists')))).toBe('naming_conflict');
    expect(code(c.refine(upstream(412, 'ConditionNotMet')))).toBe('naming_conflict');
    expect(code(c.refine(upstream(412, 'LeaseIdMissing')))).toBe('permission_denied');
    expect(code(c.refine(upstream(409, 'PendingCopyOperation')))).toBe('request_failed');
    expect(code(c.refine(upstream(503, 'ServerBusy')))).toBe('service_not_available');
  });
});

describe('Copy Blob polling (fake client, manual clock)', () => {
  const props = (copyStatus: string): BlobProperties => ({
    name: 'b.txt',
    size: 1,
    contentType: 'text/plain',
    created: null,
    modified: new Date(),
    etag: '"1"',
    contentMd5: null,
    copyId: 'copy-1',
    copyStatus,
  });

  function fakeClient(statuses: string[]) {
    const calls: string[] = [];
    const fake = {
      authMode: 'shared_key',
      async listBlobs() {
        return { blobs: [], prefixes: [], nextMarker: null };
      },
      async getProperties(name: string) {
        calls.push(`head ${name}`);
        if (name === 'a.txt') return { ...props('success'), name };
        if (name === 'b.txt' && calls.some((c) => c.startsWith('copy')))
          return props(statuses.shift() ?? 'pending');
        return null;
      },
      async copyBlob(source: string, destination: string) {
        calls.push(`copy ${source} ${destination}`);
        return { status: 'pending', copyId: 'copy-1' };
      },
      async abortCopy(destination: string, copyId: string) {
        calls.push(`abort ${destination} ${copyId}`);
      },
      async deleteBlob(name: string) {
        calls.push(`delete ${name}`);
        return true;
      },
    };
    return { fake: fake as unknown as BlobClient, calls };
  }

  it('polls x-ms-copy-status until success, backing off on the clock', async () => {
    const { fake, calls } = fakeClient(['pending', 'pending', 'success']);
    const clock = new ManualClock(0, { autoAdvance: true });
    const storage = new AzureStorage(fake, new BlobPaths('files', ''), { clock });
    const copied = await storage.copy('files/a.txt', 'file', { parentRawId: 'files/', name: 'b.txt' });
    expect(copied.rawId).toBe('files/b.txt');
    expect(clock.sleeps).toEqual([50, 100, 200]);
    expect(calls).not.toContain('delete b.txt');
  });

  it('aborts a copy that stays pending past the deadline and removes the destination', async () => {
    const { fake, calls } = fakeClient([]);
    const clock = new ManualClock(0, { autoAdvance: true });
    const storage = new AzureStorage(fake, new BlobPaths('files', ''), { clock, copyTimeoutMs: 10_000 });
    await expectCloudmuxError(
      storage.copy('files/a.txt', 'file', { parentRawId: 'files/', name: 'b.txt' }),
      'gateway_timeout',
    );
    expect(calls).toContain('abort b.txt copy-1');
    expect(calls.at(-1)).toBe('delete b.txt');
  });

  it('a failed copy is bad_gateway and leaves no destination', async () => {
    const { fake, calls } = fakeClient(['failed']);
    const storage = new AzureStorage(fake, new BlobPaths('files', ''), {
      clock: new ManualClock(0, { autoAdvance: true }),
    });
    await expectCloudmuxError(storage.move('files/a.txt', 'file', { name: 'b.txt' }), 'bad_gateway');
    expect(calls.at(-1)).toBe('delete b.txt');
    // A move whose copy failed never deletes the source.
    expect(calls).not.toContain('delete a.txt');
  });
});
