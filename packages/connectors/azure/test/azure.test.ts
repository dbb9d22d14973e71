/**
 * Azure-specific behaviour against a real Azurite: the wire shape of the REST calls, folder markers
 * and implicit folders, block uploads, invisible uncommitted blocks, the commit precondition,
 * credentials and SAS refusals, and a server killed mid-transfer. `@azure/storage-blob` checks what
 * the connector wrote, independently of it.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import {
  type ConnectorContext,
  type ConnectorInstance,
  createConnectorContext,
  instantiateConnector,
  ManualClock,
  type StorageApi,
} from '@cloudmux/core';
import {
  bufferStream,
  expectCloudmuxError,
  randomBytesSha256,
  randomStream,
  readAll,
  sha256OfStream,
} from '@cloudmux/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AZURE_VERSION, azure } from '../src/index.js';
import { type Azurite, azuriteMissing, startAzurite } from './server.js';

const MIB = 1024 * 1024;
const missing = azuriteMissing();
if (missing && process.env.CI) throw new Error(`Azurite is required under CI: ${missing}`);

interface Call {
  method: string;
  url: URL;
  headers: Record<string, string>;
}

interface Connected {
  ctx: ConnectorContext<unknown>;
  instance: ConnectorInstance<'storage'>;
  storage: StorageApi;
  calls: Call[];
  /** NextMarker values of List Blobs answers, in order. */
  nextMarkers: string[];
  /** Most Put Block requests in flight at once. */
  maxBlocksInFlight: () => number;
}

async function connect(credentials: Record<string, unknown>, clock?: ManualClock): Promise<Connected> {
  const parsed = azure.credentials.parse(credentials);
  const ctx = createConnectorContext({
    definition: azure,
    accountId: 'azure-test',
    credentials: parsed,
    ...(clock ? { clock } : {}),
  }) as ConnectorContext<unknown>;
  const calls: Call[] = [];
  const nextMarkers: string[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const isBlock = (url: string | undefined) => url?.includes('comp=block&') ?? false;
  ctx.http.interceptors.request.use((config) => {
    const headers = Object.fromEntries(
      Object.entries(config.headers.toJSON() as Record<string, unknown>).map(([k, v]) => [
        k.toLowerCase(),
        String(v),
      ]),
    );
    calls.push({ method: (config.method ?? 'get').toUpperCase(), url: new URL(config.url!), headers });
    if (isBlock(config.url)) maxInFlight = Math.max(maxInFlight, ++inFlight);
    return config;
  });
  ctx.http.interceptors.response.use(
    (response) => {
      if (isBlock(response.config.url)) inFlight -= 1;
      const data: unknown = response.data;
      if (Buffer.isBuffer(data) || data instanceof ArrayBuffer) {
        const m = /<NextMarker>([^<]*)<\/NextMarker>/.exec(Buffer.from(data as Buffer).toString('utf8'));
        if (m?.[1]) nextMarkers.push(m[1]);
      }
      return response;
    },
    (error: unknown) => {
      const url = (error as { config?: { url?: string } }).config?.url;
      if (isBlock(url)) inFlight -= 1;
      return Promise.reject(error);
    },
  );
  const instance = (await instantiateConnector(azure, ctx as never)) as ConnectorInstance<'storage'>;
  return {
    ctx,
    instance,
    storage: instance.storage,
    calls,
    nextMarkers,
    maxBlocksInFlight: () => maxInFlight,
  };
}

/** A body that fails after `after` bytes, as a client that disconnects mid-upload. */
function failingBody(after: number): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= after) {
        this.destroy(new Error('client went away'));
        return;
      }
      sent += 64 * 1024;
      this.push(Buffer.alloc(64 * 1024, 3));
    },
  });
}

const md5 = (data: Buffer) => createHash('md5').update(data).digest('base64');

describe.skipIf(missing !== null)(
  `azure connector on Azurite${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    let az: Azurite;
    let conn: Connected;
    const container = 'unit';
    const blob = (name: string) => az.service.getContainerClient(container).getBlockBlobClient(name);

    beforeAll(async () => {
      az = await startAzurite();
      await az.createContainer(container);
      conn = await connect(az.credentials(container));
    });
    afterAll(async () => {
      await conn?.instance.dispose?.();
      await az?.teardown();
    });

    it('sends x-ms-version on every call and pages List Blobs with delimiter, prefix and the NextMarker as cursor', async () => {
      const dir = await conn.storage.createFolder(conn.storage.rootRawId, 'paging');
      for (let i = 0; i < 5; i++)
        await conn.storage.upload(dir.rawId, `f${i}.txt`, bufferStream(`${i}`), {
          size: 1,
          ifExists: 'fail',
        });
      conn.calls.length = 0;
      conn.nextMarkers.length = 0;
      const first = await conn.storage.list(dir.rawId, { pageSize: 2 });
      expect(first.cursor).toBeTruthy();
      expect(first.cursor).toBe(conn.nextMarkers.at(-1));
      const second = await conn.storage.list(dir.rawId, { pageSize: 2, cursor: first.cursor! });
      const lists = conn.calls.filter((c) => c.url.searchParams.get('comp') === 'list');
      expect(lists).toHaveLength(2);
      for (const call of lists) {
        expect(call.url.searchParams.get('restype')).toBe('container');
        expect(call.url.searchParams.get('delimiter')).toBe('/');
        expect(call.url.searchParams.get('prefix')).toBe('paging/');
        expect(call.url.searchParams.get('maxresults')).toBe('2');
      }
      expect(lists[1]!.url.searchParams.get('marker')).toBe(first.cursor);
      expect(conn.calls.every((c) => c.headers['x-ms-version'] === AZURE_VERSION)).toBe(true);
      // The folder's own marker blob (first in the listing) is not an item of it.
      expect(first.items.map((i) => i.name)).toEqual(['f0.txt']);
      expect(second.items.map((i) => i.name)).toEqual(['f1.txt', 'f2.txt']);
    });

    it('a folder is a zero-byte "<name>/" marker blob', async () => {
      const folder = await conn.storage.createFolder(conn.storage.rootRawId, 'marked');
      expect(folder.rawId).toBe(`${container}/marked/`);
      const props = await blob('marked/').getProperties();
      expect(props.contentLength).toBe(0);
      await conn.storage.delete(folder.rawId, 'folder', { recursive: false, permanent: true });
      expect(await blob('marked/').exists()).toBe(false);
    });

    it('implicit folders (blobs written without markers) list, read, move and delete', async () => {
      await blob('implicit/deep/x.txt').upload('x', 1);
      await blob('implicit/y.txt').upload('yy', 2);
      const root = await conn.storage.list(conn.storage.rootRawId, { pageSize: 1000 });
      const implicit = root.items.find((i) => i.name === 'implicit');
      expect(implicit).toMatchObject({
        type: 'folder',
        rawId: `${container}/implicit/`,
        parentRawId: `${container}/`,
      });
      const inside = await conn.storage.list(implicit!.rawId, { pageSize: 100 });
      expect(inside.items.map((i) => [i.type, i.name])).toEqual([
        ['folder', 'deep'],
        ['file', 'y.txt'],
      ]);
      expect((await conn.storage.get(`${container}/implicit/deep`, 'folder')).name).toBe('deep');
      const moved = await conn.storage.move(implicit!.rawId, 'folder', { name: 'explicit' });
      expect(
        (await readAll((await conn.storage.download(`${container}/explicit/deep/x.txt`)).stream)).toString(),
      ).toBe('x');
      expect(await blob('implicit/y.txt').exists()).toBe(false);
      await expectCloudmuxError(
        conn.storage.delete(moved.rawId, 'folder', { recursive: false, permanent: true }),
        'folder_not_empty',
      );
      await conn.storage.delete(moved.rawId, 'folder', { recursive: true, permanent: true });
      await expectCloudmuxError(conn.storage.get(moved.rawId, 'folder'), 'not_found');
    });

    it('a small body is one Put Blob with its MD5; ifExists fail adds If-None-Match: *', async () => {
      conn.calls.length = 0;
      const file = await conn.storage.upload(conn.storage.rootRawId, 'small.txt', bufferStream('hello'), {
        size: 5,
        ifExists: 'fail',
      });
      const puts = conn.calls.filter((c) => c.method === 'PUT');
      expect(puts).toHaveLength(1);
      expect(puts[0]!.url.search).toBe('');
      expect(puts[0]!.headers).toMatchObject({
        'x-ms-blob-type': 'BlockBlob',
        'if-none-match': '*',
        'content-type': 'text/plain',
      });
      expect(puts[0]!.headers['content-md5']).toBe(md5(Buffer.from('hello')));
      expect(file).toMatchObject({ name: 'small.txt', size: 5, mimeType: 'text/plain' });
      conn.calls.length = 0;
      await conn.storage.upload(conn.storage.rootRawId, 'small.txt', bufferStream('bye'), {
        size: 3,
        ifExists: 'replace',
      });
      expect(conn.calls.find((c) => c.method === 'PUT')!.headers['if-none-match']).toBeUndefined();
      expect((await blob('small.txt').downloadToBuffer()).toString()).toBe('bye');
    });

    it('a body of unknown size goes up in fixed-id 4 MiB blocks, at most two in flight, with the whole MD5', async () => {
      const size = 9 * MIB + 5;
      conn.calls.length = 0;
      const file = await conn.storage.upload(
        conn.storage.rootRawId,
        'stream.bin',
        randomStream(size, 'unknown'),
        {
          ifExists: 'fail',
        },
      );
      expect(file.size).toBe(size);
      const list = await blob('stream.bin').getBlockList('committed');
      expect(list.committedBlocks?.map((b) => b.size)).toEqual([4 * MIB, 4 * MIB, MIB + 5]);
      expect(new Set(list.committedBlocks?.map((b) => b.name.length))).toEqual(new Set([16]));
      expect(conn.maxBlocksInFlight()).toBeLessThanOrEqual(2);
      const commit = conn.calls.find((c) => c.url.searchParams.get('comp') === 'blocklist')!;
      expect(commit.headers['if-none-match']).toBe('*');
      const { sha256, bytes } = await sha256OfStream((await conn.storage.download(file.rawId)).stream);
      expect(bytes).toBe(size);
      expect(sha256).toBe(randomBytesSha256(size, 'unknown'));
      const stored = await blob('stream.bin').getProperties();
      const wanted = createHash('md5');
      for await (const chunk of randomStream(size, 'unknown')) wanted.update(chunk as Buffer);
      expect(Buffer.from(stored.contentMD5!).toString('base64')).toBe(wanted.digest('base64'));
    });

    it('a body shorter than its size, or one that fails midway, commits nothing', async () => {
      await expectCloudmuxError(
        conn.storage.upload(conn.storage.rootRawId, 'short.bin', randomStream(5 * MIB, 's'), {
          size: 10 * MIB,
          ifExists: 'fail',
        }),
        'bad_request',
      );
      await expectCloudmuxError(
        conn.storage.upload(conn.storage.rootRawId, 'broken.bin', failingBody(6 * MIB), {
          size: 20 * MIB,
          ifExists: 'fail',
        }),
        'bad_request',
      );
      for (const name of ['short.bin', 'broken.bin']) {
        expect(await conn.storage.lookup(conn.storage.rootRawId, name)).toBeNull();
        expect(await blob(name).exists()).toBe(false);
      }
    });

    it('uncommitted blocks of an unfinished multipart upload are invisible', async () => {
      const mp = conn.storage.multipart!;
      let { sessionState } = await mp.begin(conn.storage.rootRawId, 'pending.bin', {
        size: 200_000,
        ifExists: 'fail',
      });
      for (const part of [1, 2]) {
        ({ sessionState } = await mp.uploadPart(
          sessionState,
          part,
          bufferStream(Buffer.alloc(100_000, part)),
          100_000,
        ));
      }
      const blocks = await blob('pending.bin').getBlockList('uncommitted');
      expect(blocks.uncommittedBlocks?.map((b) => b.size)).toEqual([100_000, 100_000]);
      expect(new Set(blocks.uncommittedBlocks?.map((b) => b.name.length)).size).toBe(1);
      expect(await blob('pending.bin').exists()).toBe(false);
      expect(await conn.storage.lookup(conn.storage.rootRawId, 'pending.bin')).toBeNull();
      const listed = await conn.storage.list(conn.storage.rootRawId, { pageSize: 1000 });
      expect(listed.items.map((i) => i.name)).not.toContain('pending.bin');
      await mp.abort(sessionState);
      expect(await blob('pending.bin').exists()).toBe(false);
    });

    it('multipart parts above 16 MiB stream into Put Block; a part of the wrong length is bad_request', async () => {
      const mp = conn.storage.multipart!;
      const big = 17 * MIB;
      let { sessionState } = await mp.begin(conn.storage.rootRawId, 'parts.bin', {
        size: big + 10,
        ifExists: 'fail',
      });
      const short = new Readable({
        read() {
          this.push(Buffer.alloc(MIB, 1));
          this.push(null);
        },
      });
      await expectCloudmuxError(mp.uploadPart(sessionState, 1, short, big), 'bad_request');
      ({ sessionState } = await mp.uploadPart(sessionState, 1, randomStream(big, 'part'), big));
      await expectCloudmuxError(
        mp.uploadPart(sessionState, 2, bufferStream('0123456789abc'), 10),
        'bad_request',
      );
      ({ sessionState } = await mp.uploadPart(sessionState, 2, bufferStream('0123456789'), 10));
      await expectCloudmuxError(mp.uploadPart(sessionState, 4, bufferStream('x'), 1), 'invalid_parameters');
      const file = await mp.complete(sessionState);
      expect(file.size).toBe(big + 10);
      const list = await blob('parts.bin').getBlockList('committed');
      expect(list.committedBlocks?.map((b) => b.size)).toEqual([big, 10]);
      const data = await blob('parts.bin').downloadToBuffer();
      expect(data.subarray(big).toString()).toBe('0123456789');
      expect(createHash('sha256').update(data.subarray(0, big)).digest('hex')).toBe(
        randomBytesSha256(big, 'part'),
      );
    });

    it('a multipart session whose name was taken meanwhile fails on the commit precondition', async () => {
      const mp = conn.storage.multipart!;
      let { sessionState } = await mp.begin(conn.storage.rootRawId, 'raced.bin', {
        size: 10,
        ifExists: 'fail',
      });
      ({ sessionState } = await mp.uploadPart(sessionState, 1, bufferStream('0123456789'), 10));
      await blob('raced.bin').upload('theirs', 6);
      const err = await expectCloudmuxError(mp.complete(sessionState), 'naming_conflict');
      expect(err.conflictingRawId).toBe(`${container}/raced.bin`);
      expect((await blob('raced.bin').downloadToBuffer()).toString()).toBe('theirs');
    });

    it('copy is a server-side Copy Blob (no byte of the file passes through the connector)', async () => {
      const source = await conn.storage.upload(
        conn.storage.rootRawId,
        'big-source.bin',
        randomStream(5 * MIB, 'copy'),
        {
          size: 5 * MIB,
          ifExists: 'fail',
        },
      );
      conn.calls.length = 0;
      const copied = await conn.storage.copy!(source.rawId, 'file', {
        parentRawId: conn.storage.rootRawId,
        name: 'big-copy.bin',
      });
      const copyCall = conn.calls.find((c) => c.headers['x-ms-copy-source']);
      expect(copyCall?.method).toBe('PUT');
      expect(copyCall?.headers['x-ms-copy-source']).toBe(`${az.endpoint}/${container}/big-source.bin`);
      expect(copyCall?.headers['if-none-match']).toBe('*');
      expect(conn.calls.filter((c) => c.method === 'GET' && !c.url.searchParams.has('comp'))).toEqual([]);
      expect(copied.size).toBe(5 * MIB);
      expect((await blob('big-copy.bin').getProperties()).contentLength).toBe(5 * MIB);
      await expectCloudmuxError(
        conn.storage.copy!(source.rawId, 'file', {
          parentRawId: conn.storage.rootRawId,
          name: 'big-copy.bin',
        }),
        'naming_conflict',
      );
    });

    it('ranged reads send x-ms-range and report the served range', async () => {
      const file = await conn.storage.upload(
        conn.storage.rootRawId,
        'range.txt',
        bufferStream('0123456789'),
        { size: 10, ifExists: 'fail' },
      );
      conn.calls.length = 0;
      const result = await conn.storage.download(file.rawId, { range: { start: 3, end: 5 } });
      expect((await readAll(result.stream)).toString()).toBe('345');
      expect(result.range).toEqual({ start: 3, end: 5, total: 10 });
      expect(conn.calls[0]!.headers['x-ms-range']).toBe('bytes=3-5');
    });

    it('names that need percent-encoding round-trip (signed as sent)', async () => {
      const dir = await conn.storage.createFolder(conn.storage.rootRawId, 'odd names');
      for (const name of [
        'a+b=c.txt',
        '50% off #1?.txt',
        "it's (x)!*.txt",
        'spaces  and ~tilde.txt',
        'ümlaut ✓.txt',
      ]) {
        const file = await conn.storage.upload(dir.rawId, name, bufferStream(name), {
          size: Buffer.byteLength(name),
          ifExists: 'fail',
        });
        expect(file.name).toBe(name);
        expect((await blob(`odd names/${name}`).downloadToBuffer()).toString()).toBe(name);
        expect((await readAll((await conn.storage.download(file.rawId)).stream)).toString()).toBe(name);
      }
      const listed = await conn.storage.list(dir.rawId, { pageSize: 100 });
      expect(listed.items).toHaveLength(5);
    });

    it('search pages through matches with its own cursor and honours parents', async () => {
      const dir = await conn.storage.createFolder(conn.storage.rootRawId, 'searching');
      const other = await conn.storage.createFolder(conn.storage.rootRawId, 'elsewhere');
      for (let i = 0; i < 5; i++)
        await conn.storage.upload(dir.rawId, `Match-${i}.txt`, bufferStream('m'), {
          size: 1,
          ifExists: 'fail',
        });
      await conn.storage.upload(other.rawId, 'match-other.txt', bufferStream('m'), {
        size: 1,
        ifExists: 'fail',
      });
      await conn.storage.createFolder(dir.rawId, 'match-folder');
      const seen: string[] = [];
      let cursor: string | undefined;
      for (let i = 0; i < 20; i++) {
        const page = await conn.storage.search!('MATCH-', {
          pageSize: 2,
          parents: [dir.rawId],
          ...(cursor ? { cursor } : {}),
        });
        expect(page.items.length).toBeLessThanOrEqual(2);
        seen.push(...page.items.map((item) => `${item.type}:${item.name}`));
        if (!page.cursor) break;
        expect(page.cursor).not.toMatch(/^https?:/);
        cursor = page.cursor;
      }
      expect(seen.sort()).toEqual([
        'file:Match-0.txt',
        'file:Match-1.txt',
        'file:Match-2.txt',
        'file:Match-3.txt',
        'file:Match-4.txt',
        'folder:match-folder',
      ]);
      const everywhere = await conn.storage.search!('match-other', { pageSize: 10 });
      expect(everywhere.items.map((i) => i.rawId)).toEqual([`${container}/elsewhere/match-other.txt`]);
    });

    it('raw ids of another container are not_found even when that blob exists', async () => {
      await az.createContainer('other');
      await az.service.getContainerClient('other').getBlockBlobClient('x.txt').upload('x', 1);
      await expectCloudmuxError(conn.storage.get('other/x.txt', 'file'), 'not_found');
      await expectCloudmuxError(conn.storage.download('other/x.txt'), 'not_found');
      await expectCloudmuxError(
        conn.storage.delete('other/x.txt', 'file', { recursive: false, permanent: true }),
        'not_found',
      );
      expect(await az.service.getContainerClient('other').getBlockBlobClient('x.txt').exists()).toBe(true);
    });

    it('a wrong account key is refused (Azurite: 403 AuthorizationFailure → service_forbidden)', async () => {
      const wrong = await connect(
        az.credentials(container, { account_key: Buffer.alloc(64, 1).toString('base64') }),
      );
      const err = await expectCloudmuxError(
        wrong.instance.validate!(),
        'service_unauthorized',
        'service_forbidden',
      );
      expect(err.upstream?.status).toBe(403);
      await expectCloudmuxError(
        wrong.storage.upload(wrong.storage.rootRawId, 'intruder.txt', bufferStream('x'), {
          size: 1,
          ifExists: 'fail',
        }),
        'service_unauthorized',
        'service_forbidden',
      );
      expect(await blob('intruder.txt').exists()).toBe(false);
    });

    it('a missing container is not_found on validate', async () => {
      const gone = await connect(az.credentials('no-such-container'));
      await expectCloudmuxError(gone.instance.validate!(), 'not_found');
    });

    it('a read-only SAS reads and lists but every write is service_forbidden', async () => {
      await blob('readable.txt').upload('readable', 8);
      const sas = az.sas(container, { permissions: 'rl', expiresOn: new Date(Date.now() + 3_600_000) });
      const ro = await connect({ ...az.credentials(container), account_key: '', sas_token: sas });
      // There is no key: only the SAS (appended by core's azure_sas strategy) can have authorized this.
      await ro.instance.validate!();
      expect(
        (await readAll((await ro.storage.download(`${container}/readable.txt`)).stream)).toString(),
      ).toBe('readable');
      await expectCloudmuxError(
        ro.storage.upload(ro.storage.rootRawId, 'ro.txt', bufferStream('x'), { size: 1, ifExists: 'fail' }),
        'service_forbidden',
      );
      await expectCloudmuxError(ro.storage.createFolder(ro.storage.rootRawId, 'ro-dir'), 'service_forbidden');
      await expectCloudmuxError(
        ro.storage.delete(`${container}/readable.txt`, 'file', { recursive: false, permanent: true }),
        'service_forbidden',
      );
      expect(await blob('ro.txt').exists()).toBe(false);
      expect(await blob('readable.txt').exists()).toBe(true);
    });

    it('an expired SAS is service_forbidden', async () => {
      const sas = az.sas(container, {
        permissions: 'racwdl',
        startsOn: new Date(Date.now() - 7_200_000),
        expiresOn: new Date(Date.now() - 3_600_000),
      });
      const expired = await connect({ ...az.credentials(container), account_key: undefined, sas_token: sas });
      await expectCloudmuxError(expired.instance.validate!(), 'service_forbidden');
      await expectCloudmuxError(
        expired.storage.get(`${container}/readable.txt`, 'file'),
        'service_forbidden',
      );
    });
  },
);

describe.skipIf(missing !== null)(
  `azure connector when Azurite dies mid-transfer${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    let az: Azurite;
    const container = 'crash';
    beforeAll(async () => {
      az = await startAzurite();
      await az.createContainer(container);
    });
    afterAll(async () => {
      await az?.teardown();
    });

    it('an upload killed midway is service_not_available / bad_gateway and leaves no blob under its name', async () => {
      // Manual clock: core's retry backoff against the dead server does not wait.
      const conn = await connect(
        az.credentials(container),
        new ManualClock(Date.now(), { autoAdvance: true }),
      );
      await conn.storage.upload(conn.storage.rootRawId, 'before.txt', bufferStream('kept'), {
        size: 4,
        ifExists: 'fail',
      });
      // Azurite saves its metadata every 5 s; a graceful restart makes the setup durable before the kill.
      await az.restart();
      const blobClient = az.service.getContainerClient(container).getBlockBlobClient('interrupted.bin');
      const size = 64 * MIB;
      let sent = 0;
      let killed = false;
      let stagedBeforeKill = -1;
      let visibleBeforeKill: boolean | null = null;
      const body = new Readable({
        highWaterMark: 64 * 1024,
        read() {
          const chunk = Buffer.alloc(64 * 1024, 9);
          sent += chunk.length;
          if (!killed && sent >= 10 * MIB) {
            killed = true;
            // Mid-transfer, blocks are staged but nothing is visible under the name; then the server dies.
            void (async () => {
              stagedBeforeKill =
                (await blobClient.getBlockList('uncommitted')).uncommittedBlocks?.length ?? 0;
              visibleBeforeKill =
                (await blobClient.exists()) ||
                (await conn.storage.lookup(conn.storage.rootRawId, 'interrupted.bin')) !== null;
              await az.kill();
            })().then(
              () => this.push(chunk),
              (error: unknown) => this.destroy(error as Error),
            );
            return;
          }
          this.push(sent > size ? null : chunk);
        },
      });
      await expectCloudmuxError(
        conn.storage.upload(conn.storage.rootRawId, 'interrupted.bin', body, { size, ifExists: 'fail' }),
        'service_not_available',
        'bad_gateway',
      );
      expect(killed).toBe(true);
      expect(stagedBeforeKill).toBeGreaterThanOrEqual(1);
      expect(visibleBeforeKill).toBe(false);
      await az.restart();
      const after = await connect(az.credentials(container));
      expect(await after.storage.lookup(after.storage.rootRawId, 'interrupted.bin')).toBeNull();
      expect(await blobClient.exists()).toBe(false);
      // Restarted from the same data folder: what was committed before the crash is still there.
      expect(
        (await readAll((await after.storage.download(`${container}/before.txt`)).stream)).toString(),
      ).toBe('kept');
    });

    it('a download cut off by the server dying is a service_not_available stream error', async () => {
      const conn = await connect(
        az.credentials(container),
        new ManualClock(Date.now(), { autoAdvance: true }),
      );
      const size = 48 * MIB;
      const file = await conn.storage.upload(
        conn.storage.rootRawId,
        'download.bin',
        randomStream(size, 'dl'),
        { size, ifExists: 'fail' },
      );
      const { stream } = await conn.storage.download(file.rawId);
      let got = 0;
      let killed = false;
      const reading = (async () => {
        for await (const chunk of stream) {
          got += (chunk as Buffer).length;
          if (!killed && got >= 2 * MIB) {
            killed = true;
            await az.kill();
          }
        }
      })();
      const err = await expectCloudmuxError(reading, 'service_not_available', 'bad_gateway');
      expect(err.message).toMatch(/broke off/);
      expect(got).toBeLessThan(size);
      await az.restart();
    });
  },
);
